/**
 * wolfSSL through Deno FFI: the symbols table and a typed wrapper.
 *
 * Only this file touches wolfSSL pointers. Everything else uses
 * {@linkcode TlsContext} and {@linkcode TlsSession}.
 *
 * @module
 */

import { wolfsslPath } from "./paths.ts";
import { RecordReader, type TicketRing, tlsImportRefusal } from "./shim.ts";

const symbols = {
  /** int wolfSSL_Init(void) */
  wolfSSL_Init: { parameters: [], result: "i32" },
  /** WOLFSSL_METHOD* wolfSSLv23_server_method(void) */
  wolfSSLv23_server_method: { parameters: [], result: "pointer" },
  /** WOLFSSL_CTX* wolfSSL_CTX_new(WOLFSSL_METHOD* method) */
  wolfSSL_CTX_new: { parameters: ["pointer"], result: "pointer" },
  /** void wolfSSL_CTX_free(WOLFSSL_CTX* ctx) */
  wolfSSL_CTX_free: { parameters: ["pointer"], result: "void" },
  /** int wolfSSL_CTX_new_rng(WOLFSSL_CTX* ctx) — SINGLE_THREADED builds only */
  wolfSSL_CTX_new_rng: { parameters: ["pointer"], result: "i32" },
  /** int wolfSSL_CTX_SetMinVersion(WOLFSSL_CTX* ctx, int version) */
  wolfSSL_CTX_SetMinVersion: { parameters: ["pointer", "i32"], result: "i32" },
  /** int wolfSSL_CTX_use_certificate_chain_file(WOLFSSL_CTX* ctx, const char* file) */
  wolfSSL_CTX_use_certificate_chain_file: { parameters: ["pointer", "buffer"], result: "i32" },
  /** int wolfSSL_CTX_use_PrivateKey_file(WOLFSSL_CTX* ctx, const char* file, int format) */
  wolfSSL_CTX_use_PrivateKey_file: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  /** int wolfSSL_CTX_set_cipher_list(WOLFSSL_CTX* ctx, const char* list) */
  wolfSSL_CTX_set_cipher_list: { parameters: ["pointer", "buffer"], result: "i32" },
  /** int wolfSSL_CTX_set_groups(WOLFSSL_CTX* ctx, int* groups, int count) */
  wolfSSL_CTX_set_groups: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  /** int wolfSSL_CTX_NoTicketTLSv12(WOLFSSL_CTX* ctx) */
  wolfSSL_CTX_NoTicketTLSv12: { parameters: ["pointer"], result: "i32" },
  /** int wolfSSL_CTX_no_ticket_TLSv13(WOLFSSL_CTX* ctx) */
  wolfSSL_CTX_no_ticket_TLSv13: { parameters: ["pointer"], result: "i32" },
  /** long wolfSSL_CTX_set_session_cache_mode(WOLFSSL_CTX* ctx, long mode) */
  wolfSSL_CTX_set_session_cache_mode: { parameters: ["pointer", "i64"], result: "i64" },
  /** int wolfSSL_session_reused(WOLFSSL* ssl) */
  wolfSSL_session_reused: { parameters: ["pointer"], result: "i32" },
  /** WOLFSSL* wolfSSL_new(WOLFSSL_CTX* ctx) */
  wolfSSL_new: { parameters: ["pointer"], result: "pointer" },
  /** void wolfSSL_free(WOLFSSL* ssl) */
  wolfSSL_free: { parameters: ["pointer"], result: "void" },
  /** int wolfSSL_set_fd(WOLFSSL* ssl, int fd) */
  wolfSSL_set_fd: { parameters: ["pointer", "i32"], result: "i32" },
  /** void wolfSSL_dtls_set_using_nonblock(WOLFSSL* ssl, int nonblock) */
  wolfSSL_dtls_set_using_nonblock: { parameters: ["pointer", "i32"], result: "void" },
  /** int wolfSSL_UseALPN(WOLFSSL* ssl, char* list, unsigned int listSz, unsigned char options) */
  wolfSSL_UseALPN: { parameters: ["pointer", "buffer", "u32", "u8"], result: "i32" },
  /** int wolfSSL_accept(WOLFSSL* ssl) */
  wolfSSL_accept: { parameters: ["pointer"], result: "i32" },
  /** int wolfSSL_read(WOLFSSL* ssl, void* data, int sz) */
  wolfSSL_read: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  /** int wolfSSL_write(WOLFSSL* ssl, const void* data, int sz) */
  wolfSSL_write: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  /** void wolfSSL_SSLSetIORecv(WOLFSSL* ssl, CallbackIORecv cb) */
  wolfSSL_SSLSetIORecv: { parameters: ["pointer", "function"], result: "void" },
  /** void wolfSSL_SetIOReadCtx(WOLFSSL* ssl, void* ctx) */
  wolfSSL_SetIOReadCtx: { parameters: ["pointer", "pointer"], result: "void" },
  /** const char* wolfSSL_ERR_reason_error_string(unsigned long e) */
  wolfSSL_ERR_reason_error_string: { parameters: ["u64"], result: "pointer" },
  /** int wolfSSL_get_error(WOLFSSL* ssl, int ret) */
  wolfSSL_get_error: { parameters: ["pointer", "i32"], result: "i32" },
  /** int wolfSSL_pending(WOLFSSL* ssl) */
  wolfSSL_pending: { parameters: ["pointer"], result: "i32" },
  /** int wolfSSL_shutdown(WOLFSSL* ssl) */
  wolfSSL_shutdown: { parameters: ["pointer"], result: "i32" },
  /** int wolfSSL_GetVersion(const WOLFSSL* ssl) */
  wolfSSL_GetVersion: { parameters: ["pointer"], result: "i32" },
  /** int wolfSSL_SetVersion(WOLFSSL* ssl, int version) */
  wolfSSL_SetVersion: { parameters: ["pointer", "i32"], result: "i32" },
  /** const char* wolfSSL_get_cipher_name(WOLFSSL* ssl) */
  wolfSSL_get_cipher_name: { parameters: ["pointer"], result: "pointer" },
  /** int wolfSSL_tls_export(WOLFSSL* ssl, unsigned char* buf, unsigned int* sz) */
  wolfSSL_tls_export: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  /** int wolfSSL_tls_import(WOLFSSL* ssl, const unsigned char* buf, unsigned int sz) */
  wolfSSL_tls_import: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  /** unsigned short wolfSSL_SNI_GetRequest(WOLFSSL* ssl, unsigned char type, void** data) */
  wolfSSL_SNI_GetRequest: { parameters: ["pointer", "u8", "buffer"], result: "u16" },
  /** int wolfSSL_ALPN_GetProtocol(WOLFSSL* ssl, char** name, unsigned short* size) */
  wolfSSL_ALPN_GetProtocol: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  /** int wc_ChaCha20Poly1305_Encrypt(const byte key[32], const byte iv[12],
   *    const byte* aad, word32 aadSz, const byte* in, word32 inSz, byte* out, byte tag[16]) */
  wc_ChaCha20Poly1305_Encrypt: {
    parameters: ["buffer", "buffer", "buffer", "u32", "buffer", "u32", "buffer", "buffer"],
    result: "i32",
  },
  /** int wc_ChaCha20Poly1305_Decrypt(const byte key[32], const byte iv[12],
   *    const byte* aad, word32 aadSz, const byte* in, word32 inSz, const byte tag[16], byte* out) */
  wc_ChaCha20Poly1305_Decrypt: {
    parameters: ["buffer", "buffer", "buffer", "u32", "buffer", "u32", "buffer", "buffer"],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

let lib: Deno.DynamicLibrary<typeof symbols>["symbols"] | undefined;

function wolf(): Deno.DynamicLibrary<typeof symbols>["symbols"] {
  if (!lib) {
    lib = Deno.dlopen(wolfsslPath, symbols).symbols;
    if (lib.wolfSSL_Init() !== SUCCESS) throw new TlsError("wolfSSL_Init failed", -1);
  }
  return lib;
}

const SUCCESS = 1;
const FILETYPE_PEM = 1;
const ERROR_WANT_READ = 2;
const ERROR_WANT_WRITE = 3;
const ERROR_ZERO_RETURN = 6;
const TLSV1_2 = 3;
const ALPN_CONTINUE_ON_MISMATCH = 2;
const SNI_HOST_NAME = 0;
/** wolfSSL's BAD_STATE_E, what its own import answers for a bad state. */
const BAD_STATE_E = -192;
const SESS_CACHE_OFF = 0n;

/** The cipher suites offered, in server preference order: TLS 1.3 AEAD
 * suites, then TLS 1.2 ECDHE with AEAD for ECDSA and RSA certificates. No
 * CBC, no static RSA, no DHE, no pre-RFC ChaCha20 (testssl.sh flagged all of
 * these in wolfSSL's built-in list). wolfSSL matches exact names only, skips
 * unknown ones silently and has no "!" syntax: keep this list explicit. */
export const DEFAULT_CIPHERS: string = [
  "TLS13-AES128-GCM-SHA256",
  "TLS13-AES256-GCM-SHA384",
  "TLS13-CHACHA20-POLY1305-SHA256",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");
/** Key exchange groups, preferred first: X25519 (29), P-256 (23), P-384 (24);
 * no finite-field DH, no P-521. */
const DEFAULT_GROUPS = new Int32Array([29, 23, 24]);
/** wolfSSL's exported state is 265-441 bytes (TLS 1.2; TLS 1.3 with
 * AES-128/ChaCha20/AES-256 and the patch's traffic secrets); leave room. */
const EXPORT_MAX = 2048;

/** The outcome of a non-blocking TLS step that did not complete. */
export const WANT_READ = -2;
/** The outcome of a non-blocking TLS step that needs the socket writable. */
export const WANT_WRITE = -3;
/** The peer sent close_notify (or closed at a record boundary). */
export const CLOSED = 0;

const reasons = new Map<number, string>();

/** wolfSSL's description of one of its error codes, e.g. "can't match cipher
 * suite" for -501 (MATCH_SUITE_ERROR).
 *
 * @example
 * ```ts
 * import { errorReason } from "./wolfssl.ts";
 * console.log(errorReason(-501));
 * ```
 */
export function errorReason(code: number): string {
  let r = reasons.get(code);
  if (r === undefined) {
    const p = wolf().wolfSSL_ERR_reason_error_string(BigInt(code < 0 ? -code : code));
    r = p ? Deno.UnsafePointerView.getCString(p) : "unknown error";
    if (reasons.size < 1024) reasons.set(code, r);
  }
  return r;
}

/** An error reported by wolfSSL, with its error code. */
export class TlsError extends Error {
  /** wolfSSL's error code (negative), e.g. -326 VERSION_ERROR. */
  readonly code: number;
  /** Create an error for a wolfSSL failure.
   *
   * @example
   * ```ts
   * import { TlsError } from "./wolfssl.ts";
   * throw new TlsError("import failed", -326);
   * ```
   */
  constructor(message: string, code: number) {
    super(`${message} (wolfSSL ${code})`);
    this.name = "TlsError";
    this.code = code;
  }

  /** wolfSSL's description of the code (see {@linkcode errorReason}). */
  get reason(): string {
    return errorReason(this.code);
  }
}

const enc = new TextEncoder();
const cstr = (s: string) => enc.encode(s + "\0");
const ALPN_HTTP11 = enc.encode("http/1.1");

/** Options for a server context that runs handshakes. */
export interface ServerContextOptions {
  /** PEM certificate chain file. */
  certFile: string;
  /** PEM private key file. */
  keyFile: string;
  /** wolfSSL cipher list: exact suite names joined by ":" (no OpenSSL "!" or
   * aliases; unknown names are skipped silently). Default: {@linkcode DEFAULT_CIPHERS}. */
  ciphers?: string;
  /** Offer session resumption (tickets, session cache). Default true. */
  resumption?: boolean;
}

/**
 * A wolfSSL context (`WOLFSSL_CTX`): TLS 1.2 and 1.3 only.
 *
 * @example
 * ```ts
 * import { TlsContext } from "./wolfssl.ts";
 * const gateway = TlsContext.server({ certFile: "cert.pem", keyFile: "key.pem" });
 * const worker = TlsContext.forImport(); // no certificate needed to import
 * ```
 */
export class TlsContext {
  #ctx: Deno.PointerObject;

  private constructor(ctx: Deno.PointerObject) {
    this.#ctx = ctx;
  }

  static #create(): Deno.PointerObject {
    const w = wolf();
    const ctx = w.wolfSSL_CTX_new(w.wolfSSLv23_server_method());
    if (!ctx) throw new TlsError("wolfSSL_CTX_new failed", -1);
    let rc = w.wolfSSL_CTX_SetMinVersion(ctx, TLSV1_2);
    if (rc !== SUCCESS) {
      w.wolfSSL_CTX_free(ctx);
      throw new TlsError("cannot require TLS 1.2 or newer", rc);
    }
    // One seeded RNG for every session of this context (the build is
    // SINGLE_THREADED): wolfSSL_new no longer seeds an RNG of its own.
    rc = w.wolfSSL_CTX_new_rng(ctx);
    if (rc !== SUCCESS) {
      w.wolfSSL_CTX_free(ctx);
      throw new TlsError("cannot create the context's RNG", rc);
    }
    return ctx;
  }

  /** A context that accepts handshakes with the given certificate and key.
   *
   * @example
   * ```ts
   * import { TlsContext } from "./wolfssl.ts";
   * const ctx = TlsContext.server({ certFile: "cert.pem", keyFile: "key.pem" });
   * ```
   */
  static server(opts: ServerContextOptions): TlsContext {
    const w = wolf();
    const ctx = TlsContext.#create();
    const fail = (what: string, rc: number): never => {
      w.wolfSSL_CTX_free(ctx);
      throw new TlsError(what, rc);
    };
    let rc = w.wolfSSL_CTX_use_certificate_chain_file(ctx, cstr(opts.certFile));
    if (rc !== SUCCESS) fail(`cannot load certificate ${opts.certFile}`, rc);
    rc = w.wolfSSL_CTX_use_PrivateKey_file(ctx, cstr(opts.keyFile), FILETYPE_PEM);
    if (rc !== SUCCESS) fail(`cannot load private key ${opts.keyFile}`, rc);
    const ciphers = opts.ciphers ?? DEFAULT_CIPHERS;
    rc = w.wolfSSL_CTX_set_cipher_list(ctx, cstr(ciphers));
    if (rc !== SUCCESS) fail(`bad cipher list ${ciphers}`, rc);
    rc = w.wolfSSL_CTX_set_groups(ctx, DEFAULT_GROUPS, DEFAULT_GROUPS.length);
    if (rc !== SUCCESS) fail("cannot set the key exchange groups", rc);
    if (opts.resumption === false) {
      w.wolfSSL_CTX_NoTicketTLSv12(ctx);
      w.wolfSSL_CTX_no_ticket_TLSv13(ctx);
      w.wolfSSL_CTX_set_session_cache_mode(ctx, SESS_CACHE_OFF);
    }
    return new TlsContext(ctx);
  }

  /** Seal and open this context's session tickets with `ring`'s keys
   * (shared by every gateway given the same keys) instead of wolfSSL's own
   * per-process key. The ring must outlive the context.
   *
   * @example
   * ```ts
   * import { TlsContext } from "./wolfssl.ts";
   * import { TicketRing } from "./shim.ts";
   * import { wolfsslPath } from "./paths.ts";
   * const ctx = TlsContext.server({ certFile: "cert.pem", keyFile: "key.pem" });
   * ctx.useTicketRing(new TicketRing(wolfsslPath));
   * ```
   */
  useTicketRing(ring: TicketRing): void {
    ring.attach(this.#ctx);
  }

  /** A context for sessions that are imported, never handshaken: it holds
   * no certificate and issues no session tickets.
   *
   * @example
   * ```ts
   * import { TlsContext } from "./wolfssl.ts";
   * const ctx = TlsContext.forImport();
   * ```
   */
  static forImport(): TlsContext {
    const w = wolf();
    const ctx = TlsContext.#create();
    w.wolfSSL_CTX_NoTicketTLSv12(ctx);
    w.wolfSSL_CTX_no_ticket_TLSv13(ctx);
    return new TlsContext(ctx);
  }

  /** @internal the raw context, for {@linkcode TlsSession} only. */
  get pointer(): Deno.PointerObject {
    return this.#ctx;
  }

  /** Free the context. Sessions made from it must be freed first.
   *
   * @example
   * ```ts
   * import { TlsContext } from "./wolfssl.ts";
   * TlsContext.forImport().close();
   * ```
   */
  close(): void {
    wolf().wolfSSL_CTX_free(this.#ctx);
  }
}

const u32out = new Uint32Array(1);
const u32outBytes = new Uint8Array(u32out.buffer);
/** One export buffer for the process: export() returns a view of it, valid
 * until the next export; the caller seals it at once (which zeroes it). */
const exportBuf = new Uint8Array(EXPORT_MAX);
const u16out = new Uint16Array(1);
const ptrOut = new BigUint64Array(1);
const cipherNames = new Map<bigint, string>();

/** The state of a session as exported for another process. */
export interface ExportedState {
  /** wolfSSL's protocol version id (`wolfSSL_GetVersion`), needed to import. */
  version: number;
  /** wolfSSL's serialized state: traffic keys in clear. Zero it after use. */
  blob: Uint8Array;
}

/**
 * One TLS connection (`WOLFSSL`) on a non-blocking socket fd.
 *
 * Methods return a byte count, or {@linkcode WANT_READ} / {@linkcode WANT_WRITE}
 * when the socket must become ready first, or {@linkcode CLOSED}; they throw
 * {@linkcode TlsError} on protocol errors. The socket is read through a
 * record reader that does not ask the kernel again until told of a readable
 * edge: call {@linkcode TlsSession.readable} on every one (a new session
 * waits for the first; watch the fd edge-triggered, which reports data that
 * is already there when the fd is added).
 *
 * @example
 * ```ts
 * import { TlsContext, TlsSession, WANT_READ } from "./wolfssl.ts";
 * const ctx = TlsContext.server({ certFile: "cert.pem", keyFile: "key.pem" });
 * const tls = TlsSession.accept(ctx, 7);
 * if (tls.handshake() === WANT_READ) {
 *   // wait until fd 7 is readable, call tls.readable(), then handshake() again
 * }
 * ```
 */
export class TlsSession {
  #ssl: Deno.PointerObject;
  #reader: RecordReader;
  #freed = false;
  #failed = false;

  private constructor(ssl: Deno.PointerObject, reader: RecordReader) {
    this.#ssl = ssl;
    this.#reader = reader;
  }

  /** Bind ssl to fd: wolfSSL writes to fd itself and reads through a
   * {@linkcode RecordReader} (one recv() per burst, whole records only). */
  static #bind(ssl: Deno.PointerObject, fd: number): TlsSession {
    const w = wolf();
    w.wolfSSL_set_fd(ssl, fd);
    w.wolfSSL_dtls_set_using_nonblock(ssl, 1);
    let reader: RecordReader;
    try {
      reader = new RecordReader(fd);
    } catch (e) {
      w.wolfSSL_free(ssl);
      throw e;
    }
    w.wolfSSL_SetIOReadCtx(ssl, reader.pointer);
    w.wolfSSL_SSLSetIORecv(ssl, RecordReader.callback);
    return new TlsSession(ssl, reader);
  }

  static #new(ctx: TlsContext): Deno.PointerObject {
    const ssl = wolf().wolfSSL_new(ctx.pointer);
    if (!ssl) throw new TlsError("wolfSSL_new failed (out of memory?)", -1);
    return ssl;
  }

  /** A server session that will run the handshake on fd.
   *
   * @example
   * ```ts
   * import { TlsContext, TlsSession } from "./wolfssl.ts";
   * const ctx = TlsContext.server({ certFile: "cert.pem", keyFile: "key.pem" });
   * const tls = TlsSession.accept(ctx, 7);
   * ```
   */
  static accept(ctx: TlsContext, fd: number): TlsSession {
    const ssl = TlsSession.#new(ctx);
    wolf().wolfSSL_UseALPN(ssl, ALPN_HTTP11, ALPN_HTTP11.length, ALPN_CONTINUE_ON_MISMATCH);
    return TlsSession.#bind(ssl, fd);
  }

  /** A session rebuilt from another process's export, bound to fd, with the
   * ciphertext that process had read ahead ({@linkcode TlsSession.takeReadAhead}).
   * The caller must have authenticated the blob: wolfSSL trusts it. A blob
   * this build's export could not have made is refused before wolfSSL sees
   * it ({@linkcode tlsImportRefusal}): a {@linkcode TlsError} either way.
   *
   * @example
   * ```ts
   * import { TlsContext, TlsSession } from "./wolfssl.ts";
   * declare const state: { version: number; blob: Uint8Array };
   * const tls = TlsSession.import(TlsContext.forImport(), 7, state);
   * ```
   */
  static import(
    ctx: TlsContext,
    fd: number,
    state: ExportedState,
    readAhead: Uint8Array = new Uint8Array(0),
  ): TlsSession {
    const w = wolf();
    const refused = tlsImportRefusal(state.version, state.blob); // wolfSSL trusts what it imports
    if (refused) throw new TlsError(`refused TLS state: ${refused}`, BAD_STATE_E);
    const ssl = TlsSession.#new(ctx);
    let rc = w.wolfSSL_SetVersion(ssl, state.version);
    if (rc === SUCCESS) {
      rc = w.wolfSSL_tls_import(ssl, state.blob, state.blob.length);
    }
    if (rc <= 0) {
      w.wolfSSL_free(ssl);
      throw new TlsError("cannot import TLS state", rc);
    }
    const tls = TlsSession.#bind(ssl, fd); // after import, as wolfSSL requires
    try {
      tls.#reader.put(readAhead);
    } catch (e) {
      tls.free();
      throw e;
    }
    return tls;
  }

  #fail(rc: number, what: string): number {
    const err = wolf().wolfSSL_get_error(this.#ssl, rc);
    if (err === ERROR_WANT_READ) return WANT_READ;
    if (err === ERROR_WANT_WRITE) return WANT_WRITE;
    if (err === ERROR_ZERO_RETURN) return CLOSED;
    this.#failed = true;
    throw new TlsError(what, err);
  }

  /** Run (or continue) the server handshake. Returns 1 when complete.
   *
   * @example
   * ```ts
   * import { TlsSession } from "./wolfssl.ts";
   * declare const tls: TlsSession;
   * const step = tls.handshake(); // 1, WANT_READ or WANT_WRITE
   * ```
   */
  handshake(): number {
    const rc = wolf().wolfSSL_accept(this.#ssl);
    return rc === SUCCESS ? 1 : this.#fail(rc, "TLS handshake failed");
  }

  /** Decrypt into buf; returns the byte count, WANT_READ/WANT_WRITE, or CLOSED.
   * Decrypts at most one TLS record.
   *
   * @example
   * ```ts
   * import { TlsSession } from "./wolfssl.ts";
   * declare const tls: TlsSession;
   * const n = tls.read(new Uint8Array(16384));
   * ```
   */
  read(buf: Uint8Array): number {
    const rc = wolf().wolfSSL_read(this.#ssl, buf, buf.length);
    return rc > 0 ? rc : this.#fail(rc, "TLS read failed");
  }

  /** Encrypt and send data; returns data.length, or WANT_WRITE (call again
   * with the same bytes once writable; wolfSSL keeps what it already took).
   *
   * @example
   * ```ts
   * import { TlsSession } from "./wolfssl.ts";
   * declare const tls: TlsSession;
   * tls.write(new TextEncoder().encode("HTTP/1.1 204 No Content\r\n\r\n"));
   * ```
   */
  write(data: Uint8Array): number {
    const rc = wolf().wolfSSL_write(this.#ssl, data, data.length);
    return rc > 0 ? rc : this.#fail(rc, "TLS write failed");
  }

  /** The socket had a new readable edge (call before the next read or
   * handshake step): until then a read that finds nothing buffered answers
   * WANT_READ without asking the kernel again. Pass `peerClosed` when the
   * edge reported the peer's FIN, so that reads go on to the end of stream.
   *
   * @example
   * ```ts
   * import { TlsSession } from "./wolfssl.ts";
   * declare const tls: TlsSession;
   * tls.readable();
   * ```
   */
  readable(peerClosed = false): void {
    this.#reader.readable(peerClosed);
  }

  /** True when wolfSSL holds no part of a record (export is safe then, with
   * {@linkcode TlsSession.pending} at 0 and the read-ahead carried along). */
  get atRecordBoundary(): boolean {
    return this.#reader.atBoundary;
  }

  /** Move out the ciphertext read from the socket that wolfSSL has not taken
   * (whole or partial records after the last one it read), to travel with
   * an exported session.
   *
   * @example
   * ```ts
   * import { TlsSession } from "./wolfssl.ts";
   * declare const tls: TlsSession;
   * const readAhead = tls.takeReadAhead();
   * ```
   */
  takeReadAhead(): Uint8Array {
    return this.#reader.take();
  }

  /** Decrypted bytes wolfSSL holds that read() has not returned yet.
   *
   * @example
   * ```ts
   * import { TlsSession } from "./wolfssl.ts";
   * declare const tls: TlsSession;
   * if (tls.pending() > 0) tls.read(new Uint8Array(16384));
   * ```
   */
  pending(): number {
    return wolf().wolfSSL_pending(this.#ssl);
  }

  /** Send close_notify (best effort, never blocks).
   *
   * @example
   * ```ts
   * import { TlsSession } from "./wolfssl.ts";
   * declare const tls: TlsSession;
   * tls.shutdown();
   * tls.free();
   * ```
   */
  shutdown(): void {
    // After a protocol error wolfSSL has sent its fatal alert (or none, when
    // the peer is gone): a close_notify now would tell the peer the
    // connection ended in order (RFC 8446 6: an error is not an end).
    if (this.#failed) return;
    wolf().wolfSSL_shutdown(this.#ssl);
  }

  /** Serialize the session for another process. Only at a record boundary,
   * with nothing pending. `blob` is a view of a buffer the next export reuses:
   * seal it at once, then zero it (sealing does).
   *
   * @example
   * ```ts
   * import { TlsSession } from "./wolfssl.ts";
   * declare const tls: TlsSession;
   * const { version, blob } = tls.export();
   * ```
   */
  export(): ExportedState {
    const w = wolf();
    u32out[0] = exportBuf.length;
    const rc = w.wolfSSL_tls_export(this.#ssl, exportBuf, u32outBytes);
    if (rc <= 0) {
      exportBuf.fill(0);
      throw new TlsError("cannot export TLS state", rc);
    }
    return { version: w.wolfSSL_GetVersion(this.#ssl), blob: exportBuf.subarray(0, rc) };
  }

  /** The protocol in use: "TLSv1.3" or "TLSv1.2".
   *
   * @example
   * ```ts
   * import { TlsSession } from "./wolfssl.ts";
   * declare const tls: TlsSession;
   * console.log(tls.protocol);
   * ```
   */
  get protocol(): string {
    return protocolName(wolf().wolfSSL_GetVersion(this.#ssl));
  }

  /** The negotiated cipher suite, e.g. "TLS13-AES128-GCM-SHA256".
   *
   * @example
   * ```ts
   * import { TlsSession } from "./wolfssl.ts";
   * declare const tls: TlsSession;
   * console.log(tls.cipher);
   * ```
   */
  get cipher(): string {
    const p = wolf().wolfSSL_get_cipher_name(this.#ssl);
    if (!p) return "";
    const key = BigInt(Deno.UnsafePointer.value(p));
    let name = cipherNames.get(key);
    if (name === undefined) {
      name = Deno.UnsafePointerView.getCString(p);
      cipherNames.set(key, name);
    }
    return name;
  }

  /** Whether the handshake resumed an earlier session (no full handshake).
   *
   * @example
   * ```ts
   * import { TlsSession } from "./wolfssl.ts";
   * declare const tls: TlsSession;
   * console.log(tls.resumed);
   * ```
   */
  get resumed(): boolean {
    return wolf().wolfSSL_session_reused(this.#ssl) === 1;
  }

  /** The server name the client asked for (SNI), or "".
   *
   * @example
   * ```ts
   * import { TlsSession } from "./wolfssl.ts";
   * declare const tls: TlsSession;
   * console.log(tls.serverName);
   * ```
   */
  get serverName(): string {
    const n = wolf().wolfSSL_SNI_GetRequest(
      this.#ssl,
      SNI_HOST_NAME,
      new Uint8Array(ptrOut.buffer),
    );
    const p = Deno.UnsafePointer.create(ptrOut[0]);
    if (n === 0 || !p) return "";
    return new TextDecoder().decode(new Deno.UnsafePointerView(p).getArrayBuffer(n));
  }

  /** The ALPN protocol agreed ("http/1.1"), or "".
   *
   * @example
   * ```ts
   * import { TlsSession } from "./wolfssl.ts";
   * declare const tls: TlsSession;
   * console.log(tls.alpn);
   * ```
   */
  get alpn(): string {
    const rc = wolf().wolfSSL_ALPN_GetProtocol(
      this.#ssl,
      new Uint8Array(ptrOut.buffer),
      new Uint8Array(u16out.buffer),
    );
    const p = Deno.UnsafePointer.create(ptrOut[0]);
    if (rc !== SUCCESS || !p || u16out[0] === 0) return "";
    return new TextDecoder().decode(new Deno.UnsafePointerView(p).getArrayBuffer(u16out[0]));
  }

  /** Release the session. Sends nothing: safe after a handoff.
   *
   * @example
   * ```ts
   * import { TlsSession } from "./wolfssl.ts";
   * declare const tls: TlsSession;
   * tls.free();
   * ```
   */
  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    wolf().wolfSSL_free(this.#ssl);
    this.#reader.free();
  }
}

/** Name of a wolfSSL protocol version id, e.g. 4 → "TLSv1.3".
 *
 * @example
 * ```ts
 * import { protocolName } from "./wolfssl.ts";
 * protocolName(4); // "TLSv1.3"
 * ```
 */
export function protocolName(version: number): string {
  return version === 4 ? "TLSv1.3" : version === 3 ? "TLSv1.2" : `version ${version}`;
}

/** Size of a ChaCha20-Poly1305 key, nonce and tag. */
export const AEAD_KEY_BYTES = 32, AEAD_NONCE_BYTES = 12, AEAD_TAG_BYTES = 16;

/** Encrypt `plain` into `out` (same length) with ChaCha20-Poly1305 (wolfCrypt),
 * writing the tag into `tag`. Returns false on failure.
 *
 * @example
 * ```ts
 * import { aeadSeal } from "./wolfssl.ts";
 * const key = crypto.getRandomValues(new Uint8Array(32));
 * const nonce = crypto.getRandomValues(new Uint8Array(12));
 * const plain = new TextEncoder().encode("secret");
 * const out = new Uint8Array(plain.length), tag = new Uint8Array(16);
 * aeadSeal(key, nonce, new Uint8Array(0), plain, out, tag);
 * ```
 */
export function aeadSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  plain: Uint8Array,
  out: Uint8Array,
  tag: Uint8Array,
): boolean {
  return wolf().wc_ChaCha20Poly1305_Encrypt(
    key,
    nonce,
    aad,
    aad.length,
    plain,
    plain.length,
    out,
    tag,
  ) === 0;
}

/** Decrypt and authenticate `sealed` into `out` (same length). Returns false
 * when the tag does not match: `out` must then be ignored.
 *
 * @example
 * ```ts
 * import { aeadOpen } from "./wolfssl.ts";
 * declare const key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, tag: Uint8Array;
 * const out = new Uint8Array(sealed.length);
 * if (!aeadOpen(key, nonce, new Uint8Array(0), sealed, tag, out)) throw new Error("forged");
 * ```
 */
export function aeadOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  sealed: Uint8Array,
  tag: Uint8Array,
  out: Uint8Array,
): boolean {
  return wolf().wc_ChaCha20Poly1305_Decrypt(
    key,
    nonce,
    aad,
    aad.length,
    sealed,
    sealed.length,
    tag,
    out,
  ) === 0;
}
