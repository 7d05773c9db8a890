/**
 * Reading the next request from a held connection, with the timeouts that
 * keep one slow client from costing anything but its own connection:
 * idle (nothing buffered), header (from the first byte of a request head),
 * and body (the whole body, from the end of its head; each read must also
 * come within the idle time).
 *
 * It only asks the connection for more bytes while no complete request is
 * buffered, which keeps the TLS session exportable (see tls_connection.ts).
 *
 * @module
 */

import {
  DEFAULT_BODY_TIMEOUT_MS,
  DEFAULT_LIMITS,
  errorResponse,
  type Limits,
  parseRequest,
  type RequestHead,
} from "../http/http.ts";
import type { TlsConnection } from "./tls_connection.ts";

/** Timeouts and limits for reading requests. */
export interface ReadOptions {
  /** Head and body size limits. */
  limits: Limits;
  /** Close a connection with nothing buffered after this long, ms. */
  idleTimeoutMs: number;
  /** A head must be complete this long after its first byte, ms. */
  headerTimeoutMs: number;
  /** A body must be complete this long after the end of its head, ms
   * (default {@linkcode DEFAULT_BODY_TIMEOUT_MS}). */
  bodyTimeoutMs?: number;
  /** Whether the caller needs the body of a request with this head. When
   * false, the head alone is returned as soon as it is complete. */
  wantBody(head: RequestHead): boolean;
  /** A head asks `Expect: 100-continue` and its body is wanted but not
   * here yet: true once `100 Continue` has been sent (the body is then
   * awaited), false to answer at once without the body (the request is
   * returned as `{ kind: "expect" }`). Without it, the body is awaited. */
  expectContinue?(head: RequestHead): boolean | Promise<boolean>;
  /** Whether the body of a request with this head, wanted but not complete
   * yet, is streamed to the caller (`{ kind: "streaming" }`, returned as soon
   * as the head is) rather than read whole first. */
  streamBody?(head: RequestHead): boolean;
}

/** The value of a head's `Expect` field: undefined without one.
 *
 * @example
 * ```ts
 * import { expectation } from "./request_reader.ts";
 * import type { RequestHead } from "../http/http.ts";
 * declare const head: RequestHead;
 * if (expectation(head) === "100-continue") console.log("the client waits for 100 Continue");
 * ```
 */
export function expectation(head: RequestHead): string | undefined {
  for (const [name, value] of head.headers) {
    if (name === "expect") return value.toLowerCase();
  }
  return undefined;
}

/** What {@linkcode readRequest} found. */
export type ReadResult =
  /** A complete request; `length` bytes of the buffer belong to it. */
  | { kind: "request"; head: RequestHead; body: Uint8Array; length: number }
  /** A complete head whose body the caller did not want to wait for. */
  | { kind: "head"; head: RequestHead }
  /** A head with `Expect: 100-continue` answered at once, without its body
   * (`expectContinue` said so): answer it and close. */
  | { kind: "expect"; head: RequestHead }
  /** A head whose body is streamed (`streamBody` said so): the body starts
   * at `head.headLength` in the buffer. */
  | { kind: "streaming"; head: RequestHead }
  /** Invalid request: answer `status` and close. */
  | { kind: "error"; status: number; message: string }
  /** The client closed, or an idle connection timed out: close quietly. */
  | { kind: "closed" }
  /** A request's head or body did not arrive in time: answer 408 and close. */
  | { kind: "timeout"; part: "head" | "body" };

/**
 * Wait for the next request on `conn`.
 *
 * @example
 * ```ts
 * import { readRequest } from "./request_reader.ts";
 * import { DEFAULT_LIMITS } from "../http/http.ts";
 * import type { TlsConnection } from "./tls_connection.ts";
 * declare const conn: TlsConnection;
 * const r = await readRequest(conn, {
 *   limits: DEFAULT_LIMITS, idleTimeoutMs: 30_000, headerTimeoutMs: 10_000,
 *   bodyTimeoutMs: 60_000, wantBody: () => true,
 * });
 * ```
 */
export async function readRequest(conn: TlsConnection, opts: ReadOptions): Promise<ReadResult> {
  let headStarted = conn.bufferedLength > 0 ? Date.now() : 0;
  /** When the body must be complete (set once its head is). */
  let bodyDeadline = 0;
  /** Expect: 100-continue was handled for the head at the buffer's start. */
  let continued = false;
  const maxBuffered = opts.limits.maxHeadBytes * 2 + opts.limits.maxBodyBytes * 2 + 65536;
  for (;;) {
    let inBody = false;
    if (conn.bufferedLength > 0) {
      const r = parseRequest(conn.buffered, opts.limits);
      if (r.kind === "request" || r.kind === "error") return r;
      if (r.head) {
        if (!opts.wantBody(r.head)) return { kind: "head", head: r.head };
        if (!continued) {
          continued = true;
          const expect = expectation(r.head);
          if (expect !== undefined && expect !== "100-continue") {
            return { kind: "error", status: 417, message: "unsupported expectation" };
          }
          // The head alone is here: a client that expects 100-continue
          // waits for it before sending the body (RFC 9110, 10.1.1).
          if (
            expect !== undefined && r.head.headLength === conn.bufferedLength &&
            r.head.version === "HTTP/1.1" && opts.expectContinue
          ) {
            const go = await opts.expectContinue(r.head);
            if (!go) return { kind: "expect", head: r.head };
          }
          if (opts.streamBody?.(r.head)) return { kind: "streaming", head: r.head };
        }
        inBody = true;
        bodyDeadline ||= Date.now() + (opts.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS);
      }
    }
    if (conn.bufferedLength > maxBuffered) {
      // The parser bounds heads and bodies; this bounds everything else
      // (chunk framing, trailers) that could make a client's buffer grow.
      return { kind: "error", status: 413, message: "request too large" };
    }
    const hadBytes = conn.bufferedLength > 0;
    // Idle: nothing buffered. Head: a fixed budget from its first byte
    // (slowloris). Body: a fixed budget from the end of the head, and each
    // read must make progress within the idle time.
    const now = Date.now();
    const deadline = !hadBytes
      ? now + opts.idleTimeoutMs
      : inBody
      ? Math.min(bodyDeadline, now + opts.idleTimeoutMs)
      : headStarted + opts.headerTimeoutMs;
    const f = await conn.fill(deadline);
    if (f === "data") {
      if (!hadBytes) headStarted = Date.now();
      continue;
    }
    if (f === "timeout" && hadBytes) return { kind: "timeout", part: inBody ? "body" : "head" };
    return { kind: "closed" };
  }
}

/** What a holder needs to take the next request off a connection. */
export interface HolderOptions extends Omit<ReadOptions, "limits"> {
  /** Largest request body. */
  maxBody: number;
  /** Time a client has to take an error response, ms. */
  writeTimeoutMs: number;
  /** True while the process drains: no next request is read. */
  draining(): boolean;
  /** True while the process hands its connections over to a new version:
   * a connection with nothing buffered is returned as `{ kind: "handover" }`
   * (an idle wait is interrupted for it) instead of being read or closed. */
  handingOver?(): boolean;
  /** Called with the status of an error this function answered. */
  onError?(status: number): void;
}

/**
 * The next request for a holder (the gateway or a worker), with the
 * endings every holder treats alike already done: while draining with
 * nothing buffered, or when the client closed or went idle, the connection
 * is closed cleanly; a bad or late request gets its 4xx answer (408 for a
 * head or body that did not arrive in time) and a close. Null means the connection
 * is finished.
 *
 * @example
 * ```ts
 * import { nextRequest } from "./request_reader.ts";
 * import type { TlsConnection } from "./tls_connection.ts";
 * declare const conn: TlsConnection;
 * const r = await nextRequest(conn, {
 *   maxBody: 1 << 20, idleTimeoutMs: 30_000, headerTimeoutMs: 10_000, bodyTimeoutMs: 60_000,
 *   writeTimeoutMs: 30_000, wantBody: () => true, draining: () => false,
 * });
 * if (r && r.kind !== "handover") console.log(r.head.path);
 * ```
 */
export async function nextRequest(
  conn: TlsConnection,
  opts: HolderOptions,
): Promise<
  Extract<ReadResult, { kind: "request" | "head" | "expect" | "streaming" }> | {
    kind: "handover";
  } | null
> {
  if (opts.handingOver?.() && conn.bufferedLength === 0) return { kind: "handover" };
  if (opts.draining() && conn.bufferedLength === 0) {
    conn.close(); // draining: no next request on this connection
    return null;
  }
  const r = await readRequest(conn, {
    limits: { maxHeadBytes: MAX_HEAD_BYTES, maxBodyBytes: opts.maxBody },
    idleTimeoutMs: opts.idleTimeoutMs,
    headerTimeoutMs: opts.headerTimeoutMs,
    bodyTimeoutMs: opts.bodyTimeoutMs,
    wantBody: opts.wantBody,
    expectContinue: opts.expectContinue,
    streamBody: opts.streamBody,
  });
  if (r.kind === "request" || r.kind === "head" || r.kind === "expect" || r.kind === "streaming") {
    return r;
  }
  // An idle wait interrupted for a handover (the connection is still open).
  if (r.kind === "closed" && opts.handingOver?.() && conn.bufferedLength === 0 && conn.isOpen) {
    return { kind: "handover" };
  }
  if (r.kind === "timeout" || r.kind === "error") {
    const status = r.kind === "timeout" ? 408 : r.status;
    const message = r.kind === "error"
      ? r.message
      : r.part === "body"
      ? "request body not received in time"
      : "request not received in time";
    opts.onError?.(status);
    const sent = await conn.write(
      errorResponse(status, message, { keepAlive: false }),
      Date.now() + opts.writeTimeoutMs,
    );
    // The client may still be sending (a body over --max-body, say): let it
    // read the answer before the connection goes.
    if (sent) {
      await conn.closeLingering(LINGER_MS, LINGER_BYTES);
      return null;
    }
  }
  conn.close();
  return null;
}

/** How long, and how many bytes, a connection closed after an error answer
 * keeps reading (and dropping) what the client still sends. */
export const LINGER_MS = 2000, LINGER_BYTES = 4 * 1024 * 1024;

/** The request-head limit (RFC 9112 leaves it to the server; 431 beyond). */
export const MAX_HEAD_BYTES: number = DEFAULT_LIMITS.maxHeadBytes;
