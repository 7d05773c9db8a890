/**
 * The chunked transfer coding (RFC 9112 7.1): one table of bodies, each with
 * the one outcome it must have (the decoded body, or the status and message
 * it is refused with), checked through every way a chunked body is read:
 *
 * - `parseRequest` on the whole request (a body read whole before the
 *   handler runs: the gateway, small requests);
 * - `parseRequest` on every prefix of it (a request whose bytes trickle in:
 *   incomplete until the outcome, then the outcome for every longer prefix);
 * - `ChunkedDecoder` fed in pieces of 1, 3, 7, 1024 bytes and whole, and in
 *   two pieces cut at every byte boundary;
 * - `RequestBody` (a body streamed to a handler) over a connection that
 *   delivers 1 or 1024 bytes at a time;
 * - end to end, a worker's handler reading the body (streamed) and the
 *   gateway reading it for a route no function serves (whole).
 *
 * The limits are the ones of `CHUNKED_LIMITS`, written out here as numbers so
 * that a change to them shows as a failing test.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  CHUNKED_LIMITS,
  ChunkedDecoder,
  DEFAULT_LIMITS,
  parseRequest,
  type ParseResult,
  type RequestHead,
} from "../src/http/http.ts";
import { RequestBody } from "../src/connection/request_body.ts";
import type { FillResult, TlsConnection } from "../src/connection/tls_connection.ts";
import { HttpError } from "../src/http/http_error.ts";
import { Client, System } from "./support/system.ts";

/** Latin1 bytes of `s`. */
function bytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function latin1(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 8192) {
    s += String.fromCharCode(...b.subarray(i, i + 8192));
  }
  return s;
}

// ---------------------------------------------------------------------------
// The table

/** What a body must come to: its data, a refusal, or "more input needed". */
type Expected = { body: string } | { status: 400 | 413 | 431; message: string } | "incomplete";

interface Case {
  name: string;
  /** The bytes after the request head (latin1). */
  input: string;
  expected: Expected;
  /** The body limit (--max-body), default 1 MiB (the default of --max-body). */
  maxBody?: number;
}

const MAX_BODY = DEFAULT_LIMITS.maxBodyBytes;
const bad = (message: string): Expected => ({ status: 400, message });

/** A trailer section of exactly `n` bytes (one field line, then the final CRLF). */
function trailerOf(n: number): string {
  return "A: " + "a".repeat(n - 7) + "\r\n\r\n";
}

const CASES: Case[] = [
  // valid bodies
  {
    name: "two chunks",
    input: "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    expected: { body: "hello world" },
  },
  { name: "no chunk at all", input: "0\r\n\r\n", expected: { body: "" } },
  {
    name: "hex case, leading zeros, a last chunk of 000",
    input: "a\r\n0123456789\r\nB\r\nabcdefghijk\r\n000\r\n\r\n",
    expected: { body: "0123456789abcdefghijk" },
  },
  {
    name: "8 hex digits (the most)",
    input: "0000000a\r\n0123456789\r\n0\r\n\r\n",
    expected: { body: "0123456789" },
  },
  {
    name: "chunk extensions are ignored",
    input: '5;a=1\r\nhello\r\n1 ; b="x y" ;c\r\n \r\n3\t;d\r\nxyz\r\n0;last=1\r\n\r\n',
    expected: { body: "hello xyz" },
  },
  {
    name: "chunk extensions of 16384 bytes (the most)",
    input: "1;" + "e".repeat(16383) + "\r\nx\r\n0\r\n\r\n",
    expected: { body: "x" },
  },
  {
    name: "trailer fields are validated and dropped",
    input: "1\r\nx\r\n0\r\nA: 1\r\nB-c: two words\t\r\nD:\r\n\r\n",
    expected: { body: "x" },
  },
  {
    name: "a trailer section of 16384 bytes (the most)",
    input: "1\r\nx\r\n0\r\n" + trailerOf(16384),
    expected: { body: "x" },
  },
  {
    name: "a body of exactly the limit",
    input: "5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n",
    expected: { body: "0123456789" },
    maxBody: 10,
  },
  // the chunk size
  {
    name: "9 hex digits",
    input: "000000001\r\nx\r\n0\r\n\r\n",
    expected: bad("chunk size too long"),
  },
  {
    name: "size overflow: 9 digits of F",
    input: "FFFFFFFFF\r\n",
    expected: bad("chunk size too long"),
  },
  {
    name: "size overflow: 16 digits",
    input: "1" + "0".repeat(15) + "\r\nx\r\n0\r\n\r\n",
    expected: bad("chunk size too long"),
  },
  {
    name: "size over the body limit",
    input: "FFFFFFFF\r\n",
    expected: { status: 413, message: "request body too large" },
  },
  {
    name: "sizes that add up past the body limit",
    input: "5\r\n01234\r\n6\r\n",
    expected: { status: 413, message: "request body too large" },
    maxBody: 10,
  },
  { name: "not hex", input: "x\r\n", expected: bad("invalid chunk size") },
  { name: "no size", input: "\r\n", expected: bad("invalid chunk size") },
  { name: "a sign", input: "-1\r\n", expected: bad("invalid chunk size") },
  { name: "a plus", input: "+5\r\nhello\r\n0\r\n\r\n", expected: bad("invalid chunk size") },
  {
    name: "a 0x prefix",
    input: "0x5\r\nhello\r\n0\r\n\r\n",
    expected: bad("invalid chunk extension"),
  },
  // chunk extensions
  {
    name: "whitespace without an extension",
    input: "5 \r\nhello\r\n0\r\n\r\n",
    expected: bad("invalid chunk extension"),
  },
  {
    name: "junk after the size",
    input: "5 x\r\nhello\r\n0\r\n\r\n",
    expected: bad("invalid chunk extension"),
  },
  {
    name: "a NUL in an extension",
    input: "5;a\x00b\r\nhello\r\n0\r\n\r\n",
    expected: bad("invalid chunk extension"),
  },
  {
    name: "a DEL in an extension",
    input: "5;a\x7fb\r\nhello\r\n0\r\n\r\n",
    expected: bad("invalid chunk extension"),
  },
  {
    name: "chunk extensions of 16385 bytes",
    input: "1;" + "e".repeat(16384) + "\r\nx\r\n0\r\n\r\n",
    expected: bad("chunk extensions too large"),
  },
  {
    name: "chunk extensions that add up past 16384 bytes over two chunks",
    input: ("1;" + "e".repeat(8192) + "\r\nx\r\n").repeat(2) + "0\r\n\r\n",
    expected: bad("chunk extensions too large"),
  },
  {
    name: "whitespace before an extension counts",
    input: "1" + " ".repeat(16385) + ";e\r\nx\r\n0\r\n\r\n",
    expected: bad("chunk extensions too large"),
  },
  // line endings
  {
    name: "bare LF after the size",
    input: "5\nhello\r\n0\r\n\r\n",
    expected: bad("bare LF in chunk size line"),
  },
  {
    name: "bare LF after an extension",
    input: "5;a\nb\r\nhello\r\n0\r\n\r\n",
    expected: bad("bare LF in chunk size line"),
  },
  {
    name: "bare CR after the size",
    input: "5\rhello\r\n0\r\n\r\n",
    expected: bad("invalid chunk size line"),
  },
  {
    name: "data longer than its size",
    input: "5\r\nhelloX\r\n0\r\n\r\n",
    expected: bad("missing CRLF after chunk data"),
  },
  {
    name: "bare LF after data",
    input: "5\r\nhello\n0\r\n\r\n",
    expected: bad("missing CRLF after chunk data"),
  },
  {
    name: "CR CR after data",
    input: "5\r\nhello\r\r0\r\n\r\n",
    expected: bad("missing CRLF after chunk data"),
  },
  {
    name: "no CRLF after data, seen at its first byte",
    input: "3\r\nabcd",
    expected: bad("missing CRLF after chunk data"),
  },
  // trailers
  {
    name: "bare LF in a trailer field line",
    input: "0\r\nA: 1\n\r\n",
    expected: bad("bare LF in trailer section"),
  },
  {
    name: "bare LF ending the trailers",
    input: "0\r\n\n",
    expected: bad("bare LF in trailer section"),
  },
  {
    name: "trailer field name with a space before the colon",
    input: "0\r\nA : 1\r\n\r\n",
    expected: bad("whitespace between header field name and colon"),
  },
  {
    name: "trailer field without a colon",
    input: "0\r\nbad\r\n\r\n",
    expected: bad("invalid header field name"),
  },
  {
    name: "trailer field name with a non-token byte",
    input: "0\r\nA(b): 1\r\n\r\n",
    expected: bad("invalid header field name"),
  },
  {
    name: "empty trailer field name",
    input: "0\r\n: 1\r\n\r\n",
    expected: bad("empty header field name"),
  },
  {
    name: "a trailer section starting with a folded line",
    input: "0\r\n folded\r\n\r\n",
    expected: bad("obsolete line folding is not allowed"),
  },
  {
    name: "folded trailer line",
    input: "0\r\nA: 1\r\n folded\r\n\r\n",
    expected: bad("obsolete line folding is not allowed"),
  },
  {
    name: "NUL in a trailer field value",
    input: "0\r\nA: a\x00b\r\n\r\n",
    expected: bad("invalid character in header field value"),
  },
  {
    name: "a trailer section of 16385 bytes",
    input: "1\r\nx\r\n0\r\n" + trailerOf(16385),
    expected: { status: 431, message: "trailer section too large" },
  },
  {
    name: "an unfinished trailer line over 16384 bytes",
    input: "0\r\nA: " + "a".repeat(16384),
    expected: { status: 431, message: "trailer section too large" },
  },
  {
    name: "many trailer fields over 16384 bytes",
    input: "0\r\n" + "A: 12345\r\n".repeat(1639) + "\r\n",
    expected: { status: 431, message: "trailer section too large" },
  },
  // framing
  {
    name: "size lines that outweigh the body (tiny chunks)",
    input: "1\r\nx\r\n".repeat(22_000) + "0\r\n\r\n",
    expected: { status: 413, message: "request too large" },
    maxBody: 65536,
  },
  { name: "unfinished", input: "5\r\nhel", expected: "incomplete" },
  { name: "unfinished after the data's CR", input: "3\r\nabc\r", expected: "incomplete" },
  { name: "unfinished trailers", input: "0\r\nA: 1\r\n", expected: "incomplete" },
];

/** An outcome as one comparable string. */
function show(e: Expected): string {
  if (e === "incomplete") return e;
  if ("body" in e) {
    return `body ${e.body.length > 60 ? e.body.length + " bytes" : JSON.stringify(e.body)}`;
  }
  return `${e.status} ${e.message}`;
}

function bodyOf(b: Uint8Array): string {
  return show({ body: latin1(b) });
}

// ---------------------------------------------------------------------------
// The entry points

const HEAD = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
/** A pipelined request after a valid body: never taken as part of it. */
const NEXT = "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";

function limitsOf(c: Case) {
  return { maxHeadBytes: DEFAULT_LIMITS.maxHeadBytes, maxBodyBytes: c.maxBody ?? MAX_BODY };
}

function valid(c: Case): boolean {
  return typeof c.expected === "object" && "body" in c.expected;
}

/** What parseRequest made of a buffer that starts with HEAD. */
function parsed(r: ParseResult, inputLength: number): string {
  if (r.kind === "incomplete") {
    assert.equal(r.head?.headLength, HEAD.length);
    return "incomplete";
  }
  if (r.kind === "error") return `${r.status} ${r.message}`;
  assert.equal(r.length, HEAD.length + inputLength, "the request's length ends with the body");
  return bodyOf(r.body);
}

/** Where to cut an input: every byte boundary, but for inputs over 2 KB
 * (the cases at a 16 KiB limit, filled with repeated bytes, and the 132 KB
 * tiny-chunk case) every boundary in the first and last 512 bytes, where
 * their structure is, and every 61st of the filler between (cutting a 16 KB
 * input at all its boundaries parses it 16,000 times: most of this file's
 * run time, with nothing new in the middle). */
function cuts(n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i <= n; i++) {
    if (n <= 2_000 || i < 512 || i > n - 512 || i % 61 === 0) out.push(i);
  }
  return out;
}

/** parseRequest on the whole request (with a pipelined request after a valid body). */
function wholeRequest(c: Case): string {
  const tail = valid(c) ? NEXT : "";
  return parsed(parseRequest(bytes(HEAD + c.input + tail), limitsOf(c)), c.input.length);
}

/** parseRequest on every prefix: "incomplete" until the outcome, then the outcome. */
function everyPrefix(c: Case): string {
  const all = bytes(HEAD + c.input);
  let outcome: string | undefined;
  for (const cut of cuts(c.input.length)) {
    const r = parsed(
      parseRequest(all.subarray(0, HEAD.length + cut), limitsOf(c)),
      c.input.length,
    );
    if (outcome === undefined) {
      if (r !== "incomplete") outcome = r;
    } else {
      assert.equal(r, outcome, `${c.name}: a longer prefix (${cut} bytes) changes the outcome`);
    }
  }
  return outcome ?? "incomplete";
}

/** A decoder fed `pieces` in turn (each appended to what it left). */
function decodePieces(c: Case, pieces: Uint8Array[]): string {
  const d = new ChunkedDecoder(c.maxBody ?? MAX_BODY);
  /** What the decoder has been given and not consumed: `buf[off..]`. */
  let buf = new Uint8Array(0), off = 0, next = 0, used = 0;
  let body = new Uint8Array(1024), length = 0;
  for (;;) {
    const step = d.decode(buf, off);
    if (step.kind === "error") {
      assert.deepEqual(d.decode(buf, off), step, "an error stays");
      return `${step.status} ${step.message}`;
    }
    used += step.consumed;
    off += step.consumed;
    if (step.kind === "end") {
      assert.equal(used, c.input.length, "the end is right after the trailer section");
      assert.equal(d.total, length);
      return bodyOf(body.subarray(0, length));
    }
    if (length + step.data > body.length) {
      const grown = new Uint8Array(2 * (length + step.data));
      grown.set(body);
      body = grown;
    }
    for (let k = off - step.data; k < off; k++) body[length++] = buf[k];
    if (step.consumed === 0) {
      if (next === pieces.length) return "incomplete";
      const more = pieces[next++];
      const grown = new Uint8Array(buf.length - off + more.length);
      grown.set(buf.subarray(off));
      grown.set(more, buf.length - off);
      buf = grown;
      off = 0;
    }
  }
}

function inPiecesOf(input: Uint8Array, n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < input.length; i += n) out.push(input.subarray(i, i + n));
  return out;
}

/** The decoder fed pieces of `n` bytes. */
function decoderPieces(c: Case, n: number): string {
  return decodePieces(c, inPiecesOf(bytes(c.input), n));
}

/** The decoder fed two pieces, cut at every byte boundary: one outcome. */
function decoderEveryCut(c: Case): string {
  const input = bytes(c.input);
  let outcome: string | undefined;
  for (const cut of cuts(input.length)) {
    const r = decodePieces(c, [input.subarray(0, cut), input.subarray(cut)]);
    outcome ??= r;
    assert.equal(r, outcome, `${c.name}: cut at ${cut}, a different outcome`);
  }
  return outcome!;
}

/** A connection that delivers `input` `n` bytes per fill, then closes. */
class PiecewiseConnection {
  #buf = new Uint8Array(0);
  #pieces: Uint8Array[];
  #next = 0;

  constructor(input: Uint8Array, n: number) {
    this.#pieces = inPiecesOf(input, n);
  }

  get buffered(): Uint8Array {
    return this.#buf;
  }

  get bufferedLength(): number {
    return this.#buf.length;
  }

  consume(n: number): void {
    this.#buf = this.#buf.subarray(n);
  }

  fill(_deadline: number): Promise<FillResult> {
    if (this.#next === this.#pieces.length) return Promise.resolve("closed");
    const more = this.#pieces[this.#next++];
    const grown = new Uint8Array(this.#buf.length + more.length);
    grown.set(this.#buf);
    grown.set(more, this.#buf.length);
    this.#buf = grown;
    return Promise.resolve("data");
  }

  /** What the body left: buffered, then not delivered yet. */
  rest(): string {
    let s = latin1(this.#buf);
    for (let i = this.#next; i < this.#pieces.length; i++) s += latin1(this.#pieces[i]);
    return s;
  }
}

const head = (() => {
  const r = parseRequest(bytes(HEAD + "5\r\n"));
  assert.equal(r.kind, "incomplete");
  return (r as { head: RequestHead }).head;
})();

/** A streamed request body (what a handler reads as `req.body`), `n` bytes per read. */
async function requestBody(c: Case, n: number): Promise<string> {
  const tail = valid(c) ? NEXT : "";
  const conn = new PiecewiseConnection(bytes(c.input + tail), n);
  const body = new RequestBody(conn as unknown as TlsConnection, head, {
    maxBody: c.maxBody ?? MAX_BODY,
    idleTimeoutMs: 10_000,
    bodyTimeoutMs: 10_000,
  });
  const reader = body.stream.getReader();
  let text = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += latin1(value);
    }
  } catch (e) {
    assert.ok(e instanceof HttpError, String(e));
    assert.equal(body.failed, e.message, "a failed body closes the connection");
    if (e.status === 400 && e.message === "the request body ended early") return "incomplete";
    return `${e.status} ${e.message}`;
  }
  assert.ok(body.done);
  assert.equal(conn.rest(), tail, "the next request is left on the connection");
  return bodyOf(bytes(text));
}

// ---------------------------------------------------------------------------
// The tests

Deno.test("the limits are the documented ones", () => {
  assert.deepEqual({ ...CHUNKED_LIMITS }, {
    maxSizeDigits: 8,
    maxExtensionBytes: 16384,
    maxTrailerBytes: 16384,
    framingFloorBytes: 65536,
  });
  assert.ok(Object.isFrozen(CHUNKED_LIMITS));
});

Deno.test("every chunked case has its outcome through every entry point", async (t) => {
  for (const c of CASES) {
    await t.step(c.name, async () => {
      const expected = show(c.expected);
      const results: [string, string][] = [
        ["parseRequest, whole", wholeRequest(c)],
        ["parseRequest, every prefix", everyPrefix(c)],
        ["ChunkedDecoder, cut in two at every byte", decoderEveryCut(c)],
      ];
      for (const n of [1, 3, 7, 1024, c.input.length || 1]) {
        results.push([`ChunkedDecoder, pieces of ${n}`, decoderPieces(c, n)]);
      }
      for (const n of [1, 1024]) {
        results.push([`RequestBody, reads of ${n}`, await requestBody(c, n)]);
      }
      for (const [entry, got] of results) assert.equal(got, expected, `${c.name}: ${entry}`);
    });
  }
});

Deno.test("a body of one chunk, parsed whole, is a view of the buffer (no copy)", () => {
  const buf = bytes(HEAD + "4\r\nwxyz\r\n0\r\n\r\n");
  const r = parseRequest(buf);
  assert.equal(r.kind, "request");
  if (r.kind !== "request") return;
  assert.equal(latin1(r.body), "wxyz");
  assert.equal(r.body.buffer, buf.buffer);
});

// ---------------------------------------------------------------------------
// End to end: the same table, sent to a worker's handler (with the head: a
// body here whole is read whole; and after it: streamed to the handler) and to the gateway (a route no function serves: the body read
// whole, then 404). The cases with their own body limit, and those a client
// cannot end, are left out (the system runs with the default --max-body).

const E2E = CASES.filter((c) => c.maxBody === undefined && c.expected !== "incomplete");

Deno.test("chunked bodies end to end: a worker's handler and the gateway agree", async () => {
  const sys = await System.start({
    workers: [{ name: "misbehave", file: "tests/fixtures/misbehave.ts" }],
  });
  try {
    for (const c of E2E) {
      for (const [path, later] of [["/echo", false], ["/echo", true], ["/no-such-route", false]]) {
        const client = await Client.connect(sys.port);
        try {
          const raw = `POST ${path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n`;
          if (later) {
            // The head alone first: the handler runs, and reads the body as it streams.
            await client.write(bytes(raw));
            await new Promise((ok) => setTimeout(ok, 100));
            await client.write(bytes(c.input));
          } else {
            await client.write(bytes(raw + c.input));
          }
          const res = await client.read();
          const e = c.expected as Exclude<Expected, "incomplete">;
          const where = `${c.name}: ${path}${later ? ", body after the head" : ""}`;
          if ("body" in e) {
            if (path === "/echo") {
              assert.equal(res.status, 200, where);
              const json = JSON.parse(res.body);
              assert.equal(json.length, e.body.length, where);
              assert.equal(json.body, e.body.slice(0, 100), where);
            } else {
              assert.equal(res.status, 404, where);
            }
          } else {
            assert.deepEqual(
              [res.status, JSON.parse(res.body)],
              [e.status, { error: e.message, status: e.status }],
              where,
            );
          }
        } finally {
          client.close();
        }
      }
    }
  } finally {
    await sys.stop();
  }
});
