/**
 * HTTP/1.1 wire format for the gateway (RFC 9110, RFC 9112).
 *
 * This module owns request parsing (request line, field lines, message framing,
 * chunked decoding) and response serialization. It is the security boundary
 * between the internet and the function workers, so it is deliberately strict:
 * anything ambiguous is rejected with the status code RFC 9112 recommends.
 * Everything works on raw `Uint8Array` bytes; header bytes are decoded as latin1.
 *
 * @module
 */

import { routedPath } from "./request_path.ts";

/** Size limits applied by {@linkcode parseRequest}.
 *
 * @example Tighter limits for a small endpoint
 * ```ts
 * import { type Limits, parseRequest } from "./http.ts";
 * const limits: Limits = { maxHeadBytes: 4096, maxBodyBytes: 65536 };
 * parseRequest(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), limits);
 * ```
 */
export interface Limits {
  /** Maximum bytes of the request head, including leading empty lines and the final CRLFCRLF. */
  maxHeadBytes: number;
  /** Maximum bytes of the (decoded) request body. */
  maxBodyBytes: number;
}

/** Default {@linkcode Limits}: 16 KiB of head, 1 MiB of body.
 *
 * @example
 * ```ts
 * import { DEFAULT_LIMITS } from "./http.ts";
 * const limits = { ...DEFAULT_LIMITS, maxBodyBytes: 4096 };
 * ```
 */
export const DEFAULT_LIMITS: Limits = { maxHeadBytes: 16384, maxBodyBytes: 1048576 };

/** How long a request body may take after the end of its head by default,
 * ms (the default of `--body-timeout`).
 *
 * @example
 * ```ts
 * import { DEFAULT_BODY_TIMEOUT_MS } from "./http.ts";
 * console.log(`--body-timeout ${DEFAULT_BODY_TIMEOUT_MS / 1000}`);
 * ```
 */
export const DEFAULT_BODY_TIMEOUT_MS = 60_000;

/** Longest accepted request-target, in bytes; longer targets get 414.
 *
 * @example
 * ```ts
 * import { MAX_TARGET_LENGTH } from "./http.ts";
 * const tooLong = "/" + "a".repeat(MAX_TARGET_LENGTH); // answered with 414
 * ```
 */
export const MAX_TARGET_LENGTH = 8192;

/** Most header fields accepted in one request; more get 431.
 *
 * @example
 * ```ts
 * import { MAX_HEADER_FIELDS } from "./http.ts";
 * console.log(`at most ${MAX_HEADER_FIELDS} fields`);
 * ```
 */
export const MAX_HEADER_FIELDS = 100;

/** The limits of a chunked request body (RFC 9112 7.1), the one set for a body
 * parsed whole ({@linkcode parseRequest}) and one decoded as it streams
 * ({@linkcode ChunkedDecoder}: they share one decoder). Beyond a limit, or on
 * any bad framing (a size that is not hex, a bare LF, data not followed by
 * CRLF, a bad extension byte), the request is answered 400, except where a
 * limit says otherwise.
 *
 * @example
 * ```ts
 * import { CHUNKED_LIMITS } from "./http.ts";
 * // "FFFFFFFF" is the largest chunk-size accepted; "100000000" is a 400.
 * console.log(16 ** CHUNKED_LIMITS.maxSizeDigits - 1);
 * ```
 */
export const CHUNKED_LIMITS: {
  /** Hex digits of a chunk-size, leading zeros included (a chunk is under 4 GiB): 400 beyond. */
  readonly maxSizeDigits: number;
  /** Bytes of chunk extensions in one body, all chunks together (from after each size to its
   * CR: whitespace, `;`, names and values): 400 beyond. */
  readonly maxExtensionBytes: number;
  /** Bytes of the trailer section (its field lines, each validated as a header field line,
   * and the final CRLF): 431 beyond, as a head over 16 KiB is. */
  readonly maxTrailerBytes: number;
  /** The chunk-size lines of one body may total max(body limit, this) bytes, so a body of tiny
   * chunks cannot cost much more than its data: 413 ("request too large") beyond. */
  readonly framingFloorBytes: number;
} = Object.freeze({
  maxSizeDigits: 8,
  maxExtensionBytes: 16384,
  maxTrailerBytes: 16384,
  framingFloorBytes: 65536,
});

/** A parsed request line and header section.
 *
 * @example
 * ```ts
 * import { parseRequest, type RequestHead } from "./http.ts";
 * const r = parseRequest(new TextEncoder().encode("GET /a?b HTTP/1.1\r\nHost: h\r\n\r\n"));
 * if (r.kind === "request") {
 *   const head: RequestHead = r.head;
 *   console.log(head.method, head.path, head.query); // GET /a b
 * }
 * ```
 */
export interface RequestHead {
  /** Request method, e.g. `"GET"` (case-sensitive, always one of the known methods). */
  method: string;
  /**
   * Request-target in origin-form (`"/sum?a=1"`), or `"*"` for `OPTIONS *`.
   * An absolute-form target (`http://host/p`) is converted to origin-form (`/p`).
   */
  target: string;
  /**
   * The path the request is routed by: `target` before `?` as the WHATWG URL
   * parser makes it (`.`/`..` and `%2e` segments removed, `\` as `/`, still
   * percent-encoded; see src/http/request_path.ts), which is the handler's
   * `new URL(req.url).pathname`. `"*"` for `OPTIONS *`.
   */
  path: string;
  /** `target` after `?` (without it), `""` if there is none. */
  query: string;
  /** Protocol version. */
  version: "HTTP/1.1" | "HTTP/1.0";
  /** Header fields in order: names lower-cased, values trimmed of surrounding whitespace. */
  headers: [string, string][];
  /** Host header value, or the authority of an absolute-form target; `""` if absent (HTTP/1.0). */
  host: string;
  /** HTTP/1.1: true unless Connection has `close`; HTTP/1.0: only with `keep-alive`. */
  keepAlive: boolean;
  /**
   * Bytes from the start of the buffer through the final CRLFCRLF (leading empty lines
   * included), i.e. the offset where the framed body starts.
   */
  headLength: number;
}

/** Outcome of {@linkcode parseRequest}.
 *
 * @example
 * ```ts
 * import { parseRequest, type ParseResult } from "./http.ts";
 * const r: ParseResult = parseRequest(new TextEncoder().encode("GET / HTTP/1.1\r\n"));
 * console.log(r.kind); // "incomplete"
 * ```
 */
export type ParseResult =
  /** More bytes are needed (and no limit is exceeded yet); `head` is set once the head is
   * complete and only the body is missing. */
  | { kind: "incomplete"; head?: RequestHead }
  /**
   * A complete request. `length` is the number of bytes consumed from the buffer
   * (leading empty lines, head and framed body); `body` is de-chunked.
   */
  | { kind: "request"; head: RequestHead; body: Uint8Array; length: number }
  /** The request is invalid: answer with `status` and close the connection. */
  | { kind: "error"; status: number; message: string };

// ---------------------------------------------------------------------------
// Byte classes

const CR = 13;
const LF = 10;
const SP = 32;
const HT = 9;
const COLON = 58;
const SEMICOLON = 59;
const SLASH = 47;
const STAR = 42;
const HASH = 35;

/** tchar (RFC 9110 5.6.2). */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 65; c <= 90; c++) TCHAR[c] = TCHAR[c + 32] = 1;

/** Bytes allowed inside a field value (and in chunk extensions): HTAB, SP, VCHAR, obs-text. */
const FIELD_BYTE = new Uint8Array(256);
FIELD_BYTE[HT] = 1;
for (let c = 0x20; c <= 0xff; c++) FIELD_BYTE[c] = c === 0x7f ? 0 : 1;

/** Hex digit values, -1 for non-hex bytes. */
const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[48 + c] = c;
for (let c = 0; c < 6; c++) HEX[65 + c] = HEX[97 + c] = 10 + c;

/** Longest request line that can still hold a valid request (method, target, version). */
const MAX_REQUEST_LINE = MAX_TARGET_LENGTH + 32;

/** uri-host [ ":" port ] (RFC 9110 7.2), checked loosely: IP-literal or reg-name/IPv4. */
const HOST_RE =
  /^(?:\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?$/;
const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE_RE = /^[\t\x20-\x7e\x80-\xff]*$/;

const EMPTY = new Uint8Array(0);
const INCOMPLETE: ParseResult = Object.freeze({ kind: "incomplete" }) as ParseResult;
const ENCODER = new TextEncoder();
/** Only used on bytes known to be ASCII, where UTF-8 and latin1 agree. */
const ASCII_DECODER = new TextDecoder();

function fail(status: number, message: string): ParseResult {
  return { kind: "error", status, message };
}

/** Decode `buf[start, end)` as latin1 (every byte is one UTF-16 code unit). */
function latin1(buf: Uint8Array, start: number, end: number): string {
  if (end - start <= 0) return "";
  if (end - start <= 8192) {
    return String.fromCharCode.apply(null, buf.subarray(start, end) as unknown as number[]);
  }
  let s = "";
  for (let i = start; i < end; i += 8192) s += latin1(buf, i, Math.min(end, i + 8192));
  return s;
}

function isMethodKnown(m: string): boolean {
  switch (m) {
    case "GET":
    case "HEAD":
    case "POST":
    case "PUT":
    case "DELETE":
    case "OPTIONS":
    case "PATCH":
      return true;
    default:
      return false;
  }
}

/**
 * Validate a field line `buf[start, end)` (without its CRLF). On success writes, at
 * `out[o..o+3]`: the colon offset, the trimmed value bounds, and flags (`NAME_UPPER` if the
 * name has upper-case letters, `NON_ASCII` if the value has obs-text); returns null.
 */
function scanFieldLine(
  buf: Uint8Array,
  start: number,
  end: number,
  out: Int32Array,
  o: number,
): ParseResult | null {
  const b0 = buf[start];
  if (b0 === SP || b0 === HT) return fail(400, "obsolete line folding is not allowed");
  let k = start;
  let flags = 0;
  for (; k < end; k++) {
    const c = buf[k];
    if (TCHAR[c] === 0) break;
    if (c <= 90 && c >= 65) flags = NAME_UPPER;
  }
  if (k === end || buf[k] !== COLON) {
    const c = buf[k];
    if (k > start && (c === SP || c === HT)) {
      return fail(400, "whitespace between header field name and colon");
    }
    return fail(400, "invalid header field name");
  }
  if (k === start) return fail(400, "empty header field name");
  let v0 = k + 1;
  while (v0 < end && (buf[v0] === SP || buf[v0] === HT)) v0++;
  let v1 = end;
  while (v1 > v0 && (buf[v1 - 1] === SP || buf[v1 - 1] === HT)) v1--;
  let hi = 0;
  for (let m = v0; m < v1; m++) {
    const c = buf[m];
    if (FIELD_BYTE[c] === 0) return fail(400, "invalid character in header field value");
    hi |= c;
  }
  out[o] = k;
  out[o + 1] = v0;
  out[o + 2] = v1;
  out[o + 3] = flags | (hi & NON_ASCII);
  return null;
}

const NAME_UPPER = 1;
const NON_ASCII = 0x80;
/** Scratch space for {@linkcode scanFieldLine} results: 4 slots per field line. */
const spans = new Int32Array(4 * MAX_HEADER_FIELDS);
/** Start offsets of the field lines of the head being parsed, plus one sentinel. */
const lineStarts = new Int32Array(MAX_HEADER_FIELDS + 1);

/**
 * Parse one HTTP/1.1 (or 1.0) request from the start of `buf`.
 *
 * Returns `incomplete` while more bytes are needed, `request` once the head and its
 * framed body are complete (bytes after `length` belong to the next, pipelined request),
 * or `error` with the status code to answer with (the connection should then be closed).
 * A non-chunked body is a subarray of `buf` (no copy); a chunked body is de-chunked.
 *
 * @example
 * ```ts
 * import { parseRequest } from "./http.ts";
 * const buf = new TextEncoder().encode(
 *   "POST /sum HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /",
 * );
 * const r = parseRequest(buf);
 * if (r.kind === "request") {
 *   console.log(r.head.method, new TextDecoder().decode(r.body)); // POST abc
 *   const rest = buf.subarray(r.length); // "GET /": the next request, incomplete so far
 * }
 * ```
 */
export function parseRequest(buf: Uint8Array, limits: Limits = DEFAULT_LIMITS): ParseResult {
  const len = buf.length;
  const maxHead = limits.maxHeadBytes;

  // RFC 9112 2.2: ignore at least one empty line (CRLF) received before the request line.
  let start = 0;
  while (start + 1 < len && buf[start] === CR && buf[start + 1] === LF) start += 2;
  if (start > maxHead) return fail(431, "request head too large");

  // ---- request line
  const lf = buf.indexOf(LF, start);
  if (lf === -1) return incompleteRequestLine(buf, start, maxHead);
  const lineEnd = lf - 1;
  if (lf === start || buf[lineEnd] !== CR) return fail(400, "bare LF in request head");
  if (lineEnd - start > MAX_REQUEST_LINE) return fail(414, "request-target too long");

  let i = start;
  while (i < lineEnd && TCHAR[buf[i]] === 1) i++;
  if (i === start || i === lineEnd || buf[i] !== SP) return fail(400, "malformed request line");
  const methodEnd = i;
  const t0 = i + 1;
  let t1 = t0;
  while (t1 < lineEnd && buf[t1] !== SP) t1++;
  if (t1 === t0 || t1 === lineEnd) return fail(400, "malformed request line");
  const v = t1 + 1;
  if (
    lineEnd - v !== 8 || buf[v] !== 72 || buf[v + 1] !== 84 || buf[v + 2] !== 84 ||
    buf[v + 3] !== 80 || buf[v + 4] !== SLASH || buf[v + 6] !== 46 ||
    buf[v + 5] < 48 || buf[v + 5] > 57 || buf[v + 7] < 48 || buf[v + 7] > 57
  ) {
    return fail(400, "malformed HTTP version");
  }
  let version: "HTTP/1.1" | "HTTP/1.0";
  if (buf[v + 5] === 49 && buf[v + 7] === 49) version = "HTTP/1.1";
  else if (buf[v + 5] === 49 && buf[v + 7] === 48) version = "HTTP/1.0";
  else return fail(505, "HTTP version not supported");
  if (t1 - t0 > MAX_TARGET_LENGTH) return fail(414, "request-target too long");
  for (let k = t0; k < t1; k++) {
    const c = buf[k];
    if (c < 0x21 || c > 0x7e || c === HASH) return fail(400, "invalid character in request-target");
  }
  // The request line is all ASCII now (tchar method, visible-ASCII target, fixed version).
  const line = ASCII_DECODER.decode(buf.subarray(start, lineEnd));
  const method = line.slice(0, methodEnd - start);
  if (!isMethodKnown(method)) return fail(501, "method not implemented");

  let target = line.slice(t0 - start, t1 - start);
  let authority: string | null = null;
  const first = buf[t0];
  if (first === SLASH) {
    // origin-form: nothing to do
  } else if (first === STAR && t1 - t0 === 1) {
    if (method !== "OPTIONS") return fail(400, "asterisk-form is only allowed with OPTIONS");
  } else {
    // absolute-form: http(s)://authority[/path][?query]
    const lower = target.slice(0, 8).toLowerCase();
    const schemeLen = lower.startsWith("http://") ? 7 : lower.startsWith("https://") ? 8 : 0;
    if (schemeLen === 0) return fail(400, "invalid request-target");
    let a1 = schemeLen;
    while (a1 < target.length && target[a1] !== "/" && target[a1] !== "?") a1++;
    authority = target.slice(schemeLen, a1);
    if (authority === "" || !HOST_RE.test(authority)) {
      return fail(400, "invalid authority in request-target");
    }
    target = a1 === target.length
      ? "/"
      : target[a1] === "?"
      ? "/" + target.slice(a1)
      : target.slice(a1);
  }
  let path = target;
  let query = "";
  const q = target.indexOf("?");
  if (q !== -1) {
    path = target.slice(0, q);
    query = target.slice(q + 1);
  }
  if (path !== "*") {
    // Routers match this, the handler sees the same (src/http/request_path.ts).
    const routed = routedPath(path);
    if (routed === undefined) return fail(400, "invalid request-target");
    path = routed;
  }

  // ---- field lines
  const headers: [string, string][] = [];
  let hostCount = 0;
  let host = "";
  let contentLength = -1; // -1: absent
  let contentLengthText = "";
  let teSeen = false;
  let teChunked = 0;
  let teOther = false;
  let teEmpty = false;
  let connClose = false;
  let connKeepAlive = false;

  // Find the end of the head first, then decode the field section once.
  const fieldsStart = lf + 1;
  let count = 0;
  let pos = fieldsStart;
  for (;;) {
    const nl = buf.indexOf(LF, pos);
    if (nl === -1) return len > maxHead ? fail(431, "request head too large") : INCOMPLETE;
    if (nl + 1 > maxHead) return fail(431, "request head too large");
    if (nl === pos || buf[nl - 1] !== CR) return fail(400, "bare LF in request head");
    if (nl - 1 === pos) break;
    if (count === MAX_HEADER_FIELDS) return fail(431, "too many header fields");
    lineStarts[count++] = pos;
    pos = nl + 1;
  }
  const headEnd = pos + 2;
  lineStarts[count] = pos; // sentinel: field line f ends (before CRLF) at lineStarts[f + 1] - 2

  let nonAscii = 0;
  for (let f = 0; f < count; f++) {
    const bad = scanFieldLine(buf, lineStarts[f], lineStarts[f + 1] - 2, spans, 4 * f);
    if (bad !== null) return bad;
    nonAscii |= spans[4 * f + 3] & NON_ASCII;
  }
  const section = nonAscii === 0
    ? ASCII_DECODER.decode(buf.subarray(fieldsStart, pos))
    : latin1(buf, fieldsStart, pos);

  for (let f = 0; f < count; f++) {
    const o = 4 * f;
    let name = section.slice(lineStarts[f] - fieldsStart, spans[o] - fieldsStart);
    if ((spans[o + 3] & NAME_UPPER) !== 0) name = name.toLowerCase();
    const value = section.slice(spans[o + 1] - fieldsStart, spans[o + 2] - fieldsStart);
    headers.push([name, value]);

    switch (name) {
      case "host":
        hostCount++;
        host = value;
        break;
      case "content-length": {
        for (const part of value.split(",")) {
          const p = part.trim();
          if (p === "" || !isDigits(p)) return fail(400, "invalid Content-Length");
          if (contentLength === -1) {
            contentLengthText = p;
            contentLength = p.length > 15 ? Number.MAX_SAFE_INTEGER : Number(p);
          } else if (p !== contentLengthText) {
            return fail(400, "conflicting Content-Length values");
          }
        }
        break;
      }
      case "transfer-encoding": {
        teSeen = true;
        let any = false;
        for (const part of value.split(",")) {
          const p = part.trim().toLowerCase();
          if (p === "") continue;
          any = true;
          if (p === "chunked") teChunked++;
          else teOther = true;
        }
        if (!any) teEmpty = true;
        break;
      }
      case "connection":
        for (const part of value.split(",")) {
          const p = part.trim().toLowerCase();
          if (p === "close") connClose = true;
          else if (p === "keep-alive") connKeepAlive = true;
        }
        break;
    }
  }

  // ---- head semantics
  if (hostCount > 1) return fail(400, "multiple Host headers");
  if (hostCount === 0 && version === "HTTP/1.1") return fail(400, "missing Host header");
  if (hostCount === 1 && !HOST_RE.test(host)) return fail(400, "invalid Host header");
  if (authority !== null) host = authority;

  if (teSeen) {
    if (contentLength !== -1) return fail(400, "both Transfer-Encoding and Content-Length");
    if (version === "HTTP/1.0") return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (teOther) return fail(501, "only the chunked transfer coding is supported");
    if (teEmpty || teChunked !== 1) return fail(400, "invalid Transfer-Encoding");
  } else if (
    contentLength === -1 && (method === "POST" || method === "PUT" || method === "PATCH")
  ) {
    return fail(411, "length required");
  }
  if (contentLength > limits.maxBodyBytes) return fail(413, "request body too large");

  const head: RequestHead = {
    method,
    target,
    path,
    query,
    version,
    headers,
    host,
    keepAlive: version === "HTTP/1.1" ? !connClose : connKeepAlive && !connClose,
    headLength: headEnd,
  };

  // ---- body
  if (teSeen) return parseChunked(buf, headEnd, head, limits);
  if (contentLength <= 0) return { kind: "request", head, body: EMPTY, length: headEnd };
  const bodyEnd = headEnd + contentLength;
  if (len < bodyEnd) return { kind: "incomplete", head };
  return { kind: "request", head, body: buf.subarray(headEnd, bodyEnd), length: bodyEnd };
}

function isDigits(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** The request line has no LF yet: decide between 414, 431 and incomplete. */
function incompleteRequestLine(buf: Uint8Array, start: number, maxHead: number): ParseResult {
  const len = buf.length;
  if (len - start > MAX_TARGET_LENGTH) {
    if (len - start > MAX_REQUEST_LINE) return fail(414, "request-target too long");
    // Report an over-long target as soon as it is visible.
    const sp1 = buf.indexOf(SP, start);
    if (sp1 !== -1) {
      let sp2 = buf.indexOf(SP, sp1 + 1);
      if (sp2 === -1) sp2 = len;
      if (sp2 - sp1 - 1 > MAX_TARGET_LENGTH) return fail(414, "request-target too long");
    }
  }
  if (len > maxHead) return fail(431, "request head too large");
  return INCOMPLETE;
}

/** Decode the chunked body that starts at `bodyStart` (RFC 9112 7.1): the
 * {@linkcode ChunkedDecoder} run over the whole buffer. A body of one chunk is
 * a view of `buf`; several are copied into one array. */
function parseChunked(
  buf: Uint8Array,
  bodyStart: number,
  head: RequestHead,
  limits: Limits,
): ParseResult {
  const decoder = new ChunkedDecoder(limits.maxBodyBytes);
  let p = bodyStart;
  /** Where the body's data is in `buf`: offset, length, offset, length, ... */
  const at: number[] = [];
  for (;;) {
    const step = decoder.decode(buf, p);
    if (step.kind === "error") return step;
    p += step.consumed;
    if (step.kind === "end") break;
    if (step.data > 0) at.push(p - step.data, step.data);
    if (step.consumed === 0) return { kind: "incomplete", head };
  }
  if (at.length === 0) return { kind: "request", head, body: EMPTY, length: p };
  if (at.length === 2) {
    return { kind: "request", head, body: buf.subarray(at[0], at[0] + at[1]), length: p };
  }
  const body = new Uint8Array(decoder.total);
  for (let k = 0, o = 0; k < at.length; o += at[k + 1], k += 2) {
    body.set(buf.subarray(at[k], at[k] + at[k + 1]), o);
  }
  return { kind: "request", head, body, length: p };
}

/** One step of {@linkcode ChunkedDecoder.decode}.
 *
 * @example
 * ```ts
 * import { ChunkedDecoder, type DecodeStep } from "./http.ts";
 * const step: DecodeStep = new ChunkedDecoder(1024).decode(new TextEncoder().encode("0\r\n\r\n"));
 * console.log(step.kind); // "end"
 * ```
 */
export type DecodeStep =
  /** `consumed` bytes were used: framing, then `data` bytes of body (the last `data` of
   * them; 0 if none). With `consumed` 0, more input is needed. */
  | { kind: "data"; consumed: number; data: number }
  /** The body is complete after `consumed` more bytes (its last chunk and trailer section). */
  | { kind: "end"; consumed: number }
  /** The body is invalid or over a limit: answer `status` (see {@linkcode CHUNKED_LIMITS})
   * and close the connection. */
  | { kind: "error"; status: 400 | 413 | 431; message: string };

// Decoder states: where the next byte of the body belongs.
const SIZE = 0, EXT_BWS = 1, EXT = 2, SIZE_LF = 3, DATA = 4, DATA_CR = 5, DATA_LF = 6;
const TRAILER = 7, DONE = 8, FAILED = 9;
/** Scratch space for {@linkcode scanFieldLine} on a trailer field line. */
const trailerSpans = new Int32Array(4);

/**
 * The chunked transfer coding's decoder (RFC 9112 7.1), the only one: input
 * may come in pieces of any size, and the outcome does not depend on where
 * the pieces are cut (size lines and data are taken as they come; a trailer
 * line is taken once its LF is here). A body parsed whole by
 * {@linkcode parseRequest} is decoded by it too. Its limits and
 * statuses are {@linkcode CHUNKED_LIMITS}; chunk extensions are checked and
 * ignored, trailer fields validated as header fields and dropped.
 *
 * @example
 * ```ts
 * import { ChunkedDecoder } from "./http.ts";
 * const d = new ChunkedDecoder(1 << 20);
 * const input = new TextEncoder().encode("3\r\nabc\r\n0\r\n\r\n");
 * let off = 0;
 * for (;;) {
 *   const step = d.decode(input, off);
 *   if (step.kind === "error") throw new Error(step.message);
 *   off += step.consumed;
 *   if (step.kind === "end") break;
 *   if (step.data > 0) console.log(new TextDecoder().decode(input.subarray(off - step.data, off)));
 *   if (step.consumed === 0) throw new Error("more input needed");
 * }
 * ```
 */
export class ChunkedDecoder {
  #state = SIZE;
  #maxBody: number;
  /** The chunk-size being read, and its digits so far. */
  #size = 0;
  #digits = 0;
  /** Bytes of the chunk-size line being read. */
  #line = 0;
  /** Bytes of data left in the current chunk. */
  #left = 0;
  #total = 0;
  /** Bytes of chunk extensions, of chunk-size lines, of trailer lines so far. */
  #ext = 0;
  #framing = 0;
  #trailer = 0;
  #error: DecodeStep | undefined;

  /** A decoder for a body of at most `maxBody` bytes (413 beyond).
   *
   * @example
   * ```ts
   * import { ChunkedDecoder } from "./http.ts";
   * new ChunkedDecoder(1024);
   * ```
   */
  constructor(maxBody: number) {
    this.#maxBody = maxBody;
  }

  /** Body bytes announced by the chunk sizes read so far.
   *
   * @example
   * ```ts
   * import { ChunkedDecoder } from "./http.ts";
   * const d = new ChunkedDecoder(1024);
   * d.decode(new TextEncoder().encode("5\r\nhe"));
   * console.log(d.total); // 5
   * ```
   */
  get total(): number {
    return this.#total;
  }

  /** Decode from `buf[start]` (default 0), which follows the bytes consumed
   * so far: one step, `consumed` counted from `start` (call again with the
   * rest while `consumed` > 0; with `consumed` 0, more input is needed).
   * After an error, every call returns it again.
   *
   * @example
   * ```ts
   * import { ChunkedDecoder } from "./http.ts";
   * const step = new ChunkedDecoder(1024).decode(new TextEncoder().encode("5\r\nhe"));
   * // { kind: "data", consumed: 5, data: 2 }: "5\r\n" is framing, "he" body
   * ```
   */
  decode(buf: Uint8Array, start = 0): DecodeStep {
    if (this.#state === DONE) return { kind: "end", consumed: 0 };
    if (this.#error !== undefined) return this.#error;
    const len = buf.length;
    let i = start;
    while (i < len) {
      switch (this.#state) {
        case SIZE: {
          const h = HEX[buf[i]];
          if (h !== -1) {
            if (this.#digits === CHUNKED_LIMITS.maxSizeDigits) {
              return this.#fail(400, "chunk size too long");
            }
            this.#size = this.#size * 16 + h;
            this.#digits++;
            this.#line++;
            i++;
          } else if (this.#digits === 0) {
            return this.#fail(400, "invalid chunk size");
          } else if (buf[i] === CR) {
            this.#state = SIZE_LF;
            this.#line++;
            i++;
          } else if (buf[i] === LF) {
            return this.#fail(400, "bare LF in chunk size line");
          } else {
            this.#state = EXT_BWS; // the same byte again, as the start of an extension
          }
          break;
        }
        case EXT_BWS: {
          // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
          const c = buf[i];
          if (c === SEMICOLON) this.#state = EXT;
          else if (c === LF) return this.#fail(400, "bare LF in chunk size line");
          else if (c !== SP && c !== HT) return this.#fail(400, "invalid chunk extension");
          const bad = this.#extension(1);
          if (bad) return bad;
          i++;
          break;
        }
        case EXT: {
          // Content ignored; its bytes must be field-value bytes, up to CR.
          let j = i;
          while (j < len && FIELD_BYTE[buf[j]] === 1) j++;
          const bad = this.#extension(j - i);
          if (bad) return bad;
          i = j;
          if (j === len) break;
          if (buf[j] === LF) return this.#fail(400, "bare LF in chunk size line");
          if (buf[j] !== CR) return this.#fail(400, "invalid chunk extension");
          this.#state = SIZE_LF;
          this.#line++;
          i++;
          break;
        }
        case SIZE_LF: {
          if (buf[i] !== LF) return this.#fail(400, "invalid chunk size line");
          i++;
          const bad = this.#sizeLine();
          if (bad) return bad;
          break;
        }
        case DATA: {
          const n = Math.min(this.#left, len - i);
          this.#left -= n;
          if (this.#left === 0) this.#state = DATA_CR;
          return { kind: "data", consumed: i + n - start, data: n };
        }
        case DATA_CR:
        case DATA_LF:
          if (buf[i] !== (this.#state === DATA_CR ? CR : LF)) {
            return this.#fail(400, "missing CRLF after chunk data");
          }
          this.#state = this.#state === DATA_CR ? DATA_LF : SIZE;
          i++;
          break;
        default: // TRAILER
          return this.#trailerLines(buf, start, i);
      }
    }
    return { kind: "data", consumed: i - start, data: 0 };
  }

  #fail(status: 400 | 413 | 431, message: string): DecodeStep {
    this.#state = FAILED;
    return this.#error = { kind: "error", status, message };
  }

  /** `n` more bytes of chunk extensions. */
  #extension(n: number): DecodeStep | undefined {
    this.#line += n;
    this.#ext += n;
    if (this.#ext > CHUNKED_LIMITS.maxExtensionBytes) {
      return this.#fail(400, "chunk extensions too large");
    }
  }

  /** A chunk-size line is complete (its LF consumed). */
  #sizeLine(): DecodeStep | undefined {
    this.#framing += this.#line + 1;
    this.#line = 0;
    if (this.#framing > Math.max(this.#maxBody, CHUNKED_LIMITS.framingFloorBytes)) {
      return this.#fail(413, "request too large");
    }
    const size = this.#size;
    this.#size = this.#digits = 0;
    if (size === 0) {
      this.#state = TRAILER;
      return;
    }
    this.#total += size;
    if (this.#total > this.#maxBody) return this.#fail(413, "request body too large");
    this.#left = size;
    this.#state = DATA;
  }

  /** Trailer field lines from `buf[from]`, up to the empty line that ends
   * the body (`consumed` counted from `start`). */
  #trailerLines(buf: Uint8Array, start: number, from: number): DecodeStep {
    const max = CHUNKED_LIMITS.maxTrailerBytes;
    let p = from;
    for (;;) {
      const nl = buf.indexOf(LF, p);
      if (nl === -1) {
        // A partial line is looked at again when more comes: it is not consumed.
        if (this.#trailer + buf.length - p > max) {
          return this.#fail(431, "trailer section too large");
        }
        return { kind: "data", consumed: p - start, data: 0 };
      }
      this.#trailer += nl + 1 - p;
      if (this.#trailer > max) return this.#fail(431, "trailer section too large");
      if (nl === p || buf[nl - 1] !== CR) return this.#fail(400, "bare LF in trailer section");
      if (nl - 1 === p) {
        this.#state = DONE;
        return { kind: "end", consumed: nl + 1 - start };
      }
      const bad = scanFieldLine(buf, p, nl - 1, trailerSpans, 0);
      if (bad !== null && bad.kind === "error") return this.#fail(400, bad.message);
      p = nl + 1;
    }
  }
}

// ---------------------------------------------------------------------------
// Serialization

const STATUS_TEXT: Record<number, string> = {
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  411: "Length Required",
  412: "Precondition Failed",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  421: "Misdirected Request",
  422: "Unprocessable Content",
  426: "Upgrade Required",
  428: "Precondition Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/**
 * The RFC 9110 reason phrase for `status`, or `""` if unknown.
 *
 * @example
 * ```ts
 * import { statusText } from "./http.ts";
 * statusText(404); // "Not Found"
 * statusText(299); // ""
 * ```
 */
export function statusText(status: number): string {
  return STATUS_TEXT[status] ?? "";
}

/** `s` as UTF-8 in a reused buffer: a view valid until the next call (the
 * serializer copies it into the response at once). */
function utf8Scratch(s: string): Uint8Array {
  if (s.length > 16384) return ENCODER.encode(s); // large bodies get their own buffer
  if (bodyScratch.length < s.length * 3) {
    bodyScratch = new Uint8Array(Math.max(s.length * 3, bodyScratch.length * 2));
  }
  const { written } = ENCODER.encodeInto(s, bodyScratch);
  return bodyScratch.subarray(0, written);
}
let bodyScratch = new Uint8Array(4096);

/** A string whose code units are all <= 0xff, as latin1 bytes. */
function latin1Bytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  writeLatin1(s, out);
  return out;
}

/** Write a string whose code units are all <= 0xff into `out` as latin1. */
function writeLatin1(s: string, out: Uint8Array): void {
  // Fast path: ASCII-only strings encode 1:1 as UTF-8.
  const { read, written } = ENCODER.encodeInto(s, out);
  if (read === s.length && written === s.length) return;
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
}

/**
 * Serialize a response as HTTP/1.1 bytes in a single allocation.
 *
 * Caller headers named Content-Length, Transfer-Encoding or Connection are skipped, as are
 * headers with an invalid name or a value containing CR, LF or other control characters
 * (or characters above U+00FF). Then `content-length` (except for 1xx/204/304, which never
 * carry a body) and `connection: keep-alive|close` are appended. With `headOnly` (HEAD) the
 * body is omitted but `content-length` still states its length. A string body is sent as
 * UTF-8.
 *
 * With `streamed`, only the head is serialized, for a body written after it as it is
 * produced: `content-length` when its length is known (a number), `transfer-encoding:
 * chunked` (`"chunked"`), or neither (`"close"`: the body ends when the connection closes,
 * for HTTP/1.0 clients). With `upgrade` (a 101), the head says `connection: upgrade` and
 * `upgrade: <protocol>` instead.
 *
 * @example
 * ```ts
 * import { serializeResponse } from "./http.ts";
 * const bytes = serializeResponse(
 *   { status: 200, headers: [["content-type", "text/plain"]], body: new TextEncoder().encode("hi") },
 *   { keepAlive: true },
 * );
 * // "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n"
 * // + "connection: keep-alive\r\n\r\nhi"
 * ```
 */
export function serializeResponse(
  res: {
    status: number;
    statusText?: string;
    headers: Iterable<[string, string]>;
    body: Uint8Array | string;
  },
  opts: {
    keepAlive: boolean;
    headOnly?: boolean;
    streamed?: number | "chunked" | "close";
    upgrade?: string;
  },
): Uint8Array {
  const body = typeof res.body === "string" ? utf8Scratch(res.body) : res.body;
  const status = res.status;
  if (!Number.isInteger(status) || status < 100 || status > 999) {
    throw new RangeError(`invalid HTTP status code: ${status}`);
  }
  let reason = res.statusText ?? statusText(status);
  if (!FIELD_VALUE_RE.test(reason)) reason = statusText(status);
  let head = "HTTP/1.1 " + status + " " + reason + "\r\n";
  for (const [name, value] of res.headers) {
    if (!TOKEN_RE.test(name) || !FIELD_VALUE_RE.test(value)) continue;
    if (name.length === 10 || name.length === 14 || name.length === 17) {
      const lower = name.toLowerCase();
      if (
        lower === "connection" || lower === "content-length" || lower === "transfer-encoding"
      ) continue;
    }
    head += name + ": " + value + "\r\n";
  }
  const noBody = status < 200 || status === 204 || status === 304;
  const streamed = opts.streamed;
  if (opts.upgrade !== undefined) {
    if (!TOKEN_RE.test(opts.upgrade)) throw new RangeError("invalid upgrade protocol");
    return latin1Bytes(head + "connection: upgrade\r\nupgrade: " + opts.upgrade + "\r\n\r\n");
  }
  if (noBody) {
    // no framing
  } else if (streamed === undefined) head += "content-length: " + body.length + "\r\n";
  else if (streamed === "chunked") head += "transfer-encoding: chunked\r\n";
  else if (typeof streamed === "number") head += "content-length: " + streamed + "\r\n";
  head += opts.keepAlive ? "connection: keep-alive\r\n\r\n" : "connection: close\r\n\r\n";
  if (streamed !== undefined) return latin1Bytes(head);
  const sendBody = !noBody && !opts.headOnly;
  const out = new Uint8Array(head.length + (sendBody ? body.length : 0));
  writeLatin1(head, out);
  if (sendBody) out.set(body, head.length);
  return out;
}

/**
 * Serialize a JSON error response: `content-type: application/json` and the body
 * `{"error":<message>,"status":<status>}\n`, plus any `extraHeaders`. `headOnly` omits
 * the body (for HEAD requests).
 *
 * @example
 * ```ts
 * import { errorResponse } from "./http.ts";
 * const bytes = errorResponse(404, "no such function", { keepAlive: false });
 * // body: {"error":"no such function","status":404}\n
 * ```
 */
export function errorResponse(
  status: number,
  message: string,
  opts: { keepAlive: boolean; extraHeaders?: [string, string][]; headOnly?: boolean },
): Uint8Array {
  const body = ENCODER.encode(JSON.stringify({ error: message, status }) + "\n");
  const headers: [string, string][] = [["content-type", "application/json"]];
  if (opts.extraHeaders !== undefined) {
    for (const h of opts.extraHeaders) headers.push(h);
  }
  return serializeResponse(
    { status, headers, body },
    { keepAlive: opts.keepAlive, headOnly: opts.headOnly },
  );
}
