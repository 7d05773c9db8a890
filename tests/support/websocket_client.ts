/**
 * Test support: a WebSocket client that speaks frames itself over a real TLS
 * connection (Deno's rustls), so tests can send what no well-behaved client
 * would (unmasked frames, bad opcodes, fragmented pings, bad close codes)
 * and read exactly what the server sends back.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  encodeFrame,
  FrameDecoder,
  type Incoming,
  Opcode,
} from "../../src/http/websocket_frames.ts";
import { CA_CERT, type HttpResponse, parseResponse } from "./system.ts";

const enc = new TextEncoder();

/** The opening handshake's headers, with the RFC's sample key. */
export const UPGRADE_HEADERS: Record<string, string> = {
  upgrade: "websocket",
  connection: "Upgrade",
  "sec-websocket-version": "13",
  "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
};

/** The handshake request for `path` with `headers` (null drops one). */
export function upgradeRequest(
  path: string,
  headers: Record<string, string | null> = {},
): Uint8Array {
  const all: Record<string, string | null> = { host: "localhost", ...UPGRADE_HEADERS, ...headers };
  let head = `GET ${path} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(all)) if (v !== null) head += `${k}: ${v}\r\n`;
  return enc.encode(head + "\r\n");
}

/** A raw WebSocket client (or, before the upgrade, a plain HTTPS one). */
export class RawWebSocket {
  #conn: Deno.TlsConn;
  #buf = new Uint8Array(0);
  #pending: Promise<Uint8Array | null> | undefined;
  #decoder = new FrameDecoder({ maxMessageSize: 64 << 20, requireMask: false });

  private constructor(conn: Deno.TlsConn) {
    this.#conn = conn;
  }

  /** Connect to the gateway on `port` (TLS only, no request yet). */
  static async connect(port: number): Promise<RawWebSocket> {
    const caCerts = [await Deno.readTextFile(CA_CERT)];
    const conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts });
    await conn.handshake();
    return new RawWebSocket(conn);
  }

  /** Connect and upgrade on `path`; throws unless the answer is a 101. */
  static async open(port: number, path = "/echo"): Promise<RawWebSocket> {
    const ws = await RawWebSocket.connect(port);
    const res = await ws.request(upgradeRequest(path));
    if (res.status !== 101) {
      ws.close();
      throw new Error(`upgrade refused: ${res.status} ${res.body}`);
    }
    return ws;
  }

  /** Write `bytes` (a request, or frames). */
  async write(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
  }

  /** Send a request and read the response head (and a body with a length). */
  async request(bytes: Uint8Array, timeoutMs = 10_000): Promise<HttpResponse> {
    await this.write(bytes);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = parseResponse(this.#buf);
      if (r) {
        this.#buf = this.#buf.slice(r.length);
        return r.res;
      }
      if (!await this.#more(deadline)) throw new Error("closed before a response");
    }
  }

  /** Send one frame, masked (with a random key) unless `mask` is false. */
  send(
    opcode: number,
    payload: Uint8Array | string,
    opts: { fin?: boolean; mask?: boolean; rsv?: number } = {},
  ): Promise<void> {
    const bytes = typeof payload === "string" ? enc.encode(payload) : payload;
    const mask = opts.mask === false ? undefined : crypto.getRandomValues(new Uint8Array(4));
    return this.write(encodeFrame(opcode, bytes, { fin: opts.fin, mask, rsv: opts.rsv }));
  }

  /** The next message or control frame from the server; null at EOF. */
  async next(timeoutMs = 10_000): Promise<Incoming | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#buf.length > 0) {
        const { consumed, event } = this.#decoder.next(this.#buf);
        this.#buf = this.#buf.slice(consumed);
        if (event) return event;
      }
      if (!await this.#more(deadline)) return null;
    }
  }

  /** True once the server has closed the connection (EOF or reset),
   * discarding anything else it sends, within `timeoutMs`. */
  async closedByServer(timeoutMs = 5_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    try {
      while (await this.#more(deadline)) this.#buf = new Uint8Array(0);
      return true;
    } catch {
      return false;
    }
  }

  /** Read more bytes; false at EOF (or reset), throws at the deadline (the
   * read goes on: the next call takes its bytes). */
  async #more(deadline: number): Promise<boolean> {
    const ms = deadline - Date.now();
    if (ms <= 0) throw new Error("timed out waiting for the server");
    this.#pending ??= this.#read();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((ok) => timer = setTimeout(() => ok("timeout"), ms));
    try {
      const bytes = await Promise.race([this.#pending, timeout]);
      if (bytes === "timeout") throw new Error("timed out waiting for the server");
      this.#pending = undefined;
      if (bytes === null) return false;
      const next = new Uint8Array(this.#buf.length + bytes.length);
      next.set(this.#buf);
      next.set(bytes, this.#buf.length);
      this.#buf = next;
      return true;
    } finally {
      clearTimeout(timer);
    }
  }

  #read(): Promise<Uint8Array | null> {
    const chunk = new Uint8Array(65536);
    return this.#conn.read(chunk).then((n) => n === null ? null : chunk.subarray(0, n), () => null);
  }

  /** Close the TCP/TLS connection (no closing handshake). */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/** Send a text message on `ws` and expect it back (answering pings meanwhile). */
export async function echoes(ws: RawWebSocket, text: string): Promise<void> {
  await ws.send(Opcode.Text, text);
  let e = await ws.next();
  while (e?.type === "ping") {
    await ws.send(Opcode.Pong, e.data);
    e = await ws.next();
  }
  assert.deepEqual(e, { type: "text", data: text });
}
