/**
 * Moving a connection between processes: turning a released connection into
 * a sealed HANDOFF message, and a received HANDOFF back into a live
 * connection. Shared by the gateway and the workers.
 *
 * The seal (ChaCha20-Poly1305 under the deployment key) covers the TLS state
 * and is bound to every other field of the message except the handoff count,
 * which the gateway rewrites when it forwards a connection unopened: a
 * changed connection id, peer, SNI/ALPN, unread or read-ahead byte makes the
 * message fail to open, and it is never imported.
 *
 * @module
 */

import { closeFd } from "../../ffi/shim.ts";
import { type TlsContext, TlsSession } from "../../ffi/wolfssl.ts";
import { encodeHandoff, type Handoff, Limits, utf8 } from "./protocol.ts";
import type { Sealer } from "./seal.ts";
import { type ConnectionInfo, TlsConnection } from "../connection/tls_connection.ts";

/** Wall-clock time in µs since the epoch, with sub-ms precision (the same
 * clock in every process, so a receiver can time a handoff).
 *
 * @example
 * ```ts
 * import { nowMicros } from "./handoff.ts";
 * const t = nowMicros();
 * ```
 */
export function nowMicros(): number {
  return (performance.timeOrigin + performance.now()) * 1000;
}

/** The bytes a sealed state is bound to: every field but the handoff count.
 * The result is a view of a buffer the next call reuses: pass it straight to
 * {@linkcode Sealer.seal} or {@linkcode Sealer.open}.
 *
 * @example
 * ```ts
 * import { handoffAad } from "./handoff.ts";
 * const aad = handoffAad({
 *   connId: 1, gatewayId: 2, tlsVersion: 4, sni: "", alpn: "http/1.1", peer: "127.0.0.1:1",
 *   unread: new Uint8Array(0), readAhead: new Uint8Array(0), sentAt: Date.now() * 1000,
 * });
 * ```
 */
export function handoffAad(
  h: Pick<
    Handoff,
    | "connId"
    | "gatewayId"
    | "tlsVersion"
    | "sni"
    | "alpn"
    | "peer"
    | "unread"
    | "readAhead"
    | "sentAt"
  >,
): Uint8Array {
  const sni = utf8(h.sni), alpn = utf8(h.alpn), peer = utf8(h.peer);
  const size = 17 + 5 * 4 + sni.length + alpn.length + peer.length + h.unread.length +
    h.readAhead.length;
  if (aadScratch.length < size) {
    aadScratch = new Uint8Array(Math.max(size, aadScratch.length * 2));
    aadView = new DataView(aadScratch.buffer);
  }
  const aad = aadScratch, v = aadView;
  v.setUint32(0, h.connId >>> 0, true);
  v.setUint32(4, h.gatewayId >>> 0, true);
  v.setUint8(8, h.tlsVersion);
  v.setFloat64(9, h.sentAt, true);
  let off = 17;
  for (const part of [sni, alpn, peer, h.unread, h.readAhead]) {
    v.setUint32(off, part.length, true);
    aad.set(part, off + 4);
    off += 4 + part.length;
  }
  return aad.subarray(0, size);
}

// The AAD is built in one reused buffer (it is consumed at once by seal or
// open): an ArrayBuffer allocation costs more than building it.
let aadScratch = new Uint8Array(1024);
let aadView = new DataView(aadScratch.buffer);

/** How many bytes a released connection's HANDOFF carries along. */
export interface Carried {
  /** Decrypted request bytes not answered yet. */
  unread: number;
  /** Ciphertext read from the socket ahead of them. */
  readAhead: number;
}

/**
 * Release `conn` (export its state at a record boundary) and build the
 * HANDOFF message that carries it, sealed. The connection's fd stays open
 * for the caller to send with the message (and then close). `carried`, when
 * given, is filled with the sizes of what travels along (for logs).
 *
 * @example
 * ```ts
 * import { releaseForHandoff } from "./handoff.ts";
 * import type { Sealer } from "./seal.ts";
 * import type { TlsConnection } from "../connection/tls_connection.ts";
 * declare const conn: TlsConnection, sealer: Sealer;
 * const message = releaseForHandoff(conn, sealer, conn.info.handoffs + 1);
 * ```
 */
export function releaseForHandoff(
  conn: TlsConnection,
  sealer: Sealer,
  handoffs: number,
  carried?: Carried,
): Uint8Array {
  if (conn.bufferedLength > Limits.maxUnread) {
    // Checked before release, so the caller can still answer and close.
    throw new Error(`${conn.bufferedLength} unread bytes exceed the handoff limit`);
  }
  const { state, unread, readAhead } = conn.release();
  const i = conn.info;
  const fields = {
    connId: i.connId,
    gatewayId: i.gatewayId,
    tlsVersion: state.version,
    sni: i.sni,
    alpn: i.alpn,
    peer: i.peer,
    unread,
    readAhead,
    sentAt: nowMicros(),
  };
  const sealed = sealer.seal(state.blob, handoffAad(fields)); // zeroes state.blob
  const message = encodeHandoff({ ...fields, handoffs, sealed });
  if (carried) {
    carried.unread = unread.length;
    carried.readAhead = readAhead.length;
  }
  unread.fill(0);
  return message;
}

/**
 * Open a received HANDOFF and rebuild the live connection on `fd`. Returns
 * the connection, or a reason (the fd is then closed): a message that does
 * not authenticate is never imported.
 *
 * @example
 * ```ts
 * import { adoptHandoff } from "./handoff.ts";
 * import type { Handoff } from "./protocol.ts";
 * import type { Sealer } from "./seal.ts";
 * import type { TlsContext } from "../../ffi/wolfssl.ts";
 * declare const h: Handoff, fd: number, sealer: Sealer, ctx: TlsContext;
 * const conn = adoptHandoff(h, fd, sealer, ctx);
 * if (typeof conn === "string") console.log(`dropped: ${conn}`);
 * ```
 */
export function adoptHandoff(
  h: Handoff,
  fd: number,
  sealer: Sealer,
  ctx: TlsContext,
): TlsConnection | string {
  if (fd < 0) return "handoff without a socket";
  const blob = sealer.open(h.sealed, handoffAad(h));
  if (!blob) {
    closeFd(fd);
    return "TLS state did not authenticate";
  }
  let tls: TlsSession;
  try {
    tls = TlsSession.import(ctx, fd, { version: h.tlsVersion, blob }, h.readAhead);
  } catch (e) {
    closeFd(fd);
    return (e as Error).message;
  } finally {
    blob.fill(0);
  }
  const info: ConnectionInfo = {
    connId: h.connId,
    gatewayId: h.gatewayId,
    handoffs: h.handoffs,
    peer: h.peer,
    sni: h.sni,
    alpn: h.alpn,
  };
  try {
    return new TlsConnection(fd, tls, info, h.unread);
  } catch (e) {
    tls.free();
    closeFd(fd);
    return (e as Error).message; // e.g. the event loop cannot watch it (ENOMEM)
  }
}
