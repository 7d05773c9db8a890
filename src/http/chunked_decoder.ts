/**
 * Decoding a chunked request body (RFC 9112 7.1) as it arrives, a piece at a
 * time, for request bodies streamed to a handler. Its limits are those of
 * the whole-body parser in http.ts: chunk sizes of at most 15 hex digits,
 * chunk extensions and trailers bounded, the body bounded by `maxBody`.
 *
 * @module
 */

const CR = 13, LF = 10;
/** Longest chunk-size line (size, extensions), and all trailer bytes. */
const MAX_META = 16 * 1024;
const MAX_SIZE_DIGITS = 15;

function hex(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** One step of {@linkcode ChunkedDecoder.decode}. */
export type DecodeStep =
  /** `consumed` bytes were used; `data` (a view of the input) is body, if any. */
  | { kind: "data"; consumed: number; data?: Uint8Array }
  /** The body is complete after `consumed` more bytes. */
  | { kind: "end"; consumed: number }
  /** The input is not a valid chunked body (400), or too large (413). */
  | { kind: "error"; status: 400 | 413; message: string };

/**
 * An incremental chunked-body decoder.
 *
 * @example
 * ```ts
 * import { ChunkedDecoder } from "./chunked_decoder.ts";
 * const d = new ChunkedDecoder(1 << 20);
 * const input = new TextEncoder().encode("3\r\nabc\r\n0\r\n\r\n");
 * let off = 0;
 * for (;;) {
 *   const step = d.decode(input.subarray(off));
 *   if (step.kind === "error") throw new Error(step.message);
 *   off += step.consumed;
 *   if (step.kind === "end") break;
 *   if (step.kind === "data" && step.data) console.log(new TextDecoder().decode(step.data));
 * }
 * ```
 */
export class ChunkedDecoder {
  #state: "size" | "data" | "crlf" | "trailer" | "done" = "size";
  #left = 0;
  #total = 0;
  #meta = 0;
  /** Bytes of chunk-size lines so far. */
  #framing = 0;
  #maxBody: number;

  /** A decoder for a body of at most `maxBody` bytes.
   *
   * @example
   * ```ts
   * import { ChunkedDecoder } from "./chunked_decoder.ts";
   * new ChunkedDecoder(1024);
   * ```
   */
  constructor(maxBody: number) {
    this.#maxBody = maxBody;
  }

  /** Body bytes decoded so far. */
  get total(): number {
    return this.#total;
  }

  /** Decode from the start of `buf`: one step (call again with the rest
   * while `consumed` > 0; with `consumed` 0, more input is needed).
   *
   * @example
   * ```ts
   * import { ChunkedDecoder } from "./chunked_decoder.ts";
   * const step = new ChunkedDecoder(1024).decode(new TextEncoder().encode("5\r\nhe"));
   * // { kind: "data", consumed: 5, data: "he" as bytes }
   * ```
   */
  decode(buf: Uint8Array): DecodeStep {
    switch (this.#state) {
      case "size":
        return this.#size(buf);
      case "data": {
        if (buf.length === 0) return { kind: "data", consumed: 0 };
        const n = Math.min(this.#left, buf.length);
        this.#left -= n;
        if (this.#left === 0) this.#state = "crlf";
        return { kind: "data", consumed: n, data: buf.subarray(0, n) };
      }
      case "crlf":
        if (buf.length < 2) {
          if (buf.length === 1 && buf[0] !== CR) return this.#bad("missing CRLF after chunk data");
          return { kind: "data", consumed: 0 };
        }
        if (buf[0] !== CR || buf[1] !== LF) return this.#bad("missing CRLF after chunk data");
        this.#state = "size";
        return { kind: "data", consumed: 2 };
      case "trailer":
        return this.#trailer(buf);
      case "done":
        return { kind: "end", consumed: 0 };
    }
  }

  #bad(message: string): DecodeStep {
    return { kind: "error", status: 400, message };
  }

  #size(buf: Uint8Array): DecodeStep {
    const lf = buf.indexOf(LF);
    if (lf < 0) {
      return buf.length + this.#meta > MAX_META
        ? this.#bad("chunk size line too long")
        : { kind: "data", consumed: 0 };
    }
    if (lf === 0 || buf[lf - 1] !== CR) return this.#bad("invalid chunk size line");
    let size = 0, i = 0;
    for (; i < lf - 1; i++) {
      const h = hex(buf[i]);
      if (h < 0) break;
      if (i === MAX_SIZE_DIGITS) return this.#bad("chunk size too long");
      size = size * 16 + h;
    }
    if (i === 0) return this.#bad("invalid chunk size");
    // Extensions (";name=value"), ignored but bounded and checked for CTLs.
    if (i < lf - 1) {
      let j = i;
      while (j < lf - 1 && (buf[j] === 32 || buf[j] === 9)) j++;
      if (buf[j] !== 59) return this.#bad("invalid chunk extension");
      for (; j < lf - 1; j++) {
        if (buf[j] < 32 && buf[j] !== 9 || buf[j] === 127) {
          return this.#bad("invalid chunk extension");
        }
      }
    }
    // Framing is bounded as a buffered body's is: a body of tiny chunks
    // may not cost more than --max-body in size lines.
    this.#framing += lf + 1;
    if (this.#framing > Math.max(this.#maxBody, MAX_META * 4)) {
      return { kind: "error", status: 413, message: "request too large" };
    }
    if (size === 0) {
      this.#state = "trailer";
      return { kind: "data", consumed: lf + 1 };
    }
    this.#total += size;
    if (this.#total > this.#maxBody) {
      return { kind: "error", status: 413, message: "request body too large" };
    }
    this.#left = size;
    this.#state = "data";
    return { kind: "data", consumed: lf + 1 };
  }

  /** Trailer fields up to an empty line: skipped, bounded. */
  #trailer(buf: Uint8Array): DecodeStep {
    const lf = buf.indexOf(LF);
    if (lf < 0) {
      return buf.length + this.#meta > MAX_META
        ? this.#bad("trailers too large")
        : { kind: "data", consumed: 0 };
    }
    if (lf === 0 || buf[lf - 1] !== CR) return this.#bad("invalid trailer line");
    this.#meta += lf + 1;
    if (this.#meta > MAX_META) return this.#bad("trailers too large");
    if (lf === 1) {
      this.#state = "done";
      return { kind: "end", consumed: 2 };
    }
    return { kind: "data", consumed: lf + 1 };
  }
}
