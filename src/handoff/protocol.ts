/**
 * The control-channel protocol between the gateway, its workers, satellite
 * gateways and a successor gateway: one message per SOCK_SEQPACKET datagram,
 * an 8-byte header (magic "HPOT", version, type, u16 transfer id), then the
 * body (src/handoff/wire.ts). Every length is checked against hard limits
 * before use.
 *
 * Every message type is one entry of {@linkcode MESSAGES}: its number, what
 * it is for (its doc comment: who sends it to whom), whether a file
 * descriptor may come beside it, and its body's decoder. Everything else is
 * derived from that table: {@linkcode MessageType}, {@linkcode CARRIES_FD},
 * the {@linkcode Message} union, the body {@linkcode encodeJson} accepts per
 * type, and {@linkcode decodeMessage}'s dispatch and validation. Adding a
 * message is one entry here plus its handler where it is received
 * (docs/architecture.md, "Adding a control message").
 *
 * Most bodies are small JSON documents, each checked by the parser its entry
 * names. Two are binary: HANDOFF carries a live connection (its fd travels
 * beside the message with SCM_RIGHTS; its layout is
 * {@linkcode HANDOFF_LAYOUT}, src/handoff/handoff_layout.ts), and its
 * transfer id is what the receiver's ACK names: the sender keeps the
 * connection until then. ACK is a u16 count, then per entry a u16 transfer
 * id and a u8 status.
 *
 * ROUTES (gateway → every registered worker, after REGISTERED and whenever
 * the table changes) carries the gateway's whole route table, so workers
 * decide which requests are theirs with the same table and matcher
 * (src/routing/route_table.ts) as the gateway.
 *
 * @module
 */

import { parseSnapshot, type Snapshot, type SnapshotLimits } from "../operations/metrics.ts";
import type { RouteTableUpdate } from "../routing/worker_routes.ts";
import {
  decodeHandoff,
  type HandoffFields,
  type HandoffParts,
  layOutHandoff,
} from "./handoff_layout.ts";
import { checkHeader, HEADER_BYTES as HEADER, Limits, ProtocolError, stampHeader } from "./wire.ts";

export { Limits, PROTOCOL_VERSION, ProtocolError } from "./wire.ts";
export {
  type FieldKind,
  type FieldSeal,
  type Handoff,
  HANDOFF_LAYOUT,
  handoffAad,
  type HandoffField,
  type HandoffFields,
  type HandoffParts,
  handoffSealed,
  setHandoffCount,
  setTransferId,
  transferIdOf,
} from "./handoff_layout.ts";

// ---- The message table

/** How a body travels:
 * - `json`: a JSON document (at most `Limits.maxJson` bytes), checked by the
 *   parser its table entry names, encoded by {@linkcode encodeJson};
 * - `empty`: JSON too, but no content: it is encoded as `{}`, and whatever
 *   valid JSON comes is ignored (the body is `{}`);
 * - `binary`: a layout of its own, with its own encoder (HANDOFF:
 *   {@linkcode encodeHandoff}; ACK: {@linkcode encodeAck}). */
export type BodyKind = "json" | "empty" | "binary";

/** A body's kind and its decoder.
 *
 * @example
 * ```ts
 * import type { BodyCodec, Tickets } from "./protocol.ts";
 * declare const tickets: BodyCodec<Tickets, "json">;
 * declare const message: Uint8Array;
 * const { keys } = tickets.decode(message, new DataView(message.buffer));
 * ```
 */
export interface BodyCodec<B = unknown, K extends BodyKind = BodyKind> {
  /** How it travels. */
  readonly kind: K;
  /** The body of `message` (its header checked; `v` a view of it), or a
   * {@linkcode ProtocolError}. */
  readonly decode: (message: Uint8Array, v: DataView) => B;
}

/** One entry of {@linkcode MESSAGES}; its doc comment says who sends it to
 * whom, and what for.
 *
 * @example
 * ```ts
 * import type { MessageSpec } from "./protocol.ts";
 * const describe = (m: MessageSpec) => `type ${m.type} (${m.body.kind})`;
 * ```
 */
export interface MessageSpec {
  /** Its number: the header's type byte (1-255, one per entry). */
  readonly type: number;
  /** True when a file descriptor may come beside it (SCM_RIGHTS): see
   * {@linkcode CARRIES_FD}. */
  readonly carriesFd: boolean;
  /** Its body: `json(parser)`, `EMPTY` or `binary(decoder)`. */
  readonly body: BodyCodec;
}

const dec = new TextDecoder("utf-8", { fatal: true });

/** The JSON document in a message's body. */
function jsonBody(message: Uint8Array): unknown {
  if (message.length - HEADER > Limits.maxJson) throw new ProtocolError("JSON body too large");
  try {
    return JSON.parse(dec.decode(message.subarray(HEADER)));
  } catch {
    throw new ProtocolError("body is not JSON");
  }
}

/** A JSON body that `parse` checks (it throws {@linkcode ProtocolError}) and
 * returns as the message's body. */
function json<B>(parse: (body: unknown) => B): BodyCodec<B, "json"> {
  return { kind: "json", decode: (message) => parse(jsonBody(message)) };
}

/** A JSON body with no content: any JSON is accepted and ignored. */
const EMPTY: BodyCodec<Record<string, never>, "empty"> = {
  kind: "empty",
  decode: (message) => {
    jsonBody(message);
    return {};
  },
};

/** A body with a binary layout of its own, decoded by `decode`. */
function binary<B>(decode: (message: Uint8Array, v: DataView) => B): BodyCodec<B, "binary"> {
  return { kind: "binary", decode };
}

/**
 * Every control message: the one table that {@linkcode MessageType},
 * {@linkcode CARRIES_FD}, {@linkcode Message}, {@linkcode encodeJson} and
 * {@linkcode decodeMessage} are derived from. An entry's doc comment (who
 * sends it to whom, and what for) is also {@linkcode MessageType}'s. Numbers
 * are never reused: a type number is on the wire.
 *
 * @example
 * ```ts
 * import { MESSAGES } from "./protocol.ts";
 * const binary = Object.entries(MESSAGES).filter(([, m]) => m.body.kind === "binary");
 * // [["HANDOFF", ...], ["ACK", ...]]
 * ```
 */
export const MESSAGES = {
  /** worker → gateway: name, routes, pid. */
  REGISTER: { type: 1, carriesFd: false, body: json(parseRegister) },
  /** gateway → worker: accepted (with the deployment key) or refused. */
  REGISTERED: { type: 2, carriesFd: false, body: json(parseRegistered) },
  /** both ways: a live connection (its socket beside it). */
  HANDOFF: { type: 3, carriesFd: true, body: binary(decodeHandoff) },
  /** worker → gateway: the worker's counters, for /metrics and balancing. */
  STATS: { type: 4, carriesFd: false, body: json(parseStats) },
  /** worker → gateway: send me no more connections (I am draining). */
  DRAIN: { type: 5, carriesFd: false, body: EMPTY },
  /** gateway → worker: the versioned route table (every route, vacant functions included). */
  ROUTES: { type: 6, carriesFd: false, body: json(parseRoutes) },
  /** both ways: HANDOFFs adopted or refused, by transfer id. */
  ACK: { type: 7, carriesFd: false, body: binary(decodeAck) },
  /** worker → gateway: connections it moved straight to another worker. */
  MOVED: { type: 8, carriesFd: false, body: json(parseMoved) },
  /** gateway → worker: a new version of your function has registered (with
   * `replace`): hand every connection over at its next request boundary,
   * then exit. */
  HANDOVER: { type: 9, carriesFd: false, body: EMPTY },
  /** gateway → worker: your version (registered with `standby`) now takes
   * connections; register without `standby` from now on. */
  PROMOTED: { type: 10, carriesFd: false, body: EMPTY },
  /** new gateway → running gateway (on its control socket): I take over;
   * pass me your listening sockets. */
  TAKEOVER: { type: 11, carriesFd: false, body: json(parseTakeover) },
  /** running gateway → its successor: a listening socket (the fd beside
   * it), which one, and (with the HTTPS one) the handoff sealing key. */
  LISTENER: { type: 12, carriesFd: true, body: json(parseListener) },
  /** successor → running gateway: I accept on the sockets now; stop
   * accepting, finish and hand over what you hold. */
  ACCEPTING: { type: 13, carriesFd: false, body: EMPTY },
  /** gateway → worker: a new gateway listens on the control path; register
   * there, and send this channel nothing new. */
  MOVE: { type: 14, carriesFd: false, body: EMPTY },
  /** worker → the gateway it leaves: registered with the new one; nothing
   * more comes on this channel but acknowledgements. */
  LEFT: { type: 15, carriesFd: false, body: EMPTY },
  /** successor → running gateway: my control socket is at the path now
   * (sent after the listening sockets came); tell the workers to move. */
  BOUND: { type: 16, carriesFd: false, body: EMPTY },
  /** satellite gateway → primary: I share your port; send me the key, the
   * routes with every function's workers, and the ticket keys. (Its body
   * has TAKEOVER's shape, and TAKEOVER's parser.) */
  JOIN: { type: 17, carriesFd: false, body: json<Join>(parseTakeover) },
  /** gateway → satellite gateway or successor: the TLS session-ticket keys
   * (the first seals new tickets). */
  TICKETS: { type: 18, carriesFd: false, body: json(parseTickets) },
  /** gateway → worker: your function has a new worker and you hold more
   * than your share: hand this many connections back at their next request
   * boundary (the gateway places them on the least loaded worker). */
  SHED: { type: 19, carriesFd: false, body: json(parseShed) },
} as const satisfies Record<string, MessageSpec>;

type Table = typeof MESSAGES;

// Two entries with one number fail type checking here (SameNumber names them).
type SameNumber = {
  [N in keyof Table]: {
    [M in Exclude<keyof Table, N>]: Table[M]["type"] extends Table[N]["type"] ? [N, M] : never;
  }[Exclude<keyof Table, N>];
}[keyof Table];
const _oneEntryPerNumber: [SameNumber] extends [never] ? true : SameNumber = true;

/** A message type's name: a key of {@linkcode MESSAGES}.
 *
 * @example
 * ```ts
 * import type { MessageName } from "./protocol.ts";
 * const name: MessageName = "HANDOFF";
 * ```
 */
export type MessageName = keyof Table;

/** Message types: name → number, from {@linkcode MESSAGES} (each with its
 * entry's doc comment).
 *
 * @example
 * ```ts
 * import { MessageType } from "./protocol.ts";
 * MessageType.HANDOFF; // 3
 * ```
 */
export const MessageType = Object.fromEntries(
  Object.entries(MESSAGES).map(([name, m]) => [name, m.type]),
) as { readonly [N in keyof Table]: Table[N]["type"] };

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
 * Which message types may carry a file descriptor beside them (SCM_RIGHTS),
 * from {@linkcode MESSAGES}' `carriesFd`: HANDOFF (the connection's socket)
 * and LISTENER (a listening socket passed to a successor gateway), nothing
 * else. The control channel closes an fd that arrives with any other type
 * before the message is handled, and hands its handler -1 instead
 * (src/handoff/control_channel.ts).
 *
 * @example
 * ```ts
 * import { CARRIES_FD, MessageType } from "./protocol.ts";
 * CARRIES_FD[MessageType.HANDOFF]; // true
 * CARRIES_FD[MessageType.ACK]; // false
 * ```
 */
export const CARRIES_FD = Object.fromEntries(
  Object.values(MESSAGES).map((m) => [m.type, m.carriesFd]),
) as Readonly<Record<MessageTypeId, boolean>>;

/** A decoded message: a type number and that type's body (what its
 * entry's decoder returns), one member per entry of {@linkcode MESSAGES};
 * `switch (msg.type)` narrows the body.
 *
 * @example
 * ```ts
 * import { type Message, MessageType } from "./protocol.ts";
 * const heldOf = (msg: Message) => msg.type === MessageType.STATS ? msg.body.held : 0;
 * ```
 */
export type Message = {
  [N in keyof Table]: { type: Table[N]["type"]; body: ReturnType<Table[N]["body"]["decode"]> };
}[keyof Table];

/** The body of a message of type `T`.
 *
 * @example
 * ```ts
 * import { type MessageBody, MessageType } from "./protocol.ts";
 * const body: MessageBody<typeof MessageType.TAKEOVER> = { pid: 42 };
 * ```
 */
export type MessageBody<T extends MessageTypeId> = Extract<Message, { type: T }>["body"];

/** The message types with a JSON body (`json` and `empty` in
 * {@linkcode MESSAGES}): what {@linkcode encodeJson} encodes.
 *
 * @example
 * ```ts
 * import { type JsonType, MessageType } from "./protocol.ts";
 * const type: JsonType = MessageType.ROUTES;
 * ```
 */
export type JsonType = {
  [N in keyof Table]: Table[N]["body"]["kind"] extends "binary" ? never : Table[N]["type"];
}[keyof Table];

/** Each number's decoder (undefined: an unknown type); checks that each
 * entry's number fits the header's type byte. */
const DECODERS: readonly (BodyCodec["decode"] | undefined)[] = (() => {
  const decoders = new Array<BodyCodec["decode"] | undefined>(256).fill(undefined);
  for (const [name, m] of Object.entries(MESSAGES) as [string, MessageSpec][]) {
    if (!Number.isInteger(m.type) || m.type < 1 || m.type > 255) {
      throw new Error(`MESSAGES: ${name} has type ${m.type}, not 1 to 255`);
    }
    decoders[m.type] = m.body.decode;
  }
  return decoders;
})();

// ---- Bodies

/** One entry of an ACK: the receiver took the connection (it owns it now)
 * or refused it (the sender still owns it and places it elsewhere). */
export interface Ack {
  /** The HANDOFF's transfer id. */
  transfer: number;
  /** True when adopted. */
  ok: boolean;
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

/** ROUTES body: the gateway's route table, in the shape a worker's route
 * view takes it ({@linkcode RouteTableUpdate}, src/routing/worker_routes.ts).
 *
 * @example
 * ```ts
 * import { encodeJson, MessageType, type Routes } from "./protocol.ts";
 * const body: Routes = { version: 7, routes: { "/sum": "sum", "/product": "product" } };
 * const bytes = encodeJson(MessageType.ROUTES, body);
 * ```
 */
export type Routes = RouteTableUpdate;

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
  /** CPU time it used since its previous report, ms (the autoscaler's
   * load signal; absent from an older worker). */
  cpuMs?: number;
  /** Requests it answered since its previous report (a worker that
   * answers none for the idle time is stopped when above its minimum). */
  served?: number;
  /** Requests in progress and WebSockets open at the report (a worker busy
   * with a long stream is not idle though it answers nothing). */
  busy?: number;
  /** Its metrics registry's snapshot (src/operations/metrics.ts): counters
   * since it started, which only go up. Absent when it would not fit
   * {@linkcode STATS_LIMITS} or the JSON limit: the gateway keeps the last
   * one it had. */
  metrics?: Snapshot;
}

/** SHED body: how many connections to hand back.
 *
 * @example
 * ```ts
 * import { encodeJson, MessageType, type Shed } from "./protocol.ts";
 * const shed: Shed = { count: 3 };
 * const bytes = encodeJson(MessageType.SHED, shed);
 * ```
 */
export interface Shed {
  /** Connections to hand back, 1 to {@linkcode Limits.maxShed}. */
  count: number;
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

// ---- HANDOFF and ACK: the binary bodies

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
  const message = layOutHandoff(h, h.sealed, 0);
  stampHeader(message, MessageType.HANDOFF);
  return message;
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
  const message = layOutHandoff(h, null, stateLength);
  stampHeader(message, MessageType.HANDOFF);
  return message;
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
  const v = stampHeader(buf, MessageType.ACK);
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

// ---- The parsers the table names for the JSON bodies

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

/** The largest `cpuMs` or `served` a STATS report may carry. */
const MAX_REPORTED = 1e9;

function parseStats(o: unknown): Stats {
  const r = o as Partial<Stats> | null;
  if (typeof r !== "object" || r === null || !count(r.held)) {
    throw new ProtocolError("STATS: held must be a non-negative safe integer");
  }
  const load: Stats = { held: r.held! };
  for (const key of ["cpuMs", "served", "busy"] as const) {
    if (r[key] === undefined) continue;
    if (!count(r[key]) || r[key]! > MAX_REPORTED) {
      throw new ProtocolError(`STATS: ${key} must be an integer from 0 to ${MAX_REPORTED}`);
    }
    load[key] = r[key];
  }
  if (r.metrics === undefined) return load;
  try {
    return { ...load, metrics: parseSnapshot(r.metrics, STATS_LIMITS) };
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
  if (r.settling !== undefined) {
    if (typeof r.settling !== "boolean") {
      throw new ProtocolError("ROUTES: settling must be a boolean");
    }
    out.settling = r.settling;
  }
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
  if (r.held !== undefined) {
    const h = r.held;
    if (typeof h !== "object" || h === null || Array.isArray(h) || !out.members) {
      throw new ProtocolError("ROUTES: held must be an object of function to counts, with members");
    }
    const held: Record<string, number[]> = {};
    for (const [name, counts] of Object.entries(h)) {
      const pids = out.members[name];
      if (
        !pids || !Array.isArray(counts) || counts.length !== pids.length ||
        !counts.every((n) => Number.isSafeInteger(n) && n >= 0)
      ) {
        throw new ProtocolError("ROUTES: held must give a count per member");
      }
      held[name] = [...counts];
    }
    out.held = held;
  }
  return out;
}

function parseShed(o: unknown): Shed {
  const n = (o as Partial<Shed> | null)?.count;
  if (!Number.isSafeInteger(n) || n! < 1 || n! > Limits.maxShed) {
    throw new ProtocolError(`SHED: count must be an integer from 1 to ${Limits.maxShed}`);
  }
  return { count: n! };
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

// ---- Encoding and decoding

const enc = new TextEncoder();

/** Encode a message of a JSON type (`json` or `empty` in
 * {@linkcode MESSAGES}): `body` is that type's body, `{}` for an empty one.
 *
 * @example
 * ```ts
 * import { encodeJson, MessageType } from "./protocol.ts";
 * const bytes = encodeJson(MessageType.REGISTER, { name: "sum", routes: ["/sum"], pid: 42 });
 * const drain = encodeJson(MessageType.DRAIN, {});
 * ```
 */
export function encodeJson<T extends JsonType>(type: T, body: MessageBody<T>): Uint8Array {
  const json = enc.encode(JSON.stringify(body));
  if (json.length > Limits.maxJson) throw new ProtocolError("JSON body too large");
  const buf = new Uint8Array(HEADER + json.length);
  stampHeader(buf, type);
  buf.set(json, HEADER);
  return buf;
}

/** Decode one message: its header, then its body by the decoder its entry
 * of {@linkcode MESSAGES} names. Throws {@linkcode ProtocolError} when it is
 * malformed, over a limit, or of an unknown type. The result's byte fields
 * are views into `buf`.
 *
 * @example
 * ```ts
 * import { decodeMessage, encodeJson, MessageType } from "./protocol.ts";
 * const msg = decodeMessage(encodeJson(MessageType.REGISTER, { name: "sum", routes: ["/sum"], pid: 1 }));
 * ```
 */
export function decodeMessage(buf: Uint8Array): Message {
  const v = checkHeader(buf);
  const type = v.getUint8(5);
  const decode = DECODERS[type];
  if (decode === undefined) throw new ProtocolError(`unknown message type ${type}`);
  // The entry of `type` decoded the body: it is that type's.
  return { type, body: decode(buf, v) } as Message;
}
