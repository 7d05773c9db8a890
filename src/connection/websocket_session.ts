/**
 * A WebSocket on a held connection, after its `101 Switching Protocols`:
 * reading frames (src/http/websocket_frames.ts) as they arrive, writing
 * messages in the order they were sent, answering pings, sending keep-alive
 * pings, and the closing handshake. The connection stays in this process
 * until the WebSocket closes; then the TCP/TLS connection closes too.
 *
 * Every wait is bounded: each write by the write timeout (progress: a large
 * message is written in 64 KiB pieces, each with its own deadline), the
 * peer's close frame by {@linkcode CLOSE_TIMEOUT_MS} once ours is sent, and
 * an idle peer by the keep-alive ping. Every buffer too: a message by
 * `maxMessageSize` (1009 once past it, checked per frame header), what is
 * queued to send by `maxBufferedAmount` (1008 when a peer that does not read
 * makes it overflow), the connection's read buffer by a frame header (the
 * payload goes straight into the message).
 *
 * Reading and writing go on at once (a TlsConnection may wait for a write
 * while it waits to read). Events are handled one frame at a time, in
 * order, before the next bytes are read.
 *
 * @module
 */

import {
  closePayload,
  encodeFrame,
  FrameDecoder,
  type Incoming,
  Opcode,
} from "../http/websocket_frames.ts";
import { logger } from "../operations/log.ts";
import type { TlsConnection } from "./tls_connection.ts";

/** Longest wait for the peer's close frame once ours is sent, ms. */
export const CLOSE_TIMEOUT_MS = 3000;
/** Largest piece written at once (each with its own write deadline). */
const MAX_PIECE = 64 * 1024;
/** How long a read waits when no keep-alive ping is due (idleTimeout 0). */
const NO_IDLE_WAIT_MS = 3600_000;
const ENCODER = new TextEncoder();
const EMPTY = new Uint8Array(0);
const log = logger("worker");

/** Limits and timeouts of a session. */
export interface SessionOptions {
  /** Longest a write may wait for the peer to take bytes, ms. */
  writeTimeoutMs: number;
  /** Largest message received, bytes (1009 beyond). */
  maxMessageSize: number;
  /** Keep-alive: a ping after half this long without hearing from the peer,
   * and a close (1001) if nothing comes for the other half, ms; 0: none. */
  idleTimeoutMs: number;
  /** Most bytes queued to send before the peer is given up (1008), when
   * more than one message is queued. */
  maxBufferedAmount: number;
}

/** How a WebSocket ended. */
export interface SessionEnd {
  /** The close code: the peer's, ours when we failed the connection, 1005
   * for a close frame without one, 1006 when no close frame came. */
  code: number;
  /** The close reason. */
  reason: string;
  /** Whether the closing handshake completed without a failure. */
  wasClean: boolean;
  /** Why we failed the connection (then an `error` event precedes the close). */
  error?: string;
}

/** What a session tells its WebSocket. */
export interface SessionEvents {
  /** A complete message: text, or binary in a buffer of its own. */
  message(data: string | Uint8Array): void;
  /** The closing handshake began (readyState CLOSING). */
  closing(): void;
  /** The connection is closed (readyState CLOSED). */
  closed(end: SessionEnd): void;
}

/** A frame waiting to be written, with the application bytes it carries. */
interface Pending {
  frame: Uint8Array | Promise<Uint8Array>;
  size: number;
  after?: () => void;
}

/**
 * The server side of one WebSocket connection.
 *
 * @example
 * ```ts
 * import { WebSocketSession } from "./websocket_session.ts";
 * import type { TlsConnection } from "./tls_connection.ts";
 * declare const conn: TlsConnection; // a connection that has just sent its 101
 * const session = new WebSocketSession(conn, {
 *   message: (data) => session.sendText(typeof data === "string" ? data : "binary"),
 *   closing: () => {},
 *   closed: (end) => console.log("closed", end.code),
 * }, { writeTimeoutMs: 30_000, maxMessageSize: 1 << 24, idleTimeoutMs: 30_000, maxBufferedAmount: 1 << 24 });
 * await session.run();
 * ```
 */
export class WebSocketSession {
  #conn: TlsConnection;
  #events: SessionEvents;
  #opts: SessionOptions;
  #decoder: FrameDecoder;
  #state: "open" | "closing" | "closed" = "open";
  #queue: Pending[] = [];
  #writing = false;
  #buffered = 0;
  #lastHeard = Date.now();
  #pingSent = false;
  /** Our close frame is queued / written; the peer's received. */
  #sentClose = false;
  #closeWritten = false;
  #peerDone = false;
  #peerClose: { code: number; reason: string } | undefined;
  /** Why we failed the connection, and the code we sent. */
  #failure: { code: number; reason: string } | undefined;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #done: () => void = () => {};
  #finished: Promise<void>;

  /** A session on `conn`, whose 101 has been written.
   *
   * @example
   * ```ts
   * import { WebSocketSession } from "./websocket_session.ts";
   * import type { TlsConnection } from "./tls_connection.ts";
   * declare const conn: TlsConnection;
   * new WebSocketSession(conn, { message() {}, closing() {}, closed() {} }, {
   *   writeTimeoutMs: 30_000, maxMessageSize: 1 << 24, idleTimeoutMs: 0, maxBufferedAmount: 1 << 24,
   * });
   * ```
   */
  constructor(conn: TlsConnection, events: SessionEvents, opts: SessionOptions) {
    this.#conn = conn;
    this.#events = events;
    this.#opts = opts;
    this.#decoder = new FrameDecoder({ maxMessageSize: opts.maxMessageSize, requireMask: true });
    this.#finished = new Promise((ok) => this.#done = ok);
  }

  /** Application bytes sent but not written to the connection yet. */
  get bufferedAmount(): number {
    return this.#buffered;
  }

  /** Read and handle frames until the connection is closed.
   *
   * @example
   * ```ts
   * import type { WebSocketSession } from "./websocket_session.ts";
   * declare const session: WebSocketSession;
   * await session.run(); // the WebSocket and its connection are closed now
   * ```
   */
  async run(): Promise<void> {
    const conn = this.#conn;
    try {
      while (!this.#ended()) {
        while (conn.bufferedLength > 0 && !this.#ended()) {
          const { consumed, event } = this.#decoder.next(conn.buffered);
          conn.consume(consumed);
          if (event) this.#handle(event);
          else break; // the rest is part of a frame header
        }
        if (this.#ended()) break;
        const f = await conn.fill(this.#readDeadline());
        if (f === "data") {
          this.#lastHeard = Date.now();
          this.#pingSent = false;
        } else if (f === "timeout") {
          this.#keepAlive(); // or woken early (a drain): nothing is due then
        } else {
          this.#finish(this.#peerClose?.code ?? 1006, this.#peerClose?.reason ?? "", false);
        }
      }
    } catch (e) {
      this.#finish(1006, "", false, `internal error: ${(e as Error).message}`);
    }
    await this.#finished;
  }

  /** Queue a text message.
   *
   * @example
   * ```ts
   * import type { WebSocketSession } from "./websocket_session.ts";
   * declare const session: WebSocketSession;
   * session.sendText("hello");
   * ```
   */
  sendText(text: string): void {
    if (this.#state !== "open") return;
    const bytes = ENCODER.encode(text);
    if (!this.#fits(bytes.length)) return;
    this.#enqueue({ frame: encodeFrame(Opcode.Text, bytes), size: bytes.length });
  }

  /** Queue a binary message (copied now; a promise for a Blob's bytes keeps
   * its place in the order).
   *
   * @example
   * ```ts
   * import type { WebSocketSession } from "./websocket_session.ts";
   * declare const session: WebSocketSession;
   * session.sendBinary(new Uint8Array([1, 2, 3]), 3);
   * ```
   */
  sendBinary(bytes: Uint8Array | Promise<Uint8Array>, size: number): void {
    if (this.#state !== "open" || !this.#fits(size)) return;
    const frame = bytes instanceof Promise
      ? bytes.then((b) => encodeFrame(Opcode.Binary, b))
      : encodeFrame(Opcode.Binary, bytes);
    this.#enqueue({ frame, size });
  }

  /** Start the closing handshake with `code` (none: an empty close frame)
   * and `reason`, unless it has begun.
   *
   * @example
   * ```ts
   * import type { WebSocketSession } from "./websocket_session.ts";
   * declare const session: WebSocketSession;
   * session.close(1000, "done");
   * ```
   */
  close(code?: number, reason = ""): void {
    if (this.#state !== "open") return;
    this.#sendClose(code, reason);
  }

  /** Closed (checked after awaits: a method, so no stale narrowing). */
  #isClosed(): boolean {
    return this.#state === "closed";
  }

  /** Nothing more to read: closed, or the peer sends nothing more. */
  #ended(): boolean {
    return this.#state === "closed" || this.#peerDone;
  }

  /** Whether `size` more bytes may be queued; if not, the peer is given up. */
  #fits(size: number): boolean {
    if (this.#buffered === 0 || this.#buffered + size <= this.#opts.maxBufferedAmount) return true;
    this.#fail(1008, "send buffer full: the client does not read", true);
    return false;
  }

  #readDeadline(): number {
    const idle = this.#opts.idleTimeoutMs;
    if (this.#state !== "open" || idle <= 0) return Date.now() + NO_IDLE_WAIT_MS;
    return this.#lastHeard + (this.#pingSent ? idle : idle / 2);
  }

  /** A read timed out: ping an idle peer, or give up on one that did not
   * answer (Deno's `idleTimeout`: close 1001, error and close events). */
  #keepAlive(): void {
    const idle = this.#opts.idleTimeoutMs;
    if (this.#state !== "open" || idle <= 0) return;
    const quiet = Date.now() - this.#lastHeard;
    if (this.#pingSent && quiet >= idle) {
      this.#fail(1001, "No response from ping frame.", true);
    } else if (!this.#pingSent && quiet >= idle / 2) {
      this.#pingSent = true;
      this.#enqueue({ frame: encodeFrame(Opcode.Ping, EMPTY), size: 0 });
    }
  }

  #handle(event: Incoming): void {
    switch (event.type) {
      case "text":
      case "binary":
        // Messages that arrive once closing has begun are dropped.
        if (this.#state === "open") this.#events.message(event.data);
        return;
      case "ping":
        if (this.#state === "open") {
          this.#enqueue({ frame: encodeFrame(Opcode.Pong, event.data), size: 0 });
        }
        return;
      case "pong":
        return;
      case "close":
        this.#peerDone = true;
        this.#peerClose = { code: event.code, reason: event.reason };
        // Echo its code (none when it sent none); then the server closes
        // the TCP connection first (RFC 6455, 7.1.1).
        if (!this.#sentClose) this.#sendClose(event.code === 1005 ? undefined : event.code, "");
        this.#maybeFinish();
        return;
      case "error":
        log.debug("conn {conn}: websocket failed: {code} {reason}", {
          conn: this.#conn.info.connId,
          code: event.code,
          reason: event.reason,
        });
        this.#fail(event.code, event.reason, event.peerClosed === true);
        return;
    }
  }

  /** Fail the connection: a close frame with `code` (queued messages not
   * begun are dropped), then the closing handshake. `peerDone`: the peer
   * will send nothing more (it closed, or it does not answer): close once
   * our close frame is written. */
  #fail(code: number, reason: string, peerDone: boolean): void {
    if (this.#state === "closed") return;
    this.#failure ??= { code, reason };
    if (peerDone) this.#peerDone = true;
    for (const p of this.#queue) this.#buffered -= p.size;
    this.#queue = this.#queue.filter((p) => p.size === 0 && p.after !== undefined);
    if (!this.#sentClose) this.#sendClose(code, reason);
    this.#maybeFinish();
  }

  #sendClose(code: number | undefined, reason: string): void {
    this.#sentClose = true;
    this.#state = "closing";
    this.#closeTimer = setTimeout(() => {
      const f = this.#failure;
      this.#finish(
        f?.code ?? 1006,
        f?.reason ?? "",
        false,
        f?.reason ?? `the closing handshake did not finish within ${CLOSE_TIMEOUT_MS} ms`,
      );
    }, CLOSE_TIMEOUT_MS);
    this.#events.closing();
    this.#enqueue({
      frame: encodeFrame(Opcode.Close, closePayload(code, reason)),
      size: 0,
      after: () => {
        this.#closeWritten = true;
        this.#maybeFinish();
      },
    });
  }

  /** Both close frames are through (or the peer sends nothing more): close. */
  #maybeFinish(): void {
    if (!this.#closeWritten || !this.#peerDone) return;
    const f = this.#failure;
    const end = f ?? this.#peerClose ?? { code: 1006, reason: "" };
    this.#finish(end.code, end.reason, f === undefined, f?.reason, true);
  }

  /** The end: close the connection (close_notify when `notify`), tell the
   * WebSocket. */
  #finish(code: number, reason: string, wasClean: boolean, error?: string, notify = false): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    clearTimeout(this.#closeTimer);
    this.#queue = [];
    this.#conn.close(notify);
    log.debug("conn {conn}: websocket closed: {code} {reason}", {
      conn: this.#conn.info.connId,
      code,
      reason,
    });
    try {
      this.#events.closed({ code, reason, wasClean, error });
    } finally {
      this.#done();
    }
  }

  #enqueue(p: Pending): void {
    this.#queue.push(p);
    this.#buffered += p.size;
    if (!this.#writing) {
      this.#pump().catch((e) => {
        this.#finish(1006, "", false, `internal error: ${(e as Error).message}`);
      });
    }
  }

  /** Write the queue in order; synchronous while the socket takes
   * everything at once. */
  async #pump(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && this.#state !== "closed") {
        const p = this.#queue.shift()!;
        let frame: Uint8Array;
        try {
          frame = p.frame instanceof Promise ? await p.frame : p.frame;
        } catch {
          this.#buffered -= p.size;
          this.#fail(1011, "a Blob could not be read", false);
          continue;
        }
        for (let off = 0; off < frame.length && !this.#isClosed(); off += MAX_PIECE) {
          const piece = frame.subarray(off, Math.min(off + MAX_PIECE, frame.length));
          const w = this.#conn.write(piece, Date.now() + this.#opts.writeTimeoutMs);
          if (!(typeof w === "boolean" ? w : await w)) {
            const peer = this.#peerClose;
            this.#finish(
              peer?.code ?? 1006,
              peer?.reason ?? "",
              false,
              "the client did not take what was sent in time (or is gone)",
            );
            return;
          }
        }
        this.#buffered -= p.size;
        p.after?.();
      }
    } finally {
      this.#writing = false;
    }
  }
}
