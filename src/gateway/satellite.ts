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

import { closeFd, localPort, tcpListen } from "../../ffi/shim.ts";
import { givenListener } from "../connection/given_listener.ts";
import { TlsContext } from "../../ffi/wolfssl.ts";
import { holdAmong, type HoldOptions, holdOptions, requestLogLine } from "../connection/holder.ts";
import type { Answered, HoldPolicy, RoutedAnswer } from "../connection/holder.ts";
import { Listener, retryBlockedListeners } from "../connection/listener.ts";
import type { TlsConnection } from "../connection/tls_connection.ts";
import type { ControlChannel } from "../handoff/control_channel.ts";
import { GatewayLink } from "../handoff/gateway_link.ts";
import { Parcel } from "../handoff/parcel.ts";
import { peerDirectory, Peers } from "../handoff/peers.ts";
import { place, type Target } from "../handoff/placement.ts";
import { trust } from "../handoff/trust.ts";
import { encodeJson, type Message, MessageType } from "../handoff/protocol.ts";
import type { RequestHead } from "../http/http.ts";
import type { GatewayConfig } from "../operations/config.ts";
import { drainHeld } from "../operations/drain.ts";
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
  /** Our link to the primary: JOIN, the sealing keys, MOVE. */
  #link: GatewayLink;
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
    this.#link = new GatewayLink(
      { control: config.control, log, peer: "primary gateway", proves: true, startingUp },
      {
        hello: (primary) => {
          const proof = trust().proof("JOIN", primary, Deno.pid);
          return [encodeJson(MessageType.JOIN, { pid: Deno.pid, ...(proof ? { proof } : {}) })];
        },
        registered: (body) =>
          log.info("joined the primary gateway pid {pid}", { pid: body.gatewayPid }),
        refused: (error) => log.error("the primary refused this satellite: {error}", { error }),
        message: (msg, fd, channel) => this.#onMessage(channel, msg, fd),
        report: () =>
          encodeJson(MessageType.STATS, {
            held: this.#held.size,
            metrics: this.#metrics.registry.snapshot(),
          }),
        gone: () => this.#table.gatewayGone(),
      },
    );
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
    this.#link.start();
  }

  /** Listen on the public port, once joined: before, the kernel would give
   * this gateway connections it could only answer 503 (it has no routes). */
  #listen(): void {
    if (this.#clients || this.#stopped || this.#draining || !this.#handshaker) return;
    const c = this.config;
    const handshaker = this.#handshaker;
    // The launcher's socket of this satellite when given (it outlives this
    // process: clients hashed to it wait for the next satellite); else its own.
    const fd = givenListener()?.fd ?? tcpListen(c.host, c.port, 4096, true);
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

  /** A message for us from the primary (the link handles the rest). */
  #onMessage(channel: ControlChannel, msg: Message, fd: number): void {
    switch (msg.type) {
      case MessageType.ROUTES:
        this.#table.update(msg.body);
        this.#listen(); // the first table is in: accept from now on
        return;
      case MessageType.TICKETS:
        // Refused with a warning when malformed; only from the gateway that proved itself.
        this.#tickets?.use(msg.body, "the primary gateway");
        return;
      case MessageType.HANDOFF:
        // The primary never sends connections to a satellite.
        if (fd >= 0) closeFd(fd);
        channel.confirm(msg.body.transfer ?? 0, false);
        return;
      default:
        log.warning("unexpected message type {type} from the primary", { type: msg.type });
    }
  }

  // ---- serving ----

  async #serve(conn: TlsConnection, unplaced: boolean): Promise<void> {
    await holdAmong(this.#held, conn, this.#holdOptions, this.#policy, unplaced);
    retryBlockedListeners();
  }

  #makePolicy(): HoldPolicy {
    const label = `gateway/${Deno.pid}`;
    return {
      // Only what no function serves is answered here (404); a route whose
      // function has no worker goes to the primary, which answers 503 (or
      // holds it while the function starts on demand: declared routes count
      // though no worker ever registered them).
      answersHere: (head: RequestHead) =>
        this.#table.absent(head.path) && !trust().declares(head.path),
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
    const peer = this.#table.peerFor(head.path);
    const channel = peer ? this.#peers!.channelTo(peer.pid) : undefined;
    const link = this.#link;
    if (!channel && !link.channel) return false;
    const lease = link.keys.lease();
    if (!lease) return false;
    const parcel = Parcel.release(conn, lease, conn.info.handoffs + 1);
    if (!(parcel instanceof Parcel)) {
      log.warning("conn {conn}: cannot move it: {error}", {
        conn: conn.info.connId,
        error: parcel.error,
      });
      return !parcel.intact; // intact: answered 503 here; else it is closed
    }
    const sealer = lease.sealer;
    const targets: Target[] = [];
    if (peer && channel) {
      targets.push({
        name: `${peer.fn}/${peer.pid}`,
        channel,
        confirmed: () => this.#metrics.handoffs.labels(peer.fn, peer.route).inc(),
      });
    }
    targets.push({
      name: "the primary",
      // Only a primary that holds the key it was sealed with can open it.
      get channel() {
        return link.keys.sealer === sealer ? link.channel : undefined;
      },
    });
    place(parcel, targets, { log, unplaced: (p, reason, from) => this.#takeBack(p, reason, from) });
    return true;
  }

  /** A connection nobody took is ours again: answered 503 here. */
  #takeBack(parcel: Parcel, reason: string, from: string | undefined): void {
    const adopted = parcel.adopt(this.#importContext!);
    if (typeof adopted === "string") {
      log.warning("conn {conn}: {error}; connection dropped", {
        conn: parcel.connId,
        error: adopted,
      });
      return;
    }
    log.warning("conn {conn}: {from} did not take it ({reason}); answering 503 here", {
      conn: parcel.connId,
      from: from ?? "no worker",
      reason,
    });
    this.#serve(adopted.conn, true);
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
    const left = await drainHeld({
      held: this.#held,
      pending: () =>
        (this.#handshaker?.inProgress ?? 0) + this.#link.unconfirmed +
        (this.#peers?.unconfirmed ?? 0),
      until: Date.now() + deadlineMs,
    });
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
    this.#clients?.close();
    this.#clients = undefined;
    this.#peers?.close(); // first: what comes back goes to the primary
    this.#link.stop();
  }
}
