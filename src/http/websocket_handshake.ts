/**
 * The server's side of the WebSocket opening handshake (RFC 6455, section
 * 4.2): which requests may be upgraded, and the `Sec-WebSocket-Accept` value
 * that proves the server read the client's key.
 *
 * @module
 */

import { HttpError } from "./http_error.ts";
import { sha1 } from "./sha1.ts";

/** The GUID RFC 6455 appends to the client's key. */
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** Base64 of 16 bytes. */
const KEY_RE = /^[A-Za-z0-9+/]{22}==$/;
const ENCODER = new TextEncoder();

/** What a valid opening handshake asks for. */
export interface Handshake {
  /** `Sec-WebSocket-Key`. */
  key: string;
  /** The subprotocols the client offers (`Sec-WebSocket-Protocol`), in order. */
  protocols: string[];
}

/** Whether a comma-separated header value has `token` (case-insensitive). */
function hasToken(value: string | null, token: string): boolean {
  if (value === null) return false;
  return value.split(",").some((t) => t.trim().toLowerCase() === token);
}

/**
 * Check that `req` is a WebSocket opening handshake: GET, `Upgrade:
 * websocket`, `Connection: upgrade`, `Sec-WebSocket-Version: 13` and a
 * `Sec-WebSocket-Key` of 16 bytes in base64. Throws an {@linkcode HttpError}
 * otherwise: 400, or 426 with `Sec-WebSocket-Version: 13` for another version
 * (the responder answers it).
 *
 * @example
 * ```ts
 * import { checkHandshake } from "./websocket_handshake.ts";
 * const { key } = checkHandshake(new Request("https://localhost/chat", {
 *   headers: {
 *     upgrade: "websocket", connection: "Upgrade", "sec-websocket-version": "13",
 *     "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
 *   },
 * }));
 * ```
 */
export function checkHandshake(req: Request): Handshake {
  const h = req.headers;
  if (req.method !== "GET") throw new HttpError(400, "a WebSocket upgrade must be a GET");
  if (!hasToken(h.get("upgrade"), "websocket")) {
    throw new HttpError(400, "expected Upgrade: websocket");
  }
  if (!hasToken(h.get("connection"), "upgrade")) {
    throw new HttpError(400, "expected Connection: upgrade");
  }
  if (h.get("sec-websocket-version") !== "13") {
    throw new HttpError(426, "unsupported Sec-WebSocket-Version (13 is)", [
      ["sec-websocket-version", "13"],
    ]);
  }
  const key = h.get("sec-websocket-key") ?? "";
  if (!KEY_RE.test(key)) throw new HttpError(400, "bad Sec-WebSocket-Key");
  const offered = h.get("sec-websocket-protocol");
  const protocols = offered === null
    ? []
    : offered.split(",").map((p) => p.trim()).filter((p) => p !== "");
  return { key, protocols };
}

/**
 * `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`:
 * base64(SHA-1(key + GUID)).
 *
 * @example
 * ```ts
 * import { acceptKey } from "./websocket_handshake.ts";
 * acceptKey("dGhlIHNhbXBsZSBub25jZQ=="); // "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" (RFC 6455's example)
 * ```
 */
export function acceptKey(key: string): string {
  const digest = sha1(ENCODER.encode(key + GUID));
  return btoa(String.fromCharCode(...digest));
}
