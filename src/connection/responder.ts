/**
 * Answering one request with a function's handler: the web `Request` built
 * from the parsed head, the handler run (bounded by the handler timeout when
 * it is asynchronous), errors turned into JSON answers, and the `Response`
 * serialized with hot potato's headers (a body still being produced is
 * written after its head as it comes: src/connection/body_writer.ts). Shared by the worker
 * (src/worker/function_server.ts) and the benchmark's single-process bound.
 *
 * The common case (a synchronous handler returning a body made by `json()` or `bytes()`)
 * runs without a promise or a stream.
 *
 * @module
 */

import { errorResponse, type RequestHead, serializeResponse } from "../http/http.ts";
import { HttpError } from "../http/http_error.ts";
import { logger } from "../operations/log.ts";
import { knownBody } from "../http/response_body.ts";
import type { ConnectionInfo } from "./tls_connection.ts";
import { type PendingUpgrade, type Upgrade, upgradeOf } from "./upgrade.ts";

/** Thrown by a handler to answer with a status (src/http/http_error.ts). */
export { HttpError };

/** What a handler learns about the request besides the `Request` itself:
 * `remoteAddr` as `Deno.serve` gives it, and hot potato's own fields. */
export interface RequestInfo {
  /** The client's address, as in `Deno.ServeHandlerInfo`. */
  remoteAddr: { transport: "tcp"; hostname: string; port: number };
  /** The connection's id (given by the gateway). */
  connId: number;
  /** How many times the connection has moved between processes. */
  handoffs: number;
  /** "TLSv1.3" or "TLSv1.2". */
  protocol: string;
}

/** "ip:port" or "[ipv6]:port" as a `Deno.NetAddr`.
 *
 * @example
 * ```ts
 * import { netAddr } from "./responder.ts";
 * netAddr("[::1]:8443"); // { transport: "tcp", hostname: "::1", port: 8443 }
 * ```
 */
export function netAddr(peer: string): { transport: "tcp"; hostname: string; port: number } {
  const i = peer.lastIndexOf(":");
  let hostname = i < 0 ? peer : peer.slice(0, i);
  if (hostname.startsWith("[") && hostname.endsWith("]")) hostname = hostname.slice(1, -1);
  return { transport: "tcp", hostname, port: i < 0 ? 0 : Number(peer.slice(i + 1)) || 0 };
}

/** A function: web `Request` in, `Response` out, like a `Deno.serve` handler. */
export type Handler = (req: Request, info: RequestInfo) => Response | Promise<Response>;

/** A response body written after its head as the handler produces it. */
export interface StreamedBody {
  /** The handler's body. */
  stream: ReadableStream<Uint8Array>;
  /** How its end is marked: its declared length, chunked, or the
   * connection's close (HTTP/1.0). */
  framing: number | "chunked" | "close";
  /** The client went away or the body failed: abort the request's signal. */
  abort(reason: string): void;
}

/** Resolves after a few microtask turns: a stream whose chunks are all
 * queued already (a static body) answers its reads before it. */
function turns(): Promise<typeof PENDING> {
  return Promise.resolve().then(() => undefined).then(() => undefined).then(() => PENDING);
}
const PENDING = Symbol("pending");

/**
 * The body whole when the stream gives all of it at once (one chunk, then
 * its end, both already queued: how a `Response` built from bytes or a
 * string reads), else a stream of the same bytes (the reads already made
 * come first). Never waits for the producer.
 *
 * @example
 * ```ts
 * import { readyBody } from "./responder.ts";
 * const ready = await readyBody(new Response("hello").body!);
 * console.log(ready.whole?.length); // 5
 * ```
 */
export async function readyBody(
  stream: ReadableStream<Uint8Array>,
): Promise<{ whole?: Uint8Array; stream: ReadableStream<Uint8Array> }> {
  const reader = stream.getReader();
  const taken: Promise<ReadableStreamReadResult<Uint8Array>>[] = [];
  const first = reader.read();
  taken.push(first);
  const r1 = await Promise.race([first, turns()]);
  if (r1 !== PENDING && r1.done) {
    reader.releaseLock();
    return { whole: EMPTY, stream };
  }
  if (r1 !== PENDING && r1.value instanceof Uint8Array && r1.value.length <= MAX_RESPONSE_BODY) {
    const second = reader.read();
    taken.push(second);
    const r2 = await Promise.race([second, turns()]);
    if (r2 !== PENDING && r2.done) {
      reader.releaseLock();
      return { whole: r1.value, stream };
    }
  }
  // Still being produced: the reads made so far, then the rest.
  return {
    stream: new ReadableStream<Uint8Array>({
      async pull(c) {
        const r = await (taken.shift() ?? reader.read());
        if (r.done) c.close();
        else c.enqueue(r.value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 }),
  };
}

/**
 * The `Request` a handler gets. Its `signal` aborts when the client goes
 * away during a streamed response (or the response body fails). The signal
 * is made only when a handler asks for it: giving `new Request()` a signal
 * costs about 4 µs per request, as much again as the rest of building it.
 * (A copy made with `new Request(req)` or `req.clone()` has a signal of its
 * own that does not follow this one.)
 */
class HandlerRequest extends Request {
  #aborter: AbortController | undefined;
  /** Why it was aborted, before anyone asked for the signal. */
  #reason: Error | undefined;

  override get signal(): AbortSignal {
    if (!this.#aborter) {
      this.#aborter = new AbortController();
      if (this.#reason) this.#aborter.abort(this.#reason);
    }
    return this.#aborter.signal;
  }

  /** Abort the signal (now, or when it is first asked for). */
  abort(reason: Error): void {
    this.#reason ??= reason;
    this.#aborter?.abort(reason);
  }
}

/** A valid Content-Length value, or undefined (then the body is chunked). */
function declaredLength(v: string | null): number | undefined {
  if (v === null || !/^[0-9]{1,15}$/.test(v)) return undefined;
  return Number(v);
}

/** A serialized response and what it decided. */
export interface Answer {
  /** HTTP status. */
  status: number;
  /** The whole response, ready to write; its head alone when `body` is set. */
  bytes: Uint8Array;
  /** Whether the connection stays open after it. */
  keepAlive: boolean;
  /** A body to write after `bytes`, as it is produced. */
  body?: StreamedBody;
  /** A large body, written after `bytes` (its head) as it is: not copied
   * into one buffer with the head. */
  tail?: Uint8Array;
  /** `bytes` is a 101: this runs the new protocol on the connection after
   * it (src/connection/upgrade.ts); the connection never moves then. */
  upgrade?: Upgrade;
}

/** How a {@linkcode Responder} answers. */
export interface ResponderOptions {
  /** Function name, for logs. */
  name: string;
  /** "name/pid", sent as `x-hotpotato-worker`. */
  label: string;
  /** Longest an asynchronous handler may take, ms (then 504). */
  handlerTimeoutMs: number;
  /** Keep the connection after answering this request? */
  keepAlive(head: RequestHead): boolean;
}

/** What a Responder reads of the connection (a TlsConnection has it). */
export interface Peer {
  /** The connection's identity. */
  readonly info: ConnectionInfo;
  /** "TLSv1.3" or "TLSv1.2". */
  readonly protocol: string;
}

const log = logger("worker");
const EMPTY = new Uint8Array(0);
const MAX_RESPONSE_BODY = 64 * 1024 * 1024;
/** Bodies larger than this are written after their head, not copied into
 * one buffer with it (the head then takes a TLS record of its own). */
const SEPARATE_BODY_OVER = 16 * 1024;
const ENCODER = new TextEncoder();

/**
 * Runs one function's handler for requests and serializes its answers.
 *
 * @example
 * ```ts
 * import { type Peer, Responder } from "./responder.ts";
 * import type { RequestHead } from "../http/http.ts";
 * declare const conn: Peer, head: RequestHead;
 * const responder = new Responder(() => new Response("hi\n"), {
 *   name: "hello", label: "hello/1", handlerTimeoutMs: 30_000,
 *   keepAlive: (h) => h.keepAlive,
 * });
 * const answer = await responder.respond(conn, head, new Uint8Array(0));
 * ```
 */
export class Responder {
  #handler: Handler;
  #opts: ResponderOptions;

  /** Answer with `handler`.
   *
   * @example
   * ```ts
   * import { Responder } from "./responder.ts";
   * new Responder(() => new Response("hi\n"), {
   *   name: "hello", label: "hello/1", handlerTimeoutMs: 30_000, keepAlive: () => true,
   * });
   * ```
   */
  constructor(handler: Handler, opts: ResponderOptions) {
    this.#handler = handler;
    this.#opts = opts;
  }

  /** The headers every response of ours carries. */
  #extraHeaders(conn: Peer, into: [string, string][] = []): [string, string][] {
    into.push(
      ["x-hotpotato-worker", this.#opts.label],
      ["x-hotpotato-handoffs", String(conn.info.handoffs)],
      ["x-hotpotato-connection", String(conn.info.connId)],
    );
    return into;
  }

  /** An error answer (JSON body) with hot potato's headers and `more`.
   *
   * @example
   * ```ts
   * import type { Peer, Responder } from "./responder.ts";
   * import type { RequestHead } from "../http/http.ts";
   * declare const responder: Responder, conn: Peer, head: RequestHead;
   * responder.fail(conn, head, 405, "method not allowed", [["allow", "GET"]]);
   * ```
   */
  fail(
    conn: Peer,
    head: RequestHead,
    status: number,
    message: string,
    more: [string, string][] = [],
  ): Answer {
    const keepAlive = this.#opts.keepAlive(head);
    const bytes = errorResponse(status, message, {
      keepAlive,
      headOnly: head.method === "HEAD",
      extraHeaders: [...this.#extraHeaders(conn), ...more],
    });
    return { status, bytes, keepAlive };
  }

  /** Run the handler; the serialized response, its status, and whether the
   * connection stays open after it. Synchronous when the handler is and the
   * body is known (see src/http/response_body.ts): no promise per request then.
   *
   * @example
   * ```ts
   * import type { Peer, Responder } from "./responder.ts";
   * import type { RequestHead } from "../http/http.ts";
   * declare const responder: Responder, conn: Peer, head: RequestHead;
   * const { status, bytes, keepAlive } = await responder.respond(conn, head, new Uint8Array(0));
   * ```
   */
  respond(
    conn: Peer,
    head: RequestHead,
    body: Uint8Array | ReadableStream<Uint8Array>,
  ): Answer | Promise<Answer> {
    let req: HandlerRequest;
    try {
      // Its pathname is head.path, the path the request was routed by
      // (same target, same WHATWG parser: src/http/request_path.ts).
      const url = `https://${head.host || "localhost"}${head.target}`;
      req = head.method === "GET"
        ? new HandlerRequest(url, { headers: head.headers })
        : new HandlerRequest(url, {
          method: head.method,
          headers: head.headers,
          body: head.method === "HEAD"
            ? undefined
            : body instanceof Uint8Array
            ? body.slice()
            : body,
          // A streamed body: the handler reads it as it arrives.
          ...(body instanceof Uint8Array ? {} : { duplex: "half" }),
        } as RequestInit);
    } catch {
      return this.fail(conn, head, 400, "request cannot be represented (bad host or header)");
    }
    const info: RequestInfo = {
      connId: conn.info.connId,
      handoffs: conn.info.handoffs,
      remoteAddr: netAddr(conn.info.peer),
      protocol: conn.protocol,
    };
    let res: Response | Promise<Response>;
    try {
      res = this.#handler(req, info);
      if (res instanceof Promise) return this.#respondLater(conn, head, res, req);
      const known = res instanceof Response ? knownBody(res) : undefined;
      if (known !== undefined) return this.#serialize(conn, head, res, known);
    } catch (e) {
      return this.#handlerFailed(conn, head, e);
    }
    return this.#respondLater(conn, head, res, req);
  }

  /** The asynchronous path: a handler that returned a promise (bounded by
   * the handler timeout), or a body that must be read as a stream. */
  async #respondLater(
    conn: Peer,
    head: RequestHead,
    pending: Response | Promise<Response>,
    req: HandlerRequest,
  ): Promise<Answer> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      let res: Response | "timeout" = pending as Response;
      if (pending instanceof Promise) {
        // Only an asynchronous handler can hang; a synchronous one needs no timer.
        const timeout = new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => resolve("timeout"), this.#opts.handlerTimeoutMs);
        });
        res = await Promise.race([pending, timeout]);
      }
      if (res === "timeout") {
        log.warning("{name}: handler took longer than {ms} ms", {
          name: this.#opts.name,
          ms: this.#opts.handlerTimeoutMs,
        });
        return this.fail(conn, head, 504, "function timed out");
      }
      if (!(res instanceof Response)) throw new TypeError("handler did not return a Response");
      const upgrade = upgradeOf(res);
      if (upgrade) return this.#upgrade(conn, head, res, upgrade);
      const known = knownBody(res);
      if (known !== undefined) return this.#serialize(conn, head, res, known);
      if (res.body === null) return this.#serialize(conn, head, res, EMPTY);
      // A body that is all there at once (new Response(bytes), a string) is
      // sent whole with its length; one still being produced is streamed.
      const ready = await readyBody(res.body);
      const whole = ready.whole;
      if (whole) {
        // A declared length that the bytes do not match is the handler's
        // mistake: streamed, so the connection ends rather than lie.
        const declared = declaredLength(res.headers.get("content-length"));
        if (declared === undefined || declared === whole.length) {
          return this.#serialize(conn, head, res, whole);
        }
        return this.#stream(conn, head, res, ReadableStream.from([whole]), req);
      }
      return this.#stream(conn, head, res, ready.stream, req);
    } catch (e) {
      return this.#handlerFailed(conn, head, e);
    } finally {
      clearTimeout(timer);
    }
  }

  #serialize(conn: Peer, head: RequestHead, res: Response, body: Uint8Array | string): Answer {
    if (body.length > MAX_RESPONSE_BODY) throw new RangeError("response body too large");
    const headers: [string, string][] = [];
    res.headers.forEach((value, name) => headers.push([name, value]));
    this.#extraHeaders(conn, headers);
    const keepAlive = this.#opts.keepAlive(head);
    const statusText = res.statusText || undefined;
    const noBody = res.status < 200 || res.status === 204 || res.status === 304;
    if (body.length > SEPARATE_BODY_OVER && head.method !== "HEAD" && !noBody) {
      // A large body goes out as it is after its head: copying it into one
      // buffer with the head costs a fresh allocation (page faults, zeroing)
      // and a copy per response, more than encrypting it does.
      const tail = typeof body === "string" ? ENCODER.encode(body) : body;
      return {
        status: res.status,
        keepAlive,
        bytes: serializeResponse(
          { status: res.status, statusText, headers, body: EMPTY },
          { keepAlive, streamed: tail.length },
        ),
        tail,
      };
    }
    return {
      status: res.status,
      keepAlive,
      bytes: serializeResponse(
        // Response.json() and friends leave statusText empty: use the standard phrase.
        { status: res.status, statusText, headers, body },
        { keepAlive, headOnly: head.method === "HEAD" },
      ),
    };
  }

  /** The head now, the body as the handler produces it. */
  #stream(
    conn: Peer,
    head: RequestHead,
    res: Response,
    stream: ReadableStream<Uint8Array>,
    req: HandlerRequest,
  ): Answer {
    const headers: [string, string][] = [];
    res.headers.forEach((value, name) => headers.push([name, value]));
    this.#extraHeaders(conn, headers);
    const declared = declaredLength(res.headers.get("content-length"));
    const http10 = head.version === "HTTP/1.0";
    const framing = declared ?? (http10 ? "close" : "chunked");
    const keepAlive = framing !== "close" && this.#opts.keepAlive(head);
    const noBody = res.status < 200 || res.status === 204 || res.status === 304 ||
      head.method === "HEAD";
    const bytes = serializeResponse(
      { status: res.status, statusText: res.statusText || undefined, headers, body: EMPTY },
      { keepAlive, streamed: framing },
    );
    if (noBody) {
      stream.cancel("no body is sent").catch(() => {});
      return { status: res.status, bytes, keepAlive };
    }
    return {
      status: res.status,
      bytes,
      keepAlive,
      body: { stream, framing, abort: (reason) => req.abort(new Error(reason)) },
    };
  }

  /** The 101 of a response made by `upgradeWebSocket()`: its head, and what
   * runs on the connection after it. */
  #upgrade(conn: Peer, head: RequestHead, res: Response, upgrade: PendingUpgrade): Answer {
    if (head.version !== "HTTP/1.1") {
      return this.fail(conn, head, 400, `${upgrade.protocol} needs HTTP/1.1`);
    }
    const headers: [string, string][] = [];
    res.headers.forEach((value, name) => {
      if (name !== "upgrade") headers.push([name, value]); // serialized with the upgrade
    });
    this.#extraHeaders(conn, headers);
    const bytes = serializeResponse(
      { status: 101, headers, body: EMPTY },
      { keepAlive: true, upgrade: upgrade.protocol },
    );
    return { status: 101, bytes, keepAlive: false, upgrade: upgrade.run };
  }

  #handlerFailed(conn: Peer, head: RequestHead, e: unknown): Answer {
    if (e instanceof HttpError && e.status >= 400 && e.status <= 599) {
      return this.fail(conn, head, e.status, e.message, e.headers);
    }
    log.error("{name}: handler failed: {error}", {
      name: this.#opts.name,
      error: String(e),
    });
    return this.fail(conn, head, 500, "function failed");
  }
}
