/**
 * Reading the next request from a held connection, with the timeouts that
 * keep one slow client from costing anything but its own connection:
 * idle (nothing buffered), header (from the first byte of a request head),
 * and per-read progress while a body arrives.
 *
 * It only asks the connection for more bytes while no complete request is
 * buffered, which keeps the TLS session exportable (see tls_connection.ts).
 *
 * @module
 */

import { type Limits, parseRequest, type RequestHead } from "./http.ts";
import type { TlsConnection } from "./tls_connection.ts";

/** Timeouts and limits for reading requests. */
export interface ReadOptions {
  /** Head and body size limits. */
  limits: Limits;
  /** Close a connection with nothing buffered after this long, ms. */
  idleTimeoutMs: number;
  /** A head must be complete this long after its first byte, ms. */
  headerTimeoutMs: number;
  /** Whether the caller needs the body of a request with this head. When
   * false, the head alone is returned as soon as it is complete. */
  wantBody(head: RequestHead): boolean;
}

/** What {@linkcode readRequest} found. */
export type ReadResult =
  /** A complete request; `length` bytes of the buffer belong to it. */
  | { kind: "request"; head: RequestHead; body: Uint8Array; length: number }
  /** A complete head whose body the caller did not want to wait for. */
  | { kind: "head"; head: RequestHead }
  /** Invalid request: answer `status` and close. */
  | { kind: "error"; status: number; message: string }
  /** The client closed, or an idle connection timed out: close quietly. */
  | { kind: "closed" }
  /** A request started but did not arrive in time: answer 408 and close. */
  | { kind: "timeout" };

/**
 * Wait for the next request on `conn`.
 *
 * @example
 * ```ts
 * import { readRequest } from "./request_reader.ts";
 * import { DEFAULT_LIMITS } from "./http.ts";
 * import type { TlsConnection } from "./tls_connection.ts";
 * declare const conn: TlsConnection;
 * const r = await readRequest(conn, {
 *   limits: DEFAULT_LIMITS, idleTimeoutMs: 30_000, headerTimeoutMs: 10_000,
 *   wantBody: () => true,
 * });
 * ```
 */
export async function readRequest(conn: TlsConnection, opts: ReadOptions): Promise<ReadResult> {
  let headStarted = conn.bufferedLength > 0 ? Date.now() : 0;
  const maxBuffered = opts.limits.maxHeadBytes * 2 + opts.limits.maxBodyBytes * 2 + 65536;
  for (;;) {
    let inBody = false;
    if (conn.bufferedLength > 0) {
      const r = parseRequest(conn.buffered, opts.limits);
      if (r.kind === "request" || r.kind === "error") return r;
      if (r.head) {
        if (!opts.wantBody(r.head)) return { kind: "head", head: r.head };
        inBody = true;
      }
    }
    if (conn.bufferedLength > maxBuffered) {
      // The parser bounds heads and bodies; this bounds everything else
      // (chunk framing, trailers) that could make a client's buffer grow.
      return { kind: "error", status: 413, message: "request too large" };
    }
    const hadBytes = conn.bufferedLength > 0;
    // Idle: nothing buffered. Head: a fixed budget from its first byte
    // (slowloris). Body: each read must make progress within the idle time.
    const deadline = !hadBytes || inBody
      ? Date.now() + opts.idleTimeoutMs
      : headStarted + opts.headerTimeoutMs;
    const f = await conn.fill(deadline);
    if (f === "data") {
      if (!hadBytes) headStarted = Date.now();
      continue;
    }
    if (f === "timeout" && hadBytes) return { kind: "timeout" };
    return { kind: "closed" };
  }
}
