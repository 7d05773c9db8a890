/**
 * The WebSocket frame codec (RFC 6455, section 5), without I/O: a decoder
 * that takes bytes as they arrive and gives whole messages and control
 * frames, validated, and an encoder for frames.
 *
 * The decoder checks what a server must: client frames are masked, no
 * reserved bits (no extension is negotiated), known opcodes, control frames
 * unfragmented and at most 125 bytes, continuation frames only inside a
 * fragmented message (control frames may come between its fragments), text
 * that is UTF-8 (checked as fragments arrive, so a bad byte fails at once),
 * close frames with a valid code and a UTF-8 reason. A message larger than
 * the limit fails when the frame header that crosses it arrives: no byte past
 * the limit is buffered. Payloads are unmasked straight from the input into
 * the message, so a message is held once, not also frame by frame.
 *
 * @module
 */

/** Frame opcodes. */
export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa,
} as const;

/** Close codes a server sends (RFC 6455, section 7.4.1). */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  Unsupported: 1003,
  NoStatus: 1005,
  Abnormal: 1006,
  InvalidData: 1007,
  PolicyViolation: 1008,
  TooBig: 1009,
  InternalError: 1011,
} as const;

/** What the decoder found: a message, a control frame, or why the peer's
 * input is refused (`error`: fail the connection with `code`). */
export type Incoming =
  | { type: "text"; data: string }
  | { type: "binary"; data: Uint8Array }
  | { type: "ping"; data: Uint8Array }
  | { type: "pong"; data: Uint8Array }
  /** `code` is 1005 when the frame had none. */
  | { type: "close"; code: number; reason: string }
  /** `peerClosed`: the refused frame was the peer's close frame (it sends
   * nothing more: answer with a close frame, then close the connection). */
  | { type: "error"; code: number; reason: string; peerClosed?: boolean };

/** Largest control frame payload. */
export const MAX_CONTROL_PAYLOAD = 125;

/**
 * Whether `code` may be sent in a close frame (1000-1003, 1007-1014,
 * 3000-4999; 1004-1006 and 1015 are reserved, the rest unassigned).
 *
 * @example
 * ```ts
 * import { isValidCloseCode } from "./websocket_frames.ts";
 * isValidCloseCode(1000); // true
 * isValidCloseCode(1005); // false: "no status", never sent
 * ```
 */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

const ENCODER = new TextEncoder();

/**
 * A close frame's payload: `code` (none when undefined) and `reason` (UTF-8,
 * at most 123 bytes: longer is cut at a character boundary).
 *
 * @example
 * ```ts
 * import { closePayload } from "./websocket_frames.ts";
 * closePayload(1000, "bye"); // 03 e8 62 79 65
 * ```
 */
export function closePayload(code?: number, reason = ""): Uint8Array {
  if (code === undefined) return new Uint8Array(0);
  const out = new Uint8Array(2 + MAX_CONTROL_PAYLOAD - 2);
  out[0] = code >> 8;
  out[1] = code & 0xff;
  const { written } = ENCODER.encodeInto(reason, out.subarray(2));
  return out.subarray(0, 2 + written);
}

/**
 * One frame's bytes: header and payload. Server frames are unmasked; `mask`
 * (4 bytes) masks it as a client's must be. `rsv` sets reserved bits (only
 * tests send those).
 *
 * @example
 * ```ts
 * import { encodeFrame, Opcode } from "./websocket_frames.ts";
 * const hello = encodeFrame(Opcode.Text, new TextEncoder().encode("hello"));
 * const first = encodeFrame(Opcode.Text, new TextEncoder().encode("hel"), { fin: false });
 * ```
 */
export function encodeFrame(
  opcode: number,
  payload: Uint8Array,
  opts: { fin?: boolean; mask?: Uint8Array; rsv?: number } = {},
): Uint8Array {
  const len = payload.length;
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const maskLen = opts.mask ? 4 : 0;
  const head = 2 + ext + maskLen;
  const out = new Uint8Array(head + len);
  out[0] = (opts.fin === false ? 0 : 0x80) | ((opts.rsv ?? 0) & 0x7) << 4 | (opcode & 0xf);
  out[1] = (opts.mask ? 0x80 : 0) | (ext === 0 ? len : ext === 2 ? 126 : 127);
  const view = new DataView(out.buffer);
  if (ext === 2) view.setUint16(2, len);
  if (ext === 8) {
    view.setUint32(2, Math.floor(len / 2 ** 32));
    view.setUint32(6, len >>> 0);
  }
  out.set(payload, head);
  if (opts.mask) {
    out.set(opts.mask.subarray(0, 4), 2 + ext);
    for (let i = 0; i < len; i++) out[head + i] ^= opts.mask[i & 3];
  }
  return out;
}

/** How a {@linkcode FrameDecoder} checks its input. */
export interface DecoderOptions {
  /** Largest message (all its fragments), bytes. */
  maxMessageSize: number;
  /** Refuse unmasked frames (a server decoding a client's frames: true). */
  requireMask: boolean;
}

/** A decoder's answer: bytes of the input it used, and what it found. */
export interface Decoded {
  /** Bytes of the input consumed (drop them before the next call). */
  consumed: number;
  /** A message, control frame or error, when one completed. */
  event?: Incoming;
}

const fail = (code: number, reason: string): Decoded & { event: Incoming } => ({
  consumed: 0,
  event: { type: "error", code, reason },
});

/**
 * Decodes a peer's frames as bytes arrive. Call {@linkcode FrameDecoder.next}
 * with the bytes received and not consumed yet; it returns after each event,
 * so the caller handles them one at a time. After an error the input cannot
 * be trusted: the decoder then only skips frames (payloads dropped, unread)
 * looking for the peer's close frame, so the closing handshake can finish.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameDecoder, Opcode } from "./websocket_frames.ts";
 * const decoder = new FrameDecoder({ maxMessageSize: 1 << 20, requireMask: true });
 * const frame = encodeFrame(Opcode.Text, new TextEncoder().encode("hi"), {
 *   mask: new Uint8Array([1, 2, 3, 4]),
 * });
 * const { consumed, event } = decoder.next(frame); // 8, { type: "text", data: "hi" }
 * ```
 */
export class FrameDecoder {
  #max: number;
  #requireMask: boolean;
  /** After an error: skip frames until a close frame. */
  #failed = false;
  /** After an error, input that is not even frames: dropped. */
  #garbage = false;
  // The frame being read.
  #inFrame = false;
  #opcode = 0;
  #fin = false;
  #masked = false;
  #mask = new Uint8Array(4);
  /** Payload bytes of the frame not read yet. */
  #remaining = 0;
  /** Payload bytes of the frame read so far (the mask's offset). */
  #read = 0;
  // The data message being assembled (opcode 0: none).
  #msgOpcode = 0;
  #msgLength = 0;
  #binary = new Uint8Array(0);
  #text: TextDecoder | undefined;
  #parts: string[] = [];
  /** Unmasked text bytes before decoding (reused). */
  #scratch = new Uint8Array(0);
  // A control frame's payload.
  #control = new Uint8Array(MAX_CONTROL_PAYLOAD);

  /** A decoder for one connection's incoming frames.
   *
   * @example
   * ```ts
   * import { FrameDecoder } from "./websocket_frames.ts";
   * new FrameDecoder({ maxMessageSize: 16 << 20, requireMask: true });
   * ```
   */
  constructor(opts: DecoderOptions) {
    this.#max = opts.maxMessageSize;
    this.#requireMask = opts.requireMask;
  }

  /** Whether the decoder has refused its input (only a close frame is
   * looked for since). */
  get failed(): boolean {
    return this.#failed;
  }

  /** Decode from `input` (bytes received, not consumed yet) until one event
   * completes or the input is used up.
   *
   * @example
   * ```ts
   * import { FrameDecoder } from "./websocket_frames.ts";
   * const decoder = new FrameDecoder({ maxMessageSize: 1024, requireMask: true });
   * const r = decoder.next(new Uint8Array([0x81, 0x05])); // unmasked: an error (1002)
   * ```
   */
  next(input: Uint8Array): Decoded {
    if (this.#garbage) return { consumed: input.length };
    let off = 0;
    for (;;) {
      if (!this.#inFrame) {
        const h = this.#header(input.subarray(off));
        if (h === undefined) return { consumed: off };
        if (h.event) {
          // Refused: the frame is not consumed (the decoder skips it later).
          this.#fail();
          return { consumed: off, event: h.event };
        }
        off += h.consumed;
      }
      const take = Math.min(this.#remaining, input.length - off);
      if (take > 0 || this.#remaining === 0) {
        const event = this.#payload(input.subarray(off, off + take));
        off += take;
        if (event) {
          if (event.type === "error") this.#fail();
          return { consumed: off, event };
        }
      }
      if (this.#inFrame) return { consumed: off }; // more payload to come
    }
  }

  /** Refuse the input from here on. A frame whose payload is being read
   * stays in progress: the rest of it is skipped. */
  #fail(): void {
    this.#failed = true;
    this.#msgOpcode = 0;
    this.#msgLength = 0;
    this.#binary = new Uint8Array(0);
    this.#parts = [];
    this.#text = undefined;
  }

  /** Read a frame header at the start of `b`: undefined when incomplete, an
   * error event when refused, else the header's length (the frame begins). */
  #header(b: Uint8Array): { consumed: number; event?: Incoming } | undefined {
    if (b.length < 2) return undefined;
    const b0 = b[0], b1 = b[1];
    const len7 = b1 & 0x7f;
    const masked = (b1 & 0x80) !== 0;
    const headLen = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
    if (b.length < headLen) return undefined;
    let length = len7;
    if (len7 === 126) length = (b[2] << 8) | b[3];
    else if (len7 === 127) {
      const hi = ((b[2] << 24) | (b[3] << 16) | (b[4] << 8) | b[5]) >>> 0;
      const lo = ((b[6] << 24) | (b[7] << 16) | (b[8] << 8) | b[9]) >>> 0;
      if (hi >= 0x80000000) {
        if (!this.#failed) return fail(1002, "frame length has its most significant bit set");
        this.#garbage = true; // no frame boundary to skip to
        return { consumed: b.length };
      }
      length = hi * 2 ** 32 + lo;
    }
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if (!this.#failed) {
      const refused = this.#check(b0, fin, opcode, masked, length);
      if (refused) return refused;
    }
    this.#inFrame = true;
    this.#fin = fin;
    this.#opcode = opcode;
    this.#masked = masked;
    if (masked) this.#mask.set(b.subarray(headLen - 4, headLen));
    this.#remaining = length;
    this.#read = 0;
    if (!this.#failed && (opcode === Opcode.Text || opcode === Opcode.Binary)) {
      this.#msgOpcode = opcode;
      this.#msgLength = 0;
      if (opcode === Opcode.Text) {
        this.#text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
        this.#parts = [];
      } else {
        // A whole message in one frame is allocated at its size once.
        this.#binary = new Uint8Array(fin ? length : Math.min(length, this.#max));
      }
    }
    return { consumed: headLen };
  }

  /** Why a frame header is refused, or undefined. */
  #check(
    b0: number,
    fin: boolean,
    opcode: number,
    masked: boolean,
    length: number,
  ): Decoded | undefined {
    if ((b0 & 0x70) !== 0) return fail(1002, "reserved bits set (no extension negotiated)");
    if (opcode >= 0x8) {
      if (opcode > Opcode.Pong) return fail(1002, `unknown opcode ${opcode}`);
      if (!fin) return fail(1002, "fragmented control frame");
      if (length > MAX_CONTROL_PAYLOAD) return fail(1002, "control frame over 125 bytes");
    } else if (opcode > Opcode.Binary) {
      return fail(1002, `unknown opcode ${opcode}`);
    } else if (opcode === Opcode.Continuation) {
      if (this.#msgOpcode === 0) return fail(1002, "continuation frame outside a message");
    } else if (this.#msgOpcode !== 0) {
      return fail(1002, "a new message began before the last one ended");
    }
    if (!masked && this.#requireMask) return fail(1002, "client frames must be masked");
    const msg = opcode === Opcode.Continuation ? this.#msgLength : 0;
    if (opcode < 0x8 && msg + length > this.#max) {
      return fail(1009, `message over ${this.#max} bytes`);
    }
    return undefined;
  }

  /** Take `piece` of the current frame's payload; the event when the frame
   * completes a message or is a control frame. */
  #payload(piece: Uint8Array): Incoming | undefined {
    const start = this.#read;
    this.#read += piece.length;
    this.#remaining -= piece.length;
    const done = this.#remaining === 0;
    if (this.#failed) {
      // Skipping: only a close frame's payload is kept (when it fits).
      const keep = this.#opcode === Opcode.Close && this.#read <= MAX_CONTROL_PAYLOAD;
      if (keep) this.#unmask(piece, this.#control, start, start);
      if (!done) return undefined;
      this.#inFrame = false;
      if (this.#opcode !== Opcode.Close) return undefined;
      return this.#closeFrame(this.#control.subarray(0, keep ? this.#read : 0), true);
    }
    if (this.#opcode >= 0x8) {
      this.#unmask(piece, this.#control, start, start);
      if (!done) return undefined;
      this.#inFrame = false;
      const data = this.#control.slice(0, this.#read);
      if (this.#opcode === Opcode.Ping) return { type: "ping", data };
      if (this.#opcode === Opcode.Pong) return { type: "pong", data };
      return this.#closeFrame(data, false);
    }
    if (this.#msgOpcode === Opcode.Text) {
      if (this.#scratch.length < piece.length) {
        this.#scratch = new Uint8Array(Math.max(piece.length, 2 * this.#scratch.length));
      }
      const plain = this.#scratch.subarray(0, piece.length);
      this.#unmask(piece, plain, 0, start);
      try {
        const s = this.#text!.decode(plain, { stream: !(done && this.#fin) });
        if (s.length > 0) this.#parts.push(s);
      } catch {
        return { type: "error", code: 1007, reason: "text message is not valid UTF-8" };
      } finally {
        plain.fill(0);
      }
    } else {
      const need = this.#msgLength + piece.length;
      if (need > this.#binary.length) {
        const grown = new Uint8Array(Math.min(Math.max(need, this.#binary.length * 2), this.#max));
        grown.set(this.#binary.subarray(0, this.#msgLength));
        this.#binary = grown;
      }
      this.#unmask(piece, this.#binary, this.#msgLength, start);
    }
    this.#msgLength += piece.length;
    if (!done) return undefined;
    this.#inFrame = false;
    if (!this.#fin) return undefined; // more fragments to come
    const length = this.#msgLength;
    const text = this.#msgOpcode === Opcode.Text;
    this.#msgOpcode = 0;
    this.#msgLength = 0;
    if (text) {
      const data = this.#parts.length === 1 ? this.#parts[0] : this.#parts.join("");
      this.#parts = [];
      this.#text = undefined;
      return { type: "text", data };
    }
    const whole = this.#binary;
    this.#binary = new Uint8Array(0);
    return { type: "binary", data: whole.length === length ? whole : whole.slice(0, length) };
  }

  /** Copy `src` into `dst` at `at`, unmasked; `maskOffset`: the position of
   * `src[0]` in the frame's payload. */
  #unmask(src: Uint8Array, dst: Uint8Array, at: number, maskOffset: number): void {
    dst.set(src, at);
    if (!this.#masked) return;
    const m = this.#mask;
    for (let i = 0; i < src.length; i++) dst[at + i] ^= m[(maskOffset + i) & 3];
  }

  /** A close frame's payload, checked (unless skipping after an error). */
  #closeFrame(payload: Uint8Array, lenient: boolean): Incoming {
    if (payload.length === 0) return { type: "close", code: 1005, reason: "" };
    if (payload.length === 1) {
      return lenient ? { type: "close", code: 1005, reason: "" } : {
        type: "error",
        code: 1002,
        reason: "close frame with a 1-byte payload",
        peerClosed: true,
      };
    }
    const code = (payload[0] << 8) | payload[1];
    let reason = "";
    try {
      reason = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
        payload.subarray(2),
      );
    } catch {
      if (!lenient) {
        return { type: "error", code: 1007, reason: "close reason is not UTF-8", peerClosed: true };
      }
    }
    if (!lenient && !isValidCloseCode(code)) {
      return { type: "error", code: 1002, reason: `invalid close code ${code}`, peerClosed: true };
    }
    return { type: "close", code, reason };
  }
}
