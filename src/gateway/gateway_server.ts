/**
 * The gateway: accepts TLS connections, runs the one handshake each client
 * gets, reads the first request head, and hands the live connection to a
 * worker of the function that serves its route. Connections that workers
 * hand back are forwarded to the next worker without importing their TLS
 * state. The gateway answers a request itself only when no worker can: an
 * unknown route (404), a route whose function has no worker left (503), or a
 * malformed request (400 and friends).
 *
 * Every registered worker gets the route table (ROUTES) right after
 * REGISTERED and again whenever it changes (changes in one event-loop turn
 * make one push, and a pending push goes out before any connection is handed
 * to a worker), so workers keep a connection only for paths the gateway
 * would route to them.
 *
 * @module
 */

import {
  closeFd,
  EADDRINUSE,
  ENOENT,
  FD_LOST,
  fileIdentity,
  localPort,
  privateDirectory,
  removeFile,
  SysError,
  tcpListen,
  unixListen,
} from "../../ffi/shim.ts";
import { TlsContext, TlsError, TlsSession } from "../../ffi/wolfssl.ts";
import type { GatewayConfig } from "../operations/config.ts";
import { ControlChannel } from "../handoff/control_channel.ts";
import { errorResponse, parseRequest, type RequestHead } from "../http/http.ts";
import { LogBudget, logger, LogLine } from "../operations/log.ts";
import { type AdminResponse, AdminServer } from "./admin_server.ts";
import { adoptHandoff, nowMicros, releaseForHandoff } from "../handoff/handoff.ts";
import { GatewayMetrics } from "./gateway_metrics.ts";
import { type Accepted, Listener, retryBlockedListeners } from "../connection/listener.ts";
import {
  decodeMessage,
  encodeJson,
  type Handoff,
  Limits,
  type Message,
  MessageType,
  type Moved,
  type Register,
  setHandoffCount,
  type Stats,
} from "../handoff/protocol.ts";
import { type HolderOptions, MAX_HEAD_BYTES, nextRequest } from "../connection/request_reader.ts";
import { RouteConflictError, Router, type WorkerRef } from "../routing/router.ts";
import { raiseOpenFileLimit } from "../operations/lifecycle.ts";
import { sameUser } from "../handoff/same_user.ts";
import { Sealer } from "../handoff/seal.ts";
import { type ConnectionInfo, TlsConnection } from "../connection/tls_connection.ts";

const log = logger("gateway");
// The lines made per request, connection or handoff (LogLine: cheap enough to leave on).
const answeredLine = new LogLine(
  log,
  "info",
  "{method} {path} {status} worker {worker} conn {conn} handoffs {handoffs}",
);
const handshakeLine = new LogLine(
  log,
  "info",
  "TLS handshake complete: conn {conn} from {peer}, {protocol} {cipher}",
);
const returnedLine = new LogLine(
  log,
  "info",
  "connection returned: conn {conn} from {worker} for {path}, to {target}",
);
const movedLine = new LogLine(
  log,
  "info",
  "connection moved: conn {conn} from {worker} for {route}, to {target}",
);

/** How often a connection is offered to workers before it is answered 503
 * here (each refusal or death before confirming is one). */
const MAX_PLACEMENTS = 3;

/** The head of the request at the start of `unread`, if complete. */
function requestHead(unread: Uint8Array, maxBody: number): RequestHead | undefined {
  const parsed = parseRequest(unread, { maxHeadBytes: MAX_HEAD_BYTES, maxBodyBytes: maxBody });
  return parsed.kind === "request" || parsed.kind === "incomplete" ? parsed.head : undefined;
}

/** The first byte of a TLS ClientHello (content type "handshake"). */
const TLS_HANDSHAKE_RECORD = 0x16;
/** What a client that speaks plain HTTP to the TLS port gets. */
const PLAIN_HTTP_ANSWER = errorResponse(400, "this port speaks HTTPS: use https://", {
  keepAlive: false,
});

/** A worker connected over the control channel. */
interface Worker extends WorkerRef {
  channel: ControlChannel;
  routes: string[];
  /** Its routes may nest with other functions' (REGISTER's nestedRoutes). */
  nestedRoutes: boolean;
  /** It listens on its peer socket for direct handoffs (REGISTER's peer). */
  peer: boolean;
  registered: boolean;
  /** Its last STATS report. */
  stats?: Stats;
  /** When it last sent anything (ms since epoch): workers report every second. */
  lastSeen: number;
  /** "serving", "draining" (sent DRAIN) or "stuck" (silent past --worker-timeout);
   * only a serving worker is in the router. */
  state: "serving" | "draining" | "stuck";
}

/** Counters the gateway keeps (the tests and the benchmark read them). */
export interface GatewayStats {
  /** TCP connections accepted. */
  accepted: number;
  /** TLS handshakes completed. */
  handshakes: number;
  /** Of those, resumed sessions (abbreviated handshakes). */
  resumed: number;
  /** Connections handed to a worker (first handoffs and forwards). */
  handoffs: number;
  /** Connections workers handed back. */
  returned: number;
  /** Requests the gateway answered itself. */
  answered: number;
  /** Handshakes that failed or timed out. */
  handshakeFailures: number;
  /** Connections workers moved straight to another worker (told in MOVED). */
  moved: number;
}

function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

function bytesToBase64(b: Uint8Array): string {
  let s = "";
  for (const c of b) s += String.fromCharCode(c);
  return btoa(s);
}

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
  readonly stats: GatewayStats = {
    accepted: 0,
    handshakes: 0,
    resumed: 0,
    handoffs: 0,
    returned: 0,
    answered: 0,
    handshakeFailures: 0,
    moved: 0,
  };
  readonly gatewayId: number = crypto.getRandomValues(new Uint32Array(1))[0];
  #router: Router<Worker>;
  #workers = new Set<Worker>();
  #key = Sealer.newKey();
  #sealer = new Sealer(this.#key);
  #serverCtx: TlsContext | undefined;
  #importCtx: TlsContext | undefined;
  #clients: Listener | undefined;
  #control: Listener | undefined;
  /** The control socket file's identity ("dev:inode") once we bound it. */
  #controlId = "";
  /** Why the control socket cannot be reached at its path ("" while it can). */
  #controlLost = "";
  #nextConnId = 1;
  #port = 0;
  #label = `gateway/${Deno.pid}`;
  /** Connections the gateway holds right now. */
  #held = new Set<TlsConnection>();
  #draining = false;
  #watchdog: ReturnType<typeof setInterval> | undefined;
  #admin: AdminServer | undefined;
  #adminPort = -1;
  #metrics = new GatewayMetrics();
  #handshakeLogBudget = new LogBudget(10, 1000);
  /** The route table changed since it was last sent to the workers. */
  #routesPending = false;
  /** Version of the ROUTES sent last (one per message: members change too). */
  #routesVersion = 0;

  /** Prepare a gateway; `start()` opens its sockets.
   *
   * @example
   * ```ts
   * import { Gateway } from "./gateway_server.ts";
   * import { gatewayConfig } from "../operations/config.ts";
   * new Gateway(gatewayConfig([]).config);
   * ```
   */
  constructor(config: GatewayConfig) {
    this.config = config;
    this.#router = new Router<Worker>(config.vacantGraceMs, () => this.#routesChanged());
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
    const c = this.config;
    raiseOpenFileLimit(log);
    this.#serverCtx = TlsContext.server({
      certFile: c.cert,
      keyFile: c.key,
      resumption: c.resumption,
    });
    this.#importCtx = TlsContext.forImport();
    try {
      this.#listen();
    } catch (e) {
      this.stop();
      throw e;
    }
    this.#watchdog = setInterval(() => this.#checkWorkers(), 1000);
    log.info("listening on https://{host}:{port}, control socket {control}", {
      host: c.host,
      port: this.#port,
      control: c.control,
    });
    if (this.#admin) {
      log.info("admin on http://{host}:{port} (/metrics, /healthz)", {
        host: c.adminHost,
        port: this.#adminPort,
      });
    }
  }

  /** The control socket first: a gateway that finds another one there
   * stops before it has taken anything else. */
  #listen(): void {
    const c = this.config;
    privateDirectory(dirname(c.control));
    let controlFd;
    try {
      controlFd = unixListen(c.control);
    } catch (e) {
      if (e instanceof SysError && e.errno === EADDRINUSE) {
        throw new Error(
          `control socket ${c.control} is in use: another gateway answers there ` +
            `(stop it first, or give this one another --control)`,
        );
      }
      if (e instanceof SysError) {
        // Not ours to remove (not a socket, a socket of another kind, no
        // access...): say what it is and leave it alone.
        throw new Error(`control socket ${c.control}: ${e.reason}; left as it is`);
      }
      throw e;
    }
    this.#controlId = fileIdentity(c.control);
    this.#control = new Listener(controlFd, "control", (w) => this.#acceptWorker(w));
    const listenFd = tcpListen(c.host, c.port);
    this.#clients = new Listener(listenFd, "clients", (conn) => this.#acceptClient(conn));
    this.#port = localPort(listenFd);
    if (c.adminPort >= 0) {
      this.#admin = new AdminServer(c.adminHost, c.adminPort, (head) => this.#adminAnswer(head));
      this.#adminPort = this.#admin.start();
    }
  }

  // ---- clients

  #acceptClient(c: Accepted): void {
    this.stats.accepted++;
    const info: ConnectionInfo = {
      connId: this.#nextConnId++ >>> 0,
      gatewayId: this.gatewayId,
      handoffs: 0,
      peer: c.peer,
      sni: "",
      alpn: "",
    };
    let tls: TlsSession;
    try {
      tls = TlsSession.accept(this.#serverCtx!, c.fd);
    } catch (e) {
      log.error("cannot create a TLS session: {error}", { error: (e as Error).message });
      closeFd(c.fd);
      return;
    }
    let conn: TlsConnection;
    try {
      conn = new TlsConnection(c.fd, tls, info); // watches the fd: can fail (ENOMEM, ENOSPC)
    } catch (e) {
      log.error("cannot watch a connection: {error}", { error: (e as Error).message });
      tls.free();
      closeFd(c.fd);
      return;
    }
    this.#handshake(conn)
      .catch((e) => {
        log.error("conn {conn}: {error}", { conn: info.connId, error: String(e) });
        conn.close(false);
      })
      // Its fd is closed or handed off now: room for one in the listen queue.
      .finally(retryBlockedListeners);
  }

  async #handshake(conn: TlsConnection): Promise<void> {
    const deadline = Date.now() + this.config.handshakeTimeoutMs;
    const first = await conn.peekStart(deadline);
    if (!first) {
      conn.close(false);
      return;
    }
    if (first[0] !== TLS_HANDSHAKE_RECORD) {
      // Not TLS. A plain-HTTP request gets a plain answer saying so.
      log.debug("conn {conn}: not TLS from {peer}", {
        conn: conn.info.connId,
        peer: conn.info.peer,
      });
      if (first[0] >= 0x41 && first[0] <= 0x5a) conn.closeWithPlain(PLAIN_HTTP_ANSWER);
      else conn.close(false);
      return;
    }
    let ok = false;
    let failure = "";
    try {
      ok = await conn.handshake(deadline);
      if (!ok && Date.now() >= deadline) failure = "no handshake within --handshake-timeout";
    } catch (e) {
      failure = e instanceof TlsError ? `${e.reason} (wolfSSL ${e.code})` : String(e);
    }
    if (!ok) {
      this.stats.handshakeFailures++;
      this.#handshakeFailed(conn, failure);
      conn.close(false);
      return;
    }
    this.stats.handshakes++;
    const resumed = conn.session.resumed;
    if (resumed) this.stats.resumed++;
    this.#metrics.handshake(conn.protocol, resumed);
    conn.info.sni = conn.session.serverName;
    conn.info.alpn = conn.session.alpn;
    handshakeLine.log(() => ({
      conn: conn.info.connId,
      peer: conn.info.peer,
      protocol: conn.protocol,
      cipher: conn.cipher,
    }));
    await this.#serve(conn);
  }

  /** Log a failed handshake: at info with wolfSSL's reason and the client's
   * address, at most 10 lines a second (any client can cause them); a client
   * that just went away is logged at debug. */
  #handshakeFailed(conn: TlsConnection, failure: string): void {
    if (!failure) {
      log.debug("conn {conn}: {peer} closed during the handshake", {
        conn: conn.info.connId,
        peer: conn.info.peer,
      });
      return;
    }
    const skipped = this.#handshakeLogBudget.take();
    if (skipped === false) return;
    const props = { conn: conn.info.connId, peer: conn.info.peer, error: failure, skipped };
    if (skipped === 0) log.info("TLS handshake failed: conn {conn} from {peer}: {error}", props);
    else {
      log.info(
        "TLS handshake failed: conn {conn} from {peer}: {error} ({skipped} more not logged)",
        props,
      );
    }
  }

  /** Hold a connection until its next request can go to a worker.
   * `answerHere`: its next request gets a 503 here (a worker could not take
   * it just now). */
  async #serve(conn: TlsConnection, answerHere = false): Promise<void> {
    this.#held.add(conn);
    try {
      await this.#hold(conn, answerHere);
    } finally {
      this.#held.delete(conn);
    }
  }

  async #hold(conn: TlsConnection, answerHere: boolean): Promise<void> {
    const c = this.config;
    const opts: HolderOptions = {
      maxBody: c.maxBody,
      idleTimeoutMs: c.idleTimeoutMs,
      headerTimeoutMs: c.headerTimeoutMs,
      bodyTimeoutMs: c.bodyTimeoutMs,
      writeTimeoutMs: c.writeTimeoutMs,
      // Route on the head alone; wait for a body only when answering here.
      // (status(), not pick(): asking must not advance a pool's rotation.)
      wantBody: (head) => answerHere || this.#router.status(head.path) !== "served",
      draining: () => this.#draining,
      onError: (status) => this.#answered(status, conn, undefined),
    };
    for (;;) {
      const r = await nextRequest(conn, opts);
      if (!r) return;
      const hit = answerHere ? undefined : this.#router.pickWithRoute(r.head.path);
      if (hit) {
        this.#handOff(conn, hit.worker, hit.route);
        return;
      }
      // No worker: answer here, then keep reading this connection.
      if (r.kind === "request") conn.consume(r.length);
      const keepAlive = r.head.keepAlive && r.kind === "request" && !this.#draining;
      const answer = answerHere
        ? this.#unplaced(r.head, keepAlive, conn)
        : this.#noWorker(r.head, keepAlive, conn);
      answerHere = false;
      const ok = await conn.write(answer, Date.now() + c.writeTimeoutMs);
      if (!ok || !keepAlive) {
        conn.close(ok);
        return;
      }
    }
  }

  /** 503 while the route's function has no worker (it is likely being
   * restarted), 404 when no function serves the route. */
  #noWorker(head: RequestHead, keepAlive: boolean, conn: TlsConnection): Uint8Array {
    const path = head.path.slice(0, 200);
    const headOnly = head.method === "HEAD";
    if (this.#router.status(head.path) === "vacant") {
      this.#answered(503, conn, head);
      return errorResponse(503, `no worker for ${path} right now`, {
        keepAlive,
        headOnly,
        extraHeaders: [["retry-after", "1"], ["x-hotpotato-worker", this.#label]],
      });
    }
    this.#answered(404, conn, head);
    return errorResponse(404, `no function serves ${path}`, {
      keepAlive,
      headOnly,
      extraHeaders: [["x-hotpotato-worker", this.#label]],
    });
  }

  /** 503 for a request no worker could take when it was handed over (it
   * refused, or died before confirming). */
  #unplaced(head: RequestHead, keepAlive: boolean, conn: TlsConnection): Uint8Array {
    this.#answered(503, conn, head);
    return errorResponse(503, `no worker could take ${head.path.slice(0, 200)} right now`, {
      keepAlive,
      headOnly: head.method === "HEAD",
      extraHeaders: [["retry-after", "1"], ["x-hotpotato-worker", this.#label]],
    });
  }

  /** Count and log a request the gateway answered itself. */
  #answered(status: number, conn: TlsConnection, head: RequestHead | undefined): void {
    this.stats.answered++;
    this.#metrics.answered(status);
    answeredLine.log(() => ({
      method: head?.method ?? "-",
      path: head?.path.slice(0, 200) ?? "-",
      status,
      worker: this.#label,
      conn: conn.info.connId,
      handoffs: conn.info.handoffs,
    }));
  }

  #handOff(conn: TlsConnection, worker: Worker, route: string): void {
    const msg = releaseForHandoff(conn, this.#sealer, conn.info.handoffs + 1);
    this.#transfer(worker, route, msg, conn.fd, 1);
  }

  /** Send a connection to a worker; it stays ours until the worker confirms.
   * If it refuses or dies first, the connection is placed again. */
  #transfer(
    worker: Worker,
    route: string,
    msg: Uint8Array,
    fd: number,
    attempt: number,
  ): void {
    const back = (fd: number, message: Uint8Array, reason: string) => {
      worker.held = Math.max(0, worker.held - 1);
      this.#placeAgain(worker, fd, message, reason, attempt);
    };
    // The worker decides what is its by the table: it must have the newest.
    this.#pushRoutes();
    if (!worker.channel.transfer(msg, fd, back)) {
      this.#placeAgain(worker, fd, msg, "its control channel is closed or full", attempt + 1);
      return;
    }
    worker.held++;
    this.stats.handoffs++;
    this.#metrics.handoff(worker.name, route);
  }

  /** A connection a worker did not take (`reason`) is ours again: another
   * worker of its route gets it, or it is answered 503 here (the connection
   * stays open). */
  #placeAgain(
    failed: Worker,
    fd: number,
    message: Uint8Array,
    reason: string,
    attempt: number,
  ): void {
    let h: Handoff;
    try {
      const msg = decodeMessage(message);
      if (msg.type !== MessageType.HANDOFF) throw new Error("not a HANDOFF");
      h = msg.body;
    } catch (e) {
      log.error("a connection that came back cannot be read: {error}", { error: String(e) });
      closeFd(fd);
      message.fill(0);
      return;
    }
    const head = requestHead(h.unread, this.config.maxBody);
    const hit = head && attempt < MAX_PLACEMENTS
      ? this.#router.pickWithRoute(head.path)
      : undefined;
    const to = hit && hit.worker !== failed ? hit : undefined;
    log.warning("conn {conn}: {worker} did not take it ({reason}); {next}", {
      conn: h.connId,
      worker: `${failed.name}/${failed.pid}`,
      reason,
      next: to ? `to ${to.worker.name}/${to.worker.pid}` : "answering 503 here",
    });
    if (to) {
      this.#transfer(to.worker, to.route, message, fd, attempt + 1);
      return;
    }
    this.#adopt(h, fd, true);
    message.fill(0);
  }

  // ---- workers

  #acceptWorker(c: Accepted): void {
    const cred = sameUser(c.fd, "control connection", log);
    if (!cred) return;
    const worker: Worker = {
      name: "",
      pid: cred.pid,
      held: 0,
      routes: [],
      nestedRoutes: false,
      peer: false,
      registered: false,
      channel: undefined as unknown as ControlChannel,
      lastSeen: Date.now(),
      state: "serving",
    };
    try {
      worker.channel = new ControlChannel(c.fd, {
        onMessage: (msg, fd, raw) => this.#onWorkerMessage(worker, msg, fd, raw),
        onBadMessage: (error) =>
          log.warning("dropped a bad message from pid {pid}: {error}", { pid: cred.pid, error }),
        onClose: () => {
          this.#onWorkerGone(worker);
          retryBlockedListeners();
        },
      });
    } catch (e) {
      log.error("cannot watch a control connection: {error}", { error: (e as Error).message });
      closeFd(c.fd);
      return;
    }
    this.#workers.add(worker);
  }

  #onWorkerGone(worker: Worker): void {
    this.#workers.delete(worker);
    if (!worker.registered) return;
    this.#router.remove(worker);
    this.#membersChanged();
    if (worker.stats) this.#metrics.workerLeft(worker.name, worker.stats);
    worker.stats = undefined;
    log.warning("worker {worker} disconnected; {routes} now has {left} worker(s)", {
      worker: `${worker.name}/${worker.pid}`,
      routes: worker.routes.join(" "),
      left: this.#router.functions().find((f) => f.name === worker.name)?.workers ?? 0,
    });
  }

  #onWorkerMessage(worker: Worker, msg: Message, fd: number, raw: Uint8Array): void {
    worker.lastSeen = Date.now();
    if (worker.state === "stuck") this.#revive(worker);
    if (msg.type === MessageType.REGISTER) {
      closeFd(fd);
      this.#register(worker, msg.body);
      return;
    }
    if (msg.type === MessageType.HANDOFF) {
      if (worker.registered) this.#returned(worker, msg.body, fd, raw);
      else {
        closeFd(fd);
        worker.channel.confirm(msg.body.transfer ?? 0, false); // not ours to take
      }
      return;
    }
    if (msg.type === MessageType.STATS && worker.registered) {
      closeFd(fd);
      worker.stats = msg.body;
      worker.held = msg.body.held;
      return;
    }
    if (msg.type === MessageType.MOVED && worker.registered) {
      closeFd(fd);
      this.#movedDirect(worker, msg.body);
      return;
    }
    if (msg.type === MessageType.DRAIN && worker.registered) {
      closeFd(fd);
      // It finishes what it holds; new connections go to the others.
      worker.state = "draining";
      this.#router.remove(worker);
      this.#membersChanged();
      log.info("worker {worker} is draining; no new connections for it", {
        worker: `${worker.name}/${worker.pid}`,
      });
      return;
    }
    closeFd(fd);
    log.warning("unexpected message type {type} from pid {pid}", {
      type: msg.type,
      pid: worker.pid,
    });
  }

  #register(
    worker: Worker,
    { name, routes, pid, restarted, nestedRoutes, peer }: Register,
  ): void {
    if (worker.registered) {
      log.warning("pid {pid} registered twice; ignored", { pid });
      return;
    }
    if (pid !== worker.pid) {
      log.warning("REGISTER claims pid {claimed} but the socket belongs to pid {pid}", {
        claimed: pid,
        pid: worker.pid,
      });
    }
    worker.name = name;
    worker.routes = routes;
    worker.nestedRoutes = nestedRoutes === true;
    worker.peer = peer === true && pid === worker.pid;
    try {
      this.#router.add(worker, routes, { nestedRoutes: worker.nestedRoutes });
    } catch (e) {
      const error = e instanceof RouteConflictError ? e.message : String(e);
      log.error("refused worker {name}/{pid}: {error}", { name, pid: worker.pid, error });
      worker.channel.send(encodeJson(MessageType.REGISTERED, { ok: false, error }));
      return;
    }
    worker.registered = true;
    this.#membersChanged();
    if (restarted) this.#metrics.restarted(name);
    worker.channel.send(
      encodeJson(MessageType.REGISTERED, {
        ok: true,
        gatewayPid: Deno.pid,
        key: bytesToBase64(this.#key),
      }),
    );
    // A pending push reaches it too (it is registered now); else the table as it is.
    if (!this.#routesPending) worker.channel.send(this.#routesMessage());
    log.info("worker {name}/{pid} registered for {routes}", {
      name,
      pid: worker.pid,
      routes: routes.join(" "),
    });
  }

  /** The router's table changed: push it to the workers once this turn of
   * the event loop is over (several changes make one push). */
  #routesChanged(): void {
    if (this.#routesPending) return;
    this.#routesPending = true;
    queueMicrotask(() => this.#pushRoutes());
  }

  /** Send the route table to every registered worker if it changed since
   * the last push. */
  #pushRoutes(): void {
    if (!this.#routesPending) return;
    this.#routesPending = false;
    const msg = this.#routesMessage();
    let sent = 0;
    for (const w of this.#workers) {
      if (!w.registered) continue;
      w.channel.send(msg.slice()); // send() zeroes what it sent: one copy each
      sent++;
    }
    log.debug("route table version {version} sent to {sent} worker(s)", {
      version: this.#routesVersion,
      sent,
    });
  }

  #routesMessage(): Uint8Array {
    const direct = this.config.handoff === "direct";
    const members: Record<string, number[]> = {};
    if (direct) {
      let n = 0;
      for (const w of this.#workers) {
        if (!w.registered || !w.peer || w.state !== "serving") continue;
        if (n++ >= Limits.maxMembers) break; // the rest are reached through the gateway
        (members[w.name] ??= []).push(w.pid);
      }
    }
    return encodeJson(MessageType.ROUTES, {
      version: ++this.#routesVersion,
      routes: this.#router.routes(),
      handoff: this.config.handoff,
      ...(direct ? { members } : {}),
    });
  }

  /** A worker joined, left, stopped answering or came back: in direct mode
   * the workers' member lists change. */
  #membersChanged(): void {
    if (this.config.handoff === "direct") this.#routesChanged();
  }

  /** A worker handed a connection back: its next request is not for it. */
  /** A worker handed a connection back: its next request is not for it.
   * Confirm it, then (once the confirmation has left) forward it unopened to
   * the route's worker, or answer it here. */
  #returned(from: Worker, h: Handoff, fd: number, raw: Uint8Array): void {
    this.stats.returned++;
    this.#metrics.returned(from.name);
    from.held = Math.max(0, from.held - 1);
    const transfer = h.transfer ?? 0;
    if (fd < 0) {
      log.warning("conn {conn}: HANDOFF from {worker} without a socket{why}; refused", {
        conn: h.connId,
        worker: `${from.name}/${from.pid}`,
        why: fd === FD_LOST ? " (the gateway is at its open-file limit)" : "",
      });
      from.channel.confirm(transfer, false);
      return;
    }
    const message = raw.slice(); // raw is zeroed when this returns
    // Decide where it goes before confirming: between the confirmation and
    // the kernel taking the forward, the connection lives in this process
    // alone (a SIGKILL then loses it), so that gap holds two sendmsg calls.
    const head = requestHead(h.unread, this.config.maxBody);
    const hit = head ? this.#router.pickWithRoute(head.path) : undefined;
    if (hit) setHandoffCount(message, h.handoffs + 1); // forwarded unopened
    from.channel.confirm(transfer, true, (mine) => {
      if (!mine) {
        closeFd(fd); // its sender took it back
        message.fill(0);
        return;
      }
      if (hit) this.#transfer(hit.worker, hit.route, message, fd, 1);
      else this.#adopt(decodeMessage(message).body as Handoff, fd, false); // h's bytes are raw's
      returnedLine.log(() => ({
        conn: h.connId,
        worker: `${from.name}/${from.pid}`,
        path: head?.path ?? "?",
        target: hit ? `${hit.worker.name}/${hit.worker.pid}` : "gateway",
      }));
      if (!hit) message.fill(0);
    }, true);
  }

  /** Route changes a worker made directly (`--handoff direct`), told after
   * the fact: logged and counted as if the gateway had forwarded them. */
  #movedDirect(from: Worker, { moves }: Moved): void {
    for (const m of moves) {
      this.stats.moved++;
      this.stats.returned++; // it left from's function, as a hand-back does
      this.#metrics.returned(from.name);
      this.#metrics.handoff(m.fn, m.route);
      movedLine.log(() => ({
        conn: m.conn,
        worker: `${from.name}/${from.pid}`,
        route: m.route,
        target: `${m.fn}/${m.to}`,
      }));
    }
  }

  /** Import a connection to answer it here (no worker for it, or none could
   * take it: `answerHere`). */
  #adopt(h: Handoff, fd: number, answerHere: boolean): void {
    const conn = adoptHandoff(h, fd, this.#sealer, this.#importCtx!);
    if (typeof conn === "string") {
      log.warning("conn {conn}: {error}; connection dropped", { conn: h.connId, error: conn });
      return;
    }
    this.#metrics.adopted(Math.max(0, nowMicros() - h.sentAt) / 1e6);
    this.#serve(conn, answerHere)
      .catch((e) => {
        log.error("conn {conn}: {error}", { conn: h.connId, error: String(e) });
        conn.close(false);
      })
      .finally(retryBlockedListeners);
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
    const until = Date.now() + deadlineMs;
    while (this.#held.size > 0 && Date.now() < until) {
      for (const conn of this.#held) conn.interruptIdle();
      await new Promise((ok) => setTimeout(ok, 20));
    }
    const left = this.#held.size;
    for (const conn of this.#held) conn.close();
    log.info("drained ({left} connection(s) cut at the deadline)", { left });
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
    const workers: { name: string; stats: Stats }[] = [];
    for (const w of this.#workers) {
      if (w.registered && w.stats) workers.push({ name: w.name, stats: w.stats });
    }
    return this.#metrics.render({
      accepted: this.stats.accepted,
      handshakeFailures: this.stats.handshakeFailures,
      held: this.#held.size,
      draining: this.#draining,
      functions: this.#router.functions(),
      workers,
    });
  }

  #adminAnswer(head: RequestHead): AdminResponse {
    if (head.method !== "GET" && head.method !== "HEAD") {
      return { status: 405, contentType: "application/json", body: '{"error":"GET only"}\n' };
    }
    if (head.path === "/metrics") {
      return {
        status: 200,
        contentType: "text/plain; version=0.0.4; charset=utf-8",
        body: this.metrics(),
      };
    }
    if (head.path === "/healthz") {
      // A gateway whose control socket is gone from its path keeps serving
      // what it holds, but no worker can (re)register: not healthy.
      const lost = this.#checkControlSocket();
      const status = this.#draining ? "draining" : lost ? "control socket lost" : "ok";
      const body = JSON.stringify({
        status,
        ...(lost ? { error: lost } : {}),
        functions: this.#router.functions(),
      }) + "\n";
      return { status: status === "ok" ? 200 : 503, contentType: "application/json", body };
    }
    return { status: 404, contentType: "application/json", body: '{"error":"not found"}\n' };
  }

  /** Take workers that have been silent past --worker-timeout out of the
   * router: their event loop is stuck (a synchronous endless loop, say), so
   * a connection handed to them would wait forever. Their routes answer 503
   * (or go to the function's other workers) until they speak again. Also
   * forget functions vacant past --vacant-grace, so the workers' tables
   * drop them even when no request asks for their routes. */
  #checkWorkers(): void {
    this.#checkControlSocket();
    this.#router.sweep(); // forgotten functions leave the workers' tables too
    const limit = Date.now() - this.config.workerTimeoutMs;
    for (const w of this.#workers) {
      if (!w.registered || w.state !== "serving" || w.lastSeen >= limit) continue;
      w.state = "stuck";
      this.#router.remove(w);
      this.#membersChanged();
      log.warning(
        "worker {worker} silent for {ms} ms; no new connections for it until it answers",
        {
          worker: `${w.name}/${w.pid}`,
          ms: Date.now() - w.lastSeen,
        },
      );
    }
  }

  #revive(worker: Worker): void {
    try {
      this.#router.add(worker, worker.routes, { nestedRoutes: worker.nestedRoutes });
      this.#membersChanged();
    } catch (e) {
      // Another function took its routes while it was silent.
      log.warning("worker {worker} answers again but cannot return: {error}", {
        worker: `${worker.name}/${worker.pid}`,
        error: (e as Error).message,
      });
      worker.channel.close();
      return;
    }
    worker.state = "serving";
    log.info("worker {worker} answers again; it gets new connections", {
      worker: `${worker.name}/${worker.pid}`,
    });
  }

  /** Whether the control socket's path still names our socket (one lstat;
   * asked by /healthz and the 1 s watchdog): "" when it does, else why not.
   * A change is logged once. */
  #checkControlSocket(): string {
    if (!this.#control) return "";
    const path = this.config.control;
    let why = "";
    try {
      if (fileIdentity(path) !== this.#controlId) why = "now names another file";
    } catch (e) {
      why = !(e instanceof SysError)
        ? String(e)
        : e.errno === ENOENT
        ? "was removed"
        : `cannot be checked: ${e.reason}`;
    }
    if (why && why !== this.#controlLost) {
      log.error("control socket {path} {why}: workers cannot register with this gateway", {
        path,
        why,
      });
    } else if (!why && this.#controlLost) {
      log.info("control socket {path} is this gateway's again", { path });
    }
    this.#controlLost = why;
    return why && `control socket ${path} ${why}: workers cannot register with this gateway`;
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
    clearInterval(this.#watchdog);
    this.#clients?.close();
    this.#clients = undefined;
    if (this.#control) {
      this.#control.close();
      this.#control = undefined;
      if (this.#controlId && this.#ownsControlPath()) removeFile(this.config.control);
    }
    this.#admin?.stop();
    for (const w of [...this.#workers]) w.channel.close();
  }

  #ownsControlPath(): boolean {
    try {
      return fileIdentity(this.config.control) === this.#controlId;
    } catch {
      return false;
    }
  }
}
