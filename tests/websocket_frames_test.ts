/**
 * The WebSocket frame codec, the handshake checks and SHA-1, as pure unit
 * tests: every frame a client may send (whole, fragmented, split at every
 * byte), every one it must not (each with its close code), and what the
 * decoder does after refusing input.
 */

import { concat } from "./support/bytes.ts";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  closePayload,
  encodeFrame,
  FrameDecoder,
  type Incoming,
  isValidCloseCode,
  Opcode,
} from "../src/http/websocket_frames.ts";
import { acceptKey, checkHandshake } from "../src/http/websocket_handshake.ts";
import { HttpError } from "../src/http/http_error.ts";
import { sha1 } from "../src/http/sha1.ts";

const enc = new TextEncoder();
const MASK = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

function frame(
  opcode: number,
  payload: Uint8Array | string,
  opts: { fin?: boolean; rsv?: number; mask?: boolean } = {},
) {
  const bytes = typeof payload === "string" ? enc.encode(payload) : payload;
  return encodeFrame(opcode, bytes, {
    fin: opts.fin,
    rsv: opts.rsv,
    mask: opts.mask === false ? undefined : MASK,
  });
}

/** `n` random bytes (getRandomValues gives 64 KiB at a time). */
function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let off = 0; off < n; off += 65536) crypto.getRandomValues(out.subarray(off, off + 65536));
  return out;
}

/** Feed `input` in pieces of `step` bytes, as a connection would; every event. */
function decodeAll(input: Uint8Array, step = input.length, max = 1 << 20): Incoming[] {
  const d = new FrameDecoder({ maxMessageSize: max, requireMask: true });
  const events: Incoming[] = [];
  let buffered: Uint8Array = new Uint8Array(0);
  for (let off = 0; off < input.length; off += step) {
    buffered = concat(buffered, input.subarray(off, off + step));
    for (;;) {
      const { consumed, event } = d.next(buffered);
      buffered = buffered.slice(consumed);
      if (!event) break;
      events.push(event);
      if (event.type === "error") return events;
    }
  }
  return events;
}

Deno.test("frames: text and binary messages, whole and split at every byte", () => {
  const input = concat(
    frame(Opcode.Text, "héllo ✓"),
    frame(Opcode.Binary, new Uint8Array([0, 1, 2, 255])),
    frame(Opcode.Text, ""),
  );
  const expected: Incoming[] = [
    { type: "text", data: "héllo ✓" },
    { type: "binary", data: new Uint8Array([0, 1, 2, 255]) },
    { type: "text", data: "" },
  ];
  for (const step of [input.length, 1, 2, 3, 7]) {
    assert.deepEqual(decodeAll(input, step), expected, `step ${step}`);
  }
});

Deno.test("frames: lengths at the 7-bit, 16-bit and 64-bit boundaries", () => {
  for (const n of [125, 126, 65535, 65536, 200_000]) {
    const payload = randomBytes(n);
    const f = frame(Opcode.Binary, payload);
    assert.equal(f.length, n + (n < 126 ? 2 : n < 65536 ? 4 : 10) + 4);
    const [e] = decodeAll(f, 16384, 1 << 20);
    assert.equal(e.type, "binary");
    assert.deepEqual((e as { data: Uint8Array }).data, payload);
  }
  // Server frames are not masked.
  assert.deepEqual([...encodeFrame(Opcode.Text, enc.encode("hi"))], [0x81, 2, 0x68, 0x69]);
});

Deno.test("frames: a fragmented message with control frames between its fragments", () => {
  // "€" (3 bytes) split across two fragments.
  const euro = enc.encode("a€b");
  const input = concat(
    frame(Opcode.Text, euro.subarray(0, 2), { fin: false }),
    frame(Opcode.Ping, "p1"),
    frame(Opcode.Continuation, euro.subarray(2, 4), { fin: false }),
    frame(Opcode.Pong, ""),
    frame(Opcode.Continuation, euro.subarray(4), { fin: true }),
    frame(Opcode.Binary, new Uint8Array([1]), { fin: false }),
    frame(Opcode.Continuation, new Uint8Array(0), { fin: false }),
    frame(Opcode.Continuation, new Uint8Array([2, 3]), { fin: true }),
    frame(Opcode.Close, closePayload(1000, "bye")),
  );
  for (const step of [input.length, 1, 5]) {
    assert.deepEqual(decodeAll(input, step), [
      { type: "ping", data: enc.encode("p1") },
      { type: "pong", data: new Uint8Array(0) },
      { type: "text", data: "a€b" },
      { type: "binary", data: new Uint8Array([1, 2, 3]) },
      { type: "close", code: 1000, reason: "bye" },
    ], `step ${step}`);
  }
});

Deno.test("frames: each malformed frame gets its close code", () => {
  const cases: [string, Uint8Array, number, number?][] = [
    ["unmasked", frame(Opcode.Text, "x", { mask: false }), 1002],
    ["reserved bit", frame(Opcode.Text, "x", { rsv: 4 }), 1002],
    ["opcode 3", frame(3, "x"), 1002],
    ["opcode 11", frame(11, "x"), 1002],
    ["fragmented ping", frame(Opcode.Ping, "x", { fin: false }), 1002],
    ["ping over 125 bytes", frame(Opcode.Ping, new Uint8Array(126)), 1002],
    ["continuation first", frame(Opcode.Continuation, "x"), 1002],
    [
      "text inside a fragmented message",
      concat(frame(Opcode.Text, "a", { fin: false }), frame(Opcode.Text, "b")),
      1002,
    ],
    ["bad UTF-8", frame(Opcode.Text, new Uint8Array([0x61, 0xff])), 1007],
    [
      "bad UTF-8 in a later fragment",
      concat(
        frame(Opcode.Text, "ok", { fin: false }),
        frame(Opcode.Continuation, new Uint8Array([0xc0, 0x80])),
      ),
      1007,
    ],
    ["truncated UTF-8 at the end", frame(Opcode.Text, new Uint8Array([0xe2, 0x82])), 1007],
    ["too big", frame(Opcode.Binary, new Uint8Array(1025)), 1009],
    [
      "too big across fragments",
      concat(
        frame(Opcode.Binary, new Uint8Array(600), { fin: false }),
        frame(Opcode.Continuation, new Uint8Array(600)),
      ),
      1009,
    ],
    ["close with 1 byte", frame(Opcode.Close, new Uint8Array([3])), 1002],
    ["close code 1005", frame(Opcode.Close, closePayload(1005)), 1002],
    ["close code 999", frame(Opcode.Close, closePayload(999)), 1002],
    ["close code 1016", frame(Opcode.Close, closePayload(1016)), 1002],
    ["close code 5000", frame(Opcode.Close, closePayload(5000)), 1002],
    ["close reason not UTF-8", frame(Opcode.Close, new Uint8Array([3, 232, 0xff])), 1007],
  ];
  for (const [name, input, code] of cases) {
    for (const step of [input.length, 1]) {
      const events = decodeAll(input, step, 1024);
      const last = events.at(-1);
      assert.equal(last?.type, "error", `${name}: ${JSON.stringify(events)}`);
      assert.equal((last as { code: number }).code, code, name);
    }
  }
  // A 64-bit length with its top bit set.
  const huge = new Uint8Array([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
  assert.equal(decodeAll(huge)[0].type, "error");
});

Deno.test("frames: a message over the limit fails at its header, before its payload", () => {
  const d = new FrameDecoder({ maxMessageSize: 1000, requireMask: true });
  // Only the header of a 10 MB frame has arrived.
  const header = frame(Opcode.Binary, new Uint8Array(10 << 20)).subarray(0, 14);
  const r = d.next(header);
  assert.deepEqual(r.event, { type: "error", code: 1009, reason: "message over 1000 bytes" });
  assert.equal(d.failed, true);
});

Deno.test("frames: after an error, frames are skipped until the peer's close frame", () => {
  const input = concat(
    frame(Opcode.Text, new Uint8Array([0xff])), // 1007
    frame(Opcode.Binary, new Uint8Array(5000)), // skipped, over the limit or not
    frame(7, "junk"), // skipped
    frame(Opcode.Close, closePayload(1002)),
  );
  for (const step of [input.length, 3]) {
    const d = new FrameDecoder({ maxMessageSize: 1000, requireMask: true });
    const events: Incoming[] = [];
    let buffered: Uint8Array = new Uint8Array(0);
    for (let off = 0; off < input.length; off += step) {
      buffered = concat(buffered, input.subarray(off, off + step));
      for (;;) {
        const { consumed, event } = d.next(buffered);
        buffered = buffered.slice(consumed);
        if (!event) break;
        events.push(event);
      }
    }
    assert.deepEqual(events.map((e) => e.type), ["error", "close"], `step ${step}`);
    assert.deepEqual(events[1], { type: "close", code: 1002, reason: "" });
  }
});

Deno.test("frames: close codes and payloads", () => {
  for (const c of [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999]) {
    assert.ok(isValidCloseCode(c), String(c));
  }
  for (const c of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]) {
    assert.ok(!isValidCloseCode(c), String(c));
  }
  assert.deepEqual([...closePayload(1000, "bye")], [3, 232, 98, 121, 101]);
  assert.equal(closePayload().length, 0);
  // Cut to 123 bytes of reason at a character boundary: 61 two-byte characters.
  assert.equal(closePayload(1000, "é".repeat(100)).length, 2 + 122);
  assert.deepEqual(decodeAll(frame(Opcode.Close, "")), [{ type: "close", code: 1005, reason: "" }]);
});

Deno.test("sha1: agrees with node:crypto", () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000]) {
    const data = crypto.getRandomValues(new Uint8Array(n));
    assert.equal(
      Array.from(sha1(data), (b) => b.toString(16).padStart(2, "0")).join(""),
      createHash("sha1").update(data).digest("hex"),
      `length ${n}`,
    );
  }
});

Deno.test("handshake: accept key and the checks (400, 426)", () => {
  assert.equal(acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  const good = {
    upgrade: "websocket",
    connection: "keep-alive, Upgrade",
    "sec-websocket-version": "13",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-protocol": "chat, superchat",
  };
  const req = (headers: Record<string, string>, method = "GET") =>
    new Request("https://localhost/ws", { method, headers });
  assert.deepEqual(checkHandshake(req(good)), {
    key: "dGhlIHNhbXBsZSBub25jZQ==",
    protocols: ["chat", "superchat"],
  });
  const refused = (headers: Record<string, string>, status: number, method = "GET") => {
    assert.throws(() => checkHandshake(req(headers, method)), (e) => {
      assert.ok(e instanceof HttpError);
      assert.equal(e.status, status);
      return true;
    });
  };
  refused(good, 400, "POST");
  refused({ ...good, upgrade: "h2c" }, 400);
  refused({ ...good, connection: "keep-alive" }, 400);
  refused({ ...good, "sec-websocket-key": "short" }, 400);
  refused({ ...good, "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ" }, 400);
  refused({ ...good, "sec-websocket-version": "8" }, 426);
  const e = (() => {
    try {
      checkHandshake(req({ ...good, "sec-websocket-version": "8" }));
    } catch (e) {
      return e as HttpError;
    }
  })();
  assert.deepEqual(e?.headers, [["sec-websocket-version", "13"]]);
});
