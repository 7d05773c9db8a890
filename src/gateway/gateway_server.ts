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

import { localPort, tcpListen } from "../../ffi/shim.ts";
import { TlsContext } from "../../ffi/wolfssl.ts";
import type { GatewayConfig } from "../operations/config.ts";
import { logger } from "../operations/log.ts";
import { raiseOpenFileLimit } from "../operations/lifecycle.ts";
import { AdminServer } from "./admin_server.ts";
import { adminAnswer } from "./admin_routes.ts";
import { ControlSocket } from "./control_socket.ts";
import { Forwarder } from "./forwarder.ts";
import { GatewayMetrics, type GatewayStats } from "./gateway_metrics.ts";
import { GatewayPolicy } from "./gateway_policy.ts";
import { Handshaker } from "./handshaker.ts";
import { Workers } from "./workers.ts";
import { hold, type HoldOptions, holdOptions, requestLogLine } from "../connection/holder.ts";
import { Listener, retryBlockedListeners } from "../connection/listener.ts";
import type { TlsConnection } from "../connection/tls_connection.ts";
import { Sealer } from "../handoff/seal.ts";

const log = logger("gateway");
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
  #key = Sealer.newKey();
  #sealer = new Sealer(this.#key);
  #metrics = new GatewayMetrics();
  #workers: Workers;
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
    this.#workers = new Workers(config, this.#key, this.#metrics, {
      returned: (from, h, fd, raw) => this.#forwarder!.returned(from, h, fd, raw),
      moved: (from, moved) => this.#forwarder!.moved(from, moved),
    });
    this.#holdOptions = holdOptions(config, requestLog, `gateway/${Deno.pid}`);
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
    const c = this.config;
    raiseOpenFileLimit(log);
    const context = TlsContext.server({
      certFile: c.cert,
      keyFile: c.key,
      resumption: c.resumption,
    });
    this.#forwarder = new Forwarder({
      workers: this.#workers,
      sealer: this.#sealer,
      importContext: TlsContext.forImport(),
      maxBody: c.maxBody,
      metrics: this.#metrics,
      serve: (conn, unplaced) => {
        this.#serve(conn, unplaced).finally(retryBlockedListeners);
      },
    });
    this.#policy = new GatewayPolicy({
      router: this.#workers.router,
      forwarder: this.#forwarder,
      metrics: this.#metrics,
      label: this.#holdOptions.label,
      draining: () => this.#draining,
    });
    const handshaker = new Handshaker({
      context,
      gatewayId: this.gatewayId,
      handshakeTimeoutMs: c.handshakeTimeoutMs,
      metrics: this.#metrics,
      ready: (conn) => this.#serve(conn, false),
    });
    try {
      this.#listen(handshaker);
    } catch (e) {
      this.stop();
      throw e;
    }
    this.#watchdog = setInterval(() => {
      this.#controlSocket?.check();
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

  /** The control socket first: a gateway that finds another one there
   * stops before it has taken anything else. */
  #listen(handshaker: Handshaker): void {
    const c = this.config;
    this.#controlSocket = ControlSocket.listen(c.control);
    this.#control = new Listener(this.#controlSocket.fd, "control", (w) => this.#workers.accept(w));
    const listenFd = tcpListen(c.host, c.port);
    this.#clients = new Listener(listenFd, "clients", (conn) => handshaker.accept(conn));
    this.#port = localPort(listenFd);
    if (c.adminPort >= 0) {
      this.#admin = new AdminServer(c.adminHost, c.adminPort, (head) =>
        adminAnswer(head, {
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
          promote: (name, generation, handover) =>
            this.#workers.promote(name, generation, handover),
          reloaded: (name, ok, seconds) => {
            this.#metrics.reloads.labels(name, ok ? "ok" : "failed").inc();
            if (ok) this.#metrics.reloadSeconds.labels(name).set(seconds);
          },
        }));
      this.#adminPort = this.#admin.start();
    }
  }

  /** Hold a connection until its next request can go to a worker, answering
   * here what no worker can. `unplaced`: its next request gets a 503 here (a
   * worker could not take it just now). */
  async #serve(conn: TlsConnection, unplaced: boolean): Promise<void> {
    this.#held.add(conn);
    try {
      await hold(conn, this.#holdOptions, this.#policy!, unplaced);
    } catch (e) {
      log.error("conn {conn}: {error}", { conn: conn.info.connId, error: String(e) });
      conn.close(false);
    } finally {
      this.#held.delete(conn);
    }
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
    clearInterval(this.#watchdog);
    this.#clients?.close();
    this.#clients = undefined;
    this.#control?.close();
    this.#control = undefined;
    this.#controlSocket?.close();
    this.#controlSocket = undefined;
    this.#admin?.stop();
    this.#workers.close();
  }
}
