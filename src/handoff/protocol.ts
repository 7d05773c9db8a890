/**
 * The control-channel protocol between the gateway and its workers: one
 * message per SOCK_SEQPACKET datagram, an 8-byte header (magic "HPOT",
 * version, type, u16 transfer id), then the body. HANDOFF carries a live
 * connection (its fd travels beside the message with SCM_RIGHTS; no other
 * type may carry one, see {@linkcode CARRIES_FD}); its transfer id is what
 * the receiver's ACK names: the sender keeps the connection until then. ACK
 * is binary (u16 count, then per entry u16 transfer id and u8 status); the
 * others are small JSON documents. Every length is checked against hard
 * limits before use.
 *
 * ROUTES (gateway → every registered worker, after REGISTERED and whenever
 * the table changes) carries the gateway's whole route table, so workers
 * decide which requests are theirs with the same table and matcher
 * (src/routing/route_table.ts) as the gateway.
 *
 * The HANDOFF body is described once, by {@linkcode HANDOFF_LAYOUT}: the
 * encoder, the decoder, the in-place patches ({@linkcode setTransferId},
 * {@linkcode setHandoffCount}) and the seal's associated data
 * ({@linkcode handoffAad}: the bound fields as they sit in the message) all
 * read that table.
 *
 * @module
 */

import { parseSnapshot, type Snapshot, type SnapshotLimits } from "../operations/metrics.ts";
import { MAX_READ_AHEAD } from "../../ffi/shim.ts";
import type { Sealed } from "./seal.ts";
import type { ConnectionInfo } from "../connection/tls_connection.ts";

/** Protocol version spoken by this build. */
export const PROTOCOL_VERSION = 4;
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
  /** gateway → worker: a new version of your function has registered (with
   * `replace`): hand every connection over at its next request boundary,
   * then exit. */
  HANDOVER: 9,
  /** gateway → worker: your version (registered with `standby`) now takes
   * connections; register without `standby` from now on. */
  PROMOTED: 10,
  /** new gateway → running gateway (on its control socket): I take over;
   * pass me your listening sockets. */
  TAKEOVER: 11,
  /** running gateway → its successor: a listening socket (the fd beside
   * it), which one, and (with the HTTPS one) the handoff sealing key. */
  LISTENER: 12,
  /** successor → running gateway: I accept on the sockets now; stop
   * accepting, finish and hand over what you hold. */
  ACCEPTING: 13,
  /** gateway → worker: a new gateway listens on the control path; register
   * there, and send this channel nothing new. */
  MOVE: 14,
  /** worker → the gateway it leaves: registered with the new one; nothing
   * more comes on this channel but acknowledgements. */
  LEFT: 15,
  /** successor → running gateway: my control socket is at the path now
   * (sent after the listening sockets came); tell the workers to move. */
  BOUND: 16,
  /** satellite gateway → primary: I share your port; send me the key, the
   * routes with every function's workers, and the ticket keys. */
  JOIN: 17,
  /** gateway → satellite gateway or successor: the TLS session-ticket keys
   * (the first seals new tickets). */
  TICKETS: 18,
} as const;

/** A message type's number.
 *
 * @example
 * ```ts
 * import { MessageType, type MessageTypeId } from "./protocol.ts";
 * const type: MessageTypeId = MessageType.HANDOFF;
 * ```
 */
export type MessageTypeId = (typeof MessageType)[keyof typeof MessageType];

/**
 * Which message types may carry a file descriptor beside them (SCM_RIGHTS):
 * HANDOFF (the connection's socket) and LISTENER (a listening socket passed
 * to a successor gateway), nothing else. The control channel
 * closes an fd that arrives with any other type before the message is
 * handled, and hands its handler -1 instead (src/handoff/control_channel.ts).
 *
 * @example
 * ```ts
 * import { CARRIES_FD, MessageType } from "./protocol.ts";
 * CARRIES_FD[MessageType.HANDOFF]; // true
 * CARRIES_FD[MessageType.ACK]; // false
 * ```
 */
export const CARRIES_FD: Readonly<Record<MessageTypeId, boolean>> = {
  [MessageType.REGISTER]: false,
  [MessageType.REGISTERED]: false,
  [MessageType.HANDOFF]: true,
  [MessageType.STATS]: false,
  [MessageType.DRAIN]: false,
  [MessageType.ROUTES]: false,
  [MessageType.ACK]: false,
  [MessageType.MOVED]: false,
  [MessageType.HANDOVER]: false,
  [MessageType.PROMOTED]: false,
  [MessageType.TAKEOVER]: false,
  [MessageType.LISTENER]: true,
  [MessageType.ACCEPTING]: false,
  [MessageType.MOVE]: false,
  [MessageType.LEFT]: false,
  [MessageType.BOUND]: false,
  [MessageType.JOIN]: false,
  [MessageType.TICKETS]: false,
};

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
  /** True when it replaces the function's running workers (a new version):
   * once it is registered, they hand their connections over and exit. */
  replace?: boolean;
  /** Its version's label (the launcher numbers its reloads): 0-32 letters,
   * digits, '.', '_' or '-'. */
  generation?: string;
  /** True when it waits, registered but taking no connection, until the
   * gateway promotes its generation (the launcher's reload). */
  standby?: boolean;
}

/** JOIN body. */
export interface Join {
  /** The satellite gateway's pid. */
  pid: number;
  /** Proof that it holds the launcher's secret (src/handoff/trust.ts), when
   * the launcher gave its gateways one. */
  proof?: string;
}

/** TICKETS body. */
export interface Tickets {
  /** The keys, base64: entries of a 16-byte name and a 32-byte key, at most 4. */
  keys: string;
}

/** TAKEOVER body. */
export interface Takeover {
  /** The new gateway's pid. */
  pid: number;
  /** Proof that it holds the launcher's secret, as in {@linkcode Join}. */
  proof?: string;
}

/** LISTENER body: which listening socket comes with it. */
export interface ListenerPass {
  /** "https" (the public port) or "admin". */
  kind: "https" | "admin";
  /** Its port. */
  port: number;
  /** With "https": the handoff sealing key (base64), so that the workers
   * keep one key across the switch. */
  key?: string;
  /** With "https": how many workers were told to move (MOVE); the new
   * gateway waits for them before it accepts. */
  workers?: number;
  /** With "https" and the launcher's secret: the old gateway's proof of it,
   * so that a successor takes sockets and keys from its own gateway only. */
  proof?: string;
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

/** STATS body: what a worker holds now, and its metrics.
 *
 * @example
 * ```ts
 * import { encodeJson, MessageType, type Stats } from "./protocol.ts";
 * const stats: Stats = { held: 2, metrics: { families: [] } };
 * const bytes = encodeJson(MessageType.STATS, stats);
 * ```
 */
export interface Stats {
  /** Connections it holds now (the gateway balances a pool by it). */
  held: number;
  /** Its metrics registry's snapshot (src/operations/metrics.ts): counters
   * since it started, which only go up. Absent when it would not fit
   * {@linkcode STATS_LIMITS} or the JSON limit: the gateway keeps the last
   * one it had. */
  metrics?: Snapshot;
}

/** Bounds on a STATS snapshot (its JSON body is also at most
 * `Limits.maxJson`): a worker is trusted, but what it sends is bounded.
 *
 * @example
 * ```ts
 * import { STATS_LIMITS } from "./protocol.ts";
 * import { parseSnapshot } from "../operations/metrics.ts";
 * parseSnapshot({ families: [] }, STATS_LIMITS); // throws when over a limit
 * ```
 */
export const STATS_LIMITS: SnapshotLimits = {
  families: 32,
  series: 2048,
  labels: 8,
  nameLength: 128,
  helpLength: 256,
  valueLength: Limits.maxRouteLength,
  buckets: 32,
};

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
export type Registered = {
  ok: true;
  gatewayPid: number;
  key: string;
  /** To a satellite, with the launcher's secret: the gateway's proof of it
   * (src/handoff/trust.ts), so that a satellite takes keys from its own
   * gateway only. */
  proof?: string;
} | {
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
  | { type: typeof MessageType.MOVED; body: Moved }
  | { type: typeof MessageType.HANDOVER; body: Record<string, never> }
  | { type: typeof MessageType.PROMOTED; body: Record<string, never> }
  | { type: typeof MessageType.TAKEOVER; body: Takeover }
  | { type: typeof MessageType.LISTENER; body: ListenerPass }
  | { type: typeof MessageType.ACCEPTING; body: Record<string, never> }
  | { type: typeof MessageType.MOVE; body: Record<string, never> }
  | { type: typeof MessageType.LEFT; body: Record<string, never> }
  | { type: typeof MessageType.BOUND; body: Record<string, never> }
  | { type: typeof MessageType.JOIN; body: Join }
  | { type: typeof MessageType.TICKETS; body: Tickets };

/** The message types with a JSON body. */
type JsonType =
  | typeof MessageType.REGISTER
  | typeof MessageType.REGISTERED
  | typeof MessageType.STATS
  | typeof MessageType.DRAIN
  | typeof MessageType.ROUTES
  | typeof MessageType.MOVED
  | typeof MessageType.HANDOVER
  | typeof MessageType.PROMOTED
  | typeof MessageType.TAKEOVER
  | typeof MessageType.LISTENER
  | typeof MessageType.ACCEPTING
  | typeof MessageType.MOVE
  | typeof MessageType.LEFT
  | typeof MessageType.BOUND
  | typeof MessageType.JOIN
  | typeof MessageType.TICKETS;

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });
const NO_BYTES = new Uint8Array(0);

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

function header(buf: Uint8Array, type: number): DataView {
  const v = view(buf);
  v.setUint32(0, MAGIC, true);
  v.setUint8(4, PROTOCOL_VERSION);
  v.setUint8(5, type);
  return v; // the transfer id (bytes 6-7) stays 0: buf is new
}

// ---- HANDOFF: the layout, as one table

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
 * import type { HandoffField } from "./protocol.ts";
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
 * description of its layout, which {@linkcode encodeHandoff},
 * {@linkcode decodeMessage}, {@linkcode setTransferId},
 * {@linkcode setHandoffCount}, {@linkcode handoffSealed} and
 * {@linkcode handoffAad} read. Bytes 6 to 67 are the fixed part, each in
 * exactly one field; the variable parts follow it in table order. The bound
 * fields close the fixed part and open the variable ones, so the associated
 * data is one run of the message's own bytes (offset 40 up to the sealed
 * state); this module checks all that when it loads.
 *
 * @example
 * ```ts
 * import { HANDOFF_LAYOUT } from "./protocol.ts";
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

/** Encode `h`; with `sealed` null the seal is left zero, for a state of
 * `stateLength` bytes to be sealed into it. */
function encode(h: HandoffFields, sealed: Sealed | null, stateLength: number): Uint8Array {
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
  const v = header(buf, MessageType.HANDOFF);
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

function decodeHandoff(buf: Uint8Array, v: DataView): Handoff {
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

/** Encode a HANDOFF message.
 *
 * @example
 * ```ts
 * import { encodeHandoff } from "./protocol.ts";
 * const bytes = encodeHandoff({
 *   info: { connId: 1, gatewayId: 7, handoffs: 1, sni: "", alpn: "http/1.1", peer: "127.0.0.1:5000" },
 *   tlsVersion: 4, unread: new Uint8Array(0), readAhead: new Uint8Array(0),
 *   sentAt: Date.now() * 1000,
 *   sealed: { nonce: new Uint8Array(12), tag: new Uint8Array(16), ciphertext: new Uint8Array(300) },
 * });
 * ```
 */
export function encodeHandoff(h: HandoffParts): Uint8Array {
  return encode(h, h.sealed, 0);
}

/** Encode a HANDOFF whose TLS state (`stateLength` bytes) is sealed into the
 * message afterwards: its nonce, tag and sealed state are left zero, and
 * {@linkcode handoffSealed} gives them to seal into, bound to
 * {@linkcode handoffAad} of the message.
 *
 * @example
 * ```ts
 * import { encodeUnsealedHandoff, handoffAad, handoffSealed } from "./protocol.ts";
 * import { Sealer } from "./seal.ts";
 * const state = new Uint8Array(300); // an exported TLS state
 * const message = encodeUnsealedHandoff({
 *   info: { connId: 1, gatewayId: 7, handoffs: 1, sni: "", alpn: "http/1.1", peer: "127.0.0.1:5000" },
 *   tlsVersion: 4, unread: new Uint8Array(0), readAhead: new Uint8Array(0),
 *   sentAt: Date.now() * 1000,
 * }, state.length);
 * new Sealer(Sealer.newKey()).seal(state, handoffAad(message), handoffSealed(message));
 * ```
 */
export function encodeUnsealedHandoff(h: HandoffFields, stateLength: number): Uint8Array {
  return encode(h, null, stateLength);
}

/** The bytes of an encoded HANDOFF that its seal is bound to: the fields of
 * {@linkcode HANDOFF_LAYOUT} marked `bound`, as they sit in the message (a
 * view of it, no copy). The transfer id and the handoff count are not among
 * them: they change in transit.
 *
 * @example
 * ```ts
 * import { handoffAad } from "./protocol.ts";
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
 * import { handoffSealed } from "./protocol.ts";
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
 * import { setTransferId } from "./protocol.ts";
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
 * import { transferIdOf } from "./protocol.ts";
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
 * import { setHandoffCount } from "./protocol.ts";
 * declare const message: Uint8Array;
 * setHandoffCount(message, 3);
 * ```
 */
export function setHandoffCount(message: Uint8Array, handoffs: number): void {
  writeNumber(view(message), HANDOFFS.kind, HANDOFFS.at, handoffs);
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
  body:
    | Register
    | Registered
    | Stats
    | Routes
    | Moved
    | Takeover
    | ListenerPass
    | Join
    | Tickets
    | Record<string, never>,
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
const GENERATION_RE = /^[A-Za-z0-9._-]{0,32}$/;

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
  if (r.replace !== undefined && typeof r.replace !== "boolean") {
    throw new ProtocolError("REGISTER: replace must be a boolean");
  }
  if (
    r.generation !== undefined &&
    (typeof r.generation !== "string" || !GENERATION_RE.test(r.generation))
  ) {
    throw new ProtocolError("REGISTER: generation must be 0-32 letters, digits, '.', '_' or '-'");
  }
  if (r.standby !== undefined && typeof r.standby !== "boolean") {
    throw new ProtocolError("REGISTER: standby must be a boolean");
  }
  return {
    name: r.name,
    routes: [...r.routes],
    pid: r.pid as number,
    restarted: !!r.restarted,
    nestedRoutes: !!r.nestedRoutes,
    peer: !!r.peer,
    replace: !!r.replace,
    generation: r.generation ?? "",
    standby: !!r.standby,
  };
}

const count = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;

function parseStats(o: unknown): Stats {
  const r = o as Partial<Stats> | null;
  if (typeof r !== "object" || r === null || !count(r.held)) {
    throw new ProtocolError("STATS: held must be a non-negative safe integer");
  }
  if (r.metrics === undefined) return { held: r.held! };
  try {
    return { held: r.held!, metrics: parseSnapshot(r.metrics, STATS_LIMITS) };
  } catch (e) {
    throw new ProtocolError(`STATS: ${(e as Error).message}`);
  }
}

function parseRegistered(o: unknown): Registered {
  const r = o as Record<string, unknown>;
  if (r?.ok === true && typeof r.key === "string" && Number.isInteger(r.gatewayPid)) {
    if (r.proof !== undefined && !(typeof r.proof === "string" && PROOF_RE.test(r.proof))) {
      throw new ProtocolError("REGISTERED: proof must be 64 hex digits");
    }
    const body = { ok: true as const, key: r.key, gatewayPid: r.gatewayPid as number };
    return typeof r.proof === "string" ? { ...body, proof: r.proof } : body;
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

/** A proof of the launcher's secret: HMAC-SHA256, hex. */
const PROOF_RE = /^[0-9a-f]{64}$/;

function parseTakeover(o: unknown): Takeover {
  const r = o as Partial<Takeover> | null;
  if (!Number.isInteger(r?.pid) || (r!.pid as number) <= 0) {
    throw new ProtocolError("TAKEOVER: pid must be a positive integer");
  }
  if (
    r!.proof !== undefined && (typeof r!.proof !== "string" || !PROOF_RE.test(r!.proof))
  ) {
    throw new ProtocolError("TAKEOVER: proof must be 64 hex digits");
  }
  return r!.proof === undefined
    ? { pid: r!.pid as number }
    : { pid: r!.pid as number, proof: r!.proof };
}

function parseTickets(o: unknown): Tickets {
  const r = o as Partial<Tickets> | null;
  // 4 entries of 48 bytes: 256 base64 characters at most.
  if (typeof r?.keys !== "string" || !/^[A-Za-z0-9+/=]{0,256}$/.test(r.keys)) {
    throw new ProtocolError("TICKETS: keys must be base64 of at most 4 entries");
  }
  return { keys: r.keys };
}

function parseListener(o: unknown): ListenerPass {
  const r = o as Partial<ListenerPass> | null;
  if (r?.kind !== "https" && r?.kind !== "admin") {
    throw new ProtocolError("LISTENER: kind must be https or admin");
  }
  if (!Number.isInteger(r.port) || (r.port as number) < 0 || (r.port as number) > 65535) {
    throw new ProtocolError("LISTENER: port must be 0-65535");
  }
  if (
    r.key !== undefined && (typeof r.key !== "string" || !/^[A-Za-z0-9+/=]{1,128}$/.test(r.key))
  ) {
    throw new ProtocolError("LISTENER: key must be base64");
  }
  if (r.workers !== undefined && !(Number.isInteger(r.workers) && r.workers >= 0)) {
    throw new ProtocolError("LISTENER: workers must be a non-negative integer");
  }
  if (r.proof !== undefined && !(typeof r.proof === "string" && PROOF_RE.test(r.proof))) {
    throw new ProtocolError("LISTENER: proof must be 64 hex digits");
  }
  return {
    kind: r.kind,
    port: r.port as number,
    ...(r.key ? { key: r.key } : {}),
    ...(r.workers !== undefined ? { workers: r.workers } : {}),
    ...(r.proof !== undefined ? { proof: r.proof } : {}),
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
    type !== MessageType.MOVED && type !== MessageType.HANDOVER &&
    type !== MessageType.PROMOTED && type !== MessageType.TAKEOVER &&
    type !== MessageType.LISTENER && type !== MessageType.ACCEPTING &&
    type !== MessageType.MOVE && type !== MessageType.LEFT && type !== MessageType.BOUND &&
    type !== MessageType.JOIN && type !== MessageType.TICKETS
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
    case MessageType.TAKEOVER:
      return { type, body: parseTakeover(parsed) };
    case MessageType.LISTENER:
      return { type, body: parseListener(parsed) };
    case MessageType.JOIN:
      return { type, body: parseTakeover(parsed) }; // the same shape: { pid }
    case MessageType.TICKETS:
      return { type, body: parseTickets(parsed) };
    default:
      return { type, body: {} };
  }
}
