/** The incremental chunked-body decoder used for streamed request bodies. */

import assert from "node:assert/strict";
import { ChunkedDecoder } from "../src/http/chunked_decoder.ts";

const enc = new TextEncoder(), dec = new TextDecoder();

/** Feed `input` in pieces of `step` bytes; the body, or the error. */
function decodeAll(input: string, step: number, maxBody = 1 << 20): string | number {
  const bytes = enc.encode(input);
  const d = new ChunkedDecoder(maxBody);
  let buf = new Uint8Array(0), fed = 0, body = "";
  for (;;) {
    const r = d.decode(buf);
    if (r.kind === "error") return r.status;
    if (r.kind === "end") return body;
    if (r.data) body += dec.decode(r.data);
    buf = buf.subarray(r.consumed);
    if (r.consumed === 0) {
      if (fed >= bytes.length) return "incomplete";
      const more = bytes.subarray(fed, fed + step);
      fed += more.length;
      const next = new Uint8Array(buf.length + more.length);
      next.set(buf);
      next.set(more, buf.length);
      buf = next;
    }
  }
}

Deno.test("chunked bodies decode the same whatever the pieces they arrive in", () => {
  const input = "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\ntrailer: x\r\n\r\n";
  for (const step of [1, 2, 3, 7, 64, 1000]) {
    assert.equal(decodeAll(input, step), "hello 0123456789", `pieces of ${step}`);
  }
});

Deno.test("bad framing is a 400; a body or framing over the limit a 413", () => {
  assert.equal(decodeAll("z\r\n", 100), 400);
  assert.equal(decodeAll("5\r\nhelloXY", 100), 400);
  assert.equal(decodeAll("5\nhello\r\n0\r\n\r\n", 100), 400);
  assert.equal(decodeAll("1" + "0".repeat(15) + "\r\n", 100), 400);
  assert.equal(decodeAll("5 x\r\nhello\r\n0\r\n\r\n", 100), 400);
  assert.equal(decodeAll("5\r\nhello\r\n0\r\nbad\ntrailer\r\n\r\n", 100), 400);
  assert.equal(decodeAll("400\r\n" + "x".repeat(1024) + "\r\n0\r\n\r\n", 4096, 1000), 413);
  // Tiny chunks: 30,000 bytes of data, under the limit, in 90,000 bytes of
  // size lines, over it.
  assert.equal(decodeAll("1\r\nx\r\n".repeat(30_000) + "0\r\n\r\n", 65536, 65536), 413);
  assert.equal(decodeAll("5\r\nhel", 100), "incomplete");
});
