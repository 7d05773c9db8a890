/**
 * A request body streamed to the handler as it arrives (`req.body`), for
 * bodies that are large or chunked: the holder starts the handler once the
 * head is complete, and each read of the stream takes what the connection
 * has (or waits for more, within `--body-timeout` for the whole body and
 * `--idle-timeout` for each read). `--max-body` is enforced as the body
 * streams: past it the stream fails with a 413 (an `HttpError` the handler
 * may let through), and the connection is closed after the answer. A body
 * the handler leaves unread is read and dropped after the answer, up to a
 * small limit; beyond it the connection is closed: never buffered.
 *
 * @module
 */

import { ChunkedDecoder, type RequestHead } from "../http/http.ts";
import { HttpError } from "../http/http_error.ts";
import type { TlsConnection } from "./tls_connection.ts";

/** Bodies of at most this many bytes (declared) are read whole before the
 * handler runs; larger or chunked ones are streamed. */
export const STREAM_BODY_OVER = 64 * 1024;

/** Timeouts and limits of a streamed body. */
export interface RequestBodyOptions {
  /** --max-body. */
  maxBody: number;
  /** Each read must come within this, ms. */
  idleTimeoutMs: number;
  /** The whole body must come within this from the end of its head, ms. */
  bodyTimeoutMs: number;
}

/** Whether a request with this head (its body not complete yet) has its
 * body streamed rather than read whole first.
 *
 * @example
 * ```ts
 * import { streamsBody } from "./request_body.ts";
 * import type { RequestHead } from "../http/http.ts";
 * declare const head: RequestHead;
 * streamsBody(head); // true for chunked bodies and bodies over 64 KiB
 * ```
 */
export function streamsBody(head: RequestHead): boolean {
  for (const [name, value] of head.headers) {
    if (name === "transfer-encoding") return true;
    if (name === "content-length") return Number(value.split(",")[0]) > STREAM_BODY_OVER;
  }
  return false;
}

/**
 * The body of the request whose head was just consumed from `conn`.
 *
 * @example
 * ```ts
 * import { RequestBody } from "./request_body.ts";
 * import type { TlsConnection } from "./tls_connection.ts";
 * import type { RequestHead } from "../http/http.ts";
 * declare const conn: TlsConnection, head: RequestHead;
 * const body = new RequestBody(conn, head, {
 *   maxBody: 1 << 20, idleTimeoutMs: 30_000, bodyTimeoutMs: 60_000,
 * });
 * const bytes = await new Response(body.stream).arrayBuffer();
 * ```
 */
export class RequestBody {
  /** The body as it arrives. */
  readonly stream: ReadableStream<Uint8Array>;
  #conn: TlsConnection;
  #opts: RequestBodyOptions;
  #chunked: ChunkedDecoder | undefined;
  /** Bytes left of a body with a declared length. */
  #left = 0;
  #done = false;
  /** Why the body failed (then the connection must close). */
  #failed = "";
  #deadline: number;

  /** Stream the body of the request with `head` (whose bytes `conn` has
   * consumed already).
   *
   * @example
   * ```ts
   * import { RequestBody } from "./request_body.ts";
   * import type { TlsConnection } from "./tls_connection.ts";
   * import type { RequestHead } from "../http/http.ts";
   * declare const conn: TlsConnection, head: RequestHead;
   * new RequestBody(conn, head, { maxBody: 1 << 20, idleTimeoutMs: 30_000, bodyTimeoutMs: 60_000 });
   * ```
   */
  constructor(conn: TlsConnection, head: RequestHead, opts: RequestBodyOptions) {
    this.#conn = conn;
    this.#opts = opts;
    this.#deadline = Date.now() + opts.bodyTimeoutMs;
    let length = 0, chunked = false;
    for (const [name, value] of head.headers) {
      if (name === "transfer-encoding") chunked = true;
      if (name === "content-length") length = Number(value.split(",")[0]);
    }
    if (chunked) this.#chunked = new ChunkedDecoder(opts.maxBody);
    else this.#left = length;
    if (!chunked && length === 0) this.#done = true;
    this.stream = new ReadableStream<Uint8Array>({
      pull: (c) => this.#pull(c),
    }, { highWaterMark: 0 });
  }

  /** The whole body has been read. */
  get done(): boolean {
    return this.#done;
  }

  /** Why the body failed ("" unless it did): the connection must close. */
  get failed(): string {
    return this.#failed;
  }

  /** The next piece: null at the end of the body; throws an HttpError
   * (400, 408, 413, 431: a chunked body's are those of http.ts's
   * CHUNKED_LIMITS) when the body is bad or late. */
  async #next(): Promise<Uint8Array | null> {
    const conn = this.#conn;
    for (;;) {
      if (this.#done) return null;
      const buf = conn.buffered;
      if (buf.length > 0) {
        if (this.#chunked) {
          const step = this.#chunked.decode(buf);
          if (step.kind === "error") throw this.#fail(step.status, step.message);
          const n = step.kind === "data" ? step.data : 0;
          const data = n > 0 ? buf.slice(step.consumed - n, step.consumed) : undefined;
          conn.consume(step.consumed);
          if (step.kind === "end") {
            this.#done = true;
            return null;
          }
          if (data) return data;
          if (step.consumed > 0) continue;
        } else {
          const n = Math.min(this.#left, buf.length);
          const data = buf.slice(0, n);
          conn.consume(n);
          this.#left -= n;
          if (this.#left === 0) this.#done = true;
          return data;
        }
      }
      const deadline = Math.min(this.#deadline, Date.now() + this.#opts.idleTimeoutMs);
      const f = await conn.fill(deadline);
      if (f === "timeout") throw this.#fail(408, "request body not received in time");
      if (f !== "data") throw this.#fail(400, "the request body ended early");
    }
  }

  #fail(status: number, message: string): HttpError {
    this.#failed = message;
    return new HttpError(status, message);
  }

  async #pull(c: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    try {
      const data = await this.#next();
      if (data === null) c.close();
      else c.enqueue(data);
    } catch (e) {
      c.error(e);
    }
  }

  /** After the answer: read and drop what the handler left unread, up to
   * `limit` bytes within `ms`. True when the body is done (the connection
   * can carry a next request), false when it must close.
   *
   * @example
   * ```ts
   * import type { RequestBody } from "./request_body.ts";
   * declare const body: RequestBody;
   * if (!await body.discard(64 * 1024, 1000)) console.log("close the connection");
   * ```
   */
  async discard(limit: number, ms: number): Promise<boolean> {
    if (this.#failed) return false;
    if (this.#done) return true;
    const until = Date.now() + ms;
    this.#deadline = Math.min(this.#deadline, until);
    let dropped = 0;
    try {
      if (this.stream.locked) return false; // the handler still holds a reader
      for (;;) {
        const data = await this.#next();
        if (data === null) return true;
        dropped += data.length;
        if (dropped > limit) return false;
      }
    } catch {
      return false;
    }
  }
}
