/**
 * Tests for src/http/http.ts: request parsing rules (status codes, framing, chunked decoding,
 * limits, pipelining, keep-alive) and exact response bytes.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  DEFAULT_LIMITS,
  errorResponse,
  type Limits,
  MAX_HEADER_FIELDS,
  MAX_TARGET_LENGTH,
  parseRequest,
  type ParseResult,
  type RequestHead,
  serializeResponse,
  statusText,
} from "../src/http/http.ts";

/** Encode a string as latin1 bytes (each code unit must be <= 0xff). */
function bytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) throw new Error("test string is not latin1");
    out[i] = c;
  }
  return out;
}

/** Decode bytes as latin1. */
function text(b: Uint8Array): string {
  let s = "";
  for (const c of b) s += String.fromCharCode(c);
  return s;
}

function parse(s: string | Uint8Array, limits?: Limits): ParseResult {
  return parseRequest(typeof s === "string" ? bytes(s) : s, limits);
}

function request(
  s: string | Uint8Array,
  limits?: Limits,
): { head: RequestHead; body: Uint8Array; length: number } {
  const r = parse(s, limits);
  if (r.kind !== "request") throw new assert.AssertionError({ message: JSON.stringify(r) });
  return r;
}

function error(s: string | Uint8Array, status: number, limits?: Limits): string {
  const r = parse(s, limits);
  if (r.kind !== "error" || r.status !== status) {
    throw new assert.AssertionError({
      message: `expected ${status} for ${
        JSON.stringify(typeof s === "string" ? s.slice(0, 120) : "")
      }, got ${JSON.stringify(r)}`,
    });
  }
  assert.ok(r.message.length > 0);
  return r.message;
}

function incomplete(s: string | Uint8Array, limits?: Limits): ParseResult {
  const r = parse(s, limits);
  assert.equal(r.kind, "incomplete", JSON.stringify(r));
  return r;
}

const GET = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

// ---------------------------------------------------------------------------
// basics

Deno.test("parses a simple GET", () => {
  const raw = "GET /sum?a=1&b=2 HTTP/1.1\r\nHost: example.com\r\nX-Thing:  v  \r\n\r\n";
  const r = request(raw);
  assert.deepEqual(r.head, {
    method: "GET",
    target: "/sum?a=1&b=2",
    path: "/sum",
    query: "a=1&b=2",
    version: "HTTP/1.1",
    headers: [["host", "example.com"], ["x-thing", "v"]],
    host: "example.com",
    keepAlive: true,
    headLength: raw.length,
  });
  assert.equal(r.length, raw.length);
  assert.equal(r.body.length, 0);
});

Deno.test("path stays percent-encoded; query empty without '?'; empty query after '?'", () => {
  let r = request("GET /a%20b/c HTTP/1.1\r\nHost: h\r\n\r\n");
  assert.equal(r.head.path, "/a%20b/c");
  assert.equal(r.head.query, "");
  r = request("GET /p? HTTP/1.1\r\nHost: h\r\n\r\n");
  assert.equal(r.head.path, "/p");
  assert.equal(r.head.query, "");
  r = request("GET /p?x=1?y HTTP/1.1\r\nHost: h\r\n\r\n");
  assert.equal(r.head.path, "/p");
  assert.equal(r.head.query, "x=1?y");
});

Deno.test("header names are lower-cased, values trimmed, order and duplicates kept", () => {
  const r = request(
    "GET / HTTP/1.1\r\nHOST: h\r\nX-A:\t1 \t\r\nx-a: 2\r\nEmpty:\r\nSp: a  b\r\n\r\n",
  );
  assert.deepEqual(r.head.headers, [
    ["host", "h"],
    ["x-a", "1"],
    ["x-a", "2"],
    ["empty", ""],
    ["sp", "a  b"],
  ]);
});

Deno.test("header values are decoded as latin1 (obs-text)", () => {
  const r = request("GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xe9 \x80\xff\r\n\r\n");
  assert.equal(r.head.headers[1][1], "caf\xe9 \x80\xff");
});

Deno.test("all known methods are accepted", () => {
  for (const m of ["GET", "HEAD", "DELETE", "OPTIONS"]) {
    assert.equal(request(`${m} / HTTP/1.1\r\nHost: h\r\n\r\n`).head.method, m);
  }
  for (const m of ["POST", "PUT", "PATCH"]) {
    assert.equal(
      request(`${m} / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n`).head.method,
      m,
    );
  }
});

Deno.test("leading empty lines are skipped and counted in length", () => {
  const r = request("\r\n\r\n" + GET);
  assert.equal(r.head.method, "GET");
  assert.equal(r.length, 4 + GET.length);
  assert.equal(r.head.headLength, 4 + GET.length);
  incomplete("\r\n");
  incomplete("\r\n\r");
  incomplete("\r");
  error("\n" + GET, 400);
  error("\r\r\n" + GET, 400);
});

// ---------------------------------------------------------------------------
// incomplete input and limits

Deno.test("every proper prefix of a request is incomplete", () => {
  const full = "POST /f?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
  for (let i = 0; i < full.length; i++) incomplete(full.slice(0, i));
  const r = request(full);
  assert.equal(text(r.body), "hello");
  assert.equal(r.length, full.length);
});

Deno.test("head complete but body not yet: incomplete", () => {
  const r = incomplete("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n12345");
  // The head is reported as soon as it is complete, so a caller can route on it.
  assert.equal(r.kind === "incomplete" && r.head?.path, "/p");
  assert.equal(incomplete("POST /p HTTP/1.1\r\nHost: h\r\n").kind === "incomplete", true);
  const noHead = incomplete("POST /p HTTP/1.1\r\nHost: h\r\n");
  assert.equal(noHead.kind === "incomplete" && noHead.head, undefined);
});

Deno.test("missing CRLFCRLF beyond maxHeadBytes: 431", () => {
  const limits = { maxHeadBytes: 64, maxBodyBytes: 1024 };
  const partial = "GET / HTTP/1.1\r\nHost: h\r\nX: " + "a".repeat(100);
  assert.equal(error(partial, 431, limits), "request head too large");
  incomplete(partial.slice(0, 64), limits);
  error(partial.slice(0, 65), 431, limits);
  error("GET / HTTP/1.1\r\nX: " + "a".repeat(DEFAULT_LIMITS.maxHeadBytes), 431);
  // a request line that is too long without CRLF is 414 rather than 431
  error("a".repeat(DEFAULT_LIMITS.maxHeadBytes + 1), 414);
});

Deno.test("a complete head larger than maxHeadBytes is 431 too; exactly the limit is ok", () => {
  const req = "GET / HTTP/1.1\r\nHost: h\r\nX: " + "a".repeat(20) + "\r\n\r\n";
  const exact = { maxHeadBytes: req.length, maxBodyBytes: 0 };
  assert.equal(request(req, exact).length, req.length);
  error(req, 431, { maxHeadBytes: req.length - 1, maxBodyBytes: 0 });
  // leading empty lines count too
  error("\r\n" + req, 431, exact);
});

Deno.test("more than 100 header fields: 431; exactly 100 is ok", () => {
  let fields = "Host: h\r\n";
  for (let i = 1; i < MAX_HEADER_FIELDS; i++) fields += `X-${i}: ${i}\r\n`;
  assert.equal(
    request(`GET / HTTP/1.1\r\n${fields}\r\n`).head.headers.length,
    MAX_HEADER_FIELDS,
  );
  assert.equal(
    error(`GET / HTTP/1.1\r\n${fields}X-Last: 1\r\n\r\n`, 431),
    "too many header fields",
  );
});

Deno.test("request-target longer than 8192: 414", () => {
  const ok = "/" + "a".repeat(MAX_TARGET_LENGTH - 1);
  assert.equal(request(`GET ${ok} HTTP/1.1\r\nHost: h\r\n\r\n`).head.path, ok);
  const long = "/" + "a".repeat(MAX_TARGET_LENGTH);
  error(`GET ${long} HTTP/1.1\r\nHost: h\r\n\r\n`, 414);
  // no CRLF yet
  error(`GET ${long}`, 414);
  error("GET /" + "a".repeat(20000), 414);
  error("x".repeat(9000), 414);
  incomplete(`GET ${ok}`);
  incomplete(`GET ${ok} HTTP/1.`);
});

Deno.test("body limit: Content-Length over maxBodyBytes is 413 before the body arrives", () => {
  const limits = { maxHeadBytes: 1024, maxBodyBytes: 10 };
  request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789", limits);
  assert.equal(
    error("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", 413, limits),
    "request body too large",
  );
  error("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413);
  error(
    `POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ${DEFAULT_LIMITS.maxBodyBytes + 1}\r\n\r\n`,
    413,
  );
});

// ---------------------------------------------------------------------------
// line endings and request line

Deno.test("bare LF line endings: 400", () => {
  error("GET / HTTP/1.1\nHost: h\r\n\r\n", 400);
  error("GET / HTTP/1.1\r\nHost: h\n\r\n", 400);
  error("GET / HTTP/1.1\r\nHost: h\r\n\n", 400);
  error("GET / HTTP/1.1\r\nHost: h\n\n", 400);
});

Deno.test("malformed request lines: 400", () => {
  for (
    const line of [
      "GET  / HTTP/1.1",
      "GET /  HTTP/1.1",
      "GET / HTTP/1.1 ",
      " GET / HTTP/1.1",
      "GET\t/ HTTP/1.1",
      "GET /\tHTTP/1.1",
      "GET / HTTP/1.1\r",
      "GET /",
      "GET / ",
      "GET",
      "/ HTTP/1.1",
      "GET /a b HTTP/1.1",
      "G(T / HTTP/1.1",
      "GE\x00T / HTTP/1.1",
      "GET / http/1.1",
      "GET / HTTPS/1.1",
      "GET / HTTP/1",
      "GET / HTTP/11",
      "GET / HTTP/1.10",
      "GET / HTTP/a.b",
      "GET / HTTP/1.1x",
      "GET / HTTP /1.1",
    ]
  ) {
    error(`${line}\r\nHost: h\r\n\r\n`, 400);
  }
});

Deno.test("well-formed but unsupported versions: 505", () => {
  for (const v of ["HTTP/2.0", "HTTP/0.9", "HTTP/1.2", "HTTP/3.0", "HTTP/9.9"]) {
    assert.equal(error(`GET / ${v}\r\nHost: h\r\n\r\n`, 505), "HTTP version not supported");
  }
});

Deno.test("unknown, CONNECT, TRACE and lower-case methods: 501", () => {
  for (const m of ["FOO", "CONNECT", "TRACE", "get", "PROPFIND", "M-SEARCH", "GETT"]) {
    assert.equal(error(`${m} / HTTP/1.1\r\nHost: h\r\n\r\n`, 501), "method not implemented");
  }
  error("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501);
});

// ---------------------------------------------------------------------------
// request-target forms

Deno.test("asterisk-form only with OPTIONS", () => {
  const r = request("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
  assert.equal(r.head.target, "*");
  assert.equal(r.head.path, "*");
  assert.equal(r.head.query, "");
  error("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  error("OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
});

Deno.test("absolute-form is converted to origin-form and its authority becomes host", () => {
  let r = request("GET http://api.example.com:8080/sum?a=1 HTTP/1.1\r\nHost: other\r\n\r\n");
  assert.equal(r.head.target, "/sum?a=1");
  assert.equal(r.head.path, "/sum");
  assert.equal(r.head.query, "a=1");
  assert.equal(r.head.host, "api.example.com:8080");
  r = request("GET HTTPS://h.example HTTP/1.1\r\nHost: h.example\r\n\r\n");
  assert.equal(r.head.target, "/");
  assert.equal(r.head.host, "h.example");
  r = request("GET http://h?q=2 HTTP/1.1\r\nHost: h\r\n\r\n");
  assert.equal(r.head.target, "/?q=2");
  assert.equal(r.head.path, "/");
  assert.equal(r.head.query, "q=2");
  r = request("GET http://[::1]:80/x HTTP/1.0\r\n\r\n");
  assert.equal(r.head.host, "[::1]:80");
  assert.equal(r.head.path, "/x");
});

Deno.test("invalid request-targets: 400", () => {
  assert.equal(request("GET // HTTP/1.1\r\nHost: h\r\n\r\n").head.path, "//");
  for (
    const t of [
      "sum",
      "ftp://h/x",
      "http://",
      "http:///x",
      "http://user@h/x",
      "http:/h/x",
      "/a#frag",
      "/a\x7f",
      "/caf\xe9",
      "/a\x01",
      "/a\x00b",
    ]
  ) {
    error(`GET ${t} HTTP/1.1\r\nHost: h\r\n\r\n`, 400);
  }
});

// ---------------------------------------------------------------------------
// field lines

Deno.test("field-line syntax errors: 400", () => {
  for (
    const line of [
      "X-A : 1",
      "X-A\t: 1",
      " X-A: 1",
      "\tX-A: 1",
      "X(A): 1",
      "X-A 1",
      ": 1",
      "X-A",
      "X-A: a\x00b",
      "X-A: a\rb",
      "X-A: a\x01b",
      "X-A: a\x08b",
      "X-A: a\x0bb",
      "X-A: a\x1fb",
      "X-A: a\x7fb",
      "X-\xe9: 1",
    ]
  ) {
    error(`GET / HTTP/1.1\r\nHost: h\r\n${line}\r\n\r\n`, 400);
  }
});

Deno.test("obs-fold is rejected", () => {
  assert.equal(
    error("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", 400),
    "obsolete line folding is not allowed",
  );
  error("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400);
});

Deno.test("whitespace between field name and colon is rejected", () => {
  assert.equal(
    error("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
    "whitespace between header field name and colon",
  );
});

Deno.test("HTTP/1.1 requires exactly one valid Host", () => {
  assert.equal(error("GET / HTTP/1.1\r\n\r\n", 400), "missing Host header");
  assert.equal(error("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400), "multiple Host headers");
  error("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400);
  for (const h of ["a/b", "a@b", "a b", "h:80:90", "h:x", "[::1", "a\\b"]) {
    error(`GET / HTTP/1.1\r\nHost: ${h}\r\n\r\n`, 400);
  }
  for (const h of ["example.com", "example.com:8080", "127.0.0.1:1", "[::1]:443", "h:", ""]) {
    assert.equal(request(`GET / HTTP/1.1\r\nHost: ${h}\r\n\r\n`).head.host, h);
  }
});

Deno.test("HTTP/1.0 without Host has host ''", () => {
  const r = request("GET / HTTP/1.0\r\n\r\n");
  assert.equal(r.head.version, "HTTP/1.0");
  assert.equal(r.head.host, "");
});

// ---------------------------------------------------------------------------
// keep-alive

Deno.test("keepAlive rules for HTTP/1.1 and HTTP/1.0", () => {
  const ka = (s: string) => request(s).head.keepAlive;
  assert.equal(ka("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), true);
  assert.equal(ka("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"), false);
  assert.equal(ka("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n"), false);
  assert.equal(ka("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"), true);
  assert.equal(
    ka("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"),
    false,
  );
  assert.equal(ka("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n"), true);
  assert.equal(ka("GET / HTTP/1.0\r\n\r\n"), false);
  assert.equal(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), true);
  assert.equal(ka("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"), false);
  assert.equal(ka("GET / HTTP/1.0\r\nConnection: foo\r\n\r\n"), false);
});

// ---------------------------------------------------------------------------
// framing

Deno.test("Content-Length body is a subarray of the input (no copy)", () => {
  const buf = bytes("PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
  const r = request(buf);
  assert.equal(text(r.body), "abc");
  assert.equal(r.body.buffer, buf.buffer);
  assert.equal(r.body.byteOffset, buf.length - 3);
  assert.equal(r.head.headLength, buf.length - 3);
  assert.equal(r.length, buf.length);
});

Deno.test("GET may carry a Content-Length body", () => {
  assert.equal(
    text(request("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi").body),
    "hi",
  );
});

Deno.test("POST/PUT/PATCH without a length: 411", () => {
  for (const m of ["POST", "PUT", "PATCH"]) {
    assert.equal(error(`${m} / HTTP/1.1\r\nHost: h\r\n\r\n`, 411), "length required");
  }
  error("POST / HTTP/1.0\r\n\r\n", 411);
  assert.equal(request("DELETE / HTTP/1.1\r\nHost: h\r\n\r\n").body.length, 0);
});

Deno.test("invalid Content-Length values: 400", () => {
  for (const v of ["abc", "-1", "+5", "", "5 5", "0x10", "1.0", "5,", ",5", "5, 6", "1, 01"]) {
    error(`POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ${v}\r\n\r\n`, 400);
  }
  assert.equal(
    error("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    "conflicting Content-Length values",
  );
});

Deno.test("identical repeated Content-Length values are accepted", () => {
  let r = request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2, 2\r\n\r\nab");
  assert.equal(text(r.body), "ab");
  r = request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab");
  assert.equal(text(r.body), "ab");
});

Deno.test("Transfer-Encoding together with Content-Length: 400", () => {
  error(
    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    400,
  );
  error(
    "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    400,
  );
});

Deno.test("Transfer-Encoding other than a single chunked: 501 or 400", () => {
  for (const te of ["gzip", "gzip, chunked", "chunked, gzip", "identity", "chunked;x=1", "x"]) {
    error(`POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ${te}\r\n\r\n`, 501);
  }
  error(
    "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
    501,
  );
  error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400);
  error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", 400);
  error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,\r\n\r\n", 400);
});

Deno.test("Transfer-Encoding in HTTP/1.0: 400", () => {
  error("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
});

// ---------------------------------------------------------------------------
// chunked: tests/chunked_test.ts (one table through parseRequest, the
// decoder and a streamed body)

const CHUNKED_HEAD = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n";

// ---------------------------------------------------------------------------
// pipelining

Deno.test("two pipelined requests in one buffer", () => {
  const first = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody";
  const second = "GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  const buf = bytes(first + second);
  const r1 = request(buf);
  assert.equal(r1.head.path, "/a");
  assert.equal(text(r1.body), "body");
  assert.equal(r1.length, first.length);
  const r2 = request(buf.subarray(r1.length));
  assert.equal(r2.head.path, "/b");
  assert.equal(r2.head.keepAlive, false);
  assert.equal(r2.length, second.length);
  incomplete(buf.subarray(r1.length, r1.length + 10));
});

Deno.test("pipelined request after a chunked one", () => {
  const first = CHUNKED_HEAD + "2\r\nhi\r\n0\r\n\r\n";
  const buf = bytes(first + GET + GET);
  const r1 = request(buf);
  assert.equal(r1.length, first.length);
  const r2 = request(buf.subarray(r1.length));
  assert.equal(r2.length, GET.length);
  const r3 = request(buf.subarray(r1.length + r2.length));
  assert.equal(r3.length, GET.length);
});

// ---------------------------------------------------------------------------
// serialization

Deno.test("serializeResponse writes exact bytes", () => {
  const out = serializeResponse(
    { status: 200, headers: [["Content-Type", "text/plain"], ["x-b", ""]], body: bytes("hi") },
    { keepAlive: true },
  );
  assert.equal(
    text(out),
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nx-b: \r\ncontent-length: 2\r\n" +
      "connection: keep-alive\r\n\r\nhi",
  );
  const closed = serializeResponse(
    { status: 404, headers: new Map([["a", "b"]]), body: new Uint8Array(0) },
    { keepAlive: false },
  );
  assert.equal(
    text(closed),
    "HTTP/1.1 404 Not Found\r\na: b\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
  );
});

Deno.test("serializeResponse with headOnly keeps content-length but drops the body", () => {
  const out = serializeResponse(
    { status: 200, headers: [], body: bytes("hello") },
    { keepAlive: true, headOnly: true },
  );
  assert.equal(
    text(out),
    "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: keep-alive\r\n\r\n",
  );
});

Deno.test("serializeResponse: 1xx/204/304 have neither content-length nor body", () => {
  for (const status of [100, 204, 304]) {
    const out = serializeResponse(
      { status, headers: [["etag", '"x"']], body: bytes("ignored") },
      { keepAlive: true },
    );
    assert.equal(
      text(out),
      `HTTP/1.1 ${status} ${statusText(status)}\r\netag: "x"\r\nconnection: keep-alive\r\n\r\n`,
    );
  }
});

Deno.test("serializeResponse drops framing headers and unsafe headers", () => {
  const out = serializeResponse(
    {
      status: 201,
      statusText: "Made",
      headers: [
        ["Content-Length", "999"],
        ["TRANSFER-ENCODING", "chunked"],
        ["connection", "upgrade"],
        ["x-inject", "a\r\nset-cookie: evil"],
        ["x-lf", "a\nb"],
        ["x-cr", "a\rb"],
        ["x-nul", "a\0b"],
        ["bad name", "v"],
        ["x\r\ny", "v"],
        ["", "v"],
        ["x-wide", "\u0100"],
        ["x-latin1", "caf\xe9"],
        ["x-ok", "tab\there"],
      ],
      body: bytes("{}"),
    },
    { keepAlive: false },
  );
  assert.deepEqual(
    out,
    bytes(
      "HTTP/1.1 201 Made\r\nx-latin1: caf\xe9\r\nx-ok: tab\there\r\ncontent-length: 2\r\n" +
        "connection: close\r\n\r\n{}",
    ),
  );
});

Deno.test("serializeResponse: custom, empty and unsafe status text", () => {
  const line = (statusText: string | undefined, status = 200) =>
    text(serializeResponse({ status, statusText, headers: [], body: new Uint8Array(0) }, {
      keepAlive: true,
    })).split("\r\n")[0];
  assert.equal(line("Fine"), "HTTP/1.1 200 Fine");
  assert.equal(line(""), "HTTP/1.1 200 ");
  assert.equal(line("x\r\nevil: 1"), "HTTP/1.1 200 OK");
  assert.equal(line(undefined, 299), "HTTP/1.1 299 ");
  assert.throws(() => line(undefined, 99), RangeError);
  assert.throws(() => line(undefined, 200.5), RangeError);
  assert.throws(() => line(undefined, 1000), RangeError);
});

Deno.test("serializeResponse copies a large body after the head", () => {
  const body = new Uint8Array(100000).map((_, i) => i & 0xff);
  const out = serializeResponse({ status: 200, headers: [], body }, { keepAlive: true });
  const head = "HTTP/1.1 200 OK\r\ncontent-length: 100000\r\nconnection: keep-alive\r\n\r\n";
  assert.equal(out.length, head.length + body.length);
  assert.equal(text(out.subarray(0, head.length)), head);
  assert.deepEqual(out.subarray(head.length), body);
});

Deno.test("errorResponse writes a JSON body", () => {
  const out = errorResponse(404, "no such function", { keepAlive: false });
  const body = '{"error":"no such function","status":404}\n';
  assert.equal(
    text(out),
    "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n" +
      `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
  );
});

Deno.test("errorResponse escapes the message, adds extra headers, supports headOnly", () => {
  const out = text(
    errorResponse(429, 'slow "down"', {
      keepAlive: true,
      extraHeaders: [["retry-after", "1"], ["x-bad", "a\r\nb"]],
    }),
  );
  const body = '{"error":"slow \\"down\\"","status":429}\n';
  assert.equal(
    out,
    "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 1\r\n" +
      `content-length: ${body.length}\r\nconnection: keep-alive\r\n\r\n${body}`,
  );
  const head = text(errorResponse(500, "x", { keepAlive: true, headOnly: true }));
  assert.ok(head.endsWith("connection: keep-alive\r\n\r\n"));
  assert.ok(head.includes("content-length: 27\r\n"));
  // non-ASCII messages are UTF-8 in the body
  const utf8 = errorResponse(400, "é", { keepAlive: true });
  const s = new TextDecoder().decode(utf8);
  assert.ok(s.endsWith('{"error":"é","status":400}\n'));
});

Deno.test("statusText covers the statuses the gateway uses", () => {
  const expected: Record<number, string> = {
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    421: "Misdirected Request",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
  };
  for (const [code, reason] of Object.entries(expected)) {
    assert.equal(statusText(Number(code)), reason);
  }
  assert.equal(statusText(299), "");
  assert.equal(statusText(0), "");
});

Deno.test("every error status from parseRequest has a reason phrase", () => {
  for (const status of [400, 411, 413, 414, 431, 501, 505]) assert.notEqual(statusText(status), "");
});
