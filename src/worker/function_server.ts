/**
 * The worker side: a process that serves one function. It registers its
 * name and routes with the gateway over the control channel, receives live
 * connections, imports their TLS state, and answers their requests with the
 * function's fetch-style handler for as long as they ask for its routes. A
 * request for another route moves the connection, with the request's bytes,
 * at a TLS record boundary: straight to a worker of that route's function
 * (`--handoff direct`, the default), else back to the gateway. Which requests are its is
 * decided over the gateway's route table (src/routing/worker_routes.ts), so a
 * connection goes where a new one would.
 *
 * @module
 */

import { fromBase64 } from "../handoff/bytes.ts";
import { closeFd, ECONNREFUSED, ENOENT, FD_LOST, SysError, unixConnect } from "../../ffi/shim.ts";
import { TlsContext } from "../../ffi/wolfssl.ts";
import type { WorkerConfig } from "../operations/config.ts";
import { ControlChannel } from "../handoff/control_channel.ts";
import type { RequestHead } from "../http/http.ts";
import { logger } from "../operations/log.ts";
import { adoptHandoff, nowMicros, releaseForHandoff } from "../handoff/handoff.ts";
import {
  decodeMessage,
  encodeJson,
  type Handoff,
  Limits,
  type Message,
  MessageType,
  type Moved,
  setHandoffCount,
  type Stats,
} from "../handoff/protocol.ts";
import { WorkerMetrics } from "./worker_metrics.ts";
import { type Handler, Responder } from "../http/responder.ts";
import {
  hold,
  type HoldOptions,
  holdOptions,
  type HoldPolicy,
  requestLogLine,
  routed,
} from "../connection/holder.ts";
import { Sealer } from "../handoff/seal.ts";
import type { TlsConnection } from "../connection/tls_connection.ts";
import { WorkerRoutes } from "../routing/worker_routes.ts";
import { peerDirectory, Peers } from "../handoff/peers.ts";
import { trust } from "../handoff/trust.ts";
import { raiseOpenFileLimit, startingUp } from "../operations/lifecycle.ts";
import { closeWebSockets } from "../http/websocket.ts";

export { type Handler, HttpError, type RequestInfo } from "../http/responder.ts";

/** What a function announces to the gateway. */
export interface FunctionOptions {
  /** Function name: 1-64 letters, digits, ".", "_" or "-". */
  name: string;
  /** Paths it serves. "/sum" also covers "/sum/anything" (unless another
   * function registered a longer route there, see `nestedRoutes`). */
  routes: string[];
  /** Methods it accepts (default: all); others get 405 with an Allow header. */
  methods?: string[];
  /** Whether this process replaces one that died (the launcher says so). */
  restarted?: boolean;
  /**
   * Let its routes nest with other functions' routes (default false). The
   * gateway refuses a route inside another function's route ("/sum/admin"
   * while function sum has "/sum") or around one ("/a" while another has
   * "/a/b") unless the function registering it sets this. Paths then go to
   * the longest route: `{ name: "admin", routes: ["/sum/admin"],
   * nestedRoutes: true }` serves "/sum/admin/users", sum keeps "/sum/x".
   */
  nestedRoutes?: boolean;
}

const log = logger("worker");
/** One line per request (cheap enough to leave on). */
const requestLog = requestLogLine(log);

const RECONNECT_MIN_MS = 50;
const RECONNECT_MAX_MS = 2000;
/** While the gateway stays unreachable, at most one warning this often. */
const CONNECT_WARNING_EVERY_MS = 15_000;
const STATS_INTERVAL_MS = 1000;

/**
 * A running function process.
 *
 * @example
 * ```ts
 * import { FunctionServer } from "./function_server.ts";
 * import { workerConfig } from "../operations/config.ts";
 * const server = new FunctionServer(
 *   { name: "hello", routes: ["/hello"] },
 *   () => new Response("hi\n"),
 *   workerConfig([]).config,
 * );
 * server.start();
 * ```
 */
export class FunctionServer {
  readonly options: FunctionOptions;
  #responder: Responder;
  #config: WorkerConfig;
  #ctx: TlsContext | undefined;
  #channel: ControlChannel | undefined;
  #sealer: Sealer | undefined;
  #registered = false;
  #reconnectMs = RECONNECT_MIN_MS;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  /** Failed attempts to reach the gateway since it was last reached. */
  #connectFailures = 0;
  #failingSince = 0;
  #lastWarning = 0;
  #lastFailure = "";
  #stopped = false;
  #connections = new Set<TlsConnection>();
  #label: string;
  #holdOptions: HoldOptions;
  #routes: string[];
  /** Which paths are ours: the gateway's table, or our routes before it. */
  #table: WorkerRoutes;
  #draining = false;
  /** A new version of this function registered: connections go to it. */
  #handingOver = false;
  /** Registered once at least (a `--replace on` worker replaces only then). */
  #everRegistered = false;
  /** Registered on standby, not promoted yet (`--standby on`, the launcher's reload). */
  #standby: boolean;
  /** A new gateway took over (MOVE): our channel to it, until it registers us. */
  #next: ControlChannel | undefined;
  /** The gateway we left after a MOVE: open for what it still hands us and
   * for acknowledgements, until it closes it. */
  #leaving: ControlChannel | undefined;
  #metrics: WorkerMetrics;
  #statsTimer: ReturnType<typeof setInterval> | undefined;
  /** Our peer socket and channels to other workers (direct handoffs). */
  #peers: Peers | undefined;
  /** Direct moves not yet told to the gateway. */
  #moves: Moved["moves"] = [];

  /** Prepare a function server; `start()` connects it.
   *
   * @example
   * ```ts
   * import { FunctionServer } from "./function_server.ts";
   * import { workerConfig } from "../operations/config.ts";
   * new FunctionServer({ name: "x", routes: ["/x"] }, () => new Response("x"), workerConfig([]).config);
   * ```
   */
  constructor(options: FunctionOptions, handler: Handler, config: WorkerConfig) {
    this.options = options;
    this.#routes = [...options.routes];
    this.#table = new WorkerRoutes(options.name, this.#routes);
    this.#config = config;
    this.#standby = config.standby;
    this.#label = `${options.name}/${Deno.pid}`;
    this.#metrics = new WorkerMetrics(options.name);
    this.#holdOptions = holdOptions(config, requestLog, this.#label);
    this.#responder = new Responder(handler, {
      name: options.name,
      label: this.#label,
      handlerTimeoutMs: config.handlerTimeoutMs,
      keepAlive: (head) => this.#keepAlive(head),
    });
    if (options.methods?.includes("GET") && !options.methods.includes("HEAD")) {
      this.options = { ...options, methods: [...options.methods, "HEAD"] };
    }
  }

  /** True while registered with a gateway. */
  get registered(): boolean {
    return this.#registered;
  }

  /** Connections held right now. */
  get held(): number {
    return this.#connections.size;
  }

  /** Connect to the gateway (retrying until it is there) and serve.
   *
   * @example
   * ```ts
   * import type { FunctionServer } from "./function_server.ts";
   * declare const server: FunctionServer;
   * server.start();
   * ```
   */
  start(): void {
    raiseOpenFileLimit(log);
    this.#ctx ??= TlsContext.forImport();
    this.#statsTimer = setInterval(() => this.#reportStats(), STATS_INTERVAL_MS);
    this.#connect();
  }

  /** Send the counters to the gateway. Every second, changed or not: the
   * reports double as the heartbeat by which the gateway tells a live worker
   * from a stuck one. */
  #reportStats(): void {
    if (!this.#registered || !this.#channel) return;
    this.#channel.send(this.#metrics.statsMessage(this.#connections.size));
  }

  /** What this worker holds, and its metrics (counters since it started).
   *
   * @example
   * ```ts
   * import type { FunctionServer } from "./function_server.ts";
   * declare const server: FunctionServer;
   * console.log(server.stats().metrics);
   * ```
   */
  stats(): Stats {
    return this.#metrics.stats(this.#connections.size);
  }

  /** Connect to the gateway at the control path and register; `next`: a
   * new gateway that took over (MOVE), beside the channel we have. */
  #connect(next = false): void {
    if (!next) this.#reconnectTimer = undefined;
    if (this.#stopped) return;
    const control = this.#config.control;
    const failed = (error: string) => {
      if (!next) return this.#connectFailed(error);
      log.warning("cannot reach the new gateway at {control}: {error}; staying with the old one", {
        control,
        error,
      });
    };
    let fd: number;
    try {
      fd = unixConnect(control);
    } catch (e) {
      const none = e instanceof SysError && (e.errno === ENOENT || e.errno === ECONNREFUSED);
      failed(
        none ? `${e.reason} (is the gateway running?)` : (e as Error).message,
      );
      return;
    }
    // It must run as the gateways' user (else fd is closed and the refusal logged).
    if (!trust().admit(fd, "gateway", "control socket", log)) {
      failed("it does not belong to the gateways' user: refused");
      return;
    }
    const channel: ControlChannel = new ControlChannel(fd, {
      onMessage: (msg, passed) => this.#onMessage(msg, passed, channel),
      onBadMessage: (error) => log.warning("dropped a bad control message: {error}", { error }),
      onClose: () => this.#onChannelClosed(channel),
    });
    if (next) {
      this.#next = channel;
      // A new gateway that does not register us soon is given up: we stay.
      setTimeout(() => {
        if (this.#next !== channel) return;
        log.warning("the new gateway did not register us within 5 s; staying with the old one");
        channel.close();
      }, 5000);
    } else this.#channel = channel;
    this.#listenForPeers();
    channel.send(
      encodeJson(MessageType.REGISTER, {
        name: this.options.name,
        routes: this.#routes,
        pid: Deno.pid,
        restarted: !next && this.options.restarted === true,
        nestedRoutes: this.options.nestedRoutes === true,
        peer: this.#peers !== undefined,
        replace: this.#config.replace && !this.#everRegistered,
        generation: this.#config.generation,
        standby: this.#standby,
      }),
    );
    // On our way out (replaced, or draining): a new gateway sends us nothing new.
    if (this.#handingOver || this.#draining) channel.send(encodeJson(MessageType.DRAIN, {}));
  }

  /** Listen on our peer socket, in the peers directory beside the
   * gateway's control socket, once: other workers hand us connections there
   * directly. */
  #listenForPeers(): void {
    if (this.#peers) return;
    const dir = peerDirectory(this.#config.control);
    try {
      this.#peers = new Peers(dir, (h, fd, channel) => this.#adopt(h, fd, channel));
    } catch (e) {
      log.warning("no peer socket ({error}): connections reach us through the gateway only", {
        error: (e as Error).message,
      });
    }
  }

  /** An attempt to reach the gateway failed: warn on the first failure and
   * when the reason changes, then at most every CONNECT_WARNING_EVERY_MS with
   * the count, not at every attempt; try again after the backoff. */
  #connectFailed(error: string): void {
    const now = Date.now();
    const first = this.#connectFailures++ === 0;
    if (first) this.#failingSince = now;
    // Started beside the gateway: it may not be up yet; only retry.
    const early = !this.#everRegistered && startingUp();
    const firstWarning = this.#lastWarning <= this.#failingSince;
    if (
      !early &&
      (firstWarning || error !== this.#lastFailure ||
        now - this.#lastWarning >= CONNECT_WARNING_EVERY_MS)
    ) {
      this.#lastWarning = now;
      const fields = {
        control: this.#config.control,
        error,
        attempts: this.#connectFailures,
        s: Math.round((now - this.#failingSince) / 1000),
        max: RECONNECT_MAX_MS / 1000,
      };
      if (firstWarning) {
        log.warning(
          "cannot reach the gateway at {control}: {error}; retrying (backoff up to {max} s)",
          fields,
        );
      } else {
        log.warning(
          "still cannot reach the gateway at {control} after {attempts} attempts in {s} s: {error}",
          fields,
        );
      }
    }
    this.#lastFailure = error;
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#stopped || this.#reconnectTimer !== undefined) return;
    this.#reconnectTimer = setTimeout(() => this.#connect(), this.#reconnectMs);
    this.#reconnectMs = Math.min(this.#reconnectMs * 2, RECONNECT_MAX_MS);
  }

  #onChannelClosed(channel: ControlChannel): void {
    if (channel === this.#leaving) {
      this.#leaving = undefined; // the old gateway is done with us
      return;
    }
    if (channel === this.#next) {
      this.#next = undefined;
      log.warning("the new gateway closed the control connection before registering us");
      return;
    }
    if (channel !== this.#channel) return;
    if (this.#next) {
      // The old gateway went before the new one registered us: the new one is ours.
      this.#channel = this.#next;
      this.#next = undefined;
      this.#registered = false;
      return;
    }
    this.#onGatewayGone();
  }

  /** A new gateway registered us (after a MOVE): it is our gateway now;
   * the old one is told LEFT and keeps its channel only to finish. */
  #switchGateway(): void {
    const old = this.#channel;
    this.#channel = this.#next;
    this.#next = undefined;
    this.#registered = false; // the REGISTERED being handled registers us again
    if (old) {
      this.#leaving?.close();
      this.#leaving = old;
      old.send(encodeJson(MessageType.LEFT, {}));
    }
  }

  #onGatewayGone(): void {
    // A gateway we had left is done with us too: we register anew.
    this.#leaving?.close();
    this.#leaving = undefined;
    const was = this.#registered;
    this.#registered = false;
    this.#channel = undefined;
    this.#table.gatewayGone(); // its last table stands until the next gateway's
    if (was) log.warning("gateway went away; reconnecting");
    if (!was && !this.#stopped) {
      // Connected, but closed before it answered REGISTER.
      this.#connectFailed("the gateway closed the control connection before registering us");
      return;
    }
    this.#scheduleReconnect();
  }

  #onMessage(msg: Message, fd: number, channel: ControlChannel): void {
    if (msg.type === MessageType.HANDOFF) {
      this.#adopt(msg.body, fd, channel); // confirmed on the channel it came on
      return;
    }
    if (msg.type === MessageType.REGISTERED && channel === this.#next) {
      if (msg.body.ok) this.#switchGateway();
      else {
        log.warning("the new gateway refused us: {error}", { error: msg.body.error });
        channel.close();
        return;
      }
    }
    if (channel !== this.#channel) return; // the gateway we left: only ACKs and HANDOFFs count
    if (msg.type === MessageType.MOVE && this.#registered) {
      // (A worker on its way out moves too, and says DRAIN there at once.)
      if (this.#next) return;
      log.info("a new gateway took over; registering with it at {control}", {
        control: this.#config.control,
      });
      this.#connect(true);
      return;
    }
    if (msg.type === MessageType.REGISTERED) {
      if (this.#registered) {
        log.warning("unexpected REGISTERED on a registered channel; ignored");
        return;
      }
      if (!msg.body.ok) {
        log.fatal("gateway refused registration: {error}", { error: msg.body.error });
        this.#stopped = true;
        this.#channel?.close();
        Deno.exitCode = 1;
        setTimeout(() => Deno.exit(1), 50);
        return;
      }
      const key = fromBase64(msg.body.key);
      if (!this.#sealer?.uses(key)) {
        // A new key (a new gateway, not one that took over): connections
        // sealed with the old one and still in flight cannot be opened.
        this.#sealer?.destroy();
        this.#sealer = new Sealer(key);
      }
      key.fill(0);
      this.#registered = true;
      this.#everRegistered = true;
      this.#reconnectMs = RECONNECT_MIN_MS;
      if (this.#connectFailures > 0) {
        log.info("reached the gateway at {control} after {attempts} failed attempt(s) in {s} s", {
          control: this.#config.control,
          attempts: this.#connectFailures,
          s: Math.round((Date.now() - this.#failingSince) / 100) / 10,
        });
        this.#connectFailures = 0;
        this.#lastFailure = "";
      }
      log.info("registered {name} for {routes} with gateway pid {gatewayPid}", {
        name: this.options.name,
        routes: this.#routes.join(" "),
        gatewayPid: msg.body.gatewayPid,
      });
      return;
    }
    if (msg.type === MessageType.HANDOVER && this.#registered) {
      this.#handOverAll();
      return;
    }
    if (msg.type === MessageType.PROMOTED && this.#registered) {
      this.#standby = false; // a gateway we reach later gets us as serving
      log.info("{name}: generation {generation} promoted; taking connections", {
        name: this.options.name,
        generation: this.#config.generation || "-",
      });
      return;
    }
    if (msg.type === MessageType.ROUTES && this.#registered) {
      if (this.#table.update(msg.body)) {
        log.debug("route table version {version} from the gateway: {count} route(s)", {
          version: msg.body.version,
          count: this.#table.size,
        });
      }
      return;
    }
    log.warning("unexpected control message type {type}", { type: msg.type });
  }

  /** A connection handed to us: adopt it and confirm before any TLS byte is
   * read or written; refuse it (the sender places it elsewhere) when it
   * cannot be taken. */
  #adopt(h: Handoff, fd: number, channel: ControlChannel | undefined): void {
    const transfer = h.transfer ?? 0;
    const conn = fd === FD_LOST
      ? "no socket: this process is at its open-file limit (the kernel discarded it)"
      : this.#sealer
      ? adoptHandoff(h, fd, this.#sealer, this.#ctx!)
      : (closeFd(fd), "not registered yet");
    if (typeof conn === "string") {
      log.warning("conn {conn}: cannot take it: {error}; refused, its sender places it", {
        conn: h.info.connId,
        error: conn,
      });
      channel?.confirm(transfer, false);
      return;
    }
    this.#metrics.handoffLatency.observe(Math.max(0, nowMicros() - h.sentAt) / 1e6);
    // A request that comes from the gateway with the connection was routed
    // here; one that is not ours came back because no worker could take it
    // (the gateway never imports a function's state to answer it itself):
    // answered here, not moved again.
    const stay = h.unread.length > 0 && channel !== undefined && this.#fromGateway(channel);
    const start = (mine: boolean) => {
      if (!mine) {
        conn.close(false); // its sender took it back: touch nothing
        return;
      }
      this.#hold(conn, false, stay);
    };
    if (channel) channel.confirm(transfer, true, start);
    else start(true);
  }

  /** Whether `channel` is one of our channels to a gateway. */
  #fromGateway(channel: ControlChannel): boolean {
    return channel === this.#channel || channel === this.#next || channel === this.#leaving;
  }

  /** Serve a connection we own until it leaves or closes. `answerHere`: the
   * next request that is not ours gets a 503 here instead of moving (its
   * move just failed); `stay`: the request that came with it (from the
   * gateway) is answered here (see holder.ts `hold`). */
  #hold(conn: TlsConnection, answerHere: boolean, stay = false): void {
    this.#connections.add(conn);
    this.#serve(conn, answerHere, stay)
      .catch((e) => {
        log.error("conn {conn}: {error}", { conn: conn.info.connId, error: String(e) });
        conn.close(false);
      })
      .finally(() => this.#connections.delete(conn));
  }

  /** The route of ours that serves `path`, or undefined: another
   * function's route serves it (or none does). */
  #routeOf(path: string): string | undefined {
    return this.#table.routeOf(path);
  }

  /** What this worker does with each request on a connection it holds:
   * its own routes are answered with the handler (405 for a method it does
   * not take); any other path moves the connection (straight to a sibling,
   * else back to the gateway), or gets a 503 here when it cannot move. */
  #policy: HoldPolicy = {
    answersHere: (head) => !this.#handingOver && this.#routeOf(head.path) !== undefined,
    handingOver: () => this.#handingOver,
    handOver: (conn) => this.#handBack(conn, undefined),
    move: (conn, head) => this.#moveDirect(conn, head) || this.#handBack(conn, head),
    answer: (conn, head, body) => {
      const route = this.#routeOf(head.path);
      const methods = this.options.methods;
      // Not ours and it could not move: the gateway is away, or refused it
      // (no function serves it, or none of its workers could take it).
      const path = head.path.slice(0, 200);
      const answer = route === undefined
        ? !this.#registered
          ? this.#responder.fail(conn, head, 503, "cannot reach the gateway right now", [
            ["retry-after", "1"],
          ])
          : this.#table.serves(head.path)
          ? this.#responder.fail(conn, head, 503, `no worker could take ${path} right now`, [
            ["retry-after", "1"],
          ])
          : this.#responder.fail(conn, head, 404, `no function serves ${path}`)
        : methods && !methods.includes(head.method)
        ? this.#responder.fail(conn, head, 405, `method ${head.method} not allowed`, [
          ["allow", methods.join(", ")],
        ])
        : this.#responder.respond(conn, head, body);
      return routed(answer, route ?? "-");
    },
    streamsBody: () => true,
    continues: (head) => !this.options.methods || this.options.methods.includes(head.method),
    count: (a) => this.#metrics.requests.labels(a.route, a.status).inc(),
    draining: () => this.#draining,
  };

  async #serve(conn: TlsConnection, unplaced: boolean, stay: boolean): Promise<void> {
    await hold(conn, this.#holdOptions, this.#policy, unplaced, stay);
  }

  /** Keep the connection after this response? Decided when the response is
   * serialized, so a drain that began during the handler is honoured. */
  #keepAlive(head: RequestHead): boolean {
    return head.keepAlive && !this.#draining && !this.#stopped;
  }

  /** Hand the connection back to the gateway (its next request is not
   * ours). False when that cannot even start (no gateway): the caller still
   * holds it. If the gateway refuses it or goes away before confirming, it
   * comes back here and its request is answered with a 503. */
  #handBack(conn: TlsConnection, head: RequestHead | undefined): boolean {
    const channel = this.#channel;
    const sealer = this.#sealer;
    if (!channel || !this.#registered || !sealer || !conn.exportable) return false;
    const carried = { unread: 0, readAhead: 0 };
    const msg = this.#release(conn, sealer, conn.info.handoffs, carried);
    if (!msg) return true;
    const i = conn.info;
    log.debug(
      "conn {conn}: {path} is not ours; back to the gateway with {unread} unread bytes and {readAhead} read ahead",
      () => ({ conn: i.connId, path: head?.path ?? "(none yet: a handover)", ...carried }),
    );
    const back = (fd: number, message: Uint8Array, reason: string) =>
      this.#takeBack(fd, message, reason, sealer);
    if (!channel.transfer(msg, conn.fd, back)) back(conn.fd, msg, "the gateway channel is closed");
    return true;
  }

  /** Hand the connection straight to a worker of the function that serves
   * its next request (`--handoff direct`): one hop. False when the table
   * names no such worker we can reach (the gateway decides then). If that
   * worker refuses or dies before confirming, the connection comes back and
   * goes to the gateway after all. */
  #moveDirect(conn: TlsConnection, head: RequestHead): boolean {
    const sealer = this.#sealer;
    const peer = this.#peers && sealer ? this.#table.peerFor(head.path) : undefined;
    if (!peer || peer.pid === Deno.pid || !conn.exportable) return false;
    const channel = this.#peers!.channelTo(peer.pid);
    if (!channel) return false;
    const handoffs = conn.info.handoffs;
    const carried = { unread: 0, readAhead: 0 };
    const msg = this.#release(conn, sealer!, handoffs + 1, carried);
    if (!msg) return true;
    const connId = conn.info.connId;
    log.debug(
      "conn {conn}: {path} is not ours; straight to {to} with {unread} unread bytes and {readAhead} read ahead",
      () => ({ conn: connId, path: head.path, to: `${peer.fn}/${peer.pid}`, ...carried }),
    );
    const fallBack = (fd: number, message: Uint8Array, reason: string) => {
      log.warning("conn {conn}: {to} did not take it ({reason}); to the gateway", {
        conn: connId,
        to: `${peer.fn}/${peer.pid}`,
        reason,
      });
      setHandoffCount(message, handoffs);
      const back = (fd: number, m: Uint8Array, why: string) => this.#takeBack(fd, m, why, sealer!);
      const gateway = this.#registered ? this.#channel : undefined;
      if (!gateway?.transfer(message, fd, back)) back(fd, message, "no gateway");
    };
    // Told to the gateway once the peer confirmed: a refused move that goes
    // through the gateway instead is counted there, not twice.
    const moved = () => this.#moved({ conn: connId, to: peer.pid, fn: peer.fn, route: peer.route });
    if (!channel.transfer(msg, conn.fd, fallBack, moved)) {
      fallBack(conn.fd, msg, "its channel is closed or full");
    }
    return true;
  }

  /** A new version of this function registered (HANDOVER): every
   * connection goes back to the gateway at its next request boundary (idle
   * ones at once), which passes it to the new version with its next
   * request; then this process exits (at the latest at --drain-timeout). */
  #handOverAll(): void {
    if (this.#handingOver) return;
    this.#handingOver = true;
    const held = this.#connections.size;
    const started = Date.now();
    log.info("{name}: a new version registered; handing {held} connection(s) over", {
      name: this.options.name,
      held,
    });
    for (const conn of this.#connections) conn.interruptIdle();
    const until = Date.now() + this.#config.drainTimeoutMs;
    const timer = setInterval(() => {
      for (const conn of this.#connections) conn.interruptIdle();
      if (this.#connections.size > 0 && Date.now() < until) return;
      clearInterval(timer);
      const left = this.#connections.size;
      if (left === 0) {
        log.info("{name}: every connection handed over in {ms} ms; exiting", {
          name: this.options.name,
          ms: Date.now() - started,
        });
      } else {
        log.warning("{name}: {left} connection(s) still busy at --drain-timeout: closed; exiting", {
          name: this.options.name,
          left,
        });
        for (const conn of this.#connections) conn.close(); // the deadline is the deadline
      }
      Deno.kill(Deno.pid, "SIGTERM"); // the usual shutdown: drain (nothing left) and exit
    }, 20);
  }

  /** Tell the gateway about direct moves, batched: one MOVED per turn. */
  #moved(move: Moved["moves"][number]): void {
    if (this.#moves.push(move) > 1) return;
    queueMicrotask(() => {
      const moves = this.#moves;
      this.#moves = [];
      if (!this.#registered || !this.#channel) return; // the gateway is away: not told
      for (let i = 0; i < moves.length; i += Limits.maxMoves) {
        this.#channel.send(
          encodeJson(MessageType.MOVED, { moves: moves.slice(i, i + Limits.maxMoves) }),
        );
      }
    });
  }

  /** Export and seal `conn` for a handoff; on failure it is closed (it
   * cannot move, and its state is gone) and undefined returned. */
  #release(
    conn: TlsConnection,
    sealer: Sealer,
    handoffs: number,
    carried: { unread: number; readAhead: number },
  ): Uint8Array | undefined {
    try {
      return releaseForHandoff(conn, sealer, handoffs, carried);
    } catch (e) {
      log.error("conn {conn}: cannot export: {error}", {
        conn: conn.info.connId,
        error: (e as Error).message,
      });
      conn.close(false);
      return undefined;
    }
  }

  /** A connection we sent came back (the gateway refused it or went away):
   * adopt our own message again and answer its request here (404 when no
   * function serves it, else 503). */
  #takeBack(fd: number, message: Uint8Array, reason: string, sealer: Sealer): void {
    let conn: TlsConnection | string;
    try {
      const msg = decodeMessage(message);
      conn = msg.type === MessageType.HANDOFF
        ? adoptHandoff(msg.body, fd, sealer, this.#ctx!)
        : (closeFd(fd), "not a HANDOFF");
    } catch (e) {
      closeFd(fd);
      conn = (e as Error).message;
    } finally {
      message.fill(0);
    }
    if (typeof conn === "string") {
      log.error("a connection that came back cannot be taken again: {error}", { error: conn });
      return;
    }
    log.warning("conn {conn}: the gateway did not take it ({reason}); answering here", {
      conn: conn.info.connId,
      reason,
    });
    this.#hold(conn, true);
  }

  /** Drain: tell the gateway to send no more connections, close idle ones
   * cleanly, answer requests in flight with `Connection: close`, close open
   * WebSockets with 1001 (going away), and resolve
   * once nothing is held or `deadlineMs` has passed. Then `stop()`.
   *
   * @example
   * ```ts
   * import type { FunctionServer } from "./function_server.ts";
   * declare const server: FunctionServer;
   * await server.drain(10_000);
   * ```
   */
  async drain(deadlineMs: number): Promise<void> {
    this.#draining = true;
    this.#reportStats();
    this.#channel?.send(encodeJson(MessageType.DRAIN, {}));
    closeWebSockets(1001, "going away");
    const until = Date.now() + deadlineMs;
    while (this.#connections.size > 0 && Date.now() < until) {
      for (const conn of this.#connections) conn.interruptIdle();
      await new Promise((ok) => setTimeout(ok, 20));
    }
    const left = this.#connections.size;
    for (const conn of this.#connections) conn.close();
    log.info("{name} drained ({left} connection(s) cut at the deadline)", {
      name: this.options.name,
      left,
    });
    this.stop();
  }

  /** Stop: no reconnects; held connections close after their request.
   *
   * @example
   * ```ts
   * import type { FunctionServer } from "./function_server.ts";
   * declare const server: FunctionServer;
   * server.stop();
   * ```
   */
  stop(): void {
    this.#stopped = true;
    this.#registered = false;
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#statsTimer);
    this.#channel?.close();
    this.#next?.close();
    this.#leaving?.close();
    this.#peers?.close();
  }
}
