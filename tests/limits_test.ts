/**
 * Limits that C and TypeScript share are defined once per language and must
 * agree: the record reader's buffer (shim RX_CAP) is what a handoff's
 * read-ahead may carry (MAX_READ_AHEAD, Limits.maxReadAhead).
 */

import assert from "node:assert/strict";
import { MAX_READ_AHEAD, shimReadAheadCapacity } from "../ffi/shim.ts";
import { DEFAULT_LIMITS } from "../src/http/http.ts";
import { Limits } from "../src/handoff/protocol.ts";
import { MAX_HEAD_BYTES } from "../src/connection/request_reader.ts";

Deno.test("the shim's read-ahead buffer and the handoff's read-ahead limit agree", () => {
  assert.equal(shimReadAheadCapacity(), MAX_READ_AHEAD);
  assert.equal(Limits.maxReadAhead, MAX_READ_AHEAD);
  // A whole TLS record (5 + 16384 + 2048 at most) fits the reader.
  assert.ok(MAX_READ_AHEAD >= 5 + 16384 + 2048);
});

Deno.test("a head that the reader accepts fits a handoff's unread bytes", () => {
  assert.equal(MAX_HEAD_BYTES, DEFAULT_LIMITS.maxHeadBytes);
  assert.ok(Limits.maxUnread >= MAX_HEAD_BYTES);
});
