import assert from "node:assert/strict";
import { accept, closeFd, sendMessage, tcpListen, unixConnect, unixListen } from "../ffi/shim.ts";
import type { ConnectionInfo } from "../src/connection/tls_connection.ts";
import { EventLoop } from "../src/connection/event_loop.ts";
import { ControlChannel } from "../src/handoff/control_channel.ts";
import {
  CARRIES_FD,
  decodeMessage,
  encodeAck,
  encodeHandoff,
  encodeJson,
  encodeUnsealedHandoff,
  HANDOFF_LAYOUT,
  handoffAad,
  type HandoffField,
  type HandoffParts,
  handoffSealed,
  Limits,
  type Message,
  type MessageBody,
  type MessageName,
  MESSAGES,
  type MessageSpec,
  MessageType,
  type MessageTypeId,
  PROTOCOL_VERSION,
  ProtocolError,
  setHandoffCount,
  setTransferId,
} from "../src/handoff/protocol.ts";
import { Sealer } from "../src/handoff/seal.ts";

const enc = new TextEncoder();

/** A JSON message with any body, valid or not (encodeJson takes only valid shapes). */
function rawJson(type: number, body: unknown): Uint8Array {
  const header = encodeJson(MessageType.DRAIN, {}).subarray(0, 8);
  header[5] = type;
  const json = enc.encode(JSON.stringify(body));
  const bytes = new Uint8Array(8 + json.length);
  bytes.set(header);
  bytes.set(json, 8);
  return bytes;
}

/** A HANDOFF with a distinct value in every field. */
function sample(
  over: Partial<HandoffParts> = {},
  info: Partial<ConnectionInfo> = {},
): HandoffParts {
  return {
    info: {
      connId: 42,
      gatewayId: 0xdeadbeef,
      handoffs: 3,
      sni: "localhost",
      alpn: "http/1.1",
      peer: "127.0.0.1:50000",
      ...info,
    },
    tlsVersion: 4,
    sealed: {
      nonce: new Uint8Array(12).fill(1),
      tag: new Uint8Array(16).fill(2),
      ciphertext: new Uint8Array(300).fill(3),
    },
    unread: enc.encode("GET /sum?a=1&b=2 HTTP/1.1\r\nhost: x\r\n\r\n"),
    readAhead: new Uint8Array([0x17, 0x03, 0x03, 0x00, 0x20, 9, 9, 9]),
    sentAt: 1764000000123456.5,
    ...over,
  };
}

/** One message of a JSON type and the body it decodes to (each sample is
 * written as its parser returns it, so that it encodes back to its bytes). */
function jsonSample<T extends Parameters<typeof encodeJson>[0]>(type: T, body: MessageBody<T>) {
  return { bytes: encodeJson(type, body), body };
}

const sampleHandoff = encodeHandoff(sample({ transfer: 0x1234 }));
const sampleAcks = [{ transfer: 12, ok: true }, { transfer: 0xffff, ok: false }];

/** One valid message of every type in the table, as its sender encodes it,
 * and the body it decodes to. A type without a sample fails type checking. */
const SAMPLES: {
  [N in MessageName]: { bytes: Uint8Array; body: MessageBody<(typeof MessageType)[N]> };
} = {
  REGISTER: jsonSample(MessageType.REGISTER, {
    name: "sum",
    routes: ["/sum", "/sum/v2"],
    pid: 7,
    restarted: true,
    nestedRoutes: false,
    peer: true,
    replace: false,
    generation: "3",
    standby: true,
  }),
  REGISTERED: jsonSample(MessageType.REGISTERED, {
    ok: true,
    key: "c2VjcmV0",
    gatewayPid: 1,
    proof: "a".repeat(64),
  }),
  HANDOFF: {
    bytes: sampleHandoff,
    body: { ...sample(), transfer: 0x1234, aad: handoffAad(sampleHandoff) },
  },
  STATS: jsonSample(MessageType.STATS, {
    held: 2,
    cpuMs: 250,
    served: 900,
    metrics: { families: [] },
  }),
  DRAIN: jsonSample(MessageType.DRAIN, {}),
  ROUTES: jsonSample(MessageType.ROUTES, {
    version: 9,
    routes: { "/sum": "sum", "/": "home" },
    handoff: "direct",
    members: { sum: [41, 42] },
  }),
  ACK: { bytes: encodeAck(sampleAcks), body: sampleAcks },
  MOVED: jsonSample(MessageType.MOVED, {
    moves: [{ conn: 5, to: 42, fn: "product", route: "/p" }],
  }),
  HANDOVER: jsonSample(MessageType.HANDOVER, {}),
  PROMOTED: jsonSample(MessageType.PROMOTED, {}),
  TAKEOVER: jsonSample(MessageType.TAKEOVER, { pid: 9, proof: "b".repeat(64) }),
  LISTENER: jsonSample(MessageType.LISTENER, {
    kind: "https",
    port: 8443,
    key: "AAEC",
    workers: 3,
    proof: "c".repeat(64),
  }),
  ACCEPTING: jsonSample(MessageType.ACCEPTING, {}),
  MOVE: jsonSample(MessageType.MOVE, {}),
  LEFT: jsonSample(MessageType.LEFT, {}),
  BOUND: jsonSample(MessageType.BOUND, {}),
  JOIN: jsonSample(MessageType.JOIN, { pid: 3 }),
  TICKETS: jsonSample(MessageType.TICKETS, { keys: "AAAA" }),
  SHED: jsonSample(MessageType.SHED, { count: 3 }),
};

const NAMES = Object.keys(MESSAGES) as MessageName[];

Deno.test("the type numbers are the wire's: every name keeps its number", () => {
  assert.equal(PROTOCOL_VERSION, 4);
  assert.deepEqual({ ...MessageType }, {
    REGISTER: 1,
    REGISTERED: 2,
    HANDOFF: 3,
    STATS: 4,
    DRAIN: 5,
    ROUTES: 6,
    ACK: 7,
    MOVED: 8,
    HANDOVER: 9,
    PROMOTED: 10,
    TAKEOVER: 11,
    LISTENER: 12,
    ACCEPTING: 13,
    MOVE: 14,
    LEFT: 15,
    BOUND: 16,
    JOIN: 17,
    TICKETS: 18,
    SHED: 19,
  });
  for (const name of NAMES) assert.equal(MessageType[name], MESSAGES[name].type, name);
  assert.deepEqual(
    NAMES.filter((name) => MESSAGES[name].body.kind === "binary"),
    ["HANDOFF", "ACK"],
  );
});

Deno.test("every entry of the message table round-trips: decoded, and encoded back to its bytes", () => {
  for (const name of NAMES) {
    const { bytes, body } = SAMPLES[name];
    const type = MESSAGES[name].type;
    assert.equal(bytes[5], type, `${name}: its number in the header`);
    const msg = decodeMessage(bytes);
    assert.deepEqual(msg, { type, body }, name);
    const again = msg.type === MessageType.HANDOFF
      ? encodeHandoff(msg.body)
      : msg.type === MessageType.ACK
      ? encodeAck(msg.body)
      : encodeJson(msg.type, msg.body as MessageBody<typeof msg.type>);
    assert.deepEqual(again, bytes, `${name}: encodes back to the same bytes`);
  }
});

Deno.test("CARRIES_FD is true for exactly HANDOFF and LISTENER, and names every type", () => {
  assert.deepEqual(
    Object.entries(CARRIES_FD).filter(([, fd]) => fd).map(([type]) => Number(type)),
    [MessageType.HANDOFF, MessageType.LISTENER],
  );
  assert.deepEqual(
    Object.keys(CARRIES_FD).map(Number),
    NAMES.map((name) => MessageType[name]),
  );
});

Deno.test("a type number the table does not have is refused, whatever the body", () => {
  const known = new Set<number>(Object.values(MessageType));
  let unknown = 0;
  for (let type = 0; type < 256; type++) {
    if (known.has(type)) continue;
    unknown++;
    for (const bytes of [rawJson(type, {}), rawJson(type, null)]) {
      assert.throws(
        () => decodeMessage(bytes),
        new ProtocolError(`unknown message type ${type}`),
      );
    }
    const handoff = encodeHandoff(sample());
    handoff[5] = type;
    assert.throws(() => decodeMessage(handoff), new ProtocolError(`unknown message type ${type}`));
  }
  assert.equal(unknown, 256 - NAMES.length);
});

Deno.test("a JSON message with a wrong body is refused by the parser its entry names", () => {
  const json = NAMES.filter((name) => MESSAGES[name].body.kind === "json");
  assert.deepEqual(json, [
    "REGISTER",
    "REGISTERED",
    "STATS",
    "ROUTES",
    "MOVED",
    "TAKEOVER",
    "LISTENER",
    "JOIN",
    "TICKETS",
    "SHED",
  ]);
  for (const name of json) {
    const type = MessageType[name];
    // Bodies of no type at all, and its own sample with one field of a wrong
    // type in turn (a string where it has none, a number for its strings).
    const wrong: unknown[] = [{}, null, [], 7, "x"];
    const good = SAMPLES[name].body as Record<string, unknown>;
    for (const [field, value] of Object.entries(good)) {
      wrong.push({ ...good, [field]: typeof value === "string" ? 7 : "?" });
    }
    for (const body of wrong) {
      assert.throws(
        () => decodeMessage(rawJson(type, body)),
        // The error names the parser's type (JOIN's is TAKEOVER's).
        (e: unknown) =>
          e instanceof ProtocolError &&
          e.message.startsWith(`${name === "JOIN" ? "TAKEOVER" : name}:`),
        `${name} with ${JSON.stringify(body).slice(0, 60)}`,
      );
    }
    const cut = rawJson(type, {}).subarray(0, 9); // "{"
    assert.throws(() => decodeMessage(cut), new ProtocolError("body is not JSON"), name);
  }
});

Deno.test("an empty-body type ignores what its JSON holds, but it must be JSON", () => {
  const empty = NAMES.filter((name) => MESSAGES[name].body.kind === "empty");
  assert.deepEqual(empty, ["DRAIN", "HANDOVER", "PROMOTED", "ACCEPTING", "MOVE", "LEFT", "BOUND"]);
  for (const name of empty) {
    const type = MessageType[name];
    for (const body of [{}, { pid: 1 }, null, [1], "x"]) {
      assert.deepEqual(decodeMessage(rawJson(type, body)), { type, body: {} }, name);
    }
    const cut = rawJson(type, {}).subarray(0, 9); // "{"
    assert.throws(() => decodeMessage(cut), new ProtocolError("body is not JSON"), name);
  }
});

/** What the compiler refuses (`deno test` type-checks this; never run). */
function _refusedByTheCompiler(): void {
  // @ts-expect-error: TAKEOVER's body is { pid, proof? }
  encodeJson(MessageType.TAKEOVER, { keys: "AAAA" });
  // @ts-expect-error: an empty body is {}
  encodeJson(MessageType.DRAIN, { now: true });
  // @ts-expect-error: HANDOFF is binary (encodeHandoff)
  encodeJson(MessageType.HANDOFF, {});
  // @ts-expect-error: an entry names its body's parser
  const _noParser: MessageSpec = { type: 19, carriesFd: false };
}

// An oracle for the tests, independent of the codec: the layout's rows, where
// their bytes are in an encoded message, and what value they hold in a HANDOFF.
const WIDTH = { u8: 1, u16: 2, u32: 4, f64: 8 } as const;
const rows: readonly HandoffField[] = HANDOFF_LAYOUT;
const rowNamed = (name: string) => rows.find((f) => f.name === name)!;
const slotWidth = (f: HandoffField) =>
  f.kind === "fixed"
    ? f.size!
    : WIDTH[f.kind === "text" || f.kind === "bytes" ? f.length! : f.kind];
const FIXED = Math.max(...rows.map((f) => f.at + slotWidth(f)));

function read(v: DataView, kind: keyof typeof WIDTH, at: number): number {
  return kind === "u8"
    ? v.getUint8(at)
    : kind === "u16"
    ? v.getUint16(at, true)
    : kind === "u32"
    ? v.getUint32(at, true)
    : v.getFloat64(at, true);
}

/** Where each row's value is in `bytes`: [start, end). */
function places(bytes: Uint8Array): Map<string, [number, number]> {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Map<string, [number, number]>();
  let off = FIXED;
  for (const f of rows) {
    if (f.kind === "text" || f.kind === "bytes") {
      const n = read(v, f.length!, f.at);
      out.set(f.name, [off, off + n]);
      off += n;
    } else out.set(f.name, [f.at, f.at + slotWidth(f)]);
  }
  return out;
}

function valueIn(h: HandoffParts, f: HandoffField): unknown {
  const o = f.in === "info" ? h.info : f.in === "sealed" ? h.sealed : h;
  return (o as unknown as Record<string, unknown>)[f.name];
}

Deno.test("the layout is one table: every byte of the fixed part in one field, the variable parts after", () => {
  assert.equal(FIXED, 68);
  const owner = new Array<string | undefined>(FIXED);
  for (const f of rows) {
    for (let b = f.at; b < f.at + slotWidth(f); b++) {
      assert.equal(owner[b], undefined, `byte ${b}: ${owner[b]} and ${f.name}`);
      owner[b] = f.name;
    }
  }
  for (let b = 6; b < FIXED; b++) assert.ok(owner[b], `byte ${b} belongs to a field`);
  assert.deepEqual(
    rows.filter((f) => f.seal === "patched").map((f) => f.name),
    ["transfer", "handoffs"],
  );
});

Deno.test("HANDOFF round-trips every field of the table, each where the table puts it", () => {
  const samples = [
    sample(),
    sample({ tlsVersion: 3, readAhead: new Uint8Array(0) }, { sni: "bücher.example", alpn: "" }),
  ];
  for (const h of samples) {
    const bytes = encodeHandoff(h);
    setTransferId(bytes, 0xbeef);
    const msg = decodeMessage(bytes);
    assert.equal(msg.type, MessageType.HANDOFF);
    if (msg.type !== MessageType.HANDOFF) return;
    assert.deepEqual(msg.body, { ...h, transfer: 0xbeef, aad: handoffAad(bytes) });
    // Every row: its bytes in the message are its value.
    const v = new DataView(bytes.buffer);
    const at = places(bytes);
    for (const f of rows) {
      const value = f.name === "transfer" ? 0xbeef : valueIn(h, f);
      const [start, end] = at.get(f.name)!;
      if (f.kind === "text") {
        assert.equal(new TextDecoder().decode(bytes.subarray(start, end)), value, f.name);
      } else if (f.kind === "bytes" || f.kind === "fixed") {
        assert.deepEqual(bytes.subarray(start, end), value, f.name);
      } else assert.equal(read(v, f.kind, f.at), value, f.name);
    }
    assert.equal(at.get("ciphertext")![1], bytes.length, "the sealed state is last");
    // And the decoded message encodes to the same bytes.
    assert.deepEqual(encodeHandoff(msg.body), bytes);
  }
});

Deno.test("ACK round-trips and is validated", () => {
  const acks = [{ transfer: 1, ok: true }, { transfer: 65535, ok: false }];
  assert.deepEqual(decodeMessage(encodeAck(acks)), { type: MessageType.ACK, body: acks });
  assert.throws(() => encodeAck([]), ProtocolError);
  const bytes = encodeAck(acks);
  for (let cut = 8; cut < bytes.length; cut++) {
    assert.throws(() => decodeMessage(bytes.subarray(0, cut)), ProtocolError, `cut ${cut}`);
  }
  const badStatus = bytes.slice();
  badStatus[12] = 2;
  assert.throws(() => decodeMessage(badStatus), ProtocolError);
  const lyingCount = bytes.slice();
  lyingCount[8] = 3;
  assert.throws(() => decodeMessage(lyingCount), ProtocolError);
});

Deno.test("REGISTER and REGISTERED round-trip and are validated", () => {
  const reg = decodeMessage(
    encodeJson(MessageType.REGISTER, { name: "sum", routes: ["/sum"], pid: 7 }),
  );
  assert.deepEqual(reg, {
    type: MessageType.REGISTER,
    body: {
      name: "sum",
      routes: ["/sum"],
      pid: 7,
      restarted: false,
      nestedRoutes: false,
      peer: false,
      replace: false,
      generation: "",
      standby: false,
    },
  });
  const staged = decodeMessage(
    encodeJson(MessageType.REGISTER, {
      name: "sum",
      routes: ["/sum"],
      pid: 7,
      generation: "3",
      standby: true,
    }),
  );
  assert.equal(staged.type === MessageType.REGISTER && staged.body.generation, "3");
  assert.equal(staged.type === MessageType.REGISTER && staged.body.standby, true);
  const nested = decodeMessage(
    encodeJson(MessageType.REGISTER, {
      name: "admin",
      routes: ["/sum/admin"],
      pid: 8,
      nestedRoutes: true,
    }),
  );
  assert.equal(nested.type === MessageType.REGISTER && nested.body.nestedRoutes, true);
  const ok = decodeMessage(
    encodeJson(MessageType.REGISTERED, { ok: true, gatewayPid: 1, key: "abc" }),
  );
  assert.equal(ok.type, MessageType.REGISTERED);
  for (
    const bad of [
      { name: "", routes: ["/x"], pid: 1 },
      { name: "a b", routes: ["/x"], pid: 1 },
      { name: "x", routes: [], pid: 1 },
      { name: "x", routes: ["nope"], pid: 1 },
      { name: "x", routes: ["/x y"], pid: 1 },
      { name: "x", routes: ["/x"], pid: -1 },
      { name: "x", routes: ["/x"], pid: 1, generation: "a/b" },
      { name: "x", routes: ["/x"], pid: 1, generation: "x".repeat(33) },
    ]
  ) {
    assert.throws(
      () => decodeMessage(encodeJson(MessageType.REGISTER, bad)),
      ProtocolError,
      JSON.stringify(bad),
    );
  }
  assert.throws(
    () =>
      decodeMessage(
        rawJson(MessageType.REGISTER, { name: "x", routes: ["/x"], pid: 1, nestedRoutes: "yes" }),
      ),
    new ProtocolError("REGISTER: nestedRoutes must be a boolean"),
  );
  assert.throws(
    () =>
      decodeMessage(
        rawJson(MessageType.REGISTER, { name: "x", routes: ["/x"], pid: 1, standby: 1 }),
      ),
    new ProtocolError("REGISTER: standby must be a boolean"),
  );
  const promoted = decodeMessage(encodeJson(MessageType.PROMOTED, {}));
  assert.deepEqual(promoted, { type: MessageType.PROMOTED, body: {} });
});

Deno.test("TAKEOVER and LISTENER round-trip and are validated", () => {
  assert.deepEqual(decodeMessage(encodeJson(MessageType.TAKEOVER, { pid: 42 })), {
    type: MessageType.TAKEOVER,
    body: { pid: 42 },
  });
  const https = { kind: "https" as const, port: 8443, key: "AAEC", workers: 3 };
  assert.deepEqual(decodeMessage(encodeJson(MessageType.LISTENER, https)), {
    type: MessageType.LISTENER,
    body: https,
  });
  for (
    const bad of [
      { kind: "ftp", port: 1 },
      { kind: "https", port: 70000 },
      { kind: "https", port: 1, key: "not base64!" },
      { kind: "https", port: 1, workers: -1 },
    ]
  ) {
    assert.throws(() => decodeMessage(rawJson(MessageType.LISTENER, bad)), ProtocolError);
  }
  assert.throws(() => decodeMessage(rawJson(MessageType.TAKEOVER, { pid: 0 })), ProtocolError);
});

Deno.test("ROUTES round-trips its version and table", () => {
  const body = { version: 7, routes: { "/sum": "sum", "/product": "product", "/": "home" } };
  assert.deepEqual(decodeMessage(encodeJson(MessageType.ROUTES, body)), {
    type: MessageType.ROUTES,
    body,
  });
  const empty = { version: 0, routes: {} };
  assert.deepEqual(decodeMessage(encodeJson(MessageType.ROUTES, empty)).body, empty);
});

Deno.test("ROUTES at its limits: the largest table fits the JSON limit; more is refused", () => {
  // maxRoutes routes of the longest kind, each with the longest name.
  const longest: Record<string, string> = {};
  for (let i = 0; i < Limits.maxRoutes; i++) {
    const route = `/${String(i).padStart(3, "0")}/`.padEnd(Limits.maxRouteLength, "x");
    longest[route] = `f${i}`.padEnd(64, "y");
  }
  const big = { version: Number.MAX_SAFE_INTEGER, routes: longest };
  const bytes = encodeJson(MessageType.ROUTES, big);
  assert.ok(bytes.length <= Limits.maxJson + 8, `${bytes.length} bytes`);
  assert.deepEqual(decodeMessage(bytes).body, big);

  const oneMore = { ...longest, "/one-more": "f" };
  assert.throws(
    () => decodeMessage(encodeJson(MessageType.ROUTES, { version: 1, routes: oneMore })),
    new ProtocolError(`ROUTES: ${Limits.maxRoutes + 1} routes (limit ${Limits.maxRoutes})`),
  );
});

Deno.test("ROUTES with a bad version, table, route or name is refused", () => {
  const tooLong = "/" + "x".repeat(Limits.maxRouteLength);
  for (
    const bad of [
      {},
      { routes: {} },
      { version: -1, routes: {} },
      { version: 1.5, routes: {} },
      { version: "7", routes: {} },
      { version: 2 ** 53, routes: {} },
      { version: 1 },
      { version: 1, routes: null },
      { version: 1, routes: [["/sum", "sum"]] },
      { version: 1, routes: "/sum" },
      { version: 1, routes: { "sum": "sum" } },
      { version: 1, routes: { "/x y": "sum" } },
      { version: 1, routes: { [tooLong]: "sum" } },
      { version: 1, routes: { "/sum": "" } },
      { version: 1, routes: { "/sum": "a b" } },
      { version: 1, routes: { "/sum": 7 } },
      { version: 1, routes: { "/sum": "n".repeat(65) } },
    ]
  ) {
    assert.throws(
      () => decodeMessage(rawJson(MessageType.ROUTES, bad)),
      ProtocolError,
      JSON.stringify(bad).slice(0, 100),
    );
  }
  assert.throws(() => decodeMessage(rawJson(MessageType.ROUTES, [1])), ProtocolError);
  assert.throws(() => decodeMessage(rawJson(MessageType.ROUTES, null)), ProtocolError);
  const over = rawJson(MessageType.ROUTES, {
    version: 1,
    routes: {},
    pad: "x".repeat(Limits.maxJson),
  });
  assert.throws(() => decodeMessage(over), new ProtocolError("JSON body too large"));
});

Deno.test("encodeHandoff refuses over-limit and malformed fields", () => {
  assert.throws(() => encodeHandoff(sample({}, { sni: "x".repeat(256) })), ProtocolError);
  assert.throws(() => encodeHandoff(sample({}, { peer: "é".repeat(128) })), ProtocolError);
  assert.throws(
    () => encodeHandoff(sample({ unread: new Uint8Array(Limits.maxUnread + 1) })),
    ProtocolError,
  );
  assert.throws(
    () => encodeHandoff(sample({ readAhead: new Uint8Array(Limits.maxReadAhead + 1) })),
    ProtocolError,
  );
  assert.throws(() => encodeHandoff(sample({ tlsVersion: 5 })), ProtocolError);
  for (
    const [part, size] of [["ciphertext", Limits.maxBlob + 1], ["ciphertext", 0], ["nonce", 11]]
  ) {
    const s = sample();
    (s.sealed as unknown as Record<string, Uint8Array>)[part as string] = new Uint8Array(
      size as number,
    );
    assert.throws(() => encodeHandoff(s), ProtocolError, `${part} of ${size}`);
  }
  assert.throws(() => encodeUnsealedHandoff(sample(), Limits.maxBlob + 1), ProtocolError);
});

Deno.test("decodeMessage rejects every truncation and length mismatch", () => {
  const good = encodeHandoff(sample());
  for (let n = 0; n < good.length; n++) {
    assert.throws(() => decodeMessage(good.subarray(0, n)), ProtocolError, `length ${n}`);
  }
  const longer = new Uint8Array(good.length + 1);
  longer.set(good);
  assert.throws(() => decodeMessage(longer), ProtocolError);
});

Deno.test("decodeMessage rejects bad header fields, values and lying lengths", () => {
  const at = (name: string) => rowNamed(name).at;
  const cases: [string, (bytes: Uint8Array, v: DataView) => void][] = [
    ["magic", (b) => b[0] = 0],
    ["version", (b) => b[4] = 9],
    ["type", (b) => b[5] = 77],
    ["TLS version", (b) => b[at("tlsVersion")] = 5],
    ["no sealed state", (_, v) => v.setUint16(at("ciphertext"), 0, true)],
    [
      "sealed state over the limit",
      (_, v) => v.setUint16(at("ciphertext"), Limits.maxBlob + 1, true),
    ],
    ["read-ahead length lies", (b) => b[at("readAhead")]++],
    [
      "read-ahead over the limit",
      (_, v) => v.setUint16(at("readAhead"), Limits.maxReadAhead + 1, true),
    ],
    ["unread length", (b) => b[at("unread") + 3] = 0xff],
    ["SNI not UTF-8", (b) => b[places(b).get("sni")![0]] = 0xff],
  ];
  for (const [what, change] of cases) {
    const bytes = encodeHandoff(sample());
    change(bytes, new DataView(bytes.buffer));
    assert.throws(() => decodeMessage(bytes), ProtocolError, what);
  }
});

/** A HANDOFF sealed as releaseForHandoff seals it: into the message, bound
 * to its bytes. */
function sealedHandoff(sealer: Sealer): { message: Uint8Array; state: Uint8Array } {
  const state = crypto.getRandomValues(new Uint8Array(300));
  const { sealed: _, ...fields } = sample();
  const message = encodeUnsealedHandoff(fields, state.length);
  const plain = state.slice();
  const sealed = sealer.seal(plain, handoffAad(message), handoffSealed(message));
  assert.deepEqual(plain, new Uint8Array(300), "the plaintext is zeroed after sealing");
  assert.equal(sealed.ciphertext.buffer, message.buffer, "sealed into the message");
  assert.notDeepEqual(sealed.ciphertext, state);
  return { message, state };
}

/** Decode `bytes` and open its seal: the state, null when it does not
 * authenticate, "rejected" when it does not even decode as a HANDOFF. */
function open(sealer: Sealer, bytes: Uint8Array): Uint8Array | null | "rejected" {
  let msg: Message;
  try {
    msg = decodeMessage(bytes);
  } catch (e) {
    if (e instanceof ProtocolError) return "rejected";
    throw e;
  }
  if (msg.type !== MessageType.HANDOFF) return "rejected";
  return sealer.open(msg.body.sealed, msg.body.aad);
}

Deno.test("the seal is bound to the message's bytes: each bound field, changed, fails to open", () => {
  const sealer = new Sealer(Sealer.newKey());
  const { message, state } = sealedHandoff(sealer);
  assert.deepEqual(open(sealer, message), state);
  assert.equal(open(new Sealer(Sealer.newKey()), message), null, "another key");
  const at = places(message);
  const bound = rows.filter((f) => f.seal === "bound");
  assert.deepEqual(bound.map((f) => f.name), [
    "connId",
    "gatewayId",
    "sentAt",
    "tlsVersion",
    "sni",
    "alpn",
    "peer",
    "unread",
    "readAhead",
  ]);
  for (const f of bound) {
    const bytes = message.slice();
    const [start] = at.get(f.name)!;
    // A change that still decodes: the other TLS version, else one bit.
    if (f.oneOf) bytes[start] = f.oneOf.find((x) => x !== message[start])!;
    else bytes[start] ^= 1;
    const msg = decodeMessage(bytes);
    assert.equal(msg.type, MessageType.HANDOFF, f.name);
    if (msg.type !== MessageType.HANDOFF) return;
    assert.notDeepEqual(
      valueIn(msg.body, f),
      valueIn(decodeMessage(message).body as HandoffParts, f),
    );
    assert.equal(
      sealer.open(msg.body.sealed, msg.body.aad),
      null,
      `${f.name} changed, yet it opened`,
    );
  }
});

Deno.test("any byte of a HANDOFF changed makes it fail to decode or to open, but the patched fields'", () => {
  const sealer = new Sealer(Sealer.newKey());
  const { message, state } = sealedHandoff(sealer);
  const patched = new Set<number>();
  for (const f of rows.filter((f) => f.seal === "patched")) {
    for (let b = f.at; b < f.at + slotWidth(f); b++) patched.add(b);
  }
  for (let i = 0; i < message.length; i++) {
    for (const bit of [0, 7]) {
      const bytes = message.slice();
      bytes[i] ^= 1 << bit;
      const got = open(sealer, bytes);
      if (patched.has(i)) assert.deepEqual(got, state, `byte ${i} is patched in transit`);
      else {assert.ok(
          got === null || got === "rejected",
          `byte ${i} bit ${bit} changed, yet it opened`,
        );}
    }
  }
});

Deno.test("the transfer id and handoff count are patched in place and the seal still opens", () => {
  const sealer = new Sealer(Sealer.newKey());
  const { message, state } = sealedHandoff(sealer);
  // As the channel numbers a transfer, and a gateway forwards unopened.
  setTransferId(message, 0x1234);
  setHandoffCount(message, 77);
  const msg = decodeMessage(message);
  assert.equal(msg.type, MessageType.HANDOFF);
  if (msg.type !== MessageType.HANDOFF) return;
  assert.equal(msg.body.transfer, 0x1234);
  assert.equal(msg.body.info.handoffs, 77);
  assert.deepEqual(sealer.open(msg.body.sealed, msg.body.aad), state);
  assert.deepEqual(handoffAad(message), msg.body.aad);
  assert.equal(msg.body.aad.buffer, message.buffer, "the AAD is the message's own bytes");
});

Deno.test("sealing into parts of the wrong size throws, and zeroes the plaintext", () => {
  const sealer = new Sealer(Sealer.newKey());
  const plain = new Uint8Array(10).fill(7);
  const into = {
    nonce: new Uint8Array(12),
    tag: new Uint8Array(16),
    ciphertext: new Uint8Array(9),
  };
  assert.throws(() => sealer.seal(plain, new Uint8Array(0), into), RangeError);
  assert.deepEqual(plain, new Uint8Array(10));
});

/** The fds of this process that are `fd`'s socket (the same inode, read
 * from /proc by find: Deno reads /proc/self/fd only with --allow-all). */
function sameSocket(fd: number): () => number[] {
  const links = () => {
    const { stdout } = new Deno.Command("find", {
      args: [`/proc/${Deno.pid}/fd`, "-type", "l", "-printf", "%f %l\\n"],
    }).outputSync();
    return new TextDecoder().decode(stdout).split("\n").filter((l) => l).map((l) => l.split(" "));
  };
  const inode = links().find(([n]) => Number(n) === fd)?.[1];
  assert.match(inode ?? "", /^socket:\[\d+\]$/);
  return () => links().filter(([, link]) => link === inode).map(([n]) => Number(n));
}

Deno.test({
  name: "the channel closes an fd that comes with a message type that cannot carry one",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // One valid message of every type.
    const messages = Object.fromEntries(
      NAMES.map((name) => [MessageType[name], SAMPLES[name].bytes]),
    ) as Record<MessageTypeId, Uint8Array>;
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-protocol-" });
    const listenFd = unixListen(`${dir}/c.sock`);
    const sendFd = unixConnect(`${dir}/c.sock`);
    let recvFd = -1;
    for (let i = 0; i < 100 && recvFd < 0; i++) {
      const a = accept(listenFd);
      if (a) recvFd = a.fd;
      else await new Promise((ok) => setTimeout(ok, 5));
    }
    assert.ok(recvFd >= 0, "connected");
    const got = new Map<number, number>(); // type → fd the handler was given
    const done = Promise.withResolvers<void>();
    const types = Object.keys(messages).map(Number) as MessageTypeId[];
    const channel = new ControlChannel(recvFd, {
      onMessage(msg: Message, fd: number) {
        got.set(msg.type, fd);
        if (got.size === types.length - 1) done.resolve(); // all but the ACK
      },
      onBadMessage: (error) => done.reject(new Error(error)),
      onClose() {},
    });
    const copies: (() => number[])[] = [];
    try {
      for (const type of types) {
        const passed = tcpListen("127.0.0.1", 0); // a socket to pass along
        copies[type] = sameSocket(passed);
        assert.ok(sendMessage(sendFd, messages[type], passed) > 0, `type ${type} sent`);
        closeFd(passed); // the kernel holds it now; the receiver gets a copy
      }
      const timer = setTimeout(() => done.reject(new Error("not every message came")), 5000);
      await done.promise;
      clearTimeout(timer);
      await new Promise((ok) => setTimeout(ok, 20)); // the ACK is read in the same turn
      for (const type of types) {
        const left = copies[type]();
        // LISTENER may carry one, but only to a channel that takes listeners.
        if (type === MessageType.HANDOFF) {
          assert.ok(got.get(type)! >= 0, `type ${type}: its fd goes to its handler`);
          assert.deepEqual(left, [got.get(type)], "and stays open");
          closeFd(got.get(type)!);
        } else {
          if (type !== MessageType.ACK) assert.equal(got.get(type), -1, `type ${type}: -1`);
          assert.deepEqual(left, [], `type ${type}: its fd was closed`);
        }
      }
    } finally {
      channel.close();
      closeFd(sendFd);
      closeFd(listenFd);
      await EventLoop.instance().close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
