/**
 * The HANDOFF body: a live connection in transit (its fd travels beside the
 * message with SCM_RIGHTS). Its layout is described once, by
 * {@linkcode HANDOFF_LAYOUT}: the encoder ({@linkcode layOutHandoff}), the
 * decoder ({@linkcode decodeHandoff}), the in-place patches
 * ({@linkcode setTransferId}, {@linkcode setHandoffCount}) and the seal's
 * associated data ({@linkcode handoffAad}: the bound fields as they sit in
 * the message) all read that table.
 *
 * The table covers the message from byte 6 (the header's transfer id) on;
 * the header's magic, version and type are protocol.ts's, which stamps them
 * (`encodeHandoff`), checks them (`decodeMessage`), and re-exports what its
 * importers use from here.
 *
 * @module
 */

import type { ConnectionInfo } from "../connection/tls_connection.ts";
import type { Sealed } from "./seal.ts";
import { Limits, ProtocolError } from "./wire.ts";

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });
const NO_BYTES = new Uint8Array(0);

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** What a HANDOFF carries besides the seal and the transfer id. */
export interface HandoffFields {
  /** The connection's identity (its handoff count included), as the
   * receiving {@linkcode TlsConnection} keeps it. */
  info: ConnectionInfo;
  /** wolfSSL protocol version id (3 = TLS 1.2, 4 = TLS 1.3). */
  tlsVersion: number;
  /** When the connection left its last holder, µs since the epoch. */
  sentAt: number;
  /** Decrypted request bytes not yet answered (the next request starts here). */
  unread: Uint8Array;
  /** TLS records read from the socket and not decrypted yet (after `unread`). */
  readAhead: Uint8Array;
}

/** A HANDOFF to encode: its fields and the sealed TLS state. */
export interface HandoffParts extends HandoffFields {
  /** The TLS state, sealed with the deployment key. */
  sealed: Sealed;
  /** The transfer id (0 when not given; the channel sets it when sending). */
  transfer?: number;
}

/** A decoded HANDOFF: a live connection in transit. Its byte fields are
 * views into the message it was decoded from. */
export interface Handoff extends HandoffFields {
  /** The TLS state, sealed with the deployment key. */
  sealed: Sealed;
  /** The sender's transfer id (the ACK names it). */
  transfer: number;
  /** The bytes the seal is bound to ({@linkcode handoffAad} of the message). */
  aad: Uint8Array;
}

// ---- The layout, as one table

/** How a HANDOFF field is stored: a little-endian number (`u8` to `f64`), a
 * fixed number of bytes (`fixed`: `size` of them), or a variable part
 * (`text`, UTF-8, or `bytes`) whose length, a `length`-wide number, sits at
 * the field's offset while its bytes follow the fixed part, in table order. */
export type FieldKind = "u8" | "u16" | "u32" | "f64" | "fixed" | "text" | "bytes";

/** A field's part in the seal of the TLS state:
 * - `bound`: in the associated data ({@linkcode handoffAad}), so a changed
 *   byte makes the message fail to open;
 * - `patched`: rewritten in transit, so left out of it: the transfer id (the
 *   channel numbers what it sends) and the handoff count (a gateway forwards
 *   a connection unopened and counts the move);
 * - `seal`: the seal itself (nonce, tag, sealed state), which the AEAD
 *   checks on its own.
 *
 * The header's magic, version and type are not in the table: the decoder
 * accepts one value of each. */
export type FieldSeal = "bound" | "patched" | "seal";

/** Where a field's value goes in a decoded {@linkcode Handoff}: a property
 * of `info`, of `sealed`, or of the Handoff itself. */
type FieldPlace =
  | { readonly in: "info"; readonly name: keyof ConnectionInfo }
  | { readonly in: "sealed"; readonly name: keyof Sealed }
  | { readonly in: "handoff"; readonly name: keyof Omit<Handoff, "info" | "sealed" | "aad"> };

/** One row of {@linkcode HANDOFF_LAYOUT}.
 *
 * @example
 * ```ts
 * import type { HandoffField } from "./handoff_layout.ts";
 * const row: HandoffField = { in: "info", name: "connId", kind: "u32", at: 40, seal: "bound" };
 * ```
 */
export type HandoffField = FieldPlace & {
  /** How it is stored. */
  readonly kind: FieldKind;
  /** Offset of its value, or (`text`, `bytes`) of its length. */
  readonly at: number;
  /** `fixed`: its size in bytes. */
  readonly size?: number;
  /** `text` and `bytes`: the length's width. */
  readonly length?: "u8" | "u16" | "u32";
  /** `text` and `bytes`: fewest bytes (0 if not given). */
  readonly min?: number;
  /** `text` and `bytes`: most bytes. */
  readonly max?: number;
  /** Numbers: the only values accepted. */
  readonly oneOf?: readonly number[];
  /** Its part in the seal. */
  readonly seal: FieldSeal;
};

/**
 * The HANDOFF message after the header's magic, version and type: the one
 * description of its layout, which {@linkcode layOutHandoff},
 * {@linkcode decodeHandoff}, {@linkcode setTransferId},
 * {@linkcode setHandoffCount}, {@linkcode handoffSealed} and
 * {@linkcode handoffAad} read. Bytes 6 to 67 are the fixed part, each in
 * exactly one field; the variable parts follow it in table order. The bound
 * fields close the fixed part and open the variable ones, so the associated
 * data is one run of the message's own bytes (offset 40 up to the sealed
 * state); this module checks all that when it loads.
 *
 * @example
 * ```ts
 * import { HANDOFF_LAYOUT } from "./handoff_layout.ts";
 * const bound = HANDOFF_LAYOUT.filter((f) => f.seal === "bound").map((f) => f.name);
 * // ["connId", "gatewayId", "sentAt", "tlsVersion", "sni", "alpn", "peer", "unread", "readAhead"]
 * ```
 */
export const HANDOFF_LAYOUT = [
  // Rewritten in transit.
  { in: "handoff", name: "transfer", kind: "u16", at: 6, seal: "patched" },
  { in: "info", name: "handoffs", kind: "u32", at: 8, seal: "patched" },
  // The seal: ChaCha20-Poly1305's nonce and tag.
  { in: "sealed", name: "nonce", kind: "fixed", at: 12, size: 12, seal: "seal" },
  { in: "sealed", name: "tag", kind: "fixed", at: 24, size: 16, seal: "seal" },
  // Bound: the associated data starts here.
  { in: "info", name: "connId", kind: "u32", at: 40, seal: "bound" },
  { in: "info", name: "gatewayId", kind: "u32", at: 44, seal: "bound" },
  // µs since the epoch (for the handoff latency histogram).
  { in: "handoff", name: "sentAt", kind: "f64", at: 48, seal: "bound" },
  { in: "handoff", name: "tlsVersion", kind: "u8", at: 56, oneOf: [3, 4], seal: "bound" },
  { in: "info", name: "sni", kind: "text", at: 57, length: "u8", max: 255, seal: "bound" },
  { in: "info", name: "alpn", kind: "text", at: 58, length: "u8", max: 255, seal: "bound" },
  { in: "info", name: "peer", kind: "text", at: 59, length: "u8", max: 255, seal: "bound" },
  {
    in: "handoff",
    name: "unread",
    kind: "bytes",
    at: 60,
    length: "u32",
    max: Limits.maxUnread,
    seal: "bound",
  },
  // The read-ahead is ciphertext: TLS records read from the socket that the
  // sender's wolfSSL had not decrypted (a pipelined request, part of the next).
  {
    in: "handoff",
    name: "readAhead",
    kind: "bytes",
    at: 64,
    length: "u16",
    max: Limits.maxReadAhead,
    seal: "bound",
  },
  // The sealed TLS state, last (its length is bound).
  {
    in: "sealed",
    name: "ciphertext",
    kind: "bytes",
    at: 66,
    length: "u16",
    min: 1,
    max: Limits.maxBlob,
    seal: "seal",
  },
] as const satisfies readonly HandoffField[];

// Every property a Handoff carries has a row: a missing one fails type
// checking here (with its name).
type Laid<P extends FieldPlace["in"]> = Extract<(typeof HANDOFF_LAYOUT)[number], { in: P }>["name"];
type NotLaid =
  | Exclude<keyof ConnectionInfo, Laid<"info">>
  | Exclude<keyof Sealed, Laid<"sealed">>
  | Exclude<keyof Omit<Handoff, "info" | "sealed" | "aad">, Laid<"handoff">>;
const _everyFieldLaid: [NotLaid] extends [never] ? true : NotLaid = true;

// The table as the codec reads it: one object shape, numbers for names.
const U8 = 0, U16 = 1, U32 = 2, F64 = 3, FIXED_BYTES = 4, TEXT = 5, BYTES = 6;
const KIND = { u8: U8, u16: U16, u32: U32, f64: F64, fixed: FIXED_BYTES, text: TEXT, bytes: BYTES };
const WIDTH = [1, 2, 4, 8];
const IN_HANDOFF = 0, IN_INFO = 1, IN_SEALED = 2;

interface Row {
  name: string;
  holder: number;
  kind: number;
  at: number;
  /** Bytes at `at`: the value's, or the length's. */
  width: number;
  /** Variable parts: the length's kind. */
  lengthKind: number;
  min: number;
  max: number;
  oneOf: readonly number[] | null;
  bound: boolean;
}

const ROWS: readonly Row[] = (HANDOFF_LAYOUT as readonly HandoffField[]).map((f) => {
  const kind = KIND[f.kind];
  const lengthKind = f.length ? KIND[f.length] : -1;
  return {
    name: f.name,
    holder: f.in === "info" ? IN_INFO : f.in === "sealed" ? IN_SEALED : IN_HANDOFF,
    kind,
    at: f.at,
    width: kind < FIXED_BYTES
      ? WIDTH[kind]
      : kind === FIXED_BYTES
      ? f.size ?? 0
      : WIDTH[lengthKind],
    lengthKind,
    min: f.min ?? 0,
    max: f.max ?? 0,
    oneOf: f.oneOf ?? null,
    bound: f.seal === "bound",
  };
});

/** Check the table's promises; returns [fixed part's size, start of the
 * associated data]. */
function checkLayout(): [number, number] {
  const bad = (why: string) => new Error(`HANDOFF_LAYOUT: ${why}`);
  const fixed = Math.max(...ROWS.map((r) => r.at + r.width));
  // Per byte of the fixed part: 1 when it is associated data (a bound field,
  // or the length of a variable part), 0 when not, -1 while no field has it.
  const bytes = new Int8Array(fixed).fill(-1);
  let sealedPart = false;
  for (const r of ROWS) {
    const variable = r.kind >= TEXT;
    if (r.width <= 0 || (variable && r.lengthKind > U32)) throw bad(`${r.name}: bad size`);
    if (r.holder === IN_SEALED && r.kind < FIXED_BYTES) throw bad(`${r.name}: not bytes`);
    for (let b = r.at; b < r.at + r.width; b++) {
      if (b < 6 || bytes[b] !== -1) throw bad(`byte ${b} is in two fields`);
      bytes[b] = r.bound || variable ? 1 : 0;
    }
    if (variable && !r.bound) sealedPart = true;
    else if (variable && sealedPart) throw bad(`${r.name} follows a part that is not bound`);
  }
  const aadStart = bytes.indexOf(1);
  for (let b = 6; b < fixed; b++) {
    if (bytes[b] === -1) throw bad(`byte ${b} is in no field`);
    if ((bytes[b] === 1) !== (b >= aadStart)) throw bad("the bound bytes are not one run");
  }
  return [fixed, aadStart];
}

const [FIXED, AAD_START] = checkLayout();

/** A row's index by its name (only names the table has). */
const ROW_OF = Object.fromEntries(ROWS.map((r, i) => [r.name, i])) as Record<
  (typeof HANDOFF_LAYOUT)[number]["name"],
  number
>;
const TRANSFER = ROWS[ROW_OF.transfer];
const HANDOFFS = ROWS[ROW_OF.handoffs];

function readNumber(v: DataView, kind: number, at: number): number {
  switch (kind) {
    case U8:
      return v.getUint8(at);
    case U16:
      return v.getUint16(at, true);
    case U32:
      return v.getUint32(at, true);
    default:
      return v.getFloat64(at, true);
  }
}

function writeNumber(v: DataView, kind: number, at: number, n: number): void {
  switch (kind) {
    case U8:
      v.setUint8(at, n);
      return;
    case U16:
      v.setUint16(at, n, true);
      return;
    case U32:
      v.setUint32(at, n >>> 0, true);
      return;
    default:
      v.setFloat64(at, n, true);
  }
}

/** The value of `r` in `h` (`sealed` for the seal's fields). */
function valueOf(h: HandoffFields, sealed: Sealed | null, r: Row): unknown {
  const o = r.holder === IN_INFO ? h.info : r.holder === IN_SEALED ? sealed : h;
  return (o as unknown as Record<string, unknown>)[r.name];
}

/** Bytes of `s` in UTF-8, without a TextEncoder call for ASCII (SNI, ALPN
 * and addresses are ASCII). */
function utf8Length(s: string): number {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) return enc.encode(s).length;
  }
  return s.length;
}

/** Write `s` (`n` bytes of UTF-8) at `off`. */
function writeUtf8(s: string, buf: Uint8Array, off: number, n: number): void {
  if (n !== s.length) {
    enc.encodeInto(s, buf.subarray(off, off + n)); // not ASCII
    return;
  }
  for (let i = 0; i < n; i++) buf[off + i] = s.charCodeAt(i);
}

/** The string of the `n` UTF-8 bytes at `off`, without a TextDecoder call
 * for ASCII. */
function readUtf8(buf: Uint8Array, off: number, n: number, name: string): string {
  let s = "";
  for (let i = off; i < off + n; i++) {
    if (buf[i] > 0x7f) {
      try {
        return dec.decode(buf.subarray(off, off + n));
      } catch {
        throw new ProtocolError(`HANDOFF: ${name} is not UTF-8`);
      }
    }
    s += String.fromCharCode(buf[i]);
  }
  return s;
}

/** Per row, the size of its variable part in the message at hand. */
const sizes = new Uint32Array(ROWS.length);

/** Lay out a HANDOFF of `h` in a new message; with `sealed` null the seal is
 * left zero, for a state of `stateLength` bytes to be sealed into it. The
 * header's magic, version and type (bytes 0-5) are left zero: the caller
 * stamps them (protocol.ts `encodeHandoff` and `encodeUnsealedHandoff`, which
 * is what everything else calls). Throws {@linkcode ProtocolError} when a
 * field is over its limit, before anything is written.
 *
 * @example
 * ```ts
 * import { layOutHandoff } from "./handoff_layout.ts";
 * const unstamped = layOutHandoff({
 *   info: { connId: 1, gatewayId: 7, handoffs: 1, sni: "", alpn: "http/1.1", peer: "127.0.0.1:5000" },
 *   tlsVersion: 4, unread: new Uint8Array(0), readAhead: new Uint8Array(0),
 *   sentAt: Date.now() * 1000,
 * }, null, 300);
 * ```
 */
export function layOutHandoff(
  h: HandoffFields,
  sealed: Sealed | null,
  stateLength: number,
): Uint8Array {
  // Check everything first: nothing is written into a message that fails.
  let total = FIXED;
  for (let i = 0; i < ROWS.length; i++) {
    const r = ROWS[i];
    if (r.holder === IN_SEALED && sealed === null) {
      if (r.kind >= TEXT) total += sizes[i] = checkSize(r, stateLength);
      continue;
    }
    const value = valueOf(h, sealed, r);
    if (r.kind === TEXT) total += sizes[i] = checkSize(r, utf8Length(value as string));
    else if (r.kind === BYTES) total += sizes[i] = checkSize(r, (value as Uint8Array).length);
    else if (r.kind === FIXED_BYTES) {
      if ((value as Uint8Array).length !== r.width) {
        throw new ProtocolError(`HANDOFF ${r.name} of ${(value as Uint8Array).length} bytes`);
      }
    } else if (r.oneOf !== null && !r.oneOf.includes(value as number)) {
      throw new ProtocolError(`HANDOFF ${r.name} ${value}`);
    }
  }
  const buf = new Uint8Array(total);
  const v = view(buf);
  let off = FIXED;
  for (let i = 0; i < ROWS.length; i++) {
    const r = ROWS[i];
    const given = r.holder !== IN_SEALED || sealed !== null;
    if (r.kind >= TEXT) {
      const n = sizes[i];
      writeNumber(v, r.lengthKind, r.at, n);
      if (given && r.kind === TEXT) writeUtf8(valueOf(h, sealed, r) as string, buf, off, n);
      else if (given) buf.set(valueOf(h, sealed, r) as Uint8Array, off);
      off += n;
    } else if (r.kind === FIXED_BYTES) {
      if (given) buf.set(valueOf(h, sealed, r) as Uint8Array, r.at);
    } else {
      writeNumber(v, r.kind, r.at, (valueOf(h, sealed, r) as number | undefined) ?? 0);
    }
  }
  return buf;
}

function checkSize(r: Row, n: number): number {
  if (n < r.min || n > r.max) {
    throw new ProtocolError(`HANDOFF ${r.name} of ${n} bytes (${r.min} to ${r.max})`);
  }
  return n;
}

/** Decode the HANDOFF in `buf` (`v` a view of it), whose header the caller
 * has checked (protocol.ts `decodeMessage`, which is what everything else
 * calls). Its byte fields are views into `buf`. Throws
 * {@linkcode ProtocolError} when a length or a value is not what the table
 * allows, or the lengths do not add up to the message.
 *
 * @example
 * ```ts
 * import { decodeHandoff } from "./handoff_layout.ts";
 * declare const message: Uint8Array;
 * const v = new DataView(message.buffer, message.byteOffset, message.byteLength);
 * const { transfer, info } = decodeHandoff(message, v);
 * ```
 */
export function decodeHandoff(buf: Uint8Array, v: DataView): Handoff {
  if (buf.length < FIXED) throw new ProtocolError("HANDOFF shorter than its fixed part");
  let total = FIXED;
  for (let i = 0; i < ROWS.length; i++) {
    const r = ROWS[i];
    if (r.kind < TEXT) continue;
    const n = readNumber(v, r.lengthKind, r.at);
    if (n < r.min || n > r.max) throw new ProtocolError(`HANDOFF: bad ${r.name} length`);
    total += sizes[i] = n;
  }
  if (total !== buf.length) {
    throw new ProtocolError(`HANDOFF: lengths add up to ${total}, message has ${buf.length}`);
  }
  // The values by row, then the Handoff in one literal: a store per row by
  // name in this loop would be a megamorphic keyed store (measured: ~70 ns,
  // +14% per decode).
  const values = new Array<unknown>(ROWS.length);
  let off = FIXED, aadEnd = -1;
  for (let i = 0; i < ROWS.length; i++) {
    const r = ROWS[i];
    if (r.kind >= TEXT) {
      const n = sizes[i];
      if (!r.bound && aadEnd < 0) aadEnd = off;
      values[i] = r.kind === TEXT ? readUtf8(buf, off, n, r.name) : buf.subarray(off, off + n);
      off += n;
    } else if (r.kind === FIXED_BYTES) {
      values[i] = buf.subarray(r.at, r.at + r.width);
    } else {
      const n = readNumber(v, r.kind, r.at);
      if (r.oneOf !== null && !r.oneOf.includes(n)) {
        throw new ProtocolError(`HANDOFF: bad ${r.name} ${n}`);
      }
      values[i] = n;
    }
  }
  const I = ROW_OF;
  return {
    info: {
      connId: values[I.connId] as number,
      gatewayId: values[I.gatewayId] as number,
      handoffs: values[I.handoffs] as number,
      peer: values[I.peer] as string,
      sni: values[I.sni] as string,
      alpn: values[I.alpn] as string,
    },
    tlsVersion: values[I.tlsVersion] as number,
    sentAt: values[I.sentAt] as number,
    unread: values[I.unread] as Uint8Array,
    readAhead: values[I.readAhead] as Uint8Array,
    sealed: {
      nonce: values[I.nonce] as Uint8Array,
      tag: values[I.tag] as Uint8Array,
      ciphertext: values[I.ciphertext] as Uint8Array,
    },
    transfer: values[I.transfer] as number,
    aad: buf.subarray(AAD_START, aadEnd < 0 ? off : aadEnd),
  };
}

/** The bytes of an encoded HANDOFF that its seal is bound to: the fields of
 * {@linkcode HANDOFF_LAYOUT} marked `bound`, as they sit in the message (a
 * view of it, no copy). The transfer id and the handoff count are not among
 * them: they change in transit.
 *
 * @example
 * ```ts
 * import { handoffAad } from "./handoff_layout.ts";
 * declare const message: Uint8Array;
 * const aad = handoffAad(message);
 * ```
 */
export function handoffAad(message: Uint8Array): Uint8Array {
  if (message.length < FIXED) throw new ProtocolError("HANDOFF shorter than its fixed part");
  const v = view(message);
  let end = message.length;
  for (const r of ROWS) {
    if (r.kind >= TEXT && !r.bound) end -= readNumber(v, r.lengthKind, r.at);
  }
  return message.subarray(AAD_START, Math.max(AAD_START, end));
}

/** The seal's fields (nonce, tag, sealed state) of an encoded HANDOFF, as
 * views of the message: {@linkcode Sealer.seal} writes into them.
 *
 * @example
 * ```ts
 * import { handoffSealed } from "./handoff_layout.ts";
 * declare const message: Uint8Array;
 * const { nonce, tag, ciphertext } = handoffSealed(message);
 * ```
 */
export function handoffSealed(message: Uint8Array): Sealed {
  if (message.length < FIXED) throw new ProtocolError("HANDOFF shorter than its fixed part");
  const v = view(message);
  const sealed: Sealed = { nonce: NO_BYTES, tag: NO_BYTES, ciphertext: NO_BYTES };
  let off = FIXED;
  for (const r of ROWS) {
    let part: Uint8Array | undefined;
    if (r.kind >= TEXT) {
      const n = readNumber(v, r.lengthKind, r.at);
      if (r.holder === IN_SEALED) part = message.subarray(off, off + n);
      off += n;
    } else if (r.holder === IN_SEALED) part = message.subarray(r.at, r.at + r.width);
    if (part) (sealed as unknown as Record<string, Uint8Array>)[r.name] = part;
  }
  return sealed;
}

/** Set the transfer id of an encoded HANDOFF in place (its sender numbers
 * the connections it has in flight on one channel).
 *
 * @example
 * ```ts
 * import { setTransferId } from "./handoff_layout.ts";
 * declare const message: Uint8Array;
 * setTransferId(message, 12);
 * ```
 */
export function setTransferId(message: Uint8Array, transfer: number): void {
  writeNumber(view(message), TRANSFER.kind, TRANSFER.at, transfer);
}

/** The transfer id of an encoded HANDOFF (at least its header), decodable
 * or not: a receiver refuses an undecodable one by this id.
 *
 * @example
 * ```ts
 * import { transferIdOf } from "./handoff_layout.ts";
 * declare const message: Uint8Array;
 * console.log(transferIdOf(message));
 * ```
 */
export function transferIdOf(message: Uint8Array): number {
  return readNumber(view(message), TRANSFER.kind, TRANSFER.at);
}

/** Rewrite the handoff count of an encoded HANDOFF in place (the gateway
 * forwards a returned connection without opening its seal; the count is not
 * bound to it).
 *
 * @example
 * ```ts
 * import { setHandoffCount } from "./handoff_layout.ts";
 * declare const message: Uint8Array;
 * setHandoffCount(message, 3);
 * ```
 */
export function setHandoffCount(message: Uint8Array, handoffs: number): void {
  writeNumber(view(message), HANDOFFS.kind, HANDOFFS.at, handoffs);
}
