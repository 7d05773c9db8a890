/**
 * Test support: a minimal hand-made TLS client over a plain TCP socket, built
 * on WebCrypto, for conformance tests that complete a real handshake and then
 * misbehave on purpose at the record layer (records of any type, length,
 * inner type or padding; handshake messages cut into tiny records; forged key
 * shares).
 *
 * It speaks TLS 1.3 with TLS_AES_128_GCM_SHA256 (HelloRetryRequest included)
 * and TLS 1.2 with ECDHE and AES-128-GCM (extended master secret when the
 * server agrees), over X25519 or P-256. It checks the server's Finished but
 * not its certificate, offers no resumption and answers no client
 * certificate request.
 *
 * @example
 * ```ts
 * import { TlsClient } from "./tls_client.ts";
 * const c = await TlsClient.connect(8443, { version: "1.3", fragment: 1 });
 * const r = await c.handshake();
 * if (r.ok) {
 *   await c.sendAppData("GET /sum?a=1&b=2 HTTP/1.1\r\nHost: localhost\r\n\r\n");
 *   console.log(await c.readHttpResponse());
 * }
 * c.close();
 * ```
 *
 * @module
 */

import { concat, hex } from "./bytes.ts";
import { HRR_RANDOM } from "./client_hello.ts";

type Bytes = Uint8Array<ArrayBuffer>;

/** What the server sent next: an alert, application data, another record
 * (TLS 1.3: its inner content type), the end of the connection, or nothing
 * in time. */
export type Answer =
  | { kind: "alert"; level: number; description: number }
  | { kind: "data"; data: Uint8Array }
  | { kind: "record"; type: number; data: Uint8Array }
  | { kind: "closed" }
  | { kind: "timeout" };

/** The outcome of {@linkcode TlsClient.handshake}. */
export type HandshakeResult =
  | {
    ok: true;
    version: "1.2" | "1.3";
    /** The cipher suite the server chose. */
    suite: number;
    /** Content types of the plaintext records the server sent before its
     * first encrypted record, in order (e.g. `[22, 20]`: a ServerHello, then
     * a middlebox-compatibility ChangeCipherSpec). */
    received: number[];
    /** Whether the server sent a HelloRetryRequest. */
    hrr: boolean;
  }
  | { ok: false; answer: Answer };

/** How the client connects, what it offers, and how it misbehaves. */
export interface TlsClientOptions {
  /** Protocol version to offer, and only it (default "1.3"). */
  version?: "1.2" | "1.3";
  /** Key exchange group, listed first in supported_groups; TLS 1.3 sends a
   * key share for it (default "x25519"). */
  group?: "x25519" | "secp256r1";
  /** More supported_groups (code points) after `group`, without key shares.
   * A TLS 1.2 server with an ECDSA P-256 certificate may need 23 here when
   * `group` is x25519 (OpenSSL does: its certificate's curve must be offered). */
  extraGroups?: readonly number[];
  /** TLS 1.3: false sends an empty key_share list in the first ClientHello,
   * so a server must ask for one with a HelloRetryRequest (default true). */
  share?: boolean;
  /** legacy_session_id (default: 32 random bytes for TLS 1.3, none for 1.2). */
  sessionId?: Uint8Array;
  /** TLS 1.3: send a ChangeCipherSpec before the client Finished (default:
   * when the session id is not empty). */
  compatCcs?: boolean;
  /** At most this many bytes of the client's handshake messages per record
   * (default 16384); 1 puts every byte in a record of its own. */
  fragment?: number;
  /** TLS 1.3: replaces the key share bytes sent (given the genuine ones). */
  keyShare?: (genuine: Uint8Array) => Uint8Array;
  /** server_name (default "localhost"). */
  serverName?: string;
  /** Address to connect to (default "127.0.0.1"). */
  hostname?: string;
}

/** Options of {@linkcode TlsClient.sendRecord}. */
export interface RecordOptions {
  /** Protect the record with the current keys (default: once there are). */
  encrypted?: boolean;
  /** TLS 1.3: the inner content type (default: the record's type). */
  innerType?: number;
  /** TLS 1.3: zero bytes after the inner content type (default 0). */
  padding?: number;
}

const CCS = 20, ALERT = 21, HANDSHAKE = 22, APP = 23;
const TLS13_SUITE = 0x1301;
const TLS12_SUITES = [0xc02b, 0xc02f];
const GROUP_IDS = { x25519: 29, secp256r1: 23 } as const;
const WRITE_TIMEOUT_MS = 5000;
const enc = new TextEncoder();
const EMPTY: Bytes = new Uint8Array(0);
const ZEROS: Bytes = new Uint8Array(32);
const HMAC = { name: "HMAC", hash: "SHA-256" };
const ALGORITHMS: Record<number, EcKeyImportParams | Algorithm> = {
  [GROUP_IDS.x25519]: { name: "X25519" },
  [GROUP_IDS.secp256r1]: { name: "ECDH", namedCurve: "P-256" },
};

const u16 = (v: number) => [(v >> 8) & 0xff, v & 0xff];
const u24 = (v: number) => [(v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff];
const readU16 = (b: Uint8Array, at: number) => b[at] << 8 | b[at + 1];
const random = (n: number): Bytes => crypto.getRandomValues(new Uint8Array(n));

/** A vector with a length prefix of `size` bytes. */
function vec(size: 1 | 2 | 3, ...parts: ArrayLike<number>[]): Bytes {
  const body = concat(...parts);
  const n = body.length;
  return concat(size === 1 ? [n] : size === 2 ? u16(n) : u24(n), body);
}

const ext = (type: number, ...body: ArrayLike<number>[]) => concat(u16(type), vec(2, ...body));
const message = (type: number, body: ArrayLike<number>) => concat([type], vec(3, body));

function record(type: number, version: number, body: ArrayLike<number>): Bytes {
  if (body.length > 0xffff) throw new RangeError(`record of ${body.length} bytes`);
  return concat([type], u16(version), u16(body.length), body);
}

async function sha256(data: Bytes): Promise<Bytes> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

async function hmac(key: Bytes, data: Bytes): Promise<Bytes> {
  const k = await crypto.subtle.importKey("raw", key, HMAC, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, data));
}

/** HKDF-Expand-Label (RFC 8446 7.1) with SHA-256. */
async function expandLabel(secret: Bytes, label: string, context: Bytes, length: number) {
  const info = concat(u16(length), vec(1, enc.encode("tls13 " + label)), vec(1, context));
  let t = EMPTY, out = EMPTY;
  for (let i = 1; out.length < length; i++) {
    t = await hmac(secret, concat(t, info, [i]));
    out = concat(out, t);
  }
  return out.slice(0, length);
}

/** Derive-Secret(secret, "derived", "") of RFC 8446 7.1. */
async function derived(secret: Bytes): Promise<Bytes> {
  return expandLabel(secret, "derived", await sha256(EMPTY), 32);
}

/** The TLS 1.2 PRF with SHA-256 (RFC 5246 5). */
async function prf(secret: Bytes, label: string, seed: Bytes, length: number): Promise<Bytes> {
  const s = concat(enc.encode(label), seed);
  let a = s, out = EMPTY;
  while (out.length < length) {
    a = await hmac(secret, a);
    out = concat(out, await hmac(secret, concat(a, s)));
  }
  return out.slice(0, length);
}

/** An ephemeral key pair for X25519 or P-256. */
class KeyShare {
  private constructor(
    readonly group: number,
    readonly publicKey: Bytes,
    readonly algorithm: EcKeyImportParams | Algorithm,
    readonly privateKey: CryptoKey,
  ) {}

  static async make(group: number): Promise<KeyShare> {
    const algorithm = ALGORITHMS[group];
    if (!algorithm) throw new Error(`no key share for group ${group}`);
    const pair = await crypto.subtle.generateKey(algorithm, false, ["deriveBits"]) as CryptoKeyPair;
    const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    return new KeyShare(group, pub, algorithm, pair.privateKey);
  }

  /** The shared secret with the peer's public key. */
  async secret(peer: Bytes): Promise<Bytes> {
    const key = await crypto.subtle.importKey("raw", peer, this.algorithm, true, []);
    const params = { name: this.algorithm.name, public: key };
    return new Uint8Array(await crypto.subtle.deriveBits(params, this.privateKey, 256));
  }
}

/** AES-128-GCM record protection in one direction, TLS 1.3 or 1.2 style. */
class Protection {
  #seq = 0n;
  private constructor(readonly key: CryptoKey, readonly iv: Bytes, readonly tls13: boolean) {}

  static async of(key: Bytes, iv: Bytes, tls13: boolean): Promise<Protection> {
    const k = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["encrypt", "decrypt"]);
    return new Protection(k, iv, tls13);
  }

  /** The keys of a TLS 1.3 traffic secret (RFC 8446 7.3). */
  static async tls13(secret: Bytes): Promise<Protection> {
    const key = await expandLabel(secret, "key", EMPTY, 16);
    return Protection.of(key, await expandLabel(secret, "iv", EMPTY, 12), true);
  }

  #next(): { seq: Bytes; nonce: Bytes } {
    const seq = new Uint8Array(8);
    new DataView(seq.buffer).setBigUint64(0, this.#seq++);
    if (!this.tls13) return { seq, nonce: concat(this.iv, seq) };
    const nonce = this.iv.slice();
    for (let i = 0; i < 8; i++) nonce[4 + i] ^= seq[i];
    return { seq, nonce };
  }

  async #gcm(op: "encrypt" | "decrypt", nonce: Bytes, aad: Bytes, data: Bytes): Promise<Bytes> {
    const params = { name: "AES-GCM", iv: nonce, additionalData: aad };
    return new Uint8Array(await crypto.subtle[op](params, this.key, data));
  }

  /** A whole record of `type` carrying `content` (TLS 1.3: with `innerType`
   * and `padding` zero bytes in the inner plaintext). */
  async seal(type: number, content: Bytes, innerType = type, padding = 0): Promise<Bytes> {
    const { seq, nonce } = this.#next();
    if (this.tls13) {
      const inner = concat(content, [innerType], new Uint8Array(padding));
      if (inner.length + 16 > 0xffff) throw new RangeError(`record of ${inner.length} bytes`);
      const header = concat([type], u16(0x0303), u16(inner.length + 16));
      return concat(header, await this.#gcm("encrypt", nonce, header, inner));
    }
    const aad = concat(seq, [type], u16(0x0303), u16(content.length));
    return record(type, 0x0303, concat(seq, await this.#gcm("encrypt", nonce, aad, content)));
  }

  /** The plaintext of a record (TLS 1.3: the inner plaintext, padded). */
  async open(header: Bytes, body: Bytes): Promise<Bytes> {
    const { seq, nonce } = this.#next();
    if (this.tls13) return await this.#gcm("decrypt", nonce, header, body);
    const aad = concat(seq, [header[0]], u16(0x0303), u16(body.length - 24));
    return await this.#gcm("decrypt", concat(this.iv, body.subarray(0, 8)), aad, body.subarray(8));
  }
}

type ServerHello = ReturnType<typeof parseServerHello>;

/** The fields of a ServerHello (or HelloRetryRequest) the client uses. */
function parseServerHello(m: Bytes) {
  if (m[0] !== 2) throw new Error(`expected a ServerHello, got handshake type ${m[0]}`);
  const random = m.slice(6, 38);
  let at = 39 + m[38];
  const suite = readU16(m, at);
  at += 3;
  const extensions = new Map<number, Bytes>();
  const end = at < m.length ? at + 2 + readU16(m, at) : at;
  for (at += 2; at < end; at += 4 + readU16(m, at + 2)) {
    extensions.set(readU16(m, at), m.slice(at + 4, at + 4 + readU16(m, at + 2)));
  }
  return { random, suite, extensions, hrr: hex(random) === HRR_RANDOM };
}

/** The named curve and public point of a TLS 1.2 ServerKeyExchange. */
function parseServerKeyExchange(m: Bytes): { group: number; point: Bytes } {
  if (m[4] !== 3) throw new Error(`ServerKeyExchange with curve type ${m[4]}`);
  return { group: readU16(m, 5), point: m.slice(8, 8 + m[7]) };
}

/** Whether decrypted handshake bytes are NewSessionTickets and nothing else. */
function onlyTickets(data: Uint8Array): boolean {
  let at = 0;
  while (at + 4 <= data.length && data[at] === 4) {
    at += 4 + (data[at + 1] << 16 | readU16(data, at + 2));
  }
  return at === data.length && data.length > 0;
}

/** `work`, or `late()` if it takes more than `ms` (the timer never outlives
 * the race). */
async function within<T, L>(work: Promise<T>, ms: number, late: () => L): Promise<T | L> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<L>((ok) => timer = setTimeout(() => ok(late()), Math.max(0, ms)));
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function answerOf(type: number, data: Bytes): Answer {
  if (type === ALERT && data.length === 2) {
    return { kind: "alert", level: data[0], description: data[1] };
  }
  return type === APP ? { kind: "data", data } : { kind: "record", type, data };
}

/** What a handshake gives, or what the server answered instead. */
type Outcome = { suite: number; hrr: boolean } | { answer: Answer };

/** A TLS client connection whose every byte the test controls. */
export class TlsClient {
  readonly #conn: Deno.TcpConn;
  readonly #opts: TlsClientOptions;
  readonly #sessionId: Bytes;
  readonly #chunk = new Uint8Array(65536);
  #buf: Bytes = EMPTY;
  #hs: Bytes = EMPTY;
  #pending?: Promise<Bytes | null>;
  #closed = false;
  #version?: "1.2" | "1.3";
  #read?: Protection;
  #nextRead?: Protection;
  #write?: Protection;
  #transcript: Bytes[] = [];
  #received: number[] = [];
  #encryptedSeen = false;

  private constructor(conn: Deno.TcpConn, opts: TlsClientOptions) {
    this.#conn = conn;
    this.#opts = opts;
    const tls13 = (opts.version ?? "1.3") === "1.3";
    this.#sessionId = opts.sessionId ? concat(opts.sessionId) : tls13 ? random(32) : EMPTY;
  }

  /** Open a TCP connection to `port`; nothing is sent yet. */
  static async connect(port: number, opts: TlsClientOptions = {}): Promise<TlsClient> {
    const conn = await Deno.connect({ hostname: opts.hostname ?? "127.0.0.1", port });
    conn.setNoDelay(true);
    return new TlsClient(conn, opts);
  }

  /** Run the handshake: `ok` with what was agreed, or what the server
   * answered instead (an alert, a close, a timeout). Throws when the server
   * breaks the protocol (e.g. a wrong Finished). */
  async handshake(timeoutMs = 5000): Promise<HandshakeResult> {
    const deadline = Date.now() + timeoutMs;
    const r = (this.#opts.version ?? "1.3") === "1.3"
      ? await this.#handshake13(deadline)
      : await this.#handshake12(deadline);
    if ("answer" in r) return { ok: false, answer: r.answer };
    return { ok: true, version: this.#version!, received: [...this.#received], ...r };
  }

  /** Send one record of `type` (TLS 1.3 encrypted: the outer type, so an
   * encrypted alert is `sendRecord(23, alert, { innerType: 21 })`), with no
   * limits on its length or type. */
  async sendRecord(type: number, payload: Uint8Array, opts: RecordOptions = {}): Promise<void> {
    const content = concat(payload);
    if (!(opts.encrypted ?? this.#write !== undefined)) {
      return this.write(record(type, 0x0303, content));
    }
    if (!this.#write) throw new Error("no keys to encrypt with yet");
    await this.write(await this.#write.seal(type, content, opts.innerType, opts.padding));
  }

  /** Send application data in encrypted records of at most 16384 bytes. */
  async sendAppData(data: Uint8Array | string): Promise<void> {
    const bytes = typeof data === "string" ? enc.encode(data) : concat(data);
    for (let at = 0; at < bytes.length; at += 16384) {
      await this.sendRecord(APP, bytes.subarray(at, at + 16384));
    }
  }

  /** Write raw bytes to the socket (throws when the server has closed it, or
   * after 5 s without progress, which closes the connection). */
  async write(raw: Uint8Array): Promise<void> {
    for (let n = 0; n < raw.length;) {
      const wrote = await within(this.#conn.write(raw.subarray(n)), WRITE_TIMEOUT_MS, () => -1);
      if (wrote < 0) {
        this.close();
        throw new Error(`write not done in ${WRITE_TIMEOUT_MS} ms`);
      }
      n += wrote;
    }
  }

  /** The server's next alert, data or other record (decrypted with the
   * current keys; TLS 1.3 NewSessionTickets are skipped). */
  async readAnswer(timeoutMs = 5000): Promise<Answer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const c = await this.#content(deadline);
      if ("kind" in c) return c;
      if (this.#version === "1.3" && c.type === HANDSHAKE && onlyTickets(c.data)) continue;
      return answerOf(c.type, c.data);
    }
  }

  /** Application data up to the end of one HTTP/1.1 response (its headers
   * and a body of Content-Length bytes, none without one), as text; throws
   * if something else comes first. */
  async readHttpResponse(timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    const latin1 = new TextDecoder("latin1");
    let got = EMPTY;
    for (;;) {
      const text = latin1.decode(got);
      const end = text.indexOf("\r\n\r\n");
      const length = text.slice(0, end).match(/\r\ncontent-length:[ \t]*(\d+)/i);
      const want = end + 4 + Number(length?.[1] ?? 0);
      if (end >= 0 && got.length >= want) return new TextDecoder().decode(got.subarray(0, want));
      const a = await this.readAnswer(Math.max(0, deadline - Date.now()));
      if (a.kind !== "data") {
        throw new Error(
          `no whole HTTP response: ${JSON.stringify(a)} after ${JSON.stringify(text)}`,
        );
      }
      got = concat(got, a.data);
    }
  }

  /** Close the connection (again: nothing happens). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  async #handshake13(deadline: number): Promise<Outcome> {
    const hello = await this.#serverHello13(deadline);
    if ("answer" in hello) return hello;
    const { sh, share } = hello;
    if (sh.suite !== TLS13_SUITE) throw new Error(`suite ${sh.suite.toString(16)}`);
    const ks = sh.extensions.get(51);
    if (!ks || readU16(ks, 0) !== share.group) throw new Error("no key share for our group");
    this.#version = "1.3";
    const shared = await share.secret(ks.slice(4, 4 + readU16(ks, 2)));
    const hs = await hmac(await derived(await hmac(ZEROS, ZEROS)), shared);
    const hash = await this.#hash();
    const cHs = await expandLabel(hs, "c hs traffic", hash, 32);
    const sHs = await expandLabel(hs, "s hs traffic", hash, 32);
    this.#read = await Protection.tls13(sHs);
    const answer = await this.#serverFlight13(sHs, deadline);
    if (answer) return { answer };
    const master = await hmac(await derived(hs), ZEROS);
    const flight = await this.#hash();
    if (this.#opts.compatCcs ?? this.#sessionId.length > 0) {
      await this.write(record(CCS, 0x0303, [1]));
    }
    const finishedKey = await expandLabel(cHs, "finished", EMPTY, 32);
    const finished = message(20, await hmac(finishedKey, flight));
    await this.#sendHandshake(finished, await Protection.tls13(cHs));
    this.#write = await Protection.tls13(await expandLabel(master, "c ap traffic", flight, 32));
    this.#read = await Protection.tls13(await expandLabel(master, "s ap traffic", flight, 32));
    return { suite: sh.suite, hrr: hello.hrr };
  }

  /** Send the ClientHello, and another one if the server asks for a retry
   * (RFC 8446 4.1.4, transcript per 4.4.1); the ServerHello that follows. */
  async #serverHello13(
    deadline: number,
  ): Promise<{ sh: ServerHello; share: KeyShare; hrr: boolean } | { answer: Answer }> {
    const clientRandom = random(32);
    let share = await KeyShare.make(GROUP_IDS[this.#opts.group ?? "x25519"]);
    const hello1 = this.#hello13(clientRandom, this.#opts.share === false ? undefined : share);
    await this.#sendHandshake(hello1, undefined, 0x0301);
    let m = await this.#message(deadline);
    if (!(m instanceof Uint8Array)) return { answer: m };
    let sh = parseServerHello(m);
    const hrr = sh.hrr;
    if (hrr) {
      share = await KeyShare.make(readU16(sh.extensions.get(51) ?? EMPTY, 0));
      this.#transcript = [message(254, await sha256(hello1)), m];
      await this.#sendHandshake(this.#hello13(clientRandom, share, sh.extensions.get(44)));
      m = await this.#message(deadline);
      if (!(m instanceof Uint8Array)) return { answer: m };
      sh = parseServerHello(m);
      if (sh.hrr) throw new Error("a second HelloRetryRequest");
    }
    this.#transcript.push(m);
    return { sh, share, hrr };
  }

  /** Read EncryptedExtensions up to the server Finished, and check it. */
  async #serverFlight13(sHs: Bytes, deadline: number): Promise<Answer | undefined> {
    for (;;) {
      const m = await this.#message(deadline);
      if (!(m instanceof Uint8Array)) return m;
      if (m[0] === 20) {
        const key = await expandLabel(sHs, "finished", EMPTY, 32);
        this.#checkFinished(m, await hmac(key, await this.#hash()));
        break;
      }
      this.#transcript.push(m);
    }
    if (this.#hs.length) throw new Error("handshake bytes after the server Finished");
  }

  async #handshake12(deadline: number): Promise<Outcome> {
    const clientRandom = random(32);
    await this.#sendHandshake(this.#hello12(clientRandom), undefined, 0x0301);
    const hello = await this.#serverHello12(deadline);
    if ("answer" in hello) return hello;
    const { sh, server } = hello;
    const share = await KeyShare.make(server.group);
    const premaster = await share.secret(server.point);
    await this.#sendHandshake(message(16, vec(1, share.publicKey)));
    const master = sh.extensions.has(23)
      ? await prf(premaster, "extended master secret", await this.#hash(), 48)
      : await prf(premaster, "master secret", concat(clientRandom, sh.random), 48);
    const keys = await prf(master, "key expansion", concat(sh.random, clientRandom), 40);
    const write = await Protection.of(keys.slice(0, 16), keys.slice(32, 36), false);
    this.#nextRead = await Protection.of(keys.slice(16, 32), keys.slice(36, 40), false);
    await this.write(record(CCS, 0x0303, [1]));
    const verify = await prf(master, "client finished", await this.#hash(), 12);
    await this.#sendHandshake(message(20, verify), write);
    const expected = await prf(master, "server finished", await this.#hash(), 12);
    const fin = await this.#message(deadline);
    if (!(fin instanceof Uint8Array)) return { answer: fin };
    if (!this.#read) throw new Error("a server Finished before its ChangeCipherSpec");
    this.#checkFinished(fin, expected);
    this.#write = write;
    return { suite: sh.suite, hrr: false };
  }

  /** The server's first flight, ServerHello to ServerHelloDone (TLS 1.2). */
  async #serverHello12(
    deadline: number,
  ): Promise<{ sh: ServerHello; server: { group: number; point: Bytes } } | { answer: Answer }> {
    let sh: ServerHello | undefined, server: { group: number; point: Bytes } | undefined;
    for (let done = false; !done;) {
      const m = await this.#message(deadline);
      if (!(m instanceof Uint8Array)) return { answer: m };
      if (!sh) {
        sh = parseServerHello(m);
        if (!TLS12_SUITES.includes(sh.suite)) throw new Error(`suite ${sh.suite.toString(16)}`);
        this.#version = "1.2";
      } else if (m[0] === 12) server = parseServerKeyExchange(m);
      done = m[0] === 14;
      this.#transcript.push(m);
    }
    if (!sh || !server) throw new Error("no ServerKeyExchange");
    return { sh, server };
  }

  #checkFinished(m: Bytes, expected: Bytes): void {
    if (m[0] !== 20) throw new Error(`expected Finished, got handshake type ${m[0]}`);
    if (hex(m.subarray(4)) !== hex(expected)) throw new Error("wrong server Finished");
    this.#transcript.push(m);
  }

  #hello(clientRandom: Bytes, suites: number[], extensions: Bytes[]): Bytes {
    const groups = [GROUP_IDS[this.#opts.group ?? "x25519"], ...this.#opts.extraGroups ?? []];
    const name = enc.encode(this.#opts.serverName ?? "localhost");
    const sni = ext(0, vec(2, [0], vec(2, name)));
    const algorithms = ext(13, vec(2, u16(0x0403), u16(0x0804), u16(0x0401)));
    const all = vec(2, sni, ext(10, vec(2, ...groups.map(u16))), algorithms, ...extensions);
    const head = concat(u16(0x0303), clientRandom, vec(1, this.#sessionId));
    return message(1, concat(head, vec(2, ...suites.map(u16)), vec(1, [0]), all));
  }

  #hello13(clientRandom: Bytes, share?: KeyShare, cookie?: Bytes): Bytes {
    const key = share && concat(this.#opts.keyShare?.(share.publicKey) ?? share.publicKey);
    const entry = share ? concat(u16(share.group), vec(2, key!)) : EMPTY;
    return this.#hello(clientRandom, [TLS13_SUITE], [
      ext(43, vec(1, u16(0x0304))),
      ext(45, vec(1, [1])),
      ext(51, vec(2, entry)),
      ...cookie ? [ext(44, cookie)] : [],
    ]);
  }

  #hello12(clientRandom: Bytes): Bytes {
    const extensions = [ext(11, vec(1, [0])), ext(23), ext(0xff01, [0])];
    return this.#hello(clientRandom, TLS12_SUITES, extensions);
  }

  #hash(): Promise<Bytes> {
    return sha256(concat(...this.#transcript));
  }

  /** Send a handshake message in records of at most `fragment` bytes each,
   * protected when `protection` is given; it joins the transcript. */
  async #sendHandshake(msg: Bytes, protection?: Protection, version = 0x0303): Promise<void> {
    this.#transcript.push(msg);
    const size = this.#opts.fragment ?? 16384;
    if (!(size >= 1)) throw new RangeError(`fragment ${size}`);
    const out: Bytes[] = [];
    for (let at = 0; at < msg.length; at += size) {
      const part = msg.subarray(at, at + size);
      if (!protection) out.push(record(HANDSHAKE, version, part));
      else if (protection.tls13) out.push(await protection.seal(APP, part, HANDSHAKE));
      else out.push(await protection.seal(HANDSHAKE, part));
    }
    await this.write(concat(...out));
  }

  /** The next whole handshake message the server sent (header included;
   * ChangeCipherSpecs skipped), or what came instead. */
  async #message(deadline: number): Promise<Bytes | Answer> {
    for (;;) {
      if (this.#hs.length >= 4) {
        const n = 4 + (this.#hs[1] << 16 | readU16(this.#hs, 2));
        if (this.#hs.length >= n) {
          const m = this.#hs.slice(0, n);
          this.#hs = this.#hs.slice(n);
          return m;
        }
      }
      const c = await this.#content(deadline);
      if ("kind" in c) return c;
      if (c.type === HANDSHAKE) this.#hs = concat(this.#hs, c.data);
      else if (c.type !== CCS) return answerOf(c.type, c.data);
    }
  }

  /** The next record's content type (TLS 1.3: the inner one) and plaintext. */
  async #content(deadline: number): Promise<{ type: number; data: Bytes } | Answer> {
    const r = await this.#record(deadline);
    if ("kind" in r) return r;
    const type = r.header[0];
    const read = this.#read;
    if (!read || (this.#version === "1.3" ? type !== APP : r.body.length < 24)) {
      if (!this.#encryptedSeen) this.#received.push(type);
      if (type === CCS && this.#nextRead) {
        [this.#read, this.#nextRead] = [this.#nextRead, undefined];
      }
      return { type, data: r.body };
    }
    this.#encryptedSeen = true;
    const plain = await read.open(r.header, r.body).catch(() => {
      throw new Error(`a record of type ${type} (${r.body.length} bytes) that does not decrypt`);
    });
    if (this.#version === "1.2") return { type, data: plain };
    let end = plain.length;
    while (end > 0 && plain[end - 1] === 0) end--;
    return { type: end ? plain[end - 1] : 0, data: plain.slice(0, Math.max(0, end - 1)) };
  }

  /** The next record, header and body, as sent. */
  async #record(deadline: number): Promise<{ header: Bytes; body: Bytes } | Answer> {
    while (this.#buf.length < 5 || this.#buf.length < 5 + readU16(this.#buf, 3)) {
      const end = await this.#fill(deadline);
      if (end) return { kind: end };
    }
    const n = 5 + readU16(this.#buf, 3);
    const header = this.#buf.slice(0, 5), body = this.#buf.slice(5, n);
    this.#buf = this.#buf.slice(n);
    return { header, body };
  }

  /** Read more bytes into the buffer, unless the connection ends or the
   * deadline passes first (a read still under way is picked up later). */
  async #fill(deadline: number): Promise<"closed" | "timeout" | undefined> {
    if (this.#closed) return "closed";
    this.#pending ??= this.#conn.read(this.#chunk).then(
      (n) => n === null ? null : this.#chunk.slice(0, n),
      () => null,
    );
    const got = await within(this.#pending, deadline - Date.now(), () => "timeout" as const);
    if (got === "timeout") return "timeout";
    this.#pending = undefined;
    if (got === null) return "closed";
    this.#buf = concat(this.#buf, got);
  }
}
