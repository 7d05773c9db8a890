import assert from "node:assert/strict";
import { handoffAad } from "../src/handoff/handoff.ts";
import {
  decodeMessage,
  encodeAck,
  encodeHandoff,
  encodeJson,
  type Handoff,
  Limits,
  MessageType,
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

function sample(over: Partial<Handoff> = {}): Handoff {
  return {
    connId: 42,
    gatewayId: 0xdeadbeef,
    handoffs: 3,
    tlsVersion: 4,
    sni: "localhost",
    alpn: "http/1.1",
    peer: "127.0.0.1:50000",
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

Deno.test("HANDOFF round-trips every field", () => {
  const h = sample();
  const bytes = encodeHandoff(h);
  setTransferId(bytes, 0xbeef);
  const msg = decodeMessage(bytes);
  assert.equal(msg.type, MessageType.HANDOFF);
  assert.deepEqual(msg.body, { ...h, transfer: 0xbeef });
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

Deno.test("setHandoffCount rewrites the count in place", () => {
  const bytes = encodeHandoff(sample());
  setHandoffCount(bytes, 9);
  const msg = decodeMessage(bytes);
  assert.equal(msg.type === MessageType.HANDOFF && msg.body.handoffs, 9);
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
    },
  });
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

Deno.test("encodeHandoff refuses over-limit fields", () => {
  assert.throws(() => encodeHandoff(sample({ sni: "x".repeat(256) })), ProtocolError);
  assert.throws(
    () => encodeHandoff(sample({ unread: new Uint8Array(Limits.maxUnread + 1) })),
    ProtocolError,
  );
  assert.throws(
    () => encodeHandoff(sample({ readAhead: new Uint8Array(Limits.maxReadAhead + 1) })),
    ProtocolError,
  );
  const s = sample();
  s.sealed.ciphertext = new Uint8Array(Limits.maxBlob + 1);
  assert.throws(() => encodeHandoff(s), ProtocolError);
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

Deno.test("decodeMessage rejects bad header fields and lying lengths", () => {
  const cases: [number, number][] = [
    [0, 0x00], // magic
    [4, 9], // version
    [5, 77], // type
    [20, 5], // TLS version
    [24, 0], // blob length low byte (0 or mismatched)
    [26, 1], // read-ahead length (lies: the parts no longer add up)
    [27, 0x60], // read-ahead length over the limit
    [31, 0xff], // unread length high byte
  ];
  for (const [off, value] of cases) {
    const bytes = encodeHandoff(sample());
    bytes[off] = value;
    if (off === 24) bytes[25] = 0;
    assert.throws(() => decodeMessage(bytes), ProtocolError, `byte ${off}`);
  }
});

Deno.test("a sealed blob opens only with its key and its message's other fields", () => {
  const key = Sealer.newKey();
  const sealer = new Sealer(key);
  const plain = crypto.getRandomValues(new Uint8Array(300));
  const copy = plain.slice();
  const fields = {
    connId: 1,
    gatewayId: 2,
    tlsVersion: 4,
    sni: "localhost",
    alpn: "http/1.1",
    peer: "127.0.0.1:9",
    unread: enc.encode("GET / HTTP/1.1\r\n"),
    readAhead: new Uint8Array([0x17, 0x03, 0x03, 0x00, 0x01, 7]),
    sentAt: 1764000000000000,
  };
  const aad = handoffAad(fields).slice(); // a copy: the next call reuses its buffer
  const sealed = sealer.seal(plain, aad);
  assert.deepEqual(plain, new Uint8Array(300), "the plaintext is zeroed after sealing");
  assert.notDeepEqual(sealed.ciphertext, copy);
  assert.deepEqual(sealer.open(sealed, aad), copy);
  assert.equal(new Sealer(Sealer.newKey()).open(sealed, aad), null, "another key");
  assert.equal(
    sealer.open(sealed, handoffAad({ ...fields, connId: 2 })),
    null,
    "another connection",
  );
  assert.equal(sealer.open(sealed, handoffAad({ ...fields, peer: "10.0.0.1:9" })), null, "peer");
  const unread = fields.unread.slice();
  unread[3] ^= 1;
  assert.equal(sealer.open(sealed, handoffAad({ ...fields, unread })), null, "unread bytes");
  const readAhead = fields.readAhead.slice();
  readAhead[5] ^= 1;
  assert.equal(
    sealer.open(sealed, handoffAad({ ...fields, readAhead })),
    null,
    "read-ahead bytes",
  );
  for (let i = 0; i < sealed.ciphertext.length; i += 37) {
    const flipped = { ...sealed, ciphertext: sealed.ciphertext.slice() };
    flipped.ciphertext[i] ^= 0x01;
    assert.equal(sealer.open(flipped, aad), null, `bit flipped at ${i}`);
  }
  const badTag = { ...sealed, tag: sealed.tag.slice() };
  badTag.tag[0] ^= 0x80;
  assert.equal(sealer.open(badTag, aad), null);
});
