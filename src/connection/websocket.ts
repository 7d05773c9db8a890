/**
 * WebSockets for functions: {@linkcode upgradeWebSocket} has the shape of
 * `Deno.upgradeWebSocket`: it checks the opening handshake and returns a
 * `101` response for the handler to return, and a web `WebSocket` for the
 * server's side. The socket opens once the 101 is written; its connection
 * then stays in this worker (it never moves) until the socket closes.
 *
 * The frames, limits and timeouts are src/connection/websocket_session.ts's;
 * this module is the web API over it, and the process's registry of open
 * sockets (counted in the metrics, closed with 1001 when the worker drains).
 *
 * A listener that throws (or an async one that rejects) is logged, not
 * reported as an uncaught error: one socket's bug does not end the worker.
 *
 * @module
 */

import type { TlsConnection } from "./tls_connection.ts";
import { WebSocketSession } from "./websocket_session.ts";
import { logger } from "../operations/log.ts";
import { HttpError } from "../http/http_error.ts";
import { upgradingResponse } from "./upgrade.ts";
import { acceptKey, checkHandshake } from "../http/websocket_handshake.ts";

/** Options of {@linkcode upgradeWebSocket}. */
export interface UpgradeWebSocketOptions {
  /** The subprotocol to answer with; it must be one the client offered. */
  protocol?: string;
  /** Keep-alive, as Deno's: a ping after half this many seconds without a
   * frame from the client, and a close (1001, with `error` and `close`
   * events) if nothing comes for the other half. 0 disables it. Default 30. */
  idleTimeout?: number;
  /** Largest message accepted from the client, bytes; a larger one closes
   * the connection with 1009. Default 16 MiB. */
  maxMessageSize?: number;
  /** Most bytes `send()` may queue for a client that does not read (more
   * than one message): past it the connection closes with 1008. Default 16 MiB. */
  maxBufferedAmount?: number;
}

/** What {@linkcode upgradeWebSocket} returns. */
export interface WebSocketUpgrade {
  /** The 101 response: return it from the handler. */
  response: Response;
  /** The server's side of the WebSocket. */
  socket: WebSocket;
}

/** Default {@linkcode UpgradeWebSocketOptions.maxMessageSize}. */
export const DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024;
const DEFAULT_IDLE_TIMEOUT_S = 30;
const MAX_REASON_BYTES = 123;
const ENCODER = new TextEncoder();
const log = logger("worker");

/** The process's open sockets (the registry drain and metrics use). */
const open = new Set<ServerWebSocket>();
/** Set by {@linkcode closeWebSockets}: sockets that open later close at once. */
let goingAway: { code: number; reason: string } | undefined;

type Listener = EventListenerOrEventListenerObject;
// deno-lint-ignore no-explicit-any
type Handler<E extends Event> = ((this: WebSocket, ev: E) => any) | null;

/** Opens a pending socket on its connection (set in the class's static block). */
let startSocket: (
  socket: ServerWebSocket,
  conn: TlsConnection,
  written: boolean,
  writeTimeoutMs: number,
) => Promise<void>;
/** Closes a socket with any code (the drain's 1001 too; `close()` takes
 * only 1000 and 3000-4999). */
let closeSocket: (socket: ServerWebSocket, code: number | undefined, reason: string) => void;

/**
 * The server's side of a WebSocket: the web `WebSocket` interface (events
 * `open`, `message`, `error`, `close`; `send`, `close`, `readyState`,
 * `bufferedAmount`, `binaryType`, `protocol`, `url`). Made by
 * {@linkcode upgradeWebSocket}.
 *
 * @example
 * ```ts
 * import { upgradeWebSocket } from "./websocket.ts";
 * declare const req: Request;
 * const { socket, response } = upgradeWebSocket(req);
 * socket.onmessage = (e) => socket.send(e.data);
 * ```
 */
export class ServerWebSocket extends EventTarget implements WebSocket {
  /** The socket is waiting for its 101 to be written. */
  static readonly CONNECTING = 0;
  /** Messages can be sent and received. */
  static readonly OPEN = 1;
  /** The closing handshake has begun. */
  static readonly CLOSING = 2;
  /** The connection is closed. */
  static readonly CLOSED = 3;
  /** {@linkcode ServerWebSocket.CONNECTING}. */
  readonly CONNECTING = 0;
  /** {@linkcode ServerWebSocket.OPEN}. */
  readonly OPEN = 1;
  /** {@linkcode ServerWebSocket.CLOSING}. */
  readonly CLOSING = 2;
  /** {@linkcode ServerWebSocket.CLOSED}. */
  readonly CLOSED = 3;
  /** The request's URL, as `wss:`. */
  readonly url: string;
  /** The subprotocol agreed on, or "". */
  readonly protocol: string;
  /** No extension is ever negotiated. */
  readonly extensions = "";
  #readyState = 0;
  #binaryType: BinaryType = "arraybuffer";
  #session: WebSocketSession | undefined;
  /** close() called before the socket opened. */
  #closeEarly: { code?: number; reason: string } | undefined;
  #limits: Required<Omit<UpgradeWebSocketOptions, "protocol">>;
  /** The wrapper registered for each listener, by type and capture. */
  #wrapped = new WeakMap<object, Map<string, EventListener>>();
  #handlers = new Map<string, { fn: (ev: Event) => unknown; listener: EventListener }>();

  static {
    startSocket = (socket, conn, written, writeTimeoutMs) =>
      socket.#start(conn, written, writeTimeoutMs);
    closeSocket = (socket, code, reason) => socket.#closeWith(code, reason);
  }

  /** Use {@linkcode upgradeWebSocket}: a socket made here never opens.
   *
   * @example
   * ```ts
   * import { ServerWebSocket } from "./websocket.ts";
   * const s = new ServerWebSocket("wss://localhost/chat", "", {});
   * console.log(s.readyState); // 0
   * ```
   */
  constructor(url: string, protocol: string, opts: UpgradeWebSocketOptions) {
    super();
    this.url = url;
    this.protocol = protocol;
    const idle = opts.idleTimeout ?? DEFAULT_IDLE_TIMEOUT_S;
    const max = opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    const buffered = opts.maxBufferedAmount ?? DEFAULT_MAX_MESSAGE_SIZE;
    if (!(idle >= 0) || !(max >= 0) || !(buffered >= 0)) {
      throw new RangeError("idleTimeout, maxMessageSize and maxBufferedAmount must be >= 0");
    }
    this.#limits = { idleTimeout: idle, maxMessageSize: max, maxBufferedAmount: buffered };
  }

  /** CONNECTING, OPEN, CLOSING or CLOSED. */
  get readyState(): number {
    return this.#readyState;
  }

  /** Bytes passed to `send()` not written to the connection yet. */
  get bufferedAmount(): number {
    return this.#session?.bufferedAmount ?? 0;
  }

  /** How binary messages arrive: "arraybuffer" (the default) or "blob". */
  get binaryType(): BinaryType {
    return this.#binaryType;
  }

  set binaryType(value: BinaryType) {
    if (value === "arraybuffer" || value === "blob") this.#binaryType = value;
  }

  /** The `open` event handler. */
  get onopen(): Handler<Event> {
    return this.#handler("open");
  }
  set onopen(fn: Handler<Event>) {
    this.#setHandler("open", fn);
  }
  /** The `message` event handler. */
  get onmessage(): Handler<MessageEvent> {
    return this.#handler("message");
  }
  set onmessage(fn: Handler<MessageEvent>) {
    this.#setHandler("message", fn);
  }
  /** The `error` event handler. */
  get onerror(): Handler<Event | ErrorEvent> {
    return this.#handler("error");
  }
  set onerror(fn: Handler<Event | ErrorEvent>) {
    this.#setHandler("error", fn);
  }
  /** The `close` event handler. */
  get onclose(): Handler<CloseEvent> {
    return this.#handler("close");
  }
  set onclose(fn: Handler<CloseEvent>) {
    this.#setHandler("close", fn);
  }

  // deno-lint-ignore no-explicit-any
  #handler(type: string): any {
    return this.#handlers.get(type)?.fn ?? null;
  }

  /** An event handler property: one listener, registered where it was
   * first set, calling whatever function the property holds now. */
  #setHandler(type: string, value: unknown): void {
    const current = this.#handlers.get(type);
    const fn = typeof value === "function" ? value as (ev: Event) => unknown : null;
    if (fn === null) {
      if (current) {
        this.removeEventListener(type, current.listener);
        this.#handlers.delete(type);
      }
      return;
    }
    if (current) {
      current.fn = fn;
      return;
    }
    const entry = { fn, listener: (ev: Event) => entry.fn.call(this, ev) };
    this.#handlers.set(type, entry);
    this.addEventListener(type, entry.listener);
  }

  /** Listen for `open`, `message`, `error` or `close`.
   *
   * @example
   * ```ts
   * import type { ServerWebSocket } from "./websocket.ts";
   * declare const socket: ServerWebSocket;
   * socket.addEventListener("message", (e) => console.log(e.data));
   * ```
   */
  override addEventListener<K extends keyof WebSocketEventMap>(
    type: K,
    // deno-lint-ignore no-explicit-any
    listener: (this: WebSocket, ev: WebSocketEventMap[K]) => any,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: Listener | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: Listener | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    if (listener === null) return;
    super.addEventListener(type, this.#wrap(type, listener, options, true)!, options);
  }

  /** Stop listening.
   *
   * @example
   * ```ts
   * import type { ServerWebSocket } from "./websocket.ts";
   * declare const socket: ServerWebSocket;
   * const log = (e: Event) => console.log(e.type);
   * socket.addEventListener("close", log);
   * socket.removeEventListener("close", log);
   * ```
   */
  override removeEventListener<K extends keyof WebSocketEventMap>(
    type: K,
    // deno-lint-ignore no-explicit-any
    listener: (this: WebSocket, ev: WebSocketEventMap[K]) => any,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    listener: Listener | null,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    listener: Listener | null,
    options?: boolean | EventListenerOptions,
  ): void {
    if (listener === null) return;
    const wrapped = this.#wrap(type, listener, options, false);
    if (wrapped) super.removeEventListener(type, wrapped, options);
  }

  /** The wrapper of `listener` that logs what it throws (made once per
   * listener, type and capture, so adding twice stays one listener). */
  #wrap(
    type: string,
    listener: Listener,
    options: boolean | EventListenerOptions | undefined,
    make: boolean,
  ): EventListener | undefined {
    const capture = typeof options === "boolean" ? options : options?.capture === true;
    const key = `${capture ? 1 : 0}${type}`;
    let byType = this.#wrapped.get(listener);
    const found = byType?.get(key);
    if (found || !make) return found;
    const wrapper = (ev: Event) => {
      try {
        const r: unknown = typeof listener === "function"
          ? listener.call(this, ev)
          : listener.handleEvent(ev);
        if (r instanceof Promise) r.catch((e) => listenerFailed(ev.type, e));
      } catch (e) {
        listenerFailed(ev.type, e);
      }
    };
    if (!byType) this.#wrapped.set(listener, byType = new Map());
    byType.set(key, wrapper);
    return wrapper;
  }

  /** Send a message: a string as text, bytes (an ArrayBuffer, a view, a
   * Blob) as binary. Throws while CONNECTING; ignored once closing.
   *
   * @example
   * ```ts
   * import type { ServerWebSocket } from "./websocket.ts";
   * declare const socket: ServerWebSocket;
   * socket.send("hello");
   * socket.send(new Uint8Array([1, 2, 3]));
   * ```
   */
  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
    if (this.#readyState === 0) {
      throw new DOMException("the WebSocket is not open yet", "InvalidStateError");
    }
    const session = this.#session;
    if (this.#readyState !== 1 || !session) return;
    if (typeof data === "string") session.sendText(data);
    else if (data instanceof Blob) {
      session.sendBinary(data.arrayBuffer().then((b) => new Uint8Array(b)), data.size);
    } else if (ArrayBuffer.isView(data)) {
      session.sendBinary(
        new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
        data.byteLength,
      );
    } else if (data instanceof ArrayBuffer || data instanceof SharedArrayBuffer) {
      session.sendBinary(new Uint8Array(data), data.byteLength);
    } else {
      session.sendText(String(data));
    }
  }

  /** Start the closing handshake: `code` 1000 or 3000-4999, `reason` at
   * most 123 bytes of UTF-8 (both optional).
   *
   * @example
   * ```ts
   * import type { ServerWebSocket } from "./websocket.ts";
   * declare const socket: ServerWebSocket;
   * socket.close(1000, "bye");
   * ```
   */
  close(code?: number, reason?: string): void {
    if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) {
      throw new DOMException(`close code ${code} is not 1000 or 3000-4999`, "InvalidAccessError");
    }
    const why = reason ?? "";
    if (ENCODER.encode(why).length > MAX_REASON_BYTES) {
      throw new DOMException("close reason over 123 bytes", "SyntaxError");
    }
    // A reason needs a code: 1000 then (as browsers do).
    this.#closeWith(code ?? (why === "" ? undefined : 1000), why);
  }

  #closeWith(code: number | undefined, reason: string): void {
    if (this.#readyState === 0) {
      this.#closeEarly = { code, reason };
      this.#readyState = 2;
    } else if (this.#readyState === 1) {
      this.#session?.close(code, reason);
    }
  }

  async #start(conn: TlsConnection, written: boolean, writeTimeoutMs: number): Promise<void> {
    if (!written) {
      conn.close(false);
      this.#closed({ code: 1006, reason: "", wasClean: false, error: "the 101 was not written" });
      return;
    }
    const session = new WebSocketSession(conn, {
      message: (data) => this.#message(data),
      closing: () => {
        this.#readyState = 2;
      },
      closed: (end) => this.#closed(end),
    }, {
      writeTimeoutMs,
      maxMessageSize: this.#limits.maxMessageSize,
      idleTimeoutMs: this.#limits.idleTimeout * 1000,
      maxBufferedAmount: this.#limits.maxBufferedAmount,
    });
    this.#session = session;
    open.add(this);
    const early = this.#closeEarly;
    if (early) {
      session.close(early.code, early.reason); // closed before it opened: no open event
    } else {
      this.#readyState = 1;
      this.dispatchEvent(new Event("open"));
      if (goingAway && this.#readyState === 1) session.close(goingAway.code, goingAway.reason);
    }
    await session.run();
  }

  #message(data: string | Uint8Array): void {
    const value = typeof data === "string"
      ? data
      : this.#binaryType === "blob"
      ? new Blob([data as Uint8Array<ArrayBuffer>])
      : data.buffer;
    this.dispatchEvent(new MessageEvent("message", { data: value }));
  }

  #closed(end: { code: number; reason: string; wasClean: boolean; error?: string }): void {
    this.#readyState = 3;
    open.delete(this);
    if (end.error !== undefined) {
      this.dispatchEvent(new ErrorEvent("error", { message: end.error }));
    }
    this.dispatchEvent(
      new CloseEvent("close", { code: end.code, reason: end.reason, wasClean: end.wasClean }),
    );
  }
}

function listenerFailed(type: string, e: unknown): void {
  log.error("a websocket {type} listener failed: {error}", { type, error: String(e) });
}

/**
 * Upgrade `req` to a WebSocket, as `Deno.upgradeWebSocket` does: return
 * `response` (101) from the handler; `socket` opens once it is written.
 * Throws an `HttpError` (the worker answers it: 400, or 426 for another
 * WebSocket version) when `req` is not a valid opening handshake, or when
 * `options.protocol` is not one the client offered.
 *
 * @example
 * ```ts
 * import { serveFunction, upgradeWebSocket } from "../../mod.ts";
 * serveFunction({ name: "echo", routes: ["/echo"] }, (req) => {
 *   const { socket, response } = upgradeWebSocket(req);
 *   socket.onmessage = (e) => socket.send(e.data);
 *   return response;
 * });
 * ```
 */
export function upgradeWebSocket(
  req: Request,
  options: UpgradeWebSocketOptions = {},
): WebSocketUpgrade {
  const { key, protocols } = checkHandshake(req);
  const protocol = options.protocol ?? "";
  const headers: [string, string][] = [["sec-websocket-accept", acceptKey(key)]];
  if (protocol !== "") {
    if (!protocols.includes(protocol)) {
      throw new HttpError(400, `subprotocol '${protocol}' was not offered by the client`);
    }
    headers.push(["sec-websocket-protocol", protocol]);
  }
  const url = new URL(req.url);
  url.protocol = url.protocol === "http:" ? "ws:" : "wss:";
  const socket = new ServerWebSocket(url.href, protocol, options);
  const response = upgradingResponse(
    "websocket",
    headers,
    (conn, written, writeTimeoutMs) =>
      startSocket(socket, conn, written, writeTimeoutMs).catch((e) => {
        log.error("conn {conn}: websocket: {error}", {
          conn: conn.info.connId,
          error: String(e),
        });
        conn.close(false);
      }),
  );
  return { socket, response };
}

/**
 * Close every open WebSocket of this process with `code` (default 1001,
 * "going away"), and those that open from now on as soon as they open: the
 * worker's drain. Returns how many were open.
 *
 * @example
 * ```ts
 * import { closeWebSockets } from "./websocket.ts";
 * const closing = closeWebSockets(); // each gets a close frame 1001
 * ```
 */
export function closeWebSockets(code = 1001, reason = "going away"): number {
  goingAway = { code, reason };
  const n = open.size;
  for (const socket of [...open]) closeSocket(socket, code, reason);
  return n;
}

/**
 * WebSockets open in this process right now.
 *
 * @example
 * ```ts
 * import { openWebSockets } from "./websocket.ts";
 * console.log(openWebSockets()); // 0
 * ```
 */
export function openWebSockets(): number {
  return open.size;
}
