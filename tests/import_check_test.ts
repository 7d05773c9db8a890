/**
 * The check on a received TLS state before wolfSSL imports it
 * (shim/import_check.c, `tlsImportRefusal`). wolfSSL's import trusts its
 * input: a blob with a changed size, algorithm id or option byte corrupts
 * memory during the import or at the next read or write. So a blob is
 * imported only if this build's own export could have produced it, up to its
 * keys, IVs, secrets and sequence numbers.
 *
 * Real parts: real `openssl s_client` clients handshake with a real wolfSSL
 * server session for every suite of DEFAULT_CIPHERS (ECDSA and RSA
 * certificates, TLS 1.2 and 1.3), which is exported. The genuine blob is
 * accepted and the imported connection works both ways; every byte flipped
 * three ways, and a thousand random multi-byte mutations per suite
 * (deterministic seed), are refused unless they touch only the free bytes;
 * changing only free bytes is never refused; an accepted blob with a changed
 * key gives a TLS error on the connection, nothing worse.
 */

import assert from "node:assert/strict";
import { projectRoot } from "../ffi/paths.ts";
import { accept, closeFd, localPort, tcpListen, tlsImportRefusal } from "../ffi/shim.ts";
import { DEFAULT_CIPHERS, TlsContext, TlsError, TlsSession } from "../ffi/wolfssl.ts";
import { prng } from "./support/prng.ts";

const CERTS = `${projectRoot}/.local/certs`;
const enc = new TextEncoder();
const dec = new TextDecoder();
const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

/** Drive a non-blocking step until it completes (the socket is polled). */
async function until(tls: TlsSession, step: () => number, what: string): Promise<number> {
  for (let i = 0; i < 1000; i++) {
    tls.readable();
    const r = step();
    if (r > 0) return r;
    await sleep(5);
  }
  throw new Error(`${what}: timed out`);
}

/** A self-signed RSA certificate made by openssl (the dev certificate is ECDSA). */
async function rsaCertificate(dir: string): Promise<{ certFile: string; keyFile: string }> {
  const certFile = `${dir}/rsa-cert.pem`, keyFile = `${dir}/rsa-key.pem`;
  const out = await new Deno.Command("openssl", {
    args: ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"]
      .concat(["-keyout", keyFile, "-out", certFile]),
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, dec.decode(out.stderr));
  return { certFile, keyFile };
}

/** One live connection: a real openssl client, our wolfSSL server session. */
class Connection {
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #stdout: ReadableStreamDefaultReader<Uint8Array>;
  #got = "";

  private constructor(
    readonly child: Deno.ChildProcess,
    readonly listenFd: number,
    readonly fd: number,
    public tls: TlsSession,
  ) {
    this.#stdin = child.stdin.getWriter();
    this.#stdout = child.stdout.getReader();
  }

  static async open(ctx: TlsContext, tls13: boolean): Promise<Connection> {
    const listenFd = tcpListen("127.0.0.1", 0);
    const child = new Deno.Command("openssl", {
      args: ["s_client", tls13 ? "-tls1_3" : "-tls1_2", "-quiet", "-no_ign_eof"]
        .concat(["-connect", `127.0.0.1:${localPort(listenFd)}`]),
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    let c = accept(listenFd);
    for (let i = 0; !c && i < 1000; i++) {
      await sleep(5);
      c = accept(listenFd);
    }
    assert.ok(c, "openssl connected");
    const tls = TlsSession.accept(ctx, c.fd);
    const conn = new Connection(child, listenFd, c.fd, tls);
    await until(tls, () => tls.handshake(), "handshake");
    return conn;
  }

  /** The client sends text; our session reads it. */
  async clientSays(text: string): Promise<string> {
    await this.#stdin.write(enc.encode(text));
    const buf = new Uint8Array(1024);
    const n = await until(this.tls, () => this.tls.read(buf), "server read");
    return dec.decode(buf.subarray(0, n));
  }

  /** Our session sends text; resolves with what the client printed. */
  async serverSays(text: string): Promise<string> {
    assert.equal(this.tls.write(enc.encode(text)), text.length);
    while (!this.#got.includes(text)) {
      const { value, done } = await this.#stdout.read();
      if (done) throw new Error("openssl closed");
      this.#got += dec.decode(value);
    }
    return text;
  }

  /** Send from the client without waiting for anything. */
  async clientSends(text: string): Promise<void> {
    await this.#stdin.write(enc.encode(text));
  }

  async close(): Promise<void> {
    this.tls.free();
    closeFd(this.fd);
    closeFd(this.listenFd);
    await this.#stdin.close().catch(() => {});
    try {
      this.child.kill();
    } catch {
      // already gone
    }
    await this.child.status;
  }
}

/**
 * The bytes of a genuine export that may take any value (sequence numbers,
 * keys, IVs, secrets), that may take some values (per-record counters, a
 * few option bytes, flags), and the rest, which are fixed. Parsed from the
 * layout of wolfSSL_session_export_internal (export version 15, TLS, no peer).
 */
function regions(blob: Uint8Array): { free: Set<number>; some: Set<number> } {
  const free = new Set<number>(), some = new Set<number>();
  const u16 = (at: number) => blob[at] << 8 | blob[at + 1];
  const range = (set: Set<number>, from: number, n: number) => {
    for (let i = 0; i < n; i++) set.add(from + i);
  };
  // Options: the bytes that differ between genuine exports (handshake
  // history, certificate type, resumption and ticket settings).
  const OPTIONS = 6;
  for (const o of [0, 15, 18, 19, 28, 29, 30, 33, 34, 44, 45, 46, 47, 51, 58]) {
    some.add(OPTIONS + o);
  }
  let at = OPTIONS + u16(4);
  const keys = at + 2;
  at = keys + u16(at);
  range(free, keys, 16); // sequence numbers
  range(some, keys + 16, 8); // encryptSz, padSz (per record, bounded)
  some.add(keys + 25); // decryptedCur
  let k = keys + 27;
  for (let pair = 0; pair < 3; pair++) { // MAC secrets, write keys, write IVs
    range(free, k + 1, 2 * blob[k]);
    k += 1 + 2 * blob[k];
  }
  range(free, k, 8); // explicit AEAD IV
  k += 8;
  range(free, k + 1, 2 * blob[k]); // implicit IVs
  at += 2 + u16(at); // cipher specs
  at += 2 + u16(at); // peer info
  const tls13 = at + 2;
  if (u16(at) > 2) {
    some.add(tls13); // flags
    range(free, tls13 + 2, u16(at) - 2); // traffic secrets
  }
  return { free, some };
}

/** A mutation of a genuine blob: bytes changed, or a new length. */
function mutations(blob: Uint8Array, rnd: () => number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const int = (n: number) => Math.floor(rnd() * n);
  for (let at = 0; at < blob.length; at++) {
    for (const flip of [0x01, 0x80, 0xff]) {
      const m = blob.slice();
      m[at] ^= flip;
      out.push(m);
    }
  }
  for (let i = 0; i < 1000; i++) {
    const m = blob.slice();
    for (let k = 2 + int(7); k > 0; k--) m[int(m.length)] = int(256);
    out.push(m);
  }
  for (let i = 0; i < 40; i++) {
    const len = i < 30 ? int(blob.length) : blob.length + 1 + int(64);
    const m = new Uint8Array(len);
    m.set(blob.subarray(0, Math.min(len, blob.length)));
    out.push(m);
  }
  return out;
}

const SUITES = DEFAULT_CIPHERS.split(":");

Deno.test("import check: genuine exports of every offered suite pass and work; mutations are refused unless they touch only keys, IVs, secrets and counters", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-import-check-" });
  const rsa = await rsaCertificate(dir);
  const rnd = prng(0x1c0ffee);
  const importCtx = TlsContext.forImport();
  let touchedFixed = 0, onlyFree = 0;
  try {
    for (const suite of SUITES) {
      const tls13 = suite.startsWith("TLS13");
      const cert = suite.includes("-RSA-")
        ? rsa
        : { certFile: `${CERTS}/cert.pem`, keyFile: `${CERTS}/key.pem` };
      const ctx = TlsContext.server({ ...cert, ciphers: suite });
      const conn = await Connection.open(ctx, tls13);
      try {
        assert.equal(conn.tls.cipher, suite);
        assert.equal(await conn.clientSays("hello\n"), "hello\n");
        const exported = conn.tls.export();
        const state = { version: exported.version, blob: exported.blob.slice() };
        conn.tls.free();

        // (i) The genuine blob passes, imports, and the connection works.
        assert.equal(tlsImportRefusal(state.version, state.blob), null, suite);
        conn.tls = TlsSession.import(importCtx, conn.fd, state);
        assert.equal(await conn.serverSays(`${suite} moved\n`), `${suite} moved\n`);
        assert.equal(await conn.clientSays("still here\n"), "still here\n");
        // The same blob under the other protocol id is refused.
        assert.notEqual(tlsImportRefusal(tls13 ? 3 : 4, state.blob), null);

        // (ii) Mutations: refused unless only free bytes (or bytes that
        // genuine exports vary) changed; never refused for free bytes only.
        const { free, some } = regions(state.blob);
        for (const m of mutations(state.blob, rnd)) {
          const why = tlsImportRefusal(state.version, m);
          const changed: number[] = [];
          if (m.length === state.blob.length) {
            for (let i = 0; i < m.length; i++) if (m[i] !== state.blob[i]) changed.push(i);
          }
          const where = `${suite}: length ${m.length}, bytes ${changed.join(",")}`;
          if (m.length !== state.blob.length || changed.some((i) => !free.has(i) && !some.has(i))) {
            assert.notEqual(why, null, `accepted a mutation of fixed bytes: ${where}`);
            touchedFixed++;
          } else if (changed.every((i) => free.has(i))) {
            assert.equal(why, null, `refused a change of free bytes only: ${where}`);
            onlyFree++;
          }
        }

        // An accepted blob with a changed key (the one our side reads with):
        // the next record fails its authentication, a TLS error, no more.
        const fresh = conn.tls.export();
        const forged = { version: fresh.version, blob: fresh.blob.slice() };
        conn.tls.free();
        const { free: freeNow } = regions(forged.blob);
        const keyAt = 74 + 27 + 1 + 2 * forged.blob[74 + 27] + 1; // first byte of the client write key
        assert.ok(freeNow.has(keyAt));
        forged.blob[keyAt] ^= 0x55;
        assert.equal(tlsImportRefusal(forged.version, forged.blob), null);
        conn.tls = TlsSession.import(importCtx, conn.fd, forged);
        await conn.clientSends("garbled\n");
        await assert.rejects(
          () => until(conn.tls, () => conn.tls.read(new Uint8Array(1024)), "forged read"),
          TlsError,
        );
      } finally {
        await conn.close();
        ctx.close();
      }
    }
  } finally {
    importCtx.close();
    await Deno.remove(dir, { recursive: true });
  }
  // Both kinds were tried many times (18,000 mutations in all).
  assert.ok(touchedFixed > 5000, `${touchedFixed} mutations of fixed bytes`);
  assert.ok(onlyFree > 3000, `${onlyFree} mutations of free bytes only`);
});

Deno.test("import check: TlsSession.import refuses a forged blob before wolfSSL sees it", () => {
  const ctx = TlsContext.forImport();
  try {
    // A blob of the right header and nothing else, then garbage.
    for (const blob of [new Uint8Array([0xa7, 0xaf, 0, 0]), new Uint8Array(300).fill(0x41)]) {
      assert.throws(
        () => TlsSession.import(ctx, -1, { version: 4, blob }),
        (e: unknown) => e instanceof TlsError && /refused TLS state/.test(e.message),
      );
    }
  } finally {
    ctx.close();
  }
});
