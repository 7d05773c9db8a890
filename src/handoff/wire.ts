/**
 * What every control message shares on the wire: one SOCK_SEQPACKET
 * datagram, an 8-byte header (magic "HPOT", {@linkcode PROTOCOL_VERSION},
 * the type, a u16 transfer id) and then the body; the hard
 * {@linkcode Limits} on what a message may carry; the
 * {@linkcode ProtocolError} a malformed one throws.
 *
 * The message types and their bodies are protocol.ts's message table; the
 * HANDOFF body's layout is handoff_layout.ts. Both build on this file (and
 * protocol.ts re-exports what its importers use from here).
 *
 * @module
 */

import { MAX_READ_AHEAD } from "../../ffi/shim.ts";
import { RouteLimits } from "../routing/route_table.ts";

/** Protocol version spoken by this build.
 *
 * @example
 * ```ts
 * import { PROTOCOL_VERSION } from "./wire.ts";
 * console.log(`control protocol v${PROTOCOL_VERSION}`);
 * ```
 */
export const PROTOCOL_VERSION = 4;

/** Hard limits on what a message may carry.
 *
 * @example
 * ```ts
 * import { Limits } from "./wire.ts";
 * const fits = (json: Uint8Array) => json.length <= Limits.maxJson;
 * ```
 */
export const Limits = {
  /** Largest datagram accepted; larger ones are dropped by the kernel read. */
  maxMessage: 131072,
  /** Largest sealed TLS blob (wolfSSL's export is at most ~460 bytes). */
  maxBlob: 1024,
  /** Largest unread plaintext that travels with a connection. */
  maxUnread: 98304,
  /** Largest read-ahead ciphertext (the record reader's buffer). */
  maxReadAhead: MAX_READ_AHEAD,
  /** Largest JSON body (REGISTER, REGISTERED, STATS, ROUTES, MOVED). 64 KiB:
   * a ROUTES table of `maxRoutes` routes of the longest kind (256-byte routes,
   * 64-byte names) takes 41.8 KB, and `maxMembers` pids up to 10 KB more. */
  maxJson: 65536,
  /** Most routes the gateway serves in all (so the ROUTES table fits):
   * src/routing/route_table.ts's `RouteLimits`, which the router keeps. */
  maxRoutes: RouteLimits.maxRoutes,
  /** Longest route, in bytes (`RouteLimits` too). */
  maxRouteLength: RouteLimits.maxRouteLength,
  /** Most entries in one ACK (transfer ids are u16: fewer pending at once). */
  maxAcks: 4096,
  /** Most workers listed in a ROUTES table's members (all functions). */
  maxMembers: 1024,
  /** Most moves in one MOVED notice. */
  maxMoves: 256,
  /** Most connections one SHED asks to hand back. */
  maxShed: 100000,
} as const;

/** A malformed or over-limit control message. */
export class ProtocolError extends Error {
  /** Create an error naming what is wrong with a message.
   *
   * @example
   * ```ts
   * import { ProtocolError } from "./wire.ts";
   * throw new ProtocolError("bad magic");
   * ```
   */
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** "HPOT" read as a little-endian u32. */
const MAGIC = 0x544f5048;

/** The header's size: the body starts here.
 *
 * @example
 * ```ts
 * import { HEADER_BYTES } from "./wire.ts";
 * declare const message: Uint8Array;
 * const body = message.subarray(HEADER_BYTES);
 * ```
 */
export const HEADER_BYTES = 8;

/** Write the header's magic, version and `type` into a new message (the
 * transfer id, bytes 6-7, stays as it is: 0 in a new buffer); returns a view
 * of the message for the body's numbers.
 *
 * @example
 * ```ts
 * import { HEADER_BYTES, stampHeader } from "./wire.ts";
 * const message = new Uint8Array(HEADER_BYTES + 2);
 * stampHeader(message, 7).setUint16(HEADER_BYTES, 0, true);
 * ```
 */
export function stampHeader(message: Uint8Array, type: number): DataView {
  const v = new DataView(message.buffer, message.byteOffset, message.byteLength);
  v.setUint32(0, MAGIC, true);
  v.setUint8(4, PROTOCOL_VERSION);
  v.setUint8(5, type);
  return v;
}

/** Check a received message's size, magic and version; returns a view of
 * it, whose byte 5 is its type. Throws {@linkcode ProtocolError}.
 *
 * @example
 * ```ts
 * import { checkHeader } from "./wire.ts";
 * declare const message: Uint8Array;
 * const type = checkHeader(message).getUint8(5);
 * ```
 */
export function checkHeader(message: Uint8Array): DataView {
  if (message.length < HEADER_BYTES) throw new ProtocolError("message shorter than its header");
  if (message.length > Limits.maxMessage) throw new ProtocolError("message too large");
  const v = new DataView(message.buffer, message.byteOffset, message.byteLength);
  if (v.getUint32(0, true) !== MAGIC) throw new ProtocolError("bad magic");
  if (v.getUint8(4) !== PROTOCOL_VERSION) {
    throw new ProtocolError(`protocol version ${v.getUint8(4)}, expected ${PROTOCOL_VERSION}`);
  }
  return v;
}
