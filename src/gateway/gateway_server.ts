/**
 * The gateway: accepts TLS connections, runs the one handshake each client
 * gets, reads the first request head, and hands the live connection to a
 * worker of the function that serves its route. Connections that workers
 * hand back are forwarded to the next worker without importing their TLS
 * state. The gateway answers a request itself only when no worker can: an
 * unknown route (404), a route whose function has no worker left (503), or a
 * malformed request (400 and friends).
 *
 * This file puts the parts together; each has its own:
 * - handshaker.ts: accept and handshake;
 * - ../connection/holder.ts with gateway_policy.ts: holding a connection
 *   until its next request can go to a worker (or answering it here);
 * - forwarder.ts: handing connections to workers, acknowledged, and taking
 *   them back;
 * - workers.ts: the worker registry, its watchdog and the route table pushed
 *   to workers;
 * - control_socket.ts, admin_server.ts with admin_routes.ts,
 *   gateway_metrics.ts.
 *
 * @module
 */

import { closeFd, localPort, tcpListen } from "../../ffi/shim.ts";
import { givenListener } from "../connection/given_listener.ts";
import { TlsContext } from "../../ffi/wolfssl.ts";
import type { GatewayConfig } from "../operations/config.ts";
import { logger } from "../operations/log.ts";
import { raiseOpenFileLimit } from "../operations/lifecycle.ts";
import { type AdminResponse, AdminServer } from "./admin_server.ts";
import type { RequestHead } from "../http/http.ts";
import { PROOF_HEADER, SIGNATURE_HEADER, SignatureCheck } from "../operations/admin_signature.ts";
import { adminAnswer } from "./admin_routes.ts";
import { ControlSessions } from "./control_sessions.ts";
import { ControlSocket } from "./control_socket.ts";
import { Forwarder } from "./forwarder.ts";
import { GatewayMetrics, type GatewayStats } from "./gateway_metrics.ts";
import { GatewayPolicy } from "./gateway_policy.ts";
import { Handshaker } from "./handshaker.ts";
import { ProxyProtocol } from "./proxy_protocol.ts";
import { Workers } from "./workers.ts";
import { holdAmong, type HoldOptions, holdOptions, requestLogLine } from "../connection/holder.ts";
import { Listener, retryBlockedListeners } from "../connection/listener.ts";
import type { TlsConnection } from "../connection/tls_connection.ts";
import { Sealer } from "../handoff/seal.ts";
import type { ControlChannel } from "../handoff/control_channel.ts";
import { encodeJson, MessageType } from "../handoff/protocol.ts";
import { drainHeld } from "../operations/drain.ts";
import { inherit, Successor } from "./succession.ts";
import { trust } from "../handoff/trust.ts";
import type { TicketKeys } from "./ticket_keys.ts";
import { ColdStarts } from "./cold_starts.ts";
import { DemandFeed } from "./demand.ts";
import { ParkedConnections } from "./parked.ts";
import { parseScalingJson } from "../operations/scaling.ts";

const log = logger("gateway");

/** How long a gateway that has just started or taken over waits at most
 * for the workers it expects (`--expect-workers`, a predecessor's count):
 * meanwhile a route no worker registered yet gets 503, not 404, here and in
 * the workers' tables (ROUTES `settling`). */
const SETTLING_MS = 5000;

/** One function as `GET /functions` shows it.
 *
 * @example
 * ```ts
 * import type { FunctionState } from "./gateway_server.ts";
 * const s: FunctionState = {
 *   name: "hello", routes: [], scaling: { min: 0, max: 4, idle: 60, target: 0.6, spare: 0 },
 *   state: "idle", workers: 0, waiting: 0, parked: 0, pool: [],
 * };
 * console.log(s.state);
 * ```
 */
export interface FunctionState {
  /** The function. */
  name: string;
  /** Its routes, while it has (or recently had) a worker. */
  routes: string[];
  /** Its scaling (idle in seconds); null when the launcher gave none. */
  scaling: { min: number; max: number; idle: number; target: number; spare: number } | null;
  /** running (a worker serves it), starting (requests wait for one), idle
   * (at zero workers, started on demand) or down (no worker, not on demand). */
  state: "running" | "starting" | "idle" | "down";
  /** Workers serving it. */
  workers: number;
  /** Requests held while it starts. */
  waiting: number;
  /** Idle connections parked while it has no worker. */
  parked: number;
  /** Its registered workers (any state). */
  pool: { pid: number; generation: string; state: string; conns: number; idleSeconds: number }[];
}

const requestLog = requestLogLine(log);

export type { GatewayStats } from "./gateway_metrics.ts";

/**
 * A running gateway.
 *
 * @example
 * ```ts
 * import { Gateway } from "./gateway_server.ts";
 * import { gatewayConfig } from "../operations/config.ts";
 * const gateway = new Gateway(gatewayConfig(["--port", "0"]).config);
 * gateway.start();
 * console.log(gateway.port);
 * ```
 */
export class Gateway {
  readonly config: GatewayConfig;
  readonly gatewayId: number = crypto.getRandomValues(new Uint32Array(1))[0];
  /** The key connections are sealed with between processes: under the
   * launcher, derived from its secret, so a gateway restarted after a crash
   * gives its workers the key they already hold (direct moves between a
   * worker that registered again and one that has not yet go on); else
   * random, this process's own. */
  #key = trust().derivedKey("handoff seal") ?? Sealer.newKey();
  #sealer = new Sealer(this.#key);
  #metrics = new GatewayMetrics();
  #workers: Workers;
  /** Control connections until each says what it is (REGISTER, JOIN, TAKEOVER). */
  #sessions: ControlSessions;
  #forwarder: Forwarder | undefined;
  #policy: GatewayPolicy | undefined;
  #holdOptions: HoldOptions;
  #clients: Listener | undefined;
  #control: Listener | undefined;
  #controlSocket: ControlSocket | undefined;
  #port = 0;
  /** Connections the gateway holds right now. */
  #held = new Set<TlsConnection>();
  #draining = false;
  #watchdog: ReturnType<typeof setInterval> | undefined;
  #admin: AdminServer | undefined;
  #adminPort = -1;
  /** A gateway taking over from this one: its channel, and whether it
   * accepts yet (then what this one holds goes to it). */
  #successor: Successor | undefined;
  #retired = Promise.withResolvers<void>();
  #handshaker: Handshaker | undefined;
  #tickets: TicketKeys | undefined;
  #adminRetry: ReturnType<typeof setTimeout> | undefined;
  /** Until then this gateway has just started or taken over: workers may
   * still be registering with it. */
  #settledAt = Date.now() + SETTLING_MS;
  /** Workers expected to register right after start or a takeover: until
   * they have (at most SETTLING_MS), routes it does not know get 503. */
  #expected = 0;
  /** The count expected is a predecessor's: its workers and satellites. */
  #expectedWithSatellites = false;
  #settleTimer: ReturnType<typeof setInterval> | undefined;
  #cold: ColdStarts;
  #demand: DemandFeed;
  #parked: ParkedConnections;

  /** Prepare a gateway; `start()` opens its sockets.
   *
   * @example
   * ```ts
   * import { Gateway } from "./gateway_server.ts";
   * import { gatewayConfig } from "../operations/config.ts";
   * new Gateway(gatewayConfig([]).config);
   * ```
   */
  constructor(config: GatewayConfig, tickets?: TicketKeys) {
    this.config = config;
    this.#tickets = tickets;
    for (const [cause, n] of config.gatewayExits) {
      this.#metrics.gatewayRestarts.labels(cause).inc(n);
    }
    this.#workers = new Workers(config, this.#key, this.#metrics, {
      serving: (worker) => this.#cold.serving(worker.name),
      balances: (name) => {
        const s = this.#cold.scaling.get(name);
        return s !== undefined && s.max > s.min;
      },
      coldRoutes: () => {
        const routes: Record<string, string> = {};
        for (const [fn, s] of this.#cold.scaling) {
          if (s.min !== 0) continue;
          for (const r of trust().declaredRoutes(fn)) routes[r] = fn;
        }
        return routes;
      },
      returned: (from, h, fd, raw) => this.#forwarder!.returned(from, h, fd, raw),
      moved: (from, moved) => this.#forwarder!.moved(from, moved),
      fromSatellite: (from, h, fd, raw) =>
        this.#forwarder!.inherited(from.channel, from.pid, h, fd, raw),
      joined: (satellite) => {
        if (tickets) satellite.channel.send(encodeJson(MessageType.TICKETS, tickets.message()));
      },
    });
    this.#cold = new ColdStarts({
      router: this.#workers.router,
      metrics: this.#metrics,
      scaling: config.scaling,
      timeoutMs: config.coldStartTimeoutMs,
      maxHeld: config.coldHoldMax,
      functionFor: (path) => trust().declaredFunction(path),
      wanted: () => this.#demand.bump(),
    });
    this.#parked = new ParkedConnections({
      idleTimeoutMs: config.idleTimeoutMs,
      metrics: this.#metrics,
      wake: (fn, path, parcel) => this.#forwarder!.unpark(fn, path, parcel),
    });
    this.#demand = new DemandFeed({
      loads: () => this.#workers.loads(),
      waiting: (fn) => this.#cold.waiting(fn),
      functions: () => this.#cold.scaling.keys(),
    });
    this.#sessions = new ControlSessions(this.#metrics, {
      register: (channel, peer, body) => this.#workers.register(channel, peer, body),
      join: (channel, peer) => this.#workers.satellites.join(channel, peer),
      takeover: (channel, peer) => this.#onTakeover(channel, peer.pid),
    });
    this.#workers.settling(() => this.#settling());
    tickets?.onChange((t) => {
      this.#workers.toSatellites(encodeJson(MessageType.TICKETS, t));
      this.#successor?.channel.send(encodeJson(MessageType.TICKETS, t));
    });
    this.#holdOptions = holdOptions(config, requestLog, `gateway/${Deno.pid}`);
    trust().onRefused((reason) => this.#metrics.controlRefused.labels(reason).inc());
  }

  /** The counters the tests and the benchmark read (computed from the
   * metrics registry). */
  get stats(): GatewayStats {
    return this.#metrics.stats();
  }

  /** The HTTPS port listened on (useful with `--port 0`). */
  get port(): number {
    return this.#port;
  }

  /** The admin port listened on (-1 when off). */
  get adminPort(): number {
    return this.#adminPort;
  }

  /** Load the certificate, listen on the control socket and the HTTPS port.
   * Throws (having opened nothing that stays open) when a setting cannot be
   * used, or when another gateway answers on the control socket: a live
   * socket is never removed, only one whose process is gone.
   *
   * @example
   * ```ts
   * import type { Gateway } from "./gateway_server.ts";
   * declare const gateway: Gateway;
   * gateway.start();
   * ```
   */
  start(): void {
    const handshaker = this.#prepare();
    this.#handshaker = handshaker;
    try {
      this.#listen(handshaker);
    } catch (e) {
      this.stop();
      throw e;
    }
    this.#started();
  }

  /** Take over from the gateway running on the control socket (`--takeover
   * on`, src/gateway/succession.ts): its listening sockets, its sealing key
   * and its workers; no connection attempt is refused meanwhile. Rejects,
   * with the old gateway still serving, when it cannot.
   *
   * @example
   * ```ts
   * import type { Gateway } from "./gateway_server.ts";
   * declare const gateway: Gateway;
   * await gateway.takeOver();
   * ```
   */
  async takeOver(): Promise<void> {
    const c = this.config;
    const handshaker = this.#prepare(); // a bad certificate stops us before we touch the old one
    const heir = await inherit(c.control, 5000, {
      handoff: (h, fd, raw) => this.#forwarder!.inherited(heir.channel, heir.pid, h, fd, raw),
      closed: () =>
        log.info("gateway pid {pid} has handed everything over and exited", { pid: heir.pid }),
      tickets: (t) => this.#tickets?.use(t, `gateway pid ${heir.pid}`),
    });
    // Its tickets resume here (keys that cannot make a ring are refused).
    if (heir.tickets) this.#tickets?.use(heir.tickets, `gateway pid ${heir.pid}`);
    this.#key.fill(0);
    this.#key = heir.key;
    this.#sealer.destroy();
    this.#sealer = new Sealer(heir.key);
    this.#workers.useKey(heir.key);
    this.#forwarder!.useSealer(this.#sealer);
    this.#handshaker = handshaker;
    this.#controlSocket = heir.control;
    this.#control = new Listener(heir.control.fd, "control", (c) => this.#sessions.accept(c));
    if (c.adminPort >= 0 || heir.admin) this.#startAdmin(heir.admin?.fd);
    log.info(
      "taking over from gateway pid {pid}: its sockets are passed on; waiting for {n} worker(s)",
      { pid: heir.pid, n: heir.workers },
    );
    this.#expected = heir.workers;
    this.#expectedWithSatellites = true;
    const until = Date.now() + 5000;
    while (this.#workers.list().length < heir.workers && Date.now() < until) {
      await new Promise((ok) => setTimeout(ok, 10));
    }
    // The predecessor passed the public socket; a copy the launcher gave
    // this process too is the same socket, not needed twice.
    const given = givenListener();
    if (given) closeFd(given.fd);
    this.#clients = new Listener(heir.https.fd, "clients", (conn) => handshaker.accept(conn), {
      spareFd: true,
    });
    this.#port = heir.https.port;
    heir.channel.send(encodeJson(MessageType.ACCEPTING, {}));
    log.info("accepting; {n} of {of} worker(s) registered; gateway pid {pid} stops accepting", {
      n: this.#workers.list().length,
      of: heir.workers,
      pid: heir.pid,
    });
    this.#started();
  }

  /** The parts both start() and takeOver() need; returns the handshaker. */
  #prepare(): Handshaker {
    const c = this.config;
    raiseOpenFileLimit(log);
    const context = TlsContext.server({
      certFile: c.cert,
      keyFile: c.key,
      resumption: c.resumption,
    });
    if (c.resumption) this.#tickets?.attach(context);
    this.#forwarder = new Forwarder({
      workers: this.#workers,
      sealer: this.#sealer,
      importContext: TlsContext.forImport(),
      maxBody: c.maxBody,
      metrics: this.#metrics,
      serve: (conn, unplaced) => {
        this.#serve(conn, unplaced).finally(retryBlockedListeners);
      },
      settling: () => this.#settling(),
      cold: this.#cold,
      parked: this.#parked,
    });
    this.#policy = new GatewayPolicy({
      router: this.#workers.router,
      forwarder: this.#forwarder,
      metrics: this.#metrics,
      label: this.#holdOptions.label,
      draining: () => this.#draining,
      handingOver: () => this.#successor?.takesConnections === true,
      handOver: (conn) => this.#successor?.passOn(conn) === true,
      expected: (path) => this.#settling() || trust().declares(path),
      settling: () => this.#settling(),
      cold: this.#cold,
    });
    return new Handshaker({
      context,
      gatewayId: this.gatewayId,
      handshakeTimeoutMs: c.handshakeTimeoutMs,
      metrics: this.#metrics,
      ready: (conn) => this.#serve(conn, false),
      proxy: c.proxyProtocol ? new ProxyProtocol(c.proxyTrusted) : undefined,
    });
  }

  /** Listening: the watchdog and the start lines. */
  /** Whether workers it expects may still be registering (see #expected). */
  #settling(): boolean {
    if (Date.now() >= this.#settledAt) return false; // the usual answer, at once
    const registered = this.#expectedWithSatellites
      ? this.#workers.list().length
      : this.#workers.registered();
    return registered < this.#expected;
  }

  #started(): void {
    const c = this.config;
    if (c.expectWorkers > this.#expected) {
      this.#expected = c.expectWorkers;
      this.#expectedWithSatellites = false;
    }
    this.#settledAt = Date.now() + SETTLING_MS;
    if (this.#settling()) {
      // The workers' tables say "settling" until it ends; then a new table.
      this.#settleTimer = setInterval(() => {
        if (this.#settling()) return;
        clearInterval(this.#settleTimer);
        this.#workers.settled();
      }, 50);
    }
    this.#watchdog = setInterval(() => {
      if (!this.#successor) this.#controlSocket?.check(); // a successor took the path over
      this.#workers.check();
    }, 1000);
    log.info("listening on https://{host}:{port}, control socket {control}", {
      host: c.host,
      port: this.#port,
      control: c.control,
    });
    if (this.#admin) {
      log.info("admin on http://{host}:{port} (/metrics, /healthz, /workers)", {
        host: c.adminHost,
        port: this.#adminPort,
      });
    }
  }

  /** A new gateway wants to take over (TAKEOVER on the control socket):
   * tell the workers to register with it, pass it the listening sockets,
   * and once it accepts, retire. */
  #onTakeover(channel: ControlChannel, pid: number): void {
    if (this.#draining || this.#successor || !this.#clients) {
      log.warning("gateway pid {pid} asked to take over, but this one is {why}; refused", {
        pid,
        why: this.#draining
          ? "draining"
          : this.#successor
          ? "being taken over already"
          : "not listening",
      });
      channel.close();
      return;
    }
    this.#successor = Successor.start(channel, pid, {
      https: { fd: this.#clients.fd, port: this.#port },
      admin: this.#admin ? { fd: this.#admin.fd, port: this.#adminPort } : undefined,
      key: this.#key,
      tickets: this.#tickets?.message(),
      workers: this.#workers.list().length,
    }, {
      moveAll: () => this.#workers.moveAll(),
      retire: (s) => this.#retire(s),
      gone: (s) => this.#successorGone(s),
      keep: (parcel) => this.#forwarder!.takeBack(parcel),
      sealer: () => this.#sealer,
    });
  }

  /** The successor accepts: stop accepting (the sockets stay open here
   * until the end, in case it goes away), finish the handshakes in
   * progress, pass on what this gateway holds at each connection's next
   * request boundary, and resolve {@linkcode Gateway.retired} once nothing
   * is left (or at --drain-timeout). */
  async #retire(successor: Successor): Promise<void> {
    this.#clients?.pause();
    this.#admin?.pause();
    log.info(
      "gateway pid {pid} accepts now; this one stops accepting and passes on {held} connection(s)",
      { pid: successor.pid, held: this.#held.size },
    );
    const started = Date.now();
    const left = await drainHeld({
      held: this.#held,
      // Every worker registered with the successor too.
      pending: () => this.#pending() + (this.#workers.allLeft() ? 0 : 1),
      until: started + this.config.drainTimeoutMs,
      abort: () => successor.broken,
    });
    if (successor.broken && successor.channel.unconfirmed === 0 && this.#successor !== successor) {
      return; // it went away: this gateway serves again (#successorGone)
    }
    for (const conn of this.#held) conn.close(); // it went away with things unconfirmed
    this.#clients?.close();
    this.#clients = undefined;
    clearTimeout(this.#adminRetry);
    this.#admin?.stop();
    this.#admin = undefined;
    log.info("retired in {ms} ms ({left} connection(s) cut at the deadline)", {
      ms: Date.now() - started,
      left,
    });
    this.#retired.resolve();
  }

  /** The successor's channel closed. If it took the control path, this
   * gateway binds it again (a dead socket there is replaced), so workers
   * that had moved come back; if it had started accepting, this one
   * accepts again too. */
  #successorGone(successor: Successor): void {
    if (this.#successor !== successor) return;
    this.#successor = undefined;
    log.error("gateway pid {pid} went away before taking everything over; this gateway serves on", {
      pid: successor.pid,
    });
    if (successor.bound) {
      try {
        const control = ControlSocket.listen(this.config.control);
        this.#control?.close();
        this.#controlSocket = control;
        this.#control = new Listener(control.fd, "control", (c) => this.#sessions.accept(c));
      } catch (e) {
        log.error("cannot bind the control socket again: {error}", {
          error: (e as Error).message,
        });
      }
      this.#workers.stopMoving();
    }
    if (successor.accepting) {
      this.#clients?.resume();
      this.#admin?.resume();
    }
  }

  /** Resolves once a successor has taken everything over (the process then exits).
   *
   * @example
   * ```ts
   * import type { Gateway } from "./gateway_server.ts";
   * declare const gateway: Gateway;
   * await gateway.retired;
   * ```
   */
  get retired(): Promise<void> {
    return this.#retired.promise;
  }

  /** The control socket first: a gateway that finds another one there
   * stops before it has taken anything else. */
  #listen(handshaker: Handshaker): void {
    const c = this.config;
    this.#controlSocket = ControlSocket.listen(c.control);
    this.#control = new Listener(
      this.#controlSocket.fd,
      "control",
      (c) => this.#sessions.accept(c),
    );
    // The launcher's (or systemd's) socket when given: it outlives this
    // process, so clients wait in its queue while a successor starts.
    const given = givenListener();
    const listenFd = given?.fd ?? tcpListen(c.host, c.port, 4096, c.reusePort);
    this.#clients = new Listener(listenFd, "clients", (conn) => handshaker.accept(conn));
    this.#port = localPort(listenFd);
    if (given) {
      log.info("listening on the {from}'s socket (port {port})", { ...given, port: this.#port });
    }
    if (c.adminPort >= 0) this.#startAdmin();
  }

  /** The admin port (on `fd` when a predecessor passed its socket on). A
   * port someone else holds is logged and tried again every 5 s: the gateway
   * serves on meanwhile (reloads wait), and no restart loop follows. */
  #startAdmin(fd?: number, retry = false): void {
    const c = this.config;
    const key = trust().derivedKey("admin");
    const signatures = key ? new SignatureCheck(key, Deno.pid) : undefined;
    key?.fill(0);
    const answer = (head: RequestHead): AdminResponse | Promise<AdminResponse> => {
      const sig = head.headers.find(([name]) => name === SIGNATURE_HEADER)?.[1];
      const nonce = signatures?.verify(head.method, head.target, sig);
      const prove = (res: AdminResponse) => {
        if (nonce !== undefined) {
          res.headers = [[PROOF_HEADER, signatures!.proof(nonce, res.status, res.body)]];
        }
        return res;
      };
      const res = adminAnswerOf(head, nonce !== undefined, signatures !== undefined);
      return res instanceof Promise ? res.then(prove) : prove(res);
    };
    const adminAnswerOf = (head: RequestHead, signed: boolean, checks: boolean) =>
      adminAnswer(head, {
        signed,
        signatures: checks,
        metrics: () => this.metrics(),
        unhealthy: () => {
          // A gateway whose control socket is gone from its path keeps
          // serving what it holds, but no worker can (re)register.
          const lost = this.#controlSocket?.check() ?? "";
          if (this.#draining) return { status: "draining" };
          return lost ? { status: "control socket lost", error: lost } : { status: "ok" };
        },
        functions: () => this.#workers.router.functions(),
        workers: () => this.#workers.list(),
        token: c.adminToken,
        promote: (name, generation, handover) => this.#workers.promote(name, generation, handover),
        declareRoutes: (name, routes) => {
          try {
            trust().declareRoutes(name, routes);
            this.#workers.routesChanged();
            return "";
          } catch (e) {
            return (e as Error).message;
          }
        },
        declareUser: (name, uid) => {
          try {
            trust().declareUser(name, uid);
            return "";
          } catch (e) {
            return (e as Error).message;
          }
        },
        reloaded: (name, ok, seconds) => {
          this.#metrics.reloads.labels(name, ok ? "ok" : "failed").inc();
          if (ok) this.#metrics.reloadSeconds.labels(name).set(seconds);
        },
        demand: (after, waitMs) => this.#demand.next(after, waitMs),
        retire: (name, pid) => this.#workers.retire(name, pid),
        setScaling: (name, text) => this.#setScaling(name, text),
        scaled: (name, direction, reason) =>
          this.#metrics.scaleEvents.labels(name, direction, reason).inc(),
        functionStates: () => this.#functionStates(),
      });
    this.#admin = new AdminServer(c.adminHost, c.adminPort, answer);
    try {
      this.#adminPort = this.#admin.start(fd);
      if (retry) {
        log.info("admin on http://{host}:{port} (/metrics, /healthz, /workers)", {
          host: c.adminHost,
          port: this.#adminPort,
        });
      }
    } catch (e) {
      this.#admin = undefined;
      if (fd !== undefined) throw e;
      log.error("admin port {host}:{port}: {error}; trying again in 5 s (reloads wait)", {
        host: c.adminHost,
        port: c.adminPort,
        error: (e as Error).message,
      });
      this.#adminRetry = setTimeout(() => {
        this.#adminRetry = undefined;
        if (!this.#draining) this.#startAdmin(undefined, true);
      }, 5000);
    }
  }

  /** Replace function `name`'s scaling with `text` (JSON as one entry of
   * `--scaling`); "" or why not. */
  #setScaling(name: string, text: string): string {
    try {
      const parsed = parseScalingJson(text === "" ? "{}" : `{${JSON.stringify(name)}:${text}}`);
      this.#cold.setScaling(name, parsed.get(name));
      this.#workers.routesChanged();
      return "";
    } catch (e) {
      return (e as Error).message;
    }
  }

  /** GET /functions: each function the gateway knows (by its scaling, its
   * routes or its workers), its settings and its state. */
  #functionStates(): FunctionState[] {
    const routed = new Map(this.#workers.router.functions().map((f) => [f.name, f]));
    const names = new Set([...this.#cold.scaling.keys(), ...routed.keys()]);
    const loads = this.#workers.loads();
    return [...names].sort().map((name) => {
      const s = this.#cold.scaling.get(name);
      const mine = loads.filter((w) => w.name === name);
      const waiting = this.#cold.waiting(name);
      const serving = routed.get(name)?.workers ?? 0;
      return {
        name,
        routes: routed.get(name)?.routes ?? [],
        scaling: s
          ? { min: s.min, max: s.max, idle: s.idleMs / 1000, target: s.target, spare: s.spare }
          : null,
        state: serving > 0 ? "running" : waiting > 0 ? "starting" : s?.min === 0 ? "idle" : "down",
        workers: serving,
        waiting,
        parked: this.#parked.count(name),
        pool: mine.map(({ pid, generation, state, conns, idleMs }) => ({
          pid,
          generation,
          state,
          conns,
          idleSeconds: Math.round(idleMs / 100) / 10,
        })),
      };
    });
  }

  /** Hold a connection until its next request can go to a worker, answering
   * here what no worker can. `unplaced`: its next request gets a 503 here (a
   * worker could not take it just now). */
  #serve(conn: TlsConnection, unplaced: boolean): Promise<void> {
    return holdAmong(this.#held, conn, this.#holdOptions, this.#policy!, unplaced);
  }

  /** Drain: stop accepting, close idle connections cleanly, let requests in
   * flight finish (answered with `Connection: close` when answered here),
   * and resolve once the gateway holds nothing or `deadlineMs` has passed.
   * Workers keep serving the connections they hold.
   *
   * @example
   * ```ts
   * import type { Gateway } from "./gateway_server.ts";
   * declare const gateway: Gateway;
   * await gateway.drain(10_000);
   * gateway.stop();
   * ```
   */
  async drain(deadlineMs: number): Promise<void> {
    this.#draining = true;
    this.#clients?.close();
    this.#clients = undefined;
    // Idle and unopened: nothing to finish (closed without close_notify).
    this.#parked.closeAll();
    const left = await drainHeld({
      held: this.#held,
      pending: () => this.#pending(),
      until: Date.now() + deadlineMs,
    });
    log.info("drained ({left} connection(s) cut at the deadline)", { left });
  }

  /** What a drain waits for besides held connections: handshakes in
   * progress, connections sent and not yet confirmed. */
  #pending(): number {
    return (this.#handshaker?.inProgress ?? 0) + this.#workers.unconfirmed() +
      (this.#successor?.channel.unconfirmed ?? 0);
  }

  /** The Prometheus text for `/metrics`.
   *
   * @example
   * ```ts
   * import type { Gateway } from "./gateway_server.ts";
   * declare const gateway: Gateway;
   * console.log(gateway.metrics());
   * ```
   */
  metrics(): string {
    return this.#metrics.render({
      held: this.#held.size,
      draining: this.#draining,
      functions: this.#workers.router.functions(),
      workers: this.#workers.reports(),
      versions: this.#versions(),
    });
  }

  /** Registered workers counted by function, generation and state. */
  #versions(): { name: string; generation: string; state: string; count: number }[] {
    const counts = new Map<
      string,
      { name: string; generation: string; state: string; count: number }
    >();
    for (const w of this.#workers.list()) {
      const key = `${w.name}\n${w.generation}\n${w.state}`;
      const entry = counts.get(key);
      if (entry) entry.count++;
      else counts.set(key, { name: w.name, generation: w.generation, state: w.state, count: 1 });
    }
    return [...counts.values()];
  }

  /** Stop listening and close every control channel. The control socket
   * file is removed only while it is still ours.
   *
   * @example
   * ```ts
   * import type { Gateway } from "./gateway_server.ts";
   * declare const gateway: Gateway;
   * gateway.stop();
   * ```
   */
  stop(): void {
    this.#parked.closeAll();
    clearInterval(this.#watchdog);
    clearInterval(this.#settleTimer);
    this.#clients?.close();
    this.#clients = undefined;
    this.#control?.close();
    this.#control = undefined;
    this.#controlSocket?.close();
    this.#controlSocket = undefined;
    clearTimeout(this.#adminRetry);
    this.#admin?.stop();
    this.#workers.close();
    this.#sessions.close();
  }
}
