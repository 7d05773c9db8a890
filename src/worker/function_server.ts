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

import { closeFd, FD_LOST } from "../../ffi/shim.ts";
import { TlsContext } from "../../ffi/wolfssl.ts";
import type { WorkerConfig } from "../operations/config.ts";
import type { ControlChannel } from "../handoff/control_channel.ts";
import { errorResponse, parseRequest, type RequestHead } from "../http/http.ts";
import { EventLoop } from "../connection/event_loop.ts";
import { Sealer } from "../handoff/seal.ts";
import { logger } from "../operations/log.ts";
import { adoptHandoff, nowMicros } from "../handoff/handoff.ts";
import {
  decodeMessage,
  encodeJson,
  type Handoff,
  type Message,
  MessageType,
  type Stats,
} from "../handoff/protocol.ts";
import { GatewayLink } from "../handoff/gateway_link.ts";
import { WorkerMoves } from "./moves.ts";
import { drainHeld } from "../operations/drain.ts";
import { WorkerMetrics } from "./worker_metrics.ts";
import { type Handler, Responder } from "../connection/responder.ts";
import {
  holdAmong,
  type HoldOptions,
  holdOptions,
  type HoldPolicy,
  requestLogLine,
  routed,
} from "../connection/holder.ts";
import type { TlsConnection } from "../connection/tls_connection.ts";
import { WorkerRoutes } from "../routing/worker_routes.ts";
import { peerDirectory, Peers } from "../handoff/peers.ts";
import { raiseOpenFileLimit, startingUp } from "../operations/lifecycle.ts";
import { closeWebSockets } from "../connection/websocket.ts";

export { type Handler, HttpError, type RequestInfo } from "../connection/responder.ts";

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

/** When this module was evaluated, ms after the process started: Deno's
 * start and the module graph's loading are done by then (the startup line
 * of the first registration says it, beside the later steps). */
const LOADED_MS = performance.now();
/** One line per request (cheap enough to leave on). */
const requestLog = requestLogLine(log);

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
  /** Our link to the gateway: registration, the sealing keys, MOVE. */
  #link: GatewayLink;
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
  /** Registered on standby, not promoted yet (`--standby on`, the launcher's reload). */
  #standby: boolean;
  #metrics: WorkerMetrics;
  /** Our peer socket and channels to other workers (direct handoffs). */
  #peers: Peers | undefined;
  /** Where connections go when their next request is another function's. */
  #moves: WorkerMoves;
  /** When serveFunction made this server, ms after the process started. */
  #servingMs = performance.now();
  /** When start() was called, ms after the process started. */
  #startedMs = 0;
  /** It was parked (a spare started ahead) before it started. */
  #parked = false;
  /** How long the first registration took from the process's start (said once). */
  #startup: string | undefined;
  /** Requests being answered now (answer begun, not yet counted). */
  #active = 0;
  /** Connections still to hand back (SHED: a new worker of the function
   * takes a share of ours), each at its next request boundary. */
  #shed = 0;

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
    this.#link = new GatewayLink(
      { control: config.control, log, peer: "gateway", proves: false, startingUp },
      {
        hello: (_pid, next) => this.#hello(next),
        registered: (body) => {
          const first = this.#startup === undefined;
          const now = performance.now();
          this.#startup ??= this.#parked
            ? `${Math.round(now - this.#startedMs)} ms after it was told to go (parked ${
              Math.round((this.#startedMs - this.#servingMs) / 1000)
            } s, modules loaded at ${Math.round(LOADED_MS)} ms)`
            : `${Math.round(now)} ms after the process started (modules loaded at ${
              Math.round(LOADED_MS)
            } ms, serving from ${Math.round(this.#servingMs)} ms)`;
          log.info("registered {name} for {routes} with gateway pid {gatewayPid}{startup}", {
            name: this.options.name,
            routes: this.#routes.join(" "),
            gatewayPid: body.gatewayPid,
            startup: first ? `, ${this.#startup}` : "",
          });
        },
        refused: (error) => {
          log.fatal("gateway refused registration: {error}", { error });
          this.stop();
          Deno.exitCode = 1;
          setTimeout(() => Deno.exit(1), 50);
        },
        message: (msg, fd, channel) => this.#onMessage(msg, fd, channel),
        // Every second, changed or not: the reports double as the heartbeat
        // by which the gateway tells a live worker from a stuck one.
        report: () => this.#metrics.statsMessage(this.#connections.size, this.#active),
        gone: () => this.#table.gatewayGone(), // its last table stands until the next one's
      },
    );
    this.#moves = new WorkerMoves({
      link: this.#link,
      table: this.#table,
      peers: () => this.#peers,
      ctx: () => this.#ctx!,
      hold: (conn) => this.#hold(conn, true),
    });
  }

  /** True while registered with a gateway. */
  get registered(): boolean {
    return this.#link.registered;
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
    this.#startedMs = performance.now();
    this.prepare();
    this.#link.start();
  }

  /** Everything {@linkcode FunctionServer.start} does before it connects
   * (a parked spare does it ahead, so that its start is a registration).
   *
   * @example
   * ```ts
   * import type { FunctionServer } from "./function_server.ts";
   * declare const server: FunctionServer;
   * server.prepare();
   * // later, when the launcher says "go":
   * server.start();
   * ```
   */
  prepare(): void {
    if (this.#ctx) return;
    raiseOpenFileLimit(log);
    this.#ctx = TlsContext.forImport();
  }

  /** Park (a spare the launcher starts ahead): {@linkcode FunctionServer.prepare},
   * and run once, on throwaway data, the code a registration and a first
   * request run (the event loop's thread, sealing, the control message
   * codec, the HTTP parser and serializer, a log line), so that V8 has
   * compiled it before the launcher says go: a cold start is then a
   * registration, not a process start and a warm-up.
   *
   * @example
   * ```ts
   * import type { FunctionServer } from "./function_server.ts";
   * declare const server: FunctionServer;
   * server.park();
   * ```
   */
  park(): void {
    this.prepare();
    EventLoop.instance();
    const sealer = new Sealer(Sealer.newKey());
    const aad = new Uint8Array(8);
    sealer.open(sealer.seal(new Uint8Array(64), aad), aad);
    decodeMessage(encodeJson(MessageType.REGISTER, {
      name: this.options.name,
      routes: this.#routes,
      pid: Deno.pid,
    }));
    const parsed = parseRequest(new TextEncoder().encode("GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
    if (parsed.kind === "request") errorResponse(404, "warm-up", { keepAlive: true });
    // The web classes a handler gets and returns (Deno's own code; the
    // function's handler is not run).
    new Request("https://localhost/", { headers: new Headers({ host: "localhost" }) });
    new Response(JSON.stringify({ ok: true }), { headers: { "content-type": "application/json" } })
      .arrayBuffer().catch(() => {});
    this.#parked = true;
    log.info("{name}: parked ({ms} ms after the process started); registers when told", {
      name: this.options.name,
      ms: Math.round(performance.now()),
    });
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

  /** What we say first to a gateway (`next`: one taking over). */
  #hello(next: boolean): Uint8Array[] {
    this.#listenForPeers();
    const hello = [encodeJson(MessageType.REGISTER, {
      name: this.options.name,
      routes: this.#routes,
      pid: Deno.pid,
      restarted: !next && this.options.restarted === true,
      nestedRoutes: this.options.nestedRoutes === true,
      peer: this.#peers !== undefined,
      replace: this.#config.replace && !this.#link.everRegistered,
      generation: this.#config.generation,
      standby: this.#standby,
    })];
    // On our way out (replaced, or draining): a new gateway sends us nothing new.
    if (this.#handingOver || this.#draining) hello.push(encodeJson(MessageType.DRAIN, {}));
    return hello;
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

  /** A message for us from the gateway (the link handles the rest). */
  #onMessage(msg: Message, fd: number, channel: ControlChannel): void {
    switch (msg.type) {
      case MessageType.HANDOFF:
        this.#adopt(msg.body, fd, channel); // confirmed on the channel it came on
        return;
      case MessageType.HANDOVER:
        this.#handOverAll();
        return;
      case MessageType.SHED:
        // Never the last one: a connection handed back to balance a pool
        // must find another worker (the gateway asks for less than we hold).
        this.#shed = Math.min(msg.body.count, Math.max(0, this.#connections.size - 1));
        log.debug("{name}: handing {count} connection(s) back to balance the pool", {
          name: this.options.name,
          count: this.#shed,
        });
        return;
      case MessageType.PROMOTED:
        this.#standby = false; // a gateway we reach later gets us as serving
        log.info("{name}: generation {generation} promoted; taking connections", {
          name: this.options.name,
          generation: this.#config.generation || "-",
        });
        return;
      case MessageType.ROUTES:
        if (this.#table.update(msg.body)) {
          log.debug("route table version {version} from the gateway: {count} route(s)", {
            version: msg.body.version,
            count: this.#table.size,
          });
        }
        return;
      default:
        log.warning("unexpected control message type {type}", { type: msg.type });
    }
  }

  /** A connection handed to us: adopt it and confirm before any TLS byte is
   * read or written; refuse it (the sender places it elsewhere) when it
   * cannot be taken. */
  #adopt(h: Handoff, fd: number, channel: ControlChannel | undefined): void {
    const transfer = h.transfer ?? 0;
    const sealer = this.#link.keys.sealer;
    const conn = fd === FD_LOST
      ? "no socket: this process is at its open-file limit (the kernel discarded it)"
      : sealer
      ? adoptHandoff(h, fd, sealer, this.#ctx!)
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
    const stay = h.unread.length > 0 && channel !== undefined && this.#link.isGateway(channel);
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

  /** Serve a connection we own until it leaves or closes. `answerHere`: the
   * next request that is not ours gets a 503 here instead of moving (its
   * move just failed); `stay`: the request that came with it (from the
   * gateway) is answered here (see holder.ts `hold`). */
  #hold(conn: TlsConnection, answerHere: boolean, stay = false): void {
    holdAmong(this.#connections, conn, this.#holdOptions, this.#policy, answerHere, stay);
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
    answersHere: (head) =>
      !this.#handingOver && this.#shed === 0 && this.#routeOf(head.path) !== undefined,
    handingOver: () => this.#handingOver,
    handOver: (conn) => this.#moves.handBack(conn, undefined),
    move: (conn, head) => {
      // Ours, but shed to balance the pool: through the gateway, which
      // places it on the least loaded worker (a direct move would pick by
      // the table's rotation, maybe this one).
      if (this.#shed > 0 && this.#routeOf(head.path) !== undefined) {
        const moved = this.#moves.handBack(conn, head);
        if (moved) this.#shed--;
        return moved;
      }
      return this.#moves.moveDirect(conn, head) || this.#moves.handBack(conn, head);
    },
    answer: (conn, head, body) => {
      this.#active++; // until counted: a long stream keeps the worker busy
      const route = this.#routeOf(head.path);
      const methods = this.options.methods;
      // Not ours and it could not move: the gateway is away, or refused it
      // (no function serves it, or none of its workers could take it).
      const path = head.path.slice(0, 200);
      const answer = route === undefined
        ? !this.#link.registered
          ? this.#responder.fail(conn, head, 503, "cannot reach the gateway right now", [
            ["retry-after", "1"],
          ])
          : this.#table.absent(head.path)
          ? this.#responder.fail(conn, head, 404, `no function serves ${path}`)
          : this.#responder.fail(conn, head, 503, `no worker could take ${path} right now`, [
            ["retry-after", "1"],
          ])
        : methods && !methods.includes(head.method)
        ? this.#responder.fail(conn, head, 405, `method ${head.method} not allowed`, [
          ["allow", methods.join(", ")],
        ])
        : this.#responder.respond(conn, head, body);
      return routed(answer, route ?? "-");
    },
    streamsBody: () => true,
    continues: (head) => !this.options.methods || this.options.methods.includes(head.method),
    count: (a) => {
      this.#metrics.requests.labels(a.route, a.status).inc();
      this.#metrics.answered();
      // The holder's own 4xx (a bad request) was never answered by us.
      this.#active = Math.max(0, this.#active - 1);
    },
    draining: () => this.#draining,
  };

  /** Keep the connection after this response? Decided when the response is
   * serialized, so a drain that began during the handler is honoured. */
  #keepAlive(head: RequestHead): boolean {
    return head.keepAlive && !this.#draining && !this.#stopped;
  }

  /** A new version of this function registered (HANDOVER): every
   * connection goes back to the gateway at its next request boundary (idle
   * ones at once), which passes it to the new version with its next
   * request; then this process exits (at the latest at --drain-timeout). */
  async #handOverAll(): Promise<void> {
    if (this.#handingOver) return;
    this.#handingOver = true;
    const started = Date.now();
    log.info(
      "{name}: told to leave (a new version, or fewer workers); handing {held} connection(s) over",
      {
        name: this.options.name,
        held: this.#connections.size,
      },
    );
    const left = await this.#drainHeld(started + this.#config.drainTimeoutMs);
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
    }
    Deno.kill(Deno.pid, "SIGTERM"); // the usual shutdown: drain (nothing left) and exit
  }

  /** The one drain: until nothing is held or in flight, or `until`. */
  #drainHeld(until: number): Promise<number> {
    return drainHeld({
      held: this.#connections,
      pending: () => this.#link.unconfirmed + (this.#peers?.unconfirmed ?? 0),
      until,
    });
  }

  /** Drain: tell the gateway to send no more connections, close idle ones
   * cleanly, answer requests in flight with `Connection: close`, close open
   * WebSockets with 1001 (going away), and resolve
   * once nothing is held or in flight, or `deadlineMs` has passed. Then `stop()`.
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
    this.#link.report();
    this.#link.send(encodeJson(MessageType.DRAIN, {}), true);
    closeWebSockets(1001, "going away");
    const left = await this.#drainHeld(Date.now() + deadlineMs);
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
    this.#link.stop();
    this.#peers?.close();
  }
}
