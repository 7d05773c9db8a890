/**
 * The gateway's admin endpoint: plain HTTP on a separate port, bound to
 * loopback by default, for `/metrics` (Prometheus) and `/healthz`. One request
 * per connection, a 16 KiB head limit and a 5 s deadline for the whole
 * exchange (a large response is sent as the socket drains); never on the
 * public TLS port.
 *
 * @module
 */

import { closeFd, EAGAIN, localPort, receivePlain, sendPlain, tcpListen } from "../../ffi/shim.ts";
import { EventLoop } from "../connection/event_loop.ts";
import { Listener, retryBlockedListeners } from "../connection/listener.ts";
import { errorResponse, parseRequest, type RequestHead, serializeResponse } from "../http/http.ts";

/** What the admin handler answers. */
export interface AdminResponse {
  /** HTTP status. */
  status: number;
  /** Content-Type header. */
  contentType: string;
  /** Body text. */
  body: string;
  /** More headers (the proof of an answer to the launcher). */
  headers?: [string, string][];
}

const DEADLINE_MS = 5000;
const MAX_HEAD = 16384;
/** Admin connections open at once; more are closed as they come (a local
 * process cannot hold every fd of the gateway through the admin port). */
export const MAX_ADMIN_CONNECTIONS = 32;
const enc = new TextEncoder();
const SERVER_ERROR: AdminResponse = {
  status: 500,
  contentType: "application/json",
  body: '{"error":"internal error"}\n',
};

/**
 * A minimal plain-HTTP server on the process's event loop.
 *
 * @example
 * ```ts
 * import { AdminServer } from "./admin_server.ts";
 * const admin = new AdminServer("127.0.0.1", 0, () => ({
 *   status: 200, contentType: "text/plain", body: "ok\n",
 * }));
 * console.log(admin.start());
 * ```
 */
export class AdminServer {
  #host: string;
  #port: number;
  #handler: (head: RequestHead) => AdminResponse | Promise<AdminResponse>;
  #listener: Listener | undefined;
  /** Each open admin connection's fd, and how to finish it. */
  #open = new Map<number, () => void>();

  /** Prepare a server on host:port answering with `handler`.
   *
   * @example
   * ```ts
   * import { AdminServer } from "./admin_server.ts";
   * new AdminServer("127.0.0.1", 8081, () => ({ status: 204, contentType: "", body: "" }));
   * ```
   */
  constructor(
    host: string,
    port: number,
    handler: (head: RequestHead) => AdminResponse | Promise<AdminResponse>,
  ) {
    this.#host = host;
    this.#port = port;
    this.#handler = handler;
  }

  /** Listen (on `fd` when given: a listening socket passed on by the
   * gateway this one takes over from); returns the port.
   *
   * @example
   * ```ts
   * import type { AdminServer } from "./admin_server.ts";
   * declare const admin: AdminServer;
   * const port = admin.start();
   * ```
   */
  start(fd?: number): number {
    fd ??= tcpListen(this.#host, this.#port, 64);
    this.#listener = new Listener(fd, "admin", (c) => this.#serve(c.fd));
    return localPort(fd);
  }

  /** Stop accepting admin connections, keeping the socket (a gateway
   * taking over from this one accepts on it now).
   *
   * @example
   * ```ts
   * import type { AdminServer } from "./admin_server.ts";
   * declare const admin: AdminServer;
   * admin.pause();
   * admin.resume();
   * ```
   */
  pause(): void {
    this.#listener?.pause();
  }

  /** Accept admin connections again after {@linkcode AdminServer.pause}.
   *
   * @example
   * ```ts
   * import type { AdminServer } from "./admin_server.ts";
   * declare const admin: AdminServer;
   * admin.resume();
   * ```
   */
  resume(): void {
    this.#listener?.resume();
  }

  /** The listening socket's fd (-1 before start and after stop).
   *
   * @example
   * ```ts
   * import type { AdminServer } from "./admin_server.ts";
   * declare const admin: AdminServer;
   * console.log(admin.fd);
   * ```
   */
  get fd(): number {
    return this.#listener?.fd ?? -1;
  }

  #serve(fd: number): void {
    let buf = new Uint8Array(0);
    let out: Uint8Array | undefined; // the response, while it is being sent
    const chunk = new Uint8Array(4096);
    const loop = EventLoop.instance();
    let closed = false;
    const finish = () => {
      if (closed) return;
      closed = true;
      if (!this.#open.delete(fd)) return;
      clearTimeout(timer);
      loop.remove(fd);
      closeFd(fd);
      retryBlockedListeners();
    };
    /** Send what is left of `out`; finish when all is sent (or on error). */
    const flush = () => {
      while (out && out.length > 0) {
        const n = sendPlain(fd, out);
        if (n === -EAGAIN) return; // the next writable edge continues
        if (n < 0) return finish();
        out = out.subarray(n);
      }
      finish();
    };
    if (this.#open.size >= MAX_ADMIN_CONNECTIONS) {
      closeFd(fd);
      return;
    }
    const timer = setTimeout(finish, DEADLINE_MS);
    this.#open.set(fd, finish);
    let waiting = false;
    loop.add(fd, () => {
      if (out) return flush();
      if (waiting) {
        const n = receivePlain(fd, chunk);
        if (n !== -EAGAIN) finish(); // hung up (or more than one request): closed
        return;
      }
      for (;;) {
        const n = receivePlain(fd, chunk);
        if (n === -EAGAIN) return;
        if (n <= 0) return finish();
        const next = new Uint8Array(buf.length + n);
        next.set(buf);
        next.set(chunk.subarray(0, n), buf.length);
        buf = next;
        const r = parseRequest(buf, { maxHeadBytes: MAX_HEAD, maxBodyBytes: 0 });
        if (r.kind === "incomplete") continue;
        if (r.kind === "error") {
          out = errorResponse(r.status, r.message, { keepAlive: false });
          return flush();
        }
        const head = r.head;
        const send = (res: AdminResponse) => {
          // Timed out, hung up or stopped meanwhile (its fd number may be
          // another connection's by now: never touched again).
          if (closed) return;
          out = serializeResponse({
            status: res.status,
            headers: [["content-type", res.contentType], ...(res.headers ?? [])],
            body: enc.encode(res.body),
          }, { keepAlive: false, headOnly: head.method === "HEAD" });
          flush();
        };
        const res = this.#handler(head);
        if (!(res instanceof Promise)) return send(res);
        // A long poll (the launcher's demand): answered later. Meanwhile a
        // readable edge means the client hung up, or sends what it must not.
        waiting = true;
        res.then(send, () => send(SERVER_ERROR));
        return;
      }
    });
  }

  /** Stop listening and close open admin connections.
   *
   * @example
   * ```ts
   * import type { AdminServer } from "./admin_server.ts";
   * declare const admin: AdminServer;
   * admin.stop();
   * ```
   */
  stop(): void {
    if (!this.#listener) return;
    this.#listener.close();
    this.#listener = undefined;
    for (const finish of [...this.#open.values()]) finish();
  }
}
