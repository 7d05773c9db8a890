/**
 * The worker side: a process that serves one function. It registers its
 * name and routes with the gateway over the control channel, receives live
 * connections, imports their TLS state, and answers their requests with the
 * function's fetch-style handler for as long as they ask for its routes. A
 * request for another route sends the connection back to the gateway, with
 * the request's bytes, at a TLS record boundary.
 *
 * @module
 */

import {
  closeFd,
  ECONNREFUSED,
  ENOENT,
  peerCredentials,
  processUid,
  raiseFileLimit,
  SysError,
  unixConnect,
} from "../ffi/shim.ts";
import { TlsContext } from "../ffi/wolfssl.ts";
import type { WorkerConfig } from "./config.ts";
import { ControlChannel } from "./control_channel.ts";
import { errorResponse, type RequestHead } from "./http.ts";
import { logger, LogLine } from "./log.ts";
import { adoptHandoff, nowMicros, releaseForHandoff } from "./handoff.ts";
import {
  encodeJson,
  type Handoff,
  HANDOFF_LATENCY_BUCKETS,
  type Message,
  MessageType,
  type Stats,
} from "./protocol.ts";
import { Histogram } from "./metrics.ts";
import { type Handler, Responder } from "./responder.ts";
import { type HolderOptions, nextRequest } from "./request_reader.ts";
import { Sealer } from "./seal.ts";
import type { TlsConnection } from "./tls_connection.ts";

export { type Handler, HttpError, type RequestInfo } from "./responder.ts";

/** What a function announces to the gateway. */
export interface FunctionOptions {
  /** Function name: 1-64 letters, digits, ".", "_" or "-". */
  name: string;
  /** Paths it serves. "/sum" also covers "/sum/anything". */
  routes: string[];
  /** Methods it accepts (default: all); others get 405 with an Allow header. */
  methods?: string[];
  /** Whether this process replaces one that died (the launcher says so). */
  restarted?: boolean;
}

const log = logger("worker");
/** One line per request (LogLine: cheap enough to leave on). */
const served = new LogLine(
  log,
  "info",
  "{method} {path} {status} {ms}ms worker {worker} conn {conn} handoffs {handoffs}",
);

const RECONNECT_MIN_MS = 50;
const RECONNECT_MAX_MS = 2000;
/** While the gateway stays unreachable, at most one warning this often. */
const CONNECT_WARNING_EVERY_MS = 15_000;
const STATS_INTERVAL_MS = 1000;

function base64ToBytes(s: string): Uint8Array {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

/**
 * A running function process.
 *
 * @example
 * ```ts
 * import { FunctionServer } from "./function_server.ts";
 * import { workerConfig } from "./config.ts";
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
  #routes: string[];
  #draining = false;
  #requests: Record<string, number> = {};
  #latency = new Histogram("handoff", "", HANDOFF_LATENCY_BUCKETS);
  #statsTimer: ReturnType<typeof setInterval> | undefined;

  /** Prepare a function server; `start()` connects it.
   *
   * @example
   * ```ts
   * import { FunctionServer } from "./function_server.ts";
   * import { workerConfig } from "./config.ts";
   * new FunctionServer({ name: "x", routes: ["/x"] }, () => new Response("x"), workerConfig([]).config);
   * ```
   */
  constructor(options: FunctionOptions, handler: Handler, config: WorkerConfig) {
    this.options = options;
    this.#routes = [...options.routes];
    this.#config = config;
    this.#label = `${options.name}/${Deno.pid}`;
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
    try {
      const { limit, before } = raiseFileLimit();
      log.debug("open-file limit {limit}{raised}", {
        limit,
        raised: before < limit ? ` (soft limit raised from ${before})` : "",
      });
    } catch (e) {
      log.warning("cannot raise the open-file limit: {error}", { error: (e as Error).message });
    }
    this.#ctx ??= TlsContext.forImport();
    this.#statsTimer = setInterval(() => this.#reportStats(), STATS_INTERVAL_MS);
    this.#connect();
  }

  /** Send the counters to the gateway. Every second, changed or not: the
   * reports double as the heartbeat by which the gateway tells a live worker
   * from a stuck one. */
  #reportStats(): void {
    if (!this.#registered || !this.#channel) return;
    this.#channel.send(encodeJson(MessageType.STATS, this.stats()));
  }

  /** This worker's counters since it started.
   *
   * @example
   * ```ts
   * import type { FunctionServer } from "./function_server.ts";
   * declare const server: FunctionServer;
   * console.log(server.stats().requests);
   * ```
   */
  stats(): Stats {
    return {
      held: this.#connections.size,
      requests: { ...this.#requests },
      handoffLatency: this.#latency.snapshot(),
    };
  }

  #count(route: string, status: number): void {
    const k = `${route} ${status}`;
    this.#requests[k] = (this.#requests[k] ?? 0) + 1;
  }

  #connect(): void {
    this.#reconnectTimer = undefined;
    if (this.#stopped) return;
    const control = this.#config.control;
    let fd: number;
    try {
      fd = unixConnect(control);
    } catch (e) {
      const none = e instanceof SysError && (e.errno === ENOENT || e.errno === ECONNREFUSED);
      this.#connectFailed(
        none ? `${e.reason} (is the gateway running?)` : (e as Error).message,
      );
      return;
    }
    let uid: number;
    try {
      uid = peerCredentials(fd).uid;
    } catch (e) {
      closeFd(fd);
      this.#connectFailed(`cannot check its owner: ${(e as Error).message}`);
      return;
    }
    if (uid !== processUid()) {
      closeFd(fd);
      this.#connectFailed(`it belongs to uid ${uid}, not us: refused`);
      return;
    }
    this.#channel = new ControlChannel(fd, {
      onMessage: (msg, passed) => this.#onMessage(msg, passed),
      onBadMessage: (error) => log.warning("dropped a bad control message: {error}", { error }),
      onClose: () => this.#onGatewayGone(),
    });
    this.#channel.send(
      encodeJson(MessageType.REGISTER, {
        name: this.options.name,
        routes: this.#routes,
        pid: Deno.pid,
        restarted: this.options.restarted === true,
      }),
    );
  }

  /** An attempt to reach the gateway failed: warn on the first failure and
   * when the reason changes, then at most every CONNECT_WARNING_EVERY_MS with
   * the count, not at every attempt; try again after the backoff. */
  #connectFailed(error: string): void {
    const now = Date.now();
    const first = this.#connectFailures++ === 0;
    if (first) this.#failingSince = now;
    if (
      first || error !== this.#lastFailure || now - this.#lastWarning >= CONNECT_WARNING_EVERY_MS
    ) {
      this.#lastWarning = now;
      const fields = {
        control: this.#config.control,
        error,
        attempts: this.#connectFailures,
        s: Math.round((now - this.#failingSince) / 1000),
        max: RECONNECT_MAX_MS / 1000,
      };
      if (first) {
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

  #onGatewayGone(): void {
    const was = this.#registered;
    this.#registered = false;
    this.#channel = undefined;
    if (was) log.warning("gateway went away; reconnecting");
    if (!was && !this.#stopped) {
      // Connected, but closed before it answered REGISTER.
      this.#connectFailed("the gateway closed the control connection before registering us");
      return;
    }
    this.#scheduleReconnect();
  }

  #onMessage(msg: Message, fd: number): void {
    if (msg.type === MessageType.REGISTERED) {
      closeFd(fd);
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
      this.#sealer?.destroy();
      const key = base64ToBytes(msg.body.key);
      this.#sealer = new Sealer(key);
      key.fill(0);
      this.#registered = true;
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
    if (msg.type === MessageType.HANDOFF) {
      this.#adopt(msg.body, fd);
      return;
    }
    closeFd(fd);
    log.warning("unexpected control message type {type}", { type: msg.type });
  }

  #adopt(h: Handoff, fd: number): void {
    const conn = this.#sealer
      ? adoptHandoff(h, fd, this.#sealer, this.#ctx!)
      : (closeFd(fd), "not registered yet");
    if (typeof conn === "string") {
      log.warning("conn {conn}: {error}; connection dropped", { conn: h.connId, error: conn });
      return;
    }
    this.#latency.observe(Math.max(0, nowMicros() - h.sentAt) / 1e6);
    this.#connections.add(conn);
    this.#serve(conn)
      .catch((e) => {
        log.error("conn {conn}: {error}", { conn: h.connId, error: String(e) });
        conn.close(false);
      })
      .finally(() => this.#connections.delete(conn));
  }

  /** The route of ours that `path` falls under, or undefined. */
  #routeOf(path: string): string | undefined {
    for (const route of this.#routes) {
      if (path === route || (path.startsWith(route) && path[route.length] === "/")) return route;
    }
    return undefined;
  }

  async #serve(conn: TlsConnection): Promise<void> {
    const cfg = this.#config;
    const opts: HolderOptions = {
      maxBody: cfg.maxBody,
      idleTimeoutMs: cfg.idleTimeoutMs,
      headerTimeoutMs: cfg.headerTimeoutMs,
      bodyTimeoutMs: cfg.bodyTimeoutMs,
      writeTimeoutMs: cfg.writeTimeoutMs,
      wantBody: (head) => this.#routeOf(head.path) !== undefined,
      draining: () => this.#draining,
    };
    for (;;) {
      const r = await nextRequest(conn, opts);
      if (!r) return;
      const route = this.#routeOf(r.head.path);
      if (r.kind === "head" || route === undefined) {
        this.#handBack(conn, r.head);
        return;
      }
      const started = performance.now();
      const methods = this.options.methods;
      const answer = methods && !methods.includes(r.head.method)
        ? this.#responder.fail(conn, r.head, 405, `method ${r.head.method} not allowed`, [
          ["allow", methods.join(", ")],
        ])
        : this.#responder.respond(conn, r.head, r.body);
      const { status, bytes, keepAlive } = answer instanceof Promise ? await answer : answer;
      conn.consume(r.length);
      const written = conn.write(bytes, Date.now() + cfg.writeTimeoutMs);
      const ok = typeof written === "boolean" ? written : await written;
      this.#count(route, status);
      served.log(() => ({
        method: r.head.method,
        path: r.head.path,
        route,
        status,
        ms: Math.round((performance.now() - started) * 100) / 100,
        worker: this.#label,
        conn: conn.info.connId,
        handoffs: conn.info.handoffs,
      }));
      if (!ok) {
        conn.close(false);
        return;
      }
      if (!keepAlive) {
        conn.close();
        return;
      }
    }
  }

  /** Keep the connection after this response? Decided when the response is
   * serialized, so a drain that began during the handler is honoured. */
  #keepAlive(head: RequestHead): boolean {
    return head.keepAlive && !this.#draining && !this.#stopped;
  }

  #handBack(conn: TlsConnection, head: RequestHead): void {
    const channel = this.#channel;
    const sealer = this.#sealer;
    if (!channel || !this.#registered || !sealer || !conn.exportable) {
      void this.#refuse(conn, "gateway unavailable");
      return;
    }
    let msg: Uint8Array;
    const carried = { unread: 0, readAhead: 0 };
    try {
      msg = releaseForHandoff(conn, sealer, conn.info.handoffs, carried);
    } catch (e) {
      log.error("conn {conn}: cannot export: {error}", {
        conn: conn.info.connId,
        error: (e as Error).message,
      });
      conn.close(false);
      return;
    }
    const i = conn.info;
    log.debug(
      "conn {conn}: {path} is not ours; back to the gateway with {unread} unread bytes and {readAhead} read ahead",
      () => ({ conn: i.connId, path: head.path, ...carried }),
    );
    if (!channel.send(msg, conn.fd)) {
      log.warning("conn {conn}: gateway channel full or gone; connection dropped", {
        conn: i.connId,
      });
    }
  }

  async #refuse(conn: TlsConnection, why: string): Promise<void> {
    const bytes = errorResponse(503, why, {
      keepAlive: false,
      extraHeaders: [["retry-after", "1"], ["x-hotpotato-worker", this.#label]],
    });
    await conn.write(bytes, Date.now() + this.#config.writeTimeoutMs);
    conn.close();
  }

  /** Drain: tell the gateway to send no more connections, close idle ones
   * cleanly, answer requests in flight with `Connection: close`, and resolve
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
  }
}
