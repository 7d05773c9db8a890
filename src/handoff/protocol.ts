/**
 * The control-channel protocol between the gateway and its workers: one
 * message per SOCK_SEQPACKET datagram, an 8-byte header (magic "HPOT",
 * version, type, u16 transfer id), then the body. HANDOFF carries a live
 * connection (its fd travels beside the message with SCM_RIGHTS); its
 * transfer id is what the receiver's ACK names: the sender keeps the
 * connection until then. ACK is binary (u16 count, then per entry u16
 * transfer id and u8 status); the others are small JSON documents. Every
 * length is checked against hard limits before use.
 *
 * ROUTES (gateway → every registered worker, after REGISTERED and whenever
 * the table changes) carries the gateway's whole route table, so workers
 * decide which requests are theirs with the same table and matcher
 * (src/routing/route_table.ts) as the gateway.
 *
 * HANDOFF body layout (little-endian):
 * ```
 *  8 u32 connection id      12 u32 gateway id     16 u32 handoff count
 * 20 u8  TLS version        21 u8 SNI length      22 u8 ALPN length
 * 23 u8  peer length        24 u16 blob length    26 u16 read-ahead length
 * 28 u32 unread length      32 nonce[12]          44 tag[16]
 * 60 f64 sent at (µs since the epoch, for the handoff latency histogram)
 * 68 SNI, ALPN, peer address, sealed TLS blob, unread plaintext, read-ahead
 * ```
 * The read-ahead is ciphertext: TLS records read from the socket that the
 * sender's wolfSSL had not decrypted (a pipelined request, part of the next).
 * ```
 * ```
 *
 * @module
 */

import { MAX_READ_AHEAD } from "../../ffi/shim.ts";
import type { Sealed } from "./seal.ts";

/** Protocol version spoken by this build. */
export const PROTOCOL_VERSION = 3;
/** Message types. */
export const MessageType = {
  /** worker → gateway: name, routes, pid. */
  REGISTER: 1,
  /** gateway → worker: accepted (with the deployment key) or refused. */
  REGISTERED: 2,
  /** both ways: a live connection. */
  HANDOFF: 3,
  /** worker → gateway: the worker's counters, for /metrics and balancing. */
  STATS: 4,
  /** worker → gateway: send me no more connections (I am draining). */
  DRAIN: 5,
  /** gateway → worker: the versioned route table (every route, vacant functions included). */
  ROUTES: 6,
  /** both ways: HANDOFFs adopted or refused, by transfer id. */
  ACK: 7,
  /** worker → gateway: connections it moved straight to another worker. */
  MOVED: 8,
} as const;

/** One entry of an ACK: the receiver took the connection (it owns it now)
 * or refused it (the sender still owns it and places it elsewhere). */
export interface Ack {
  /** The HANDOFF's transfer id. */
  transfer: number;
  /** True when adopted. */
  ok: boolean;
}

/** Hard limits on what a message may carry. */
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
  /** Most routes the gateway serves in all (so the ROUTES table fits). */
  maxRoutes: 128,
  /** Longest route, in bytes. */
  maxRouteLength: 256,
  /** Most entries in one ACK (transfer ids are u16: fewer pending at once). */
  maxAcks: 4096,
  /** Most workers listed in a ROUTES table's members (all functions). */
  maxMembers: 1024,
  /** Most moves in one MOVED notice. */
  maxMoves: 256,
} as const;

const MAGIC = 0x544f5048; // "HPOT" read as little-endian u32
const HEADER = 8;
const FIXED = 68;

/** A malformed or over-limit control message. */
export class ProtocolError extends Error {
  /** Create an error naming what is wrong with a message.
   *
   * @example
   * ```ts
   * import { ProtocolError } from "./protocol.ts";
   * throw new ProtocolError("bad magic");
   * ```
   */
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** A live connection in transit. */
export interface Handoff {
  /** Connection id, given by the gateway that accepted it. */
  connId: number;
  /** Random id of that gateway process (ids restart with a new gateway). */
  gatewayId: number;
  /** How many times the connection has moved between processes. */
  handoffs: number;
  /** wolfSSL protocol version id (3 = TLS 1.2, 4 = TLS 1.3). */
  tlsVersion: number;
  /** Server name the client asked for, or "". */
  sni: string;
  /** ALPN protocol agreed, or "". */
  alpn: string;
  /** The client's address, "ip:port". */
  peer: string;
  /** The TLS state, sealed with the deployment key. */
  sealed: Sealed;
  /** Decrypted request bytes not yet answered (the next request starts here). */
  unread: Uint8Array;
  /** TLS records read from the socket and not decrypted yet (after `unread`). */
  readAhead: Uint8Array;
  /** When the connection left its last holder, µs since the epoch. */
  sentAt: number;
  /** The sender's transfer id (from the header; the ACK names it). */
  transfer?: number;
}

/** REGISTER body. */
export interface Register {
  /** The function's name, e.g. "sum". */
  name: string;
  /** Paths it serves, e.g. ["/sum"]. */
  routes: string[];
  /** The worker's process id. */
  pid: number;
  /** True when the launcher restarted this worker after it died. */
  restarted?: boolean;
  /** True when its routes may nest with other functions' routes ("/sum/admin"
   * inside "/sum", or "/a" around "/a/b"); without it such a registration is
   * refused. */
  nestedRoutes?: boolean;
  /** True when it listens on its peer socket (`peer-<pid>.sock` beside the
   * control socket) for direct handoffs from other workers. */
  peer?: boolean;
}

/** ROUTES body: the gateway's route table.
 *
 * @example
 * ```ts
 * import { encodeJson, MessageType, type Routes } from "./protocol.ts";
 * const body: Routes = { version: 7, routes: { "/sum": "sum", "/product": "product" } };
 * const bytes = encodeJson(MessageType.ROUTES, body);
 * ```
 */
export interface Routes {
  /** Grows with every change of the table (per gateway process); a worker
   * keeps the newest it has seen. */
  version: number;
  /** Route → function name, for every function the gateway knows, vacant
   * ones (no worker right now) included, e.g. `{ "/sum": "sum" }`. */
  routes: Record<string, string>;
  /** How connections change worker: "direct" (worker to worker, through the
   * members' peer sockets) or "gateway" (back through the gateway). */
  handoff?: "direct" | "gateway";
  /** Function name → the pids of its workers that take direct handoffs now
   * (serving, listening on `peer-<pid>.sock`). */
  members?: Record<string, number[]>;
}

/** MOVED body: connections a worker handed straight to another worker (the
 * gateway logs and counts route changes it did not see). */
export interface Moved {
  moves: {
    /** Connection id. */
    conn: number;
    /** The receiving worker's pid and function. */
    to: number;
    fn: string;
    /** The route the request was for. */
    route: string;
  }[];
}

/** STATS body: a worker's counters since it started (monotonic). */
export interface Stats {
  /** Connections it holds now. */
  held: number;
  /** Requests answered, by "route status" (e.g. "/sum 200"). */
  requests: Record<string, number>;
  /** Handoff latency histogram: counts per bucket (cumulative upper bounds
   * in HANDOFF_LATENCY_BUCKETS, then +Inf), sum in seconds, count. */
  handoffLatency: { buckets: number[]; sum: number; count: number };
}

/** Upper bounds (seconds) of the handoff latency histogram's buckets. */
export const HANDOFF_LATENCY_BUCKETS: readonly number[] = [
  0.000025,
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.1,
];

/** REGISTERED body. */
export type Registered = { ok: true; gatewayPid: number; key: string } | {
  ok: false;
  error: string;
};

/** A decoded message. */
export type Message =
  | { type: typeof MessageType.REGISTER; body: Register }
  | { type: typeof MessageType.REGISTERED; body: Registered }
  | { type: typeof MessageType.HANDOFF; body: Handoff }
  | { type: typeof MessageType.STATS; body: Stats }
  | { type: typeof MessageType.DRAIN; body: Record<string, never> }
  | { type: typeof MessageType.ROUTES; body: Routes }
  | { type: typeof MessageType.ACK; body: Ack[] }
  | { type: typeof MessageType.MOVED; body: Moved };

/** The message types with a JSON body. */
type JsonType =
  | typeof MessageType.REGISTER
  | typeof MessageType.REGISTERED
  | typeof MessageType.STATS
  | typeof MessageType.DRAIN
  | typeof MessageType.ROUTES
  | typeof MessageType.MOVED;

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

function header(buf: Uint8Array, type: number): DataView {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  v.setUint32(0, MAGIC, true);
  v.setUint8(4, PROTOCOL_VERSION);
  v.setUint8(5, type);
  v.setUint16(6, 0, true);
  return v;
}

/** UTF-8 bytes of `s`, without a TextEncoder call for ASCII (SNI, ALPN and
 * addresses are ASCII; an encoder call costs more than the whole copy).
 *
 * @example
 * ```ts
 * import { utf8 } from "./protocol.ts";
 * utf8("localhost"); // Uint8Array(9)
 * ```
 */
export function utf8(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) return enc.encode(s);
    out[i] = c;
  }
  return out;
}

/** The string of UTF-8 `bytes`, without a TextDecoder call for ASCII; throws
 * on invalid UTF-8. */
function fromUtf8(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] > 0x7f) return dec.decode(bytes);
    s += String.fromCharCode(bytes[i]);
  }
  return s;
}

function short(s: string, what: string, max: number): Uint8Array {
  const b = utf8(s);
  if (b.length > max) throw new ProtocolError(`${what} longer than ${max} bytes`);
  return b;
}

/** Encode a HANDOFF message.
 *
 * @example
 * ```ts
 * import { encodeHandoff } from "./protocol.ts";
 * const bytes = encodeHandoff({
 *   connId: 1, gatewayId: 7, handoffs: 1, tlsVersion: 4, sni: "", alpn: "http/1.1",
 *   peer: "127.0.0.1:5000", unread: new Uint8Array(0), readAhead: new Uint8Array(0),
 *   sentAt: Date.now() * 1000,
 *   sealed: { nonce: new Uint8Array(12), tag: new Uint8Array(16), ciphertext: new Uint8Array(300) },
 * });
 * ```
 */
export function encodeHandoff(h: Handoff): Uint8Array {
  const sni = short(h.sni, "SNI", 255);
  const alpn = short(h.alpn, "ALPN", 255);
  const peer = short(h.peer, "peer address", 255);
  const blob = h.sealed.ciphertext;
  if (blob.length === 0 || blob.length > Limits.maxBlob) {
    throw new ProtocolError(`TLS blob of ${blob.length} bytes (limit ${Limits.maxBlob})`);
  }
  if (h.unread.length > Limits.maxUnread) {
    throw new ProtocolError(`${h.unread.length} unread bytes (limit ${Limits.maxUnread})`);
  }
  if (h.readAhead.length > Limits.maxReadAhead) {
    throw new ProtocolError(
      `${h.readAhead.length} read-ahead bytes (limit ${Limits.maxReadAhead})`,
    );
  }
  if (h.sealed.nonce.length !== 12 || h.sealed.tag.length !== 16) {
    throw new ProtocolError("bad nonce or tag length");
  }
  const total = FIXED + sni.length + alpn.length + peer.length + blob.length + h.unread.length +
    h.readAhead.length;
  const buf = new Uint8Array(total);
  const v = header(buf, MessageType.HANDOFF);
  v.setUint32(8, h.connId >>> 0, true);
  v.setUint32(12, h.gatewayId >>> 0, true);
  v.setUint32(16, h.handoffs >>> 0, true);
  v.setUint8(20, h.tlsVersion);
  v.setUint8(21, sni.length);
  v.setUint8(22, alpn.length);
  v.setUint8(23, peer.length);
  v.setUint16(24, blob.length, true);
  v.setUint16(26, h.readAhead.length, true);
  v.setUint32(28, h.unread.length, true);
  buf.set(h.sealed.nonce, 32);
  buf.set(h.sealed.tag, 44);
  v.setFloat64(60, h.sentAt, true);
  let off = FIXED;
  for (const part of [sni, alpn, peer, blob, h.unread, h.readAhead]) {
    buf.set(part, off);
    off += part.length;
  }
  return buf;
}

/** Set the transfer id of an encoded HANDOFF in place (its sender numbers
 * the connections it has in flight on one channel).
 *
 * @example
 * ```ts
 * import { setTransferId } from "./protocol.ts";
 * declare const message: Uint8Array;
 * setTransferId(message, 12);
 * ```
 */
export function setTransferId(message: Uint8Array, transfer: number): void {
  new DataView(message.buffer, message.byteOffset, message.byteLength).setUint16(
    6,
    transfer,
    true,
  );
}

/** Encode an ACK for `acks` (at most {@linkcode Limits.maxAcks}).
 *
 * @example
 * ```ts
 * import { encodeAck } from "./protocol.ts";
 * const bytes = encodeAck([{ transfer: 12, ok: true }]);
 * ```
 */
export function encodeAck(acks: readonly Ack[]): Uint8Array {
  if (acks.length === 0 || acks.length > Limits.maxAcks) {
    throw new ProtocolError(`ACK of ${acks.length} entries`);
  }
  const buf = new Uint8Array(HEADER + 2 + acks.length * 3);
  const v = header(buf, MessageType.ACK);
  v.setUint16(HEADER, acks.length, true);
  let off = HEADER + 2;
  for (const a of acks) {
    v.setUint16(off, a.transfer, true);
    v.setUint8(off + 2, a.ok ? 1 : 0);
    off += 3;
  }
  return buf;
}

function decodeAck(buf: Uint8Array, v: DataView): Ack[] {
  if (buf.length < HEADER + 2) throw new ProtocolError("ACK shorter than its count");
  const n = v.getUint16(HEADER, true);
  if (n === 0 || n > Limits.maxAcks || buf.length !== HEADER + 2 + n * 3) {
    throw new ProtocolError("ACK: bad length");
  }
  const acks: Ack[] = [];
  for (let i = 0, off = HEADER + 2; i < n; i++, off += 3) {
    const status = v.getUint8(off + 2);
    if (status > 1) throw new ProtocolError("ACK: bad status");
    acks.push({ transfer: v.getUint16(off, true), ok: status === 1 });
  }
  return acks;
}

/** Rewrite the handoff count of an encoded HANDOFF in place (the gateway
 * forwards a returned connection without decoding its blob).
 *
 * @example
 * ```ts
 * import { setHandoffCount } from "./protocol.ts";
 * declare const message: Uint8Array;
 * setHandoffCount(message, 3);
 * ```
 */
export function setHandoffCount(message: Uint8Array, handoffs: number): void {
  new DataView(message.buffer, message.byteOffset, message.byteLength).setUint32(
    16,
    handoffs >>> 0,
    true,
  );
}

/** Encode a JSON message (REGISTER, REGISTERED, STATS, DRAIN or ROUTES).
 *
 * @example
 * ```ts
 * import { encodeJson, MessageType } from "./protocol.ts";
 * const bytes = encodeJson(MessageType.REGISTER, { name: "sum", routes: ["/sum"], pid: 42 });
 * ```
 */
export function encodeJson(
  type: JsonType,
  body: Register | Registered | Stats | Routes | Moved | Record<string, never>,
): Uint8Array {
  const json = enc.encode(JSON.stringify(body));
  if (json.length > Limits.maxJson) throw new ProtocolError("JSON body too large");
  const buf = new Uint8Array(HEADER + json.length);
  header(buf, type);
  buf.set(json, HEADER);
  return buf;
}

const ROUTE_RE = /^\/[A-Za-z0-9._~!$&'()*+,;=:@%\/-]*$/;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const isRoute = (route: unknown): route is string =>
  typeof route === "string" && route.length <= Limits.maxRouteLength && ROUTE_RE.test(route);

function parseRegister(o: unknown): Register {
  const r = o as Partial<Register>;
  if (typeof r?.name !== "string" || !NAME_RE.test(r.name)) {
    throw new ProtocolError("REGISTER: name must be 1-64 letters, digits, '.', '_' or '-'");
  }
  if (!Array.isArray(r.routes) || r.routes.length === 0 || r.routes.length > 64) {
    throw new ProtocolError("REGISTER: routes must be a list of 1 to 64 paths");
  }
  for (const route of r.routes) {
    if (!isRoute(route)) {
      throw new ProtocolError(`REGISTER: bad route ${JSON.stringify(route).slice(0, 80)}`);
    }
  }
  if (!Number.isInteger(r.pid) || (r.pid as number) <= 0) {
    throw new ProtocolError("REGISTER: pid must be a positive integer");
  }
  if (r.restarted !== undefined && typeof r.restarted !== "boolean") {
    throw new ProtocolError("REGISTER: restarted must be a boolean");
  }
  if (r.nestedRoutes !== undefined && typeof r.nestedRoutes !== "boolean") {
    throw new ProtocolError("REGISTER: nestedRoutes must be a boolean");
  }
  if (r.peer !== undefined && typeof r.peer !== "boolean") {
    throw new ProtocolError("REGISTER: peer must be a boolean");
  }
  return {
    name: r.name,
    routes: [...r.routes],
    pid: r.pid as number,
    restarted: !!r.restarted,
    nestedRoutes: !!r.nestedRoutes,
    peer: !!r.peer,
  };
}

const count = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;

function parseStats(o: unknown): Stats {
  const r = o as Partial<Stats>;
  const h = r?.handoffLatency;
  const ok = r && count(r.held) && r.requests && typeof r.requests === "object" &&
    Object.keys(r.requests).length <= 1024 &&
    Object.entries(r.requests).every(([k, n]) => k.length <= 300 && count(n)) &&
    h && Array.isArray(h.buckets) && h.buckets.length === HANDOFF_LATENCY_BUCKETS.length + 1 &&
    h.buckets.every(count) && count(h.count) && typeof h.sum === "number" && h.sum >= 0;
  if (!ok) throw new ProtocolError("STATS: malformed");
  return { held: r.held!, requests: { ...r.requests }, handoffLatency: h };
}

function parseRegistered(o: unknown): Registered {
  const r = o as Record<string, unknown>;
  if (r?.ok === true && typeof r.key === "string" && Number.isInteger(r.gatewayPid)) {
    return { ok: true, key: r.key, gatewayPid: r.gatewayPid as number };
  }
  if (r?.ok === false && typeof r.error === "string") return { ok: false, error: r.error };
  throw new ProtocolError("REGISTERED: malformed");
}

function parseRoutes(o: unknown): Routes {
  const r = o as Partial<Routes>;
  if (!count(r?.version)) {
    throw new ProtocolError("ROUTES: version must be a non-negative safe integer");
  }
  const table = r.routes;
  if (typeof table !== "object" || table === null || Array.isArray(table)) {
    throw new ProtocolError("ROUTES: routes must be an object of route to function name");
  }
  const entries = Object.entries(table);
  if (entries.length > Limits.maxRoutes) {
    throw new ProtocolError(`ROUTES: ${entries.length} routes (limit ${Limits.maxRoutes})`);
  }
  const routes: Record<string, string> = {};
  for (const [route, name] of entries) {
    if (!isRoute(route)) {
      throw new ProtocolError(`ROUTES: bad route ${JSON.stringify(route).slice(0, 80)}`);
    }
    if (typeof name !== "string" || !NAME_RE.test(name)) {
      throw new ProtocolError(`ROUTES: bad function name for route ${route}`);
    }
    routes[route] = name;
  }
  const out: Routes = { version: r.version!, routes };
  if (r.handoff !== undefined) {
    if (r.handoff !== "direct" && r.handoff !== "gateway") {
      throw new ProtocolError("ROUTES: handoff must be direct or gateway");
    }
    out.handoff = r.handoff;
  }
  if (r.members !== undefined) {
    const m = r.members;
    if (typeof m !== "object" || m === null || Array.isArray(m)) {
      throw new ProtocolError("ROUTES: members must be an object of function to pids");
    }
    let total = 0;
    const members: Record<string, number[]> = {};
    for (const [name, pids] of Object.entries(m)) {
      if (!NAME_RE.test(name) || !Array.isArray(pids)) {
        throw new ProtocolError("ROUTES: bad members entry");
      }
      total += pids.length;
      if (total > Limits.maxMembers) {
        throw new ProtocolError(`ROUTES: more than ${Limits.maxMembers} members`);
      }
      if (!pids.every((p) => Number.isSafeInteger(p) && p > 0)) {
        throw new ProtocolError("ROUTES: members must be positive pids");
      }
      members[name] = [...pids];
    }
    out.members = members;
  }
  return out;
}

function parseMoved(o: unknown): Moved {
  const r = o as Partial<Moved>;
  if (!Array.isArray(r?.moves) || r.moves.length === 0 || r.moves.length > Limits.maxMoves) {
    throw new ProtocolError(`MOVED: moves must be a list of 1 to ${Limits.maxMoves}`);
  }
  for (const m of r.moves) {
    const ok = m && count(m.conn) && m.conn <= 0xffffffff && Number.isSafeInteger(m.to) &&
      m.to > 0 && typeof m.fn === "string" && NAME_RE.test(m.fn) && isRoute(m.route);
    if (!ok) throw new ProtocolError("MOVED: malformed move");
  }
  return { moves: r.moves.map((m) => ({ conn: m.conn, to: m.to, fn: m.fn, route: m.route })) };
}

function decodeHandoff(buf: Uint8Array, v: DataView): Handoff {
  if (buf.length < FIXED) throw new ProtocolError("HANDOFF shorter than its fixed part");
  const sniLen = v.getUint8(21), alpnLen = v.getUint8(22), peerLen = v.getUint8(23);
  const blobLen = v.getUint16(24, true), unreadLen = v.getUint32(28, true);
  if (blobLen === 0 || blobLen > Limits.maxBlob) {
    throw new ProtocolError("HANDOFF: bad blob length");
  }
  if (unreadLen > Limits.maxUnread) throw new ProtocolError("HANDOFF: too many unread bytes");
  const aheadLen = v.getUint16(26, true);
  if (aheadLen > Limits.maxReadAhead) {
    throw new ProtocolError("HANDOFF: too many read-ahead bytes");
  }
  const total = FIXED + sniLen + alpnLen + peerLen + blobLen + unreadLen + aheadLen;
  if (total !== buf.length) {
    throw new ProtocolError(`HANDOFF: lengths add up to ${total}, message has ${buf.length}`);
  }
  const tlsVersion = v.getUint8(20);
  if (tlsVersion !== 3 && tlsVersion !== 4) throw new ProtocolError("HANDOFF: bad TLS version");
  let off = FIXED;
  const take = (n: number) => buf.subarray(off, off += n);
  const text = (n: number, what: string) => {
    try {
      return fromUtf8(take(n));
    } catch {
      throw new ProtocolError(`HANDOFF: ${what} is not UTF-8`);
    }
  };
  const sni = text(sniLen, "SNI"), alpn = text(alpnLen, "ALPN"), peer = text(peerLen, "peer");
  return {
    connId: v.getUint32(8, true),
    gatewayId: v.getUint32(12, true),
    handoffs: v.getUint32(16, true),
    tlsVersion,
    sni,
    alpn,
    peer,
    sealed: {
      nonce: buf.subarray(32, 44),
      tag: buf.subarray(44, 60),
      ciphertext: take(blobLen),
    },
    unread: take(unreadLen),
    readAhead: take(aheadLen),
    sentAt: v.getFloat64(60, true),
    transfer: v.getUint16(6, true),
  };
}

/** Decode one message; throws {@linkcode ProtocolError} when it is malformed.
 * The result's byte fields are views into `buf`.
 *
 * @example
 * ```ts
 * import { decodeMessage, encodeJson, MessageType } from "./protocol.ts";
 * const msg = decodeMessage(encodeJson(MessageType.REGISTER, { name: "sum", routes: ["/sum"], pid: 1 }));
 * ```
 */
export function decodeMessage(buf: Uint8Array): Message {
  if (buf.length < HEADER) throw new ProtocolError("message shorter than its header");
  if (buf.length > Limits.maxMessage) throw new ProtocolError("message too large");
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (v.getUint32(0, true) !== MAGIC) throw new ProtocolError("bad magic");
  if (v.getUint8(4) !== PROTOCOL_VERSION) {
    throw new ProtocolError(`protocol version ${v.getUint8(4)}, expected ${PROTOCOL_VERSION}`);
  }
  const type = v.getUint8(5);
  if (type === MessageType.HANDOFF) return { type, body: decodeHandoff(buf, v) };
  if (type === MessageType.ACK) return { type, body: decodeAck(buf, v) };
  if (
    type !== MessageType.REGISTER && type !== MessageType.REGISTERED &&
    type !== MessageType.STATS && type !== MessageType.DRAIN && type !== MessageType.ROUTES &&
    type !== MessageType.MOVED
  ) {
    throw new ProtocolError(`unknown message type ${type}`);
  }
  if (buf.length - HEADER > Limits.maxJson) throw new ProtocolError("JSON body too large");
  let parsed: unknown;
  try {
    parsed = JSON.parse(dec.decode(buf.subarray(HEADER)));
  } catch {
    throw new ProtocolError("body is not JSON");
  }
  switch (type) {
    case MessageType.REGISTER:
      return { type, body: parseRegister(parsed) };
    case MessageType.REGISTERED:
      return { type, body: parseRegistered(parsed) };
    case MessageType.STATS:
      return { type, body: parseStats(parsed) };
    case MessageType.ROUTES:
      return { type, body: parseRoutes(parsed) };
    case MessageType.MOVED:
      return { type, body: parseMoved(parsed) };
    default:
      return { type, body: {} };
  }
}
