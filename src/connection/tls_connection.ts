/**
 * A client connection held by this process: its socket fd, its wolfSSL
 * session, and the decrypted bytes received but not yet answered.
 *
 * It owns the record-boundary invariant that makes handoff safe. The socket
 * is read through a record reader (ffi/shim.ts `RecordReader`): one recv()
 * takes what has arrived, and wolfSSL is handed whole records only, so it
 * never holds part of one. `fill()` decrypts one record (plus whatever
 * wolfSSL already decrypted) per call, and callers only call it when no
 * complete request is buffered. A released connection carries the
 * plaintext not yet answered and the ciphertext read ahead.
 *
 * All I/O is non-blocking; waits are promises resolved by the event loop,
 * each bounded by a deadline.
 *
 * @module
 */

import {
  closeFd,
  EAGAIN,
  ERROR,
  HANGUP,
  peek,
  RDHUP,
  READABLE,
  receivePlain,
  sendPlain,
  shutdownWrite,
  WRITABLE,
} from "../../ffi/shim.ts";
import {
  CLOSED,
  type ExportedState,
  TlsSession,
  WANT_READ,
  WANT_WRITE,
} from "../../ffi/wolfssl.ts";
import { EventLoop } from "./event_loop.ts";

/** What `fill()` reports. */
export type FillResult = "data" | "closed" | "timeout" | "error";

/** A connection's identity, carried across handoffs: a HANDOFF carries this
 * object's fields (src/handoff/protocol.ts `HANDOFF_LAYOUT`, the rows `in:
 * "info"`), and a decoded HANDOFF's `info` becomes the receiving
 * connection's, with no copying in either direction. */
export interface ConnectionInfo {
  /** Id given by the gateway that accepted it. */
  connId: number;
  /** Random id of that gateway process. */
  gatewayId: number;
  /** Moves between processes so far. */
  handoffs: number;
  /** The client's "ip:port". */
  peer: string;
  /** Server name (SNI) the client sent, or "". */
  sni: string;
  /** ALPN protocol agreed, or "". */
  alpn: string;
}

/** Largest single read: one TLS record's plaintext (16 KiB) and then some. */
const READ_CHUNK = 16384 + 2048;
const scratch = new Uint8Array(READ_CHUNK);
const EMPTY = new Uint8Array(0);

const READ_EVENTS = READABLE | ERROR | HANGUP | RDHUP;
/** Events that say the peer sent FIN (or the socket is gone). */
const PEER_CLOSED = HANGUP | RDHUP;

// Wait deadlines are enforced by one sweep every SWEEP_MS instead of a timer
// per wait: a wait is created and settled on every request, and two timer
// operations per request cost more than a Set insert and delete. Deadlines
// are therefore met within SWEEP_MS; the sweep stops when nothing waits.
const SWEEP_MS = 50;
const waiting = new Set<TlsConnection>();
let sweeper: ReturnType<typeof setInterval> | undefined;

function startSweeping(): void {
  sweeper ??= setInterval(() => {
    const now = Date.now();
    for (const conn of waiting) conn.expireIfDue(now);
    if (waiting.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  }, SWEEP_MS);
}
const WRITE_EVENTS = WRITABLE | ERROR | HANGUP;

/**
 * A TLS connection on a non-blocking socket, registered with the event loop.
 *
 * @example
 * ```ts
 * import { TlsConnection } from "./tls_connection.ts";
 * import { TlsContext, TlsSession } from "../../ffi/wolfssl.ts";
 * declare const ctx: TlsContext, fd: number;
 * const conn = new TlsConnection(fd, TlsSession.accept(ctx, fd), {
 *   connId: 1, gatewayId: 1, handoffs: 0, peer: "127.0.0.1:5000", sni: "", alpn: "",
 * });
 * if (await conn.handshake(Date.now() + 10_000)) await conn.fill(Date.now() + 10_000);
 * ```
 */
export class TlsConnection {
  readonly fd: number;
  readonly info: ConnectionInfo;
  #tls: TlsSession;
  #buf: Uint8Array = EMPTY;
  #start = 0;
  #end = 0;
  #open = true;
  // Two waits may be pending at once: one for reading (fill, handshake,
  // peek) and one for a write, so a write that would block does not end a
  // read in progress (a WebSocket reads and writes independently). Only
  // code that reads and writes concurrently ever has both.
  #waitEvents = 0;
  #resolve: ((ok: boolean) => void) | null = null;
  #idleWait = false;
  /** When the pending read gives up (ms since epoch); see {@linkcode sweep}. */
  #deadline = 0;
  #writeEvents = 0;
  #writeResolve: ((ok: boolean) => void) | null = null;
  /** When the pending write gives up (ms since epoch). */
  #writeDeadline = 0;
  /** A write that would have blocked, until it completes or fails. */
  #blockedWrite: Promise<boolean> | undefined;
  /** Watched for writing too (after the first write that would block). */
  #watchingWrites = false;

  /** Take over `fd` and `tls`; `unread` is plaintext that came with it.
   *
   * @example
   * ```ts
   * import { TlsConnection } from "./tls_connection.ts";
   * import type { TlsSession } from "../../ffi/wolfssl.ts";
   * declare const fd: number, tls: TlsSession;
   * new TlsConnection(fd, tls, {
   *   connId: 1, gatewayId: 1, handoffs: 1, peer: "", sni: "", alpn: "",
   * }, new TextEncoder().encode("GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
   * ```
   */
  constructor(fd: number, tls: TlsSession, info: ConnectionInfo, unread?: Uint8Array) {
    this.fd = fd;
    this.#tls = tls;
    this.info = info;
    if (unread && unread.length > 0) this.#append(unread);
    EventLoop.instance().add(fd, (events) => this.#onEvents(events), { writable: false });
  }

  /** "TLSv1.3" or "TLSv1.2". */
  get protocol(): string {
    return this.#tls.protocol;
  }

  /** The negotiated cipher suite. */
  get cipher(): string {
    return this.#tls.cipher;
  }

  /** The wolfSSL session (for reading SNI/ALPN after the handshake). */
  get session(): TlsSession {
    return this.#tls;
  }

  /** Decrypted bytes received and not consumed yet (a view; valid until the
   * next `fill()` or `consume()`). */
  get buffered(): Uint8Array {
    return this.#buf.subarray(this.#start, this.#end);
  }

  /** Number of buffered bytes. */
  get bufferedLength(): number {
    return this.#end - this.#start;
  }

  /** Drop the first n buffered bytes (a request that has been answered).
   *
   * @example
   * ```ts
   * import type { TlsConnection } from "./tls_connection.ts";
   * declare const conn: TlsConnection;
   * conn.consume(42);
   * ```
   */
  consume(n: number): void {
    this.#start += Math.min(n, this.#end - this.#start);
    if (this.#start === this.#end) {
      this.#buf.fill(0, 0, this.#end);
      this.#start = this.#end = 0;
    }
  }

  #append(bytes: Uint8Array): void {
    const len = this.#end - this.#start;
    if (this.#end + bytes.length > this.#buf.length) {
      if (len + bytes.length <= this.#buf.length) {
        this.#buf.copyWithin(0, this.#start, this.#end);
      } else {
        const next = new Uint8Array(Math.max(1024, 2 ** Math.ceil(Math.log2(len + bytes.length))));
        next.set(this.#buf.subarray(this.#start, this.#end));
        this.#buf.fill(0);
        this.#buf = next;
      }
      this.#start = 0;
      this.#end = len;
    }
    this.#buf.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  #onEvents(events: number): void {
    if ((events & READ_EVENTS) !== 0) this.#tls.readable((events & PEER_CLOSED) !== 0);
    if (this.#resolve && (events & this.#waitEvents) !== 0) this.#settle(true);
    if (this.#writeResolve && (events & this.#writeEvents) !== 0) this.#settleWrite(true);
  }

  #settle(ok: boolean): void {
    const resolve = this.#resolve;
    this.#resolve = null;
    this.#waitEvents = 0;
    this.#idleWait = false;
    if (this.#deadline !== 0) {
      this.#deadline = 0;
      if (this.#writeDeadline === 0) waiting.delete(this);
    }
    resolve?.(ok);
  }

  #settleWrite(ok: boolean): void {
    const resolve = this.#writeResolve;
    this.#writeResolve = null;
    this.#writeEvents = 0;
    if (this.#writeDeadline !== 0) {
      this.#writeDeadline = 0;
      if (this.#deadline === 0) waiting.delete(this);
    }
    resolve?.(ok);
  }

  /** Wait for the next edge of `events`, until `deadline` (ms since epoch);
   * `forWrite`: the write's wait, beside a read's. */
  #wait(events: number, deadline: number, forWrite = false): Promise<boolean> {
    const ms = deadline - Date.now();
    if (ms <= 0 || !this.#open) return Promise.resolve(false);
    if ((events & WRITABLE) !== 0 && !this.#watchingWrites) {
      this.#watchingWrites = true;
      EventLoop.instance().watchWritable(this.fd);
    }
    return new Promise((resolve) => {
      if (forWrite) {
        this.#writeResolve = resolve;
        this.#writeEvents = events;
        this.#writeDeadline = deadline;
      } else {
        this.#resolve = resolve;
        this.#waitEvents = events;
        this.#deadline = deadline;
      }
      waiting.add(this);
      startSweeping();
    });
  }

  /** Give up a pending wait whose deadline has passed (the sweeper). */
  expireIfDue(now: number): void {
    if (this.#deadline !== 0 && now >= this.#deadline) this.#settle(false);
    if (this.#writeDeadline !== 0 && now >= this.#writeDeadline) this.#settleWrite(false);
  }

  /** Wait for the client's first bytes and return a copy of up to `max` of
   * them without consuming them (to tell a TLS ClientHello from plain HTTP).
   * Null when the client closed or the deadline passed first.
   *
   * @example
   * ```ts
   * import type { TlsConnection } from "./tls_connection.ts";
   * declare const conn: TlsConnection;
   * const first = await conn.peekStart(Date.now() + 10_000);
   * const isTls = first?.[0] === 0x16;
   * ```
   */
  async peekStart(deadline: number, max = 8): Promise<Uint8Array | null> {
    const buf = new Uint8Array(max);
    for (;;) {
      if (!this.#open) return null;
      const n = peek(this.fd, buf);
      if (n > 0) return buf.subarray(0, n);
      if (n !== -EAGAIN) return null;
      if (!await this.#wait(READ_EVENTS, deadline)) return null;
    }
  }

  /** Read exactly `length` bytes in the clear, before any TLS (a PROXY
   * protocol header), waiting for them until `deadline`; null when the
   * client closed, failed or was too slow.
   *
   * @example
   * ```ts
   * import type { TlsConnection } from "./tls_connection.ts";
   * declare const conn: TlsConnection;
   * const header = await conn.readPlain(16, Date.now() + 5000);
   * ```
   */
  async readPlain(length: number, deadline: number): Promise<Uint8Array | null> {
    const buf = new Uint8Array(length);
    let got = 0;
    while (got < length) {
      if (!this.#open) return null;
      const n = receivePlain(this.fd, buf.subarray(got));
      if (n > 0) {
        got += n;
        continue;
      }
      if (n !== -EAGAIN) return null; // EOF (0) or an error
      if (!await this.#wait(READ_EVENTS, deadline)) return null;
    }
    return buf;
  }

  /** Write bytes on the socket in the clear (only before any TLS: to answer
   * a plain-HTTP client), then close. Best effort, never blocks.
   *
   * @example
   * ```ts
   * import type { TlsConnection } from "./tls_connection.ts";
   * declare const conn: TlsConnection;
   * conn.closeWithPlain(new TextEncoder().encode("HTTP/1.1 400 Bad Request\r\n\r\n"));
   * ```
   */
  closeWithPlain(data: Uint8Array): void {
    if (!this.#open) return;
    // Take what the client sent first: closing with unread bytes would make
    // the kernel send a reset, which can destroy the answer in flight.
    const sink = new Uint8Array(4096);
    for (let i = 0; i < 16 && receivePlain(this.fd, sink) > 0; i++) { /* discard */ }
    sendPlain(this.fd, data);
    this.close(false);
  }

  /** Run the server handshake to completion. False on failure or deadline.
   *
   * @example
   * ```ts
   * import type { TlsConnection } from "./tls_connection.ts";
   * declare const conn: TlsConnection;
   * const ok = await conn.handshake(Date.now() + 10_000);
   * ```
   */
  async handshake(deadline: number): Promise<boolean> {
    for (;;) {
      if (!this.#open) return false;
      const r = this.#tls.handshake(); // throws TlsError on failure
      if (r === 1) return true;
      if (r === WANT_READ) {
        if (!await this.#wait(READ_EVENTS, deadline)) return false;
      } else if (r === WANT_WRITE) {
        if (!await this.#wait(WRITE_EVENTS, deadline)) return false;
      } else {
        return false;
      }
    }
  }

  /** Read one TLS record's worth of plaintext into the buffer. Call only
   * when the buffer holds no complete request (see the module comment).
   *
   * @example
   * ```ts
   * import type { TlsConnection } from "./tls_connection.ts";
   * declare const conn: TlsConnection;
   * if (await conn.fill(Date.now() + 30_000) !== "data") conn.close();
   * ```
   */
  async fill(deadline: number): Promise<FillResult> {
    for (;;) {
      if (!this.#open) return "closed";
      if (this.#blockedWrite) {
        // wolfSSL must not read while a write is part-sent: a KeyUpdate
        // answered meanwhile would flush the buffered record, and the write
        // would start over. The write's own deadline bounds this wait.
        await this.#blockedWrite;
        continue;
      }
      let n: number;
      try {
        n = this.#tls.read(scratch);
      } catch {
        return "error";
      }
      if (n > 0) {
        this.#append(scratch.subarray(0, n));
        while (this.#tls.pending() > 0) {
          const m = this.#tls.read(scratch);
          if (m <= 0) break;
          this.#append(scratch.subarray(0, m));
        }
        scratch.fill(0, 0, n);
        return "data";
      }
      if (n === CLOSED) return "closed";
      const events = n === WANT_WRITE ? WRITE_EVENTS : READ_EVENTS;
      const wait = this.#wait(events, deadline);
      // Waiting for a next request (nothing buffered): a drain may end this wait.
      if (this.#resolve) this.#idleWait = this.#end === this.#start;
      if (!await wait) return this.#open ? "timeout" : "closed";
    }
  }

  /** Encrypt and send all of `data`. False when the peer is gone or the
   * deadline passed (the connection should then be closed). The answer is
   * immediate (not a promise) when the socket took everything at once.
   * One write at a time; it may wait while a `fill()` waits too.
   *
   * @example
   * ```ts
   * import type { TlsConnection } from "./tls_connection.ts";
   * declare const conn: TlsConnection;
   * await conn.write(new TextEncoder().encode("HTTP/1.1 204 No Content\r\n\r\n"), Date.now() + 30_000);
   * ```
   */
  write(data: Uint8Array, deadline: number): boolean | Promise<boolean> {
    // The usual case completes at once: no promise for it.
    const first = this.#writeOnce(data);
    if (first !== WANT_READ && first !== WANT_WRITE) return first === 1;
    const later = this.#writeLater(data, deadline, first);
    this.#blockedWrite = later;
    return later.finally(() => this.#blockedWrite = undefined);
  }

  /** 1 when all is sent, 0 when the connection failed, or what to wait for. */
  #writeOnce(data: Uint8Array): number {
    if (data.length === 0) return 1;
    if (!this.#open) return 0;
    let n: number;
    try {
      n = this.#tls.write(data);
    } catch {
      return 0;
    }
    if (n > 0) return 1;
    return n === WANT_READ || n === WANT_WRITE ? n : 0;
  }

  async #writeLater(data: Uint8Array, deadline: number, want: number): Promise<boolean> {
    for (;;) {
      const events = want === WANT_READ ? READ_EVENTS : WRITE_EVENTS;
      if (!await this.#wait(events, deadline, true)) return false;
      want = this.#writeOnce(data);
      if (want === 1) return true;
      if (want === 0) return false;
    }
  }

  /** If the connection is waiting for a next request with nothing buffered,
   * end that wait now (`fill()` reports a timeout, so the holder closes it
   * cleanly). Used when draining; a request in progress is not touched.
   *
   * @example
   * ```ts
   * import type { TlsConnection } from "./tls_connection.ts";
   * declare const conn: TlsConnection;
   * conn.interruptIdle();
   * ```
   */
  interruptIdle(): void {
    if (this.#idleWait && this.#resolve) this.#settle(false);
  }

  /** Whether the connection is still open (not closed or handed off). */
  get isOpen(): boolean {
    return this.#open;
  }

  /** Whether the session can be exported now (at a record boundary). */
  get exportable(): boolean {
    return this.#open && this.#tls.atRecordBoundary && this.#tls.pending() === 0;
  }

  /** Export the TLS state and hand over the socket: the connection stops
   * being watched and its session is freed, but the fd stays open for the
   * caller to send (and then close). Returns the state (zero `blob` after
   * sealing), a copy of the unread plaintext, and the ciphertext read ahead
   * of it (records wolfSSL has not decrypted yet).
   *
   * @example
   * ```ts
   * import type { TlsConnection } from "./tls_connection.ts";
   * declare const conn: TlsConnection;
   * const { state, unread, readAhead } = conn.release();
   * ```
   */
  release(): { state: ExportedState; unread: Uint8Array; readAhead: Uint8Array } {
    if (!this.exportable) throw new Error("TLS state is not at a record boundary");
    const state = this.#tls.export();
    const unread = this.buffered.slice();
    const readAhead = this.#tls.takeReadAhead();
    this.#detach();
    return { state, unread, readAhead };
  }

  #detach(): void {
    this.#open = false;
    EventLoop.instance().remove(this.fd);
    this.#tls.free();
    this.#buf.fill(0);
    this.#buf = EMPTY;
    this.#start = this.#end = 0;
    this.#settle(false);
    this.#settleWrite(false);
  }

  /** Close after an answer the client may still be sending a request body
   * behind (a 413, a refused `Expect: 100-continue`): close_notify and a FIN,
   * then read and drop what arrives, until the client closes, `ms` pass or
   * `maxBytes` came. Closing at once with unread bytes would make the kernel
   * send a reset, which can destroy the answer before the client reads it.
   *
   * @example
   * ```ts
   * import type { TlsConnection } from "./tls_connection.ts";
   * declare const conn: TlsConnection;
   * await conn.closeLingering(2000, 1 << 20);
   * ```
   */
  async closeLingering(ms: number, maxBytes: number): Promise<void> {
    if (!this.#open) return;
    try {
      this.#tls.shutdown();
    } catch {
      // best effort: the peer may be gone
    }
    shutdownWrite(this.fd);
    const deadline = Date.now() + ms;
    let dropped = 0;
    while (this.#open && dropped <= maxBytes) {
      const n = receivePlain(this.fd, scratch);
      if (n > 0) {
        dropped += n;
        continue;
      }
      if (n !== -EAGAIN || !await this.#wait(READ_EVENTS, deadline)) break;
    }
    scratch.fill(0);
    this.close(false);
  }

  /** Close the connection: close_notify (when `notify`), free, close the fd.
   *
   * @example
   * ```ts
   * import type { TlsConnection } from "./tls_connection.ts";
   * declare const conn: TlsConnection;
   * conn.close();
   * ```
   */
  close(notify = true): void {
    if (!this.#open) return;
    if (notify) {
      try {
        this.#tls.shutdown();
      } catch {
        // best effort: the peer may be gone
      }
    }
    this.#detach();
    closeFd(this.fd);
  }
}
