/**
 * A connection in transit: its socket's fd and the sealed HANDOFF that
 * carries its TLS state, owned by one {@linkcode Parcel} from the moment the
 * connection is released until a receiver confirms it. While the parcel is
 * ours, exactly one of three things ends it: a receiver confirms it (the
 * control channel closes our copy of the fd), it is adopted here again
 * ({@linkcode Parcel.adopt}: nobody took it), or it is dropped
 * ({@linkcode Parcel.drop}: it cannot be used). Every role moves
 * connections as parcels (src/handoff/placement.ts tries the targets).
 *
 * @module
 */

import { closeFd } from "../../ffi/shim.ts";
import type { TlsContext } from "../../ffi/wolfssl.ts";
import type { TlsConnection } from "../connection/tls_connection.ts";
import type { ControlChannel } from "./control_channel.ts";
import { adoptHandoff, type Carried, releaseForHandoff } from "./handoff.ts";
import type { KeyLease } from "./keyring.ts";
import { decodeMessage, type Handoff, MessageType, setHandoffCount } from "./protocol.ts";
import type { Sealer } from "./seal.ts";

/** Why a connection could not be released; `intact`: it is as it was (the
 * caller answers it), else it is gone (closed). */
export interface NotReleased {
  /** What went wrong. */
  error: string;
  /** True when the connection is untouched and still the caller's. */
  intact: boolean;
}

/** A parcel opened here again: the connection and when it was sent. */
export interface Adopted {
  /** The live connection, ours to hold. */
  conn: TlsConnection;
  /** When its HANDOFF was sent (µs since the epoch, `nowMicros`). */
  sentAt: number;
}

/**
 * A released connection, ours until a receiver confirms it.
 *
 * @example
 * ```ts
 * import { Parcel } from "./parcel.ts";
 * import { Keyring } from "./keyring.ts";
 * import { Sealer } from "./seal.ts";
 * import type { TlsConnection } from "../connection/tls_connection.ts";
 * import type { ControlChannel } from "./control_channel.ts";
 * declare const conn: TlsConnection, channel: ControlChannel;
 * const ring = new Keyring();
 * ring.use(Sealer.newKey());
 * const parcel = Parcel.release(conn, ring.lease()!, conn.info.handoffs + 1);
 * if (parcel instanceof Parcel) {
 *   parcel.transfer(channel, () => parcel.drop());
 * }
 * ```
 */
export class Parcel {
  /** The connection's id (for logs). */
  readonly connId: number;
  /** The handoff count it left with. */
  readonly handoffs: number;
  #fd: number;
  #message: Uint8Array;
  /** The key it was sealed under, when it is ours to open. */
  #sealer: Sealer | undefined;
  #release: () => void;
  #done = false;

  private constructor(
    connId: number,
    handoffs: number,
    fd: number,
    message: Uint8Array,
    sealer: Sealer | undefined,
    release: () => void,
  ) {
    this.connId = connId;
    this.handoffs = handoffs;
    this.#fd = fd;
    this.#message = message;
    this.#sealer = sealer;
    this.#release = release;
  }

  /** Release `conn` (export its TLS state at a record boundary) and seal it
   * under `lease`'s key with the handoff count `handoffs`. The lease is the
   * parcel's from now on (released when it ends); on failure it is released
   * here and the reason returned.
   *
   * @example
   * ```ts
   * import { Parcel } from "./parcel.ts";
   * import type { KeyLease } from "./keyring.ts";
   * import type { TlsConnection } from "../connection/tls_connection.ts";
   * declare const conn: TlsConnection, lease: KeyLease;
   * const parcel = Parcel.release(conn, lease, conn.info.handoffs);
   * if (!(parcel instanceof Parcel)) console.log(parcel.error, parcel.intact);
   * ```
   */
  static release(
    conn: TlsConnection,
    lease: KeyLease,
    handoffs: number,
    carried?: Carried,
  ): Parcel | NotReleased {
    const fd = conn.fd;
    try {
      const message = releaseForHandoff(conn, lease.sealer, handoffs, carried);
      return new Parcel(conn.info.connId, handoffs, fd, message, lease.sealer, lease.release);
    } catch (e) {
      lease.release();
      // Before its release (too much unread, not at a record boundary) the
      // connection is as it was; after, releaseForHandoff closed its fd.
      return { error: (e as Error).message, intact: conn.isOpen };
    }
  }

  /** A connection handed to us that we pass on unopened (a relay): its fd
   * and a copy of its HANDOFF, leaving with handoff count `handoffs`.
   * `lease`: the key it was sealed under when it is ours to open (a
   * gateway's state); without one it can only be passed on or dropped.
   *
   * @example
   * ```ts
   * import { Parcel } from "./parcel.ts";
   * declare const fd: number, message: Uint8Array;
   * const parcel = Parcel.carry(42, 2, fd, message.slice());
   * parcel.drop();
   * ```
   */
  static carry(
    connId: number,
    handoffs: number,
    fd: number,
    message: Uint8Array,
    lease?: KeyLease,
  ): Parcel {
    return new Parcel(connId, handoffs, fd, message, lease?.sealer, lease?.release ?? (() => {}));
  }

  /** Whether it has ended (confirmed, adopted or dropped). */
  get done(): boolean {
    return this.#done;
  }

  /** The handoff count to carry (a hop through a relay adds none).
   *
   * @example
   * ```ts
   * import type { Parcel } from "./parcel.ts";
   * declare const parcel: Parcel;
   * parcel.setHandoffs(parcel.handoffs - 1);
   * ```
   */
  setHandoffs(n: number): void {
    setHandoffCount(this.#message, n);
  }

  /** Send it on `channel`. Confirmed: the parcel ends and `confirmed` runs;
   * refused, or the channel closed first: `back(reason)` runs and it is ours
   * again. False (nothing sent, still ours) when the channel is closed or
   * full.
   *
   * @example
   * ```ts
   * import type { Parcel } from "./parcel.ts";
   * import type { ControlChannel } from "./control_channel.ts";
   * declare const parcel: Parcel, channel: ControlChannel;
   * if (!parcel.transfer(channel, () => parcel.drop())) parcel.drop();
   * ```
   */
  transfer(
    channel: ControlChannel,
    back: (reason: string) => void,
    confirmed?: () => void,
  ): boolean {
    if (this.#done) throw new Error("a parcel that has ended cannot be sent");
    return channel.transfer(this.#message, this.#fd, (fd, message, reason) => {
      this.#fd = fd;
      this.#message = message;
      back(reason);
    }, () => {
      this.#end();
      confirmed?.();
    });
  }

  /** Nobody took it: open it here again (with the key it was sealed under)
   * and rebuild the connection, with the time it was sent (µs, for the
   * handoff latency); or the reason it cannot be (its fd is then closed).
   * The parcel ends either way.
   *
   * @example
   * ```ts
   * import type { Parcel } from "./parcel.ts";
   * import type { TlsContext } from "../../ffi/wolfssl.ts";
   * declare const parcel: Parcel, ctx: TlsContext;
   * const adopted = parcel.adopt(ctx);
   * if (typeof adopted === "string") console.log(`lost: ${adopted}`);
   * else adopted.conn.close();
   * ```
   */
  adopt(ctx: TlsContext): Adopted | string {
    if (this.#done) return "the parcel has ended";
    if (!this.#sealer) {
      this.drop();
      return "its TLS state is not ours to open";
    }
    let h: Handoff;
    try {
      const msg = decodeMessage(this.#message);
      if (msg.type !== MessageType.HANDOFF) throw new Error("not a HANDOFF");
      h = msg.body;
    } catch (e) {
      this.drop();
      return (e as Error).message;
    }
    const conn = adoptHandoff(h, this.#fd, this.#sealer, ctx);
    this.#end();
    return typeof conn === "string" ? conn : { conn, sentAt: h.sentAt };
  }

  /** It cannot be used: close its fd and zero its bytes.
   *
   * @example
   * ```ts
   * import type { Parcel } from "./parcel.ts";
   * declare const parcel: Parcel;
   * parcel.drop();
   * ```
   */
  drop(): void {
    if (this.#done) return;
    closeFd(this.#fd);
    this.#end();
  }

  #end(): void {
    this.#done = true;
    this.#message.fill(0);
    this.#release();
  }
}
