/**
 * Moving a connection between processes: turning a released connection into
 * a sealed HANDOFF message, and a received HANDOFF back into a live
 * connection. Shared by the gateway and the workers.
 *
 * The seal (ChaCha20-Poly1305 under the deployment key) covers the TLS state
 * and is bound to the message's own bytes: every field the layout
 * (protocol.ts `HANDOFF_LAYOUT`) marks `bound`, all but the transfer id and
 * the handoff count, which change in transit (the gateway forwards a
 * connection unopened). A changed connection id, peer, SNI/ALPN, unread or
 * read-ahead byte makes the message fail to open, and it is never imported.
 *
 * @module
 */

import { closeFd } from "../../ffi/shim.ts";
import { type TlsContext, TlsSession } from "../../ffi/wolfssl.ts";
import type { Logger } from "@logtape/logtape";
import {
  decodeMessage,
  encodeUnsealedHandoff,
  type Handoff,
  handoffAad,
  handoffSealed,
  Limits,
  MessageType,
  setHandoffCount,
} from "./protocol.ts";
import type { Sealer } from "./seal.ts";
import { TlsConnection } from "../connection/tls_connection.ts";

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
 * Throws when the connection cannot go: before its release (too many
 * unread bytes, not at a record boundary) the connection is as it was, and
 * the caller still answers or closes it; after it (the message cannot be
 * built or sealed) nothing owns the fd any more, so it is closed here.
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
  try {
    const message = encodeUnsealedHandoff({
      info: conn.info,
      tlsVersion: state.version,
      sentAt: nowMicros(),
      unread,
      readAhead,
    }, state.blob.length);
    setHandoffCount(message, handoffs);
    // Sealed into the message, bound to its bytes; zeroes state.blob.
    sealer.seal(state.blob, handoffAad(message), handoffSealed(message));
    if (carried) {
      carried.unread = unread.length;
      carried.readAhead = readAhead.length;
    }
    return message;
  } catch (e) {
    // Released: the connection no longer owns its fd, and no message will
    // carry it anywhere.
    closeFd(conn.fd);
    throw e;
  } finally {
    state.blob.fill(0); // when encoding or sealing failed
    unread.fill(0);
  }
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
  const blob = sealer.open(h.sealed, h.aad);
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
  try {
    return new TlsConnection(fd, tls, h.info, h.unread);
  } catch (e) {
    tls.free();
    closeFd(fd);
    return (e as Error).message; // e.g. the event loop cannot watch it (ENOMEM)
  }
}

/**
 * The HANDOFF a connection that came back (refused, or its receiver gone)
 * was sent with: the sender owns it again. When the message cannot be read,
 * the connection cannot be used: its fd is closed, the message zeroed, the
 * failure logged with `log`, and undefined returned.
 *
 * @example
 * ```ts
 * import { returnedHandoff } from "./handoff.ts";
 * import { logger } from "../operations/log.ts";
 * declare const fd: number, message: Uint8Array;
 * const h = returnedHandoff(fd, message, logger("gateway"));
 * if (h) console.log(`conn ${h.info.connId} is ours again`);
 * ```
 */
export function returnedHandoff(fd: number, message: Uint8Array, log: Logger): Handoff | undefined {
  try {
    const msg = decodeMessage(message);
    if (msg.type !== MessageType.HANDOFF) throw new Error("not a HANDOFF");
    return msg.body;
  } catch (e) {
    log.error("a connection that came back cannot be read: {error}", { error: String(e) });
    closeFd(fd);
    message.fill(0);
    return undefined;
  }
}
