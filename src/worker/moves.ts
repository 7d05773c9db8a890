/**
 * A worker moving the connections it holds when their next request is
 * another function's: straight to a worker of that function over its peer
 * socket (`--handoff direct`, one hop), else back to the gateway; each a
 * parcel offered to a chain of targets (src/handoff/placement.ts). What
 * nobody takes comes back and is answered here (503, or 404 when no
 * function serves it). Direct moves are told to the gateway after the fact
 * (MOVED, batched per turn), so its counts and logs see every route change.
 *
 * @module
 */

import type { TlsContext } from "../../ffi/wolfssl.ts";
import type { TlsConnection } from "../connection/tls_connection.ts";
import type { GatewayLink } from "../handoff/gateway_link.ts";
import type { Carried } from "../handoff/handoff.ts";
import { Parcel } from "../handoff/parcel.ts";
import type { Peers } from "../handoff/peers.ts";
import { place, type Target } from "../handoff/placement.ts";
import { encodeJson, Limits, MessageType, type Moved } from "../handoff/protocol.ts";
import type { RequestHead } from "../http/http.ts";
import { logger } from "../operations/log.ts";
import type { WorkerRoutes } from "../routing/worker_routes.ts";

const log = logger("worker");

/** Direct moves are told to the gateway (MOVED: its route-change log line and
 * counters) in batches, at most this late: the gateway, which has no part in
 * a direct move, is not woken for each one. */
export const MOVED_BATCH_MS = 10;

/** What a worker's moves work with. */
export interface MovesOptions {
  /** The link to the gateway (its channel, the sealing keys). */
  link: GatewayLink;
  /** The gateway's route table as this worker sees it. */
  table: WorkerRoutes;
  /** Channels to other workers, once listening (direct moves). */
  peers(): Peers | undefined;
  /** The context connections are imported into. */
  ctx(): TlsContext;
  /** Hold a connection that came back: its next request is answered here. */
  hold(conn: TlsConnection): void;
}

/**
 * Where a worker's connections go when they are not its own any more.
 *
 * @example
 * ```ts
 * import { WorkerMoves, type MovesOptions } from "./moves.ts";
 * declare const options: MovesOptions;
 * const moves = new WorkerMoves(options);
 * ```
 */
export class WorkerMoves {
  #o: MovesOptions;
  /** Direct moves not yet told to the gateway. */
  #moves: Moved["moves"] = [];

  /** Moves over these parts.
   *
   * @example
   * ```ts
   * import { WorkerMoves, type MovesOptions } from "./moves.ts";
   * declare const options: MovesOptions;
   * new WorkerMoves(options);
   * ```
   */
  constructor(options: MovesOptions) {
    this.#o = options;
  }

  /** Hand the connection back to the gateway (its next request is not
   * ours). False when that cannot even start (no gateway, or it cannot be
   * released): the caller still holds it and answers it. If the gateway
   * refuses it or goes away before confirming, it comes back here and its
   * request is answered with a 503.
   *
   * @example
   * ```ts
   * import type { WorkerMoves } from "./moves.ts";
   * import type { TlsConnection } from "../connection/tls_connection.ts";
   * declare const moves: WorkerMoves, conn: TlsConnection;
   * if (!moves.handBack(conn, undefined)) conn.close();
   * ```
   */
  handBack(conn: TlsConnection, head: RequestHead | undefined): boolean {
    if (!this.#o.link.channel) return false;
    const carried: Carried = { unread: 0, readAhead: 0 };
    const parcel = this.#release(conn, conn.info.handoffs, carried);
    if (typeof parcel === "boolean") return parcel;
    const i = conn.info;
    log.debug(
      "conn {conn}: {path} is not ours; back to the gateway with {unread} unread bytes and {readAhead} read ahead",
      () => ({ conn: i.connId, path: head?.path ?? "(none yet: a handover)", ...carried }),
    );
    this.#place(parcel, [this.#gatewayTarget(parcel.handoffs)]);
    return true;
  }

  /** Hand the connection straight to a worker of the function that serves
   * its next request (`--handoff direct`): one hop. False when the table
   * names no such worker we can reach (the gateway decides then). If that
   * worker refuses or dies before confirming, the connection goes to the
   * gateway after all.
   *
   * @example
   * ```ts
   * import type { WorkerMoves } from "./moves.ts";
   * import type { TlsConnection } from "../connection/tls_connection.ts";
   * import type { RequestHead } from "../http/http.ts";
   * declare const moves: WorkerMoves, conn: TlsConnection, head: RequestHead;
   * moves.moveDirect(conn, head) || moves.handBack(conn, head);
   * ```
   */
  moveDirect(conn: TlsConnection, head: RequestHead): boolean {
    const peer = this.#o.peers() ? this.#o.table.peerFor(head.path) : undefined;
    if (!peer || peer.pid === Deno.pid) return false;
    const channel = this.#o.peers()!.channelTo(peer.pid);
    if (!channel) return false;
    const handoffs = conn.info.handoffs;
    const carried: Carried = { unread: 0, readAhead: 0 };
    const parcel = this.#release(conn, handoffs + 1, carried);
    if (typeof parcel === "boolean") return parcel;
    const connId = conn.info.connId;
    log.debug(
      "conn {conn}: {path} is not ours; straight to {to} with {unread} unread bytes and {readAhead} read ahead",
      () => ({ conn: connId, path: head.path, to: `${peer.fn}/${peer.pid}`, ...carried }),
    );
    this.#place(parcel, [{
      name: `${peer.fn}/${peer.pid}`,
      channel,
      // Told to the gateway once the peer confirmed: a refused move that
      // goes through the gateway instead is counted there, not twice.
      confirmed: () => this.#moved({ conn: connId, to: peer.pid, fn: peer.fn, route: peer.route }),
    }, this.#gatewayTarget(handoffs)]);
    return true;
  }

  /** The gateway as a placement target (read when it is tried). */
  #gatewayTarget(handoffs: number): Target {
    const link = this.#o.link;
    return {
      name: "the gateway",
      get channel() {
        return link.channel;
      },
      handoffs,
    };
  }

  /** Offer `parcel` to `targets`; what none takes comes back here. */
  #place(parcel: Parcel, targets: Target[]): void {
    place(parcel, targets, {
      log,
      unplaced: (p, reason, from) => this.#takeBack(p, reason, from),
    });
  }

  /** Release `conn` into a parcel sealed under the current key; else true
   * when the connection is gone (it could not be exported after its
   * release), false when it is intact (the caller answers it). */
  #release(conn: TlsConnection, handoffs: number, carried: Carried): Parcel | boolean {
    const lease = this.#o.link.keys.lease();
    if (!lease) return false;
    const parcel = Parcel.release(conn, lease, handoffs, carried);
    if (parcel instanceof Parcel) return parcel;
    // Intact (not at a record boundary, too much unread): answered here.
    if (parcel.intact) {
      log.debug("conn {conn}: cannot move it now: {error}", {
        conn: conn.info.connId,
        error: parcel.error,
      });
      return false;
    }
    log.error("conn {conn}: cannot move it: {error}; closed", {
      conn: conn.info.connId,
      error: parcel.error,
    });
    return true;
  }

  /** A connection we sent came back and nobody else takes it: adopt it
   * again (with the key it was sealed under) and answer its request here
   * (404 when no function serves it, else 503). */
  #takeBack(parcel: Parcel, reason: string, from: string | undefined): void {
    const adopted = parcel.adopt(this.#o.ctx());
    if (typeof adopted === "string") {
      log.error("conn {conn}: it came back and cannot be taken again: {error}", {
        conn: parcel.connId,
        error: adopted,
      });
      return;
    }
    log.warning("conn {conn}: {from} did not take it ({reason}); answering here", {
      conn: parcel.connId,
      from: from ?? "nobody",
      reason,
    });
    this.#o.hold(adopted.conn);
  }

  /** Tell the gateway about direct moves, batched: one MOVED per
   * MOVED_BATCH_MS at most (one timer per batch, none per move). */
  #moved(move: Moved["moves"][number]): void {
    if (this.#moves.push(move) > 1) return;
    setTimeout(() => {
      const moves = this.#moves;
      this.#moves = [];
      // The gateway is away: not told.
      for (let i = 0; i < moves.length && this.#o.link.channel; i += Limits.maxMoves) {
        this.#o.link.send(
          encodeJson(MessageType.MOVED, { moves: moves.slice(i, i + Limits.maxMoves) }),
        );
      }
    }, MOVED_BATCH_MS);
  }
}
