/**
 * A satellite gateway (`--satellite on`; the launcher's `--gateways N` runs
 * N-1 of them beside the primary): one more process, on one more core, that
 * accepts on the public port (SO_REUSEPORT: the kernel spreads new
 * connections over the gateways), does the TLS handshake, reads the first
 * request and hands the connection straight to a worker of its route over
 * the worker's peer socket, the way workers move connections between
 * themselves (src/handoff/peers.ts).
 *
 * It keeps no registry: it joins the primary gateway on the control socket
 * (JOIN), which gives it the handoff sealing key (REGISTERED), the route table
 * with every function's workers (ROUTES, pushed on each change) and the TLS
 * session-ticket keys (TICKETS), and to which it reports its metrics every
 * second (STATS; the primary's /metrics adds them in). A connection no worker
 * can take directly goes to the primary (HANDOFF, acknowledged), which
 * places it or answers it. Workers hand connections back to the primary, as
 * always. While the primary is away the satellite goes on with the last
 * table it had, and joins again when it returns.
 *
 * @module
 */

import { fromBase64 } from "../handoff/bytes.ts";
import {
  closeFd,
  ECONNREFUSED,
  ENOENT,
  localPort,
  SysError,
  tcpListen,
  unixConnect,
} from "../../ffi/shim.ts";
import { TlsContext } from "../../ffi/wolfssl.ts";
import { hold, type HoldOptions, holdOptions, requestLogLine } from "../connection/holder.ts";
import type { Answered, HoldPolicy, RoutedAnswer } from "../connection/holder.ts";
import { Listener, retryBlockedListeners } from "../connection/listener.ts";
import type { TlsConnection } from "../connection/tls_connection.ts";
import { ControlChannel } from "../handoff/control_channel.ts";
import { adoptHandoff, releaseForHandoff, returnedHandoff } from "../handoff/handoff.ts";
import { peerDirectory, Peers } from "../handoff/peers.ts";
import { trust } from "../handoff/trust.ts";
import { encodeJson, type Message, MessageType } from "../handoff/protocol.ts";
import { Sealer } from "../handoff/seal.ts";
import type { RequestHead } from "../http/http.ts";
import type { GatewayConfig } from "../operations/config.ts";
import { raiseOpenFileLimit, startingUp } from "../operations/lifecycle.ts";
import { logger } from "../operations/log.ts";
import { WorkerRoutes } from "../routing/worker_routes.ts";
import { GatewayMetrics, type GatewayStats } from "./gateway_metrics.ts";
import { gatewayAnswer } from "./gateway_policy.ts";
import { Handshaker } from "./handshaker.ts";
import { ProxyProtocol } from "./proxy_protocol.ts";
import type { TicketKeys } from "./ticket_keys.ts";

const log = logger("gateway");
const requestLog = requestLogLine(log);
const RECONNECT_MIN_MS = 50;
const RECONNECT_MAX_MS = 2000;
const STATS_INTERVAL_MS = 1000;

/**
 * A satellite gateway.
 *
 * @example
 * ```ts
 * import { SatelliteGateway } from "./satellite.ts";
 * import { gatewayConfig } from "../operations/config.ts";
 * const satellite = new SatelliteGateway(gatewayConfig(["--satellite", "on"]).config);
 * satellite.start();
 * ```
 */
export class SatelliteGateway {
  readonly config: GatewayConfig;
  readonly gatewayId: number = crypto.getRandomValues(new Uint32Array(1))[0];
  #metrics = new GatewayMetrics();
  /** Every route is another function's: "" is no function's name. */
  #table = new WorkerRoutes("", []);
  #sealer: Sealer | undefined;
  #channel: ControlChannel | undefined;
  #registered = false;
  /** It warned that it cannot reach the primary (once per outage). */
  #warned = false;
  /** The primary's pid, as the kernel reported it when we connected. */
  #primaryPid = 0;
  #reconnectMs = RECONNECT_MIN_MS;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #statsTimer: ReturnType<typeof setInterval> | undefined;
  #clients: Listener | undefined;
  #peers: Peers | undefined;
  #handshaker: Handshaker | undefined;
  #importContext: TlsContext | undefined;
  #context: TlsContext | undefined;
  #tickets: TicketKeys | undefined;
  #holdOptions: HoldOptions;
  #policy: HoldPolicy;
  #held = new Set<TlsConnection>();
  #draining = false;
  #stopped = false;
  #port = 0;

  /** Prepare a satellite; `start()` listens and joins the primary.
   *
   * @example
   * ```ts
   * import { SatelliteGateway } from "./satellite.ts";
   * import { gatewayConfig } from "../operations/config.ts";
   * new SatelliteGateway(gatewayConfig(["--satellite", "on"]).config);
   * ```
   */
  constructor(config: GatewayConfig, tickets?: TicketKeys) {
    this.config = config;
    this.#tickets = tickets;
    this.#holdOptions = holdOptions(config, requestLog, `gateway/${Deno.pid}`);
    this.#policy = this.#makePolicy();
  }

  /** The counters the tests and the benchmark read. */
  get stats(): GatewayStats {
    return this.#metrics.stats();
  }

  /** The HTTPS port listened on. */
  get port(): number {
    return this.#port;
  }

  /** Listen on the public port beside the primary, and join it.
   *
   * @example
   * ```ts
   * import type { SatelliteGateway } from "./satellite.ts";
   * declare const satellite: SatelliteGateway;
   * satellite.start();
   * ```
   */
  start(): void {
    const c = this.config;
    raiseOpenFileLimit(log);
    this.#context = TlsContext.server({
      certFile: c.cert,
      keyFile: c.key,
      resumption: c.resumption,
    });
    this.#tickets?.attach(this.#context);
    this.#importContext = TlsContext.forImport();
    this.#handshaker = new Handshaker({
      context: this.#context,
      gatewayId: this.gatewayId,
      handshakeTimeoutMs: c.handshakeTimeoutMs,
      metrics: this.#metrics,
      ready: (conn) => this.#serve(conn, false),
      proxy: c.proxyProtocol ? new ProxyProtocol(c.proxyTrusted) : undefined,
    });
    // Outgoing only: it hands connections to workers.
    this.#peers = new Peers(peerDirectory(c.control));
    this.#statsTimer = setInterval(() => this.#report(), STATS_INTERVAL_MS);
    this.#connect();
  }

  /** Listen on the public port, once joined: before, the kernel would give
   * this gateway connections it could only answer 503 (it has no routes). */
  #listen(): void {
    if (this.#clients || this.#stopped || this.#draining || !this.#handshaker) return;
    const c = this.config;
    const handshaker = this.#handshaker;
    const fd = tcpListen(c.host, c.port, 4096, true);
    this.#port = localPort(fd);
    this.#clients = new Listener(fd, "clients", (conn) => handshaker.accept(conn), {
      spareFd: true,
    });
    log.info("satellite listening on https://{host}:{port} beside the primary at {control}", {
      host: c.host,
      port: this.#port,
      control: c.control,
    });
  }

  // ---- the link to the primary ----

  #connect(): void {
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    if (this.#stopped) return;
    let fd: number;
    try {
      fd = unixConnect(this.config.control);
    } catch (e) {
      const quiet = e instanceof SysError && (e.errno === ENOENT || e.errno === ECONNREFUSED);
      // Once per outage; the primary, started beside it, may not be up yet:
      // only retry then.
      if (!quiet || (!this.#warned && !startingUp())) {
        this.#warned = true;
        log.warning("cannot reach the primary gateway at {control}: {error}; retrying", {
          control: this.config.control,
          error: (e as Error).message,
        });
      }
      this.#scheduleReconnect();
      return;
    }
    // The primary runs as the gateways' user; else closed and logged.
    const primary = trust().admit(fd, "gateway", "control socket", log);
    if (!primary) {
      this.#scheduleReconnect();
      return;
    }
    const channel: ControlChannel = new ControlChannel(fd, {
      onMessage: (msg, passed, raw) => this.#onMessage(channel, msg, passed, raw),
      onBadMessage: (error) => log.warning("bad message from the primary: {error}", { error }),
      onClose: () => {
        if (this.#channel !== channel) return;
        this.#channel = undefined;
        if (this.#registered) log.warning("the primary gateway went away; joining again");
        this.#registered = false;
        this.#table.gatewayGone();
        this.#scheduleReconnect();
      },
    });
    this.#channel = channel;
    this.#primaryPid = primary.pid;
    const proof = trust().proof("JOIN", primary.pid, Deno.pid);
    channel.send(encodeJson(MessageType.JOIN, { pid: Deno.pid, ...(proof ? { proof } : {}) }));
  }

  #scheduleReconnect(): void {
    if (this.#stopped || this.#reconnectTimer !== undefined) return;
    this.#reconnectTimer = setTimeout(() => this.#connect(), this.#reconnectMs);
    this.#reconnectMs = Math.min(this.#reconnectMs * 2, RECONNECT_MAX_MS);
  }

  #onMessage(channel: ControlChannel, msg: Message, fd: number, raw: Uint8Array): void {
    if (channel !== this.#channel) return;
    switch (msg.type) {
      case MessageType.REGISTERED: {
        if (!msg.body.ok) {
          log.error("the primary refused this satellite: {error}", { error: msg.body.error });
          channel.close();
          return;
        }
        if (!trust().proves("REGISTERED", this.#primaryPid, Deno.pid, msg.body.proof)) {
          log.error("the gateway at {control} did not prove the launcher's secret: not joined", {
            control: this.config.control,
          });
          channel.close();
          return;
        }
        const key = fromBase64(msg.body.key);
        if (!this.#sealer?.uses(key)) {
          // A new key (a restarted primary): transfers sealed with the old
          // one may still come back; it is zeroed once they have settled.
          const old = this.#sealer;
          if (old) setTimeout(() => old.destroy(), 30_000);
          this.#sealer = new Sealer(key);
        }
        key.fill(0);
        this.#registered = true;
        this.#warned = false;
        this.#reconnectMs = RECONNECT_MIN_MS;
        log.info("joined the primary gateway pid {pid}", { pid: msg.body.gatewayPid });
        return;
      }
      case MessageType.ROUTES:
        if (!this.#registered) return;
        this.#table.update(msg.body);
        this.#listen(); // the first table is in: accept from now on
        return;
      case MessageType.TICKETS:
        // Refused with a warning when malformed; only from the gateway that proved itself.
        if (this.#registered) this.#tickets?.use(msg.body, "the primary gateway");
        return;
      case MessageType.MOVE:
        // A new primary took over the control path: join it.
        this.#channel = undefined;
        this.#registered = false;
        channel.close();
        this.#connect();
        return;
      case MessageType.HANDOFF:
        // The primary never sends connections to a satellite.
        if (fd >= 0) closeFd(fd);
        channel.confirm(msg.body.transfer ?? 0, false);
        return;
      default:
        void raw;
        log.warning("unexpected message type {type} from the primary", { type: msg.type });
    }
  }

  #report(): void {
    if (!this.#registered || !this.#channel) return;
    this.#channel.send(
      encodeJson(MessageType.STATS, {
        held: this.#held.size,
        metrics: this.#metrics.registry.snapshot(),
      }),
    );
  }

  // ---- serving ----

  async #serve(conn: TlsConnection, unplaced: boolean): Promise<void> {
    this.#held.add(conn);
    try {
      await hold(conn, this.#holdOptions, this.#policy, unplaced);
    } catch (e) {
      log.error("conn {conn}: {error}", { conn: conn.info.connId, error: String(e) });
      conn.close(false);
    } finally {
      this.#held.delete(conn);
      retryBlockedListeners();
    }
  }

  #makePolicy(): HoldPolicy {
    const label = `gateway/${Deno.pid}`;
    return {
      // Only what no function serves is answered here (404); a route whose
      // function has no worker goes to the primary, which answers 503.
      answersHere: (head: RequestHead) =>
        this.#table.version >= 0 && !this.#table.serves(head.path),
      move: (conn: TlsConnection, head: RequestHead) => this.#place(conn, head),
      answer: (_conn, head, _body, unplaced): RoutedAnswer =>
        gatewayAnswer(
          head,
          unplaced ? "unplaced" : "unknown",
          label,
          head.keepAlive && !this.#draining,
        ),
      continues: () => false,
      count: (a: Answered) => this.#metrics.requests.labels("gateway", "", a.status).inc(),
      draining: () => this.#draining,
    };
  }

  /** Hand the connection to a worker of its route straight away, or to the
   * primary; false when neither can take it (it is answered 503 here). */
  #place(conn: TlsConnection, head: RequestHead): boolean {
    const sealer = this.#sealer;
    if (!sealer || !conn.exportable) return false;
    const peer = this.#table.peerFor(head.path);
    const channel = peer ? this.#peers!.channelTo(peer.pid) : undefined;
    if (!channel && !(this.#registered && this.#channel)) return false;
    const handoffs = conn.info.handoffs + 1;
    let msg: Uint8Array;
    try {
      msg = releaseForHandoff(conn, sealer, handoffs);
    } catch {
      return false;
    }
    const connId = conn.info.connId;
    /** The primary places it; if it cannot, it is answered 503 here. */
    const toPrimary = (fd: number, message: Uint8Array) => {
      // Only a primary that holds the key it was sealed with can open it.
      const primary = this.#registered && this.#sealer === sealer ? this.#channel : undefined;
      const keep = (fd: number, m: Uint8Array, why: string) => this.#takeBack(fd, m, why, sealer);
      if (!primary || !primary.transfer(message, fd, keep)) {
        keep(fd, message, "the primary is away");
      }
    };
    if (!channel || !peer) {
      toPrimary(conn.fd, msg);
      return true;
    }
    const fallBack = (fd: number, message: Uint8Array, reason: string) => {
      log.warning("conn {conn}: {to} did not take it ({reason}); to the primary", {
        conn: connId,
        to: `${peer.fn}/${peer.pid}`,
        reason,
      });
      toPrimary(fd, message);
    };
    if (!channel.transfer(msg, conn.fd, fallBack, () => this.#placed(peer.fn, peer.route))) {
      fallBack(conn.fd, msg, "its channel is closed or full");
    }
    return true;
  }

  #placed(fn: string, route: string): void {
    this.#metrics.handoffs.labels(fn, route).inc();
  }

  /** A connection nobody took is ours again: answered 503 here. */
  #takeBack(fd: number, message: Uint8Array, reason: string, sealer: Sealer): void {
    const h = returnedHandoff(fd, message, log);
    if (!h) return;
    const conn = adoptHandoff(h, fd, sealer, this.#importContext!);
    message.fill(0);
    if (typeof conn === "string") {
      log.warning("conn {conn}: {error}; connection dropped", { conn: h.info.connId, error: conn });
      return;
    }
    log.warning("conn {conn}: no worker took it ({reason}); answering 503 here", {
      conn: h.info.connId,
      reason,
    });
    this.#serve(conn, true);
  }

  /** Stop accepting, finish what is held (idle connections closed), and
   * resolve when done or at `deadlineMs`.
   *
   * @example
   * ```ts
   * import type { SatelliteGateway } from "./satellite.ts";
   * declare const satellite: SatelliteGateway;
   * await satellite.drain(10_000);
   * satellite.stop();
   * ```
   */
  async drain(deadlineMs: number): Promise<void> {
    this.#draining = true;
    this.#clients?.close();
    this.#clients = undefined;
    const until = Date.now() + deadlineMs;
    // Until nothing is held, mid-handshake or waiting for a confirmation.
    while (
      (this.#held.size > 0 || (this.#handshaker?.inProgress ?? 0) > 0 ||
        (this.#channel?.unconfirmed ?? 0) > 0 || (this.#peers?.unconfirmed ?? 0) > 0) &&
      Date.now() < until
    ) {
      for (const conn of this.#held) conn.interruptIdle();
      await new Promise((ok) => setTimeout(ok, 20));
    }
    const left = this.#held.size;
    for (const conn of this.#held) conn.close();
    log.info("satellite drained ({left} connection(s) cut at the deadline)", { left });
  }

  /** Close everything.
   *
   * @example
   * ```ts
   * import type { SatelliteGateway } from "./satellite.ts";
   * declare const satellite: SatelliteGateway;
   * satellite.stop();
   * ```
   */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#statsTimer);
    this.#clients?.close();
    this.#clients = undefined;
    this.#peers?.close(); // first: what comes back goes to the primary
    this.#channel?.close();
    this.#sealer?.destroy();
  }
}
