/**
 * Test support: hand-made TLS ClientHellos (the bytes a scanner or an odd
 * client sends) and a reader of the server's first answer, for conformance
 * tests against the real gateway over a plain TCP socket.
 *
 * @module
 */

import { hex } from "./bytes.ts";

/** TLS 1.3 suites, then TLS 1.2 ECDHE-ECDSA and ECDHE-RSA AES-GCM suites. */
export const DEFAULT_SUITES: readonly number[] = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f];

/** Named groups (RFC 8446 4.2.7). */
export const GROUP = {
  secp256r1: 23,
  secp384r1: 24,
  secp521r1: 25,
  x25519: 29,
  x448: 30,
  ffdhe2048: 256,
} as const;

/** One KeyShareEntry: a group and the bytes sent for it. */
export interface Share {
  group: number;
  key: Uint8Array;
}

/** What the ClientHello offers. */
export interface HelloOptions {
  /** "1.3" adds supported_versions (TLS 1.3 and 1.2) and a key_share. */
  version: "1.2" | "1.3";
  /** Cipher suites, in order (default {@linkcode DEFAULT_SUITES}). */
  suites?: readonly number[];
  /** supported_groups (default x25519, secp256r1). */
  groups?: readonly number[];
  /** Send an x25519 key share (TLS 1.3; default: when x25519 is offered). */
  x25519Share?: boolean;
  /** The key shares to send instead (TLS 1.3), exactly as given. */
  shares?: readonly Share[];
  /** signature_algorithms (default ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256). */
  sigAlgs?: readonly number[];
  /** legacy_session_id (default 32 random bytes). */
  sessionId?: Uint8Array;
  /** server_name (default "localhost"). */
  sni?: string;
  /** ALPN protocol names (default none). */
  alpn?: readonly string[];
  /** Bytes of an extension of a GREASE type, which servers ignore (default none). */
  padding?: number;
}

class Writer {
  bytes: number[] = [];
  u8(v: number): this {
    this.bytes.push(v & 0xff);
    return this;
  }
  u16(v: number): this {
    return this.u8(v >> 8).u8(v);
  }
  u24(v: number): this {
    return this.u8(v >> 16).u16(v & 0xffff);
  }
  raw(b: ArrayLike<number>): this {
    for (let i = 0; i < b.length; i++) this.bytes.push(b[i]);
    return this;
  }
  /** A vector with a length prefix of `size` bytes. */
  vec(size: 1 | 2 | 3, body: (w: Writer) => void): this {
    const inner = new Writer();
    body(inner);
    const n = inner.bytes.length;
    if (size === 1) this.u8(n);
    else if (size === 2) this.u16(n);
    else this.u24(n);
    return this.raw(inner.bytes);
  }
  ext(type: number, body: (w: Writer) => void): this {
    return this.u16(type).vec(2, body);
  }
}

const enc = new TextEncoder();

/** The ClientHello handshake message (type, length, body), unframed. */
export function clientHello(o: HelloOptions): Uint8Array {
  const groups = o.groups ?? [GROUP.x25519, GROUP.secp256r1];
  const suites = o.suites ?? DEFAULT_SUITES;
  const w = new Writer().u8(1).vec(3, (b) => {
    b.u16(0x0303).raw(crypto.getRandomValues(new Uint8Array(32)));
    b.vec(1, (s) => s.raw(o.sessionId ?? crypto.getRandomValues(new Uint8Array(32))));
    b.vec(2, (s) => suites.forEach((c) => s.u16(c)));
    b.vec(1, (m) => m.u8(0));
    b.vec(2, (x) => {
      const sni = o.sni ?? "localhost";
      x.ext(0, (e) => e.vec(2, (l) => l.u8(0).vec(2, (n) => n.raw(enc.encode(sni)))));
      x.ext(10, (e) => e.vec(2, (l) => groups.forEach((g) => l.u16(g))));
      x.ext(11, (e) => e.vec(1, (l) => l.u8(0)));
      // ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
      const sigAlgs = o.sigAlgs ?? [0x0403, 0x0804, 0x0401];
      x.ext(13, (e) => e.vec(2, (l) => sigAlgs.forEach((a) => l.u16(a))));
      if (o.alpn) {
        const names = o.alpn;
        x.ext(
          16,
          (e) => e.vec(2, (l) => names.forEach((p) => l.vec(1, (n) => n.raw(enc.encode(p))))),
        );
      }
      if (o.version === "1.3") {
        x.ext(43, (e) => e.vec(1, (l) => l.u16(0x0304).u16(0x0303)));
        x.ext(45, (e) => e.vec(1, (l) => l.u8(1))); // psk_dhe_ke
        const share = o.x25519Share ?? groups.includes(GROUP.x25519);
        const shares = o.shares ??
          (share ? [{ group: GROUP.x25519, key: crypto.getRandomValues(new Uint8Array(32)) }] : []);
        x.ext(
          51,
          (e) => e.vec(2, (l) => shares.forEach((s) => l.u16(s.group).vec(2, (k) => k.raw(s.key)))),
        );
      }
      if (o.padding) x.ext(0x4a4a, (e) => e.raw(new Uint8Array(o.padding!)));
    });
  });
  return new Uint8Array(w.bytes);
}

/** Frame a handshake message in handshake records of at most `fragment`
 * bytes of payload each. */
export function records(msg: Uint8Array, fragment = 16384): Uint8Array {
  const w = new Writer();
  for (let off = 0; off < msg.length; off += fragment) {
    const part = msg.subarray(off, Math.min(off + fragment, msg.length));
    w.u8(22).u16(0x0301).u16(part.length).raw(part);
  }
  return new Uint8Array(w.bytes);
}

/** The random of a HelloRetryRequest (RFC 8446 4.1.3). */
export const HRR_RANDOM: string =
  "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c";

/** The server's first answer to a ClientHello. */
export type HelloAnswer =
  | { kind: "alert"; level: number; description: number }
  | { kind: "server_hello"; suite: number }
  | { kind: "hello_retry_request"; suite: number }
  | { kind: "closed" }
  | { kind: "other"; detail: string };

/** Parse the first record the server sent (enough of it to classify). */
export function parseAnswer(buf: Uint8Array): HelloAnswer | null {
  if (buf.length < 5) return null;
  const type = buf[0];
  const len = buf[3] << 8 | buf[4];
  if (type === 21) {
    if (buf.length < 7) return null;
    return { kind: "alert", level: buf[5], description: buf[6] };
  }
  if (type !== 22) return { kind: "other", detail: `record type ${type}` };
  // ServerHello: type(1) len(3) version(2) random(32) sid(1+n) suite(2)
  if (buf.length < Math.min(5 + len, 5 + 4 + 2 + 32 + 1)) return null;
  if (buf[5] !== 2) return { kind: "other", detail: `handshake type ${buf[5]}` };
  const random = buf.subarray(11, 43);
  const sidLen = buf[43];
  const at = 44 + sidLen;
  if (buf.length < at + 2) return null;
  const suite = buf[at] << 8 | buf[at + 1];
  return hex(random) === HRR_RANDOM
    ? { kind: "hello_retry_request", suite }
    : { kind: "server_hello", suite };
}

/** Send bytes to a TLS port (in `chunks` written separately with a pause
 * between them, if given) and classify the first answer. With `halfClose`,
 * the client sends FIN after its bytes. */
export async function sendHello(
  port: number,
  bytes: Uint8Array,
  opts: { writeChunk?: number; halfClose?: boolean; timeoutMs?: number } = {},
): Promise<{ answer: HelloAnswer; ms: number }> {
  const started = Date.now();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), opts.timeoutMs ?? 10_000);
  let buf = new Uint8Array(0);
  try {
    const step = opts.writeChunk ?? bytes.length;
    for (let off = 0; off < bytes.length; off += step) {
      const part = bytes.subarray(off, Math.min(off + step, bytes.length));
      for (let n = 0; n < part.length;) n += await conn.write(part.subarray(n));
      if (opts.writeChunk) await new Promise((ok) => setTimeout(ok, 1));
    }
    if (opts.halfClose) await conn.closeWrite();
    const chunk = new Uint8Array(4096);
    for (;;) {
      const a = parseAnswer(buf);
      if (a) return { answer: a, ms: Date.now() - started };
      let n: number | null;
      try {
        n = await conn.read(chunk);
      } catch {
        n = null; // reset, or closed by the timer
      }
      if (n === null) return { answer: { kind: "closed" }, ms: Date.now() - started };
      const next = new Uint8Array(buf.length + n);
      next.set(buf);
      next.set(chunk.subarray(0, n), buf.length);
      buf = next;
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // closed by the timer
    }
  }
}
