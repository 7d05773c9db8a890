/**
 * The registry's side of a gateway upgrade (src/gateway/succession.ts):
 * once a new gateway listens on the control path, every worker and satellite
 * is told to move there (MOVE), and so is every one that registers later;
 * the old gateway retires when all of them have registered with the new one
 * (LEFT) and no connection sent to one is unconfirmed.
 *
 * @module
 */

import { encodeJson, MessageType } from "../handoff/protocol.ts";
import type { Satellites } from "./satellites.ts";
import type { Worker } from "./workers.ts";

/**
 * Whether the workers and satellites are moving to a new gateway, and how
 * far they got.
 *
 * @example
 * ```ts
 * import { UpgradeMoves } from "./upgrade_moves.ts";
 * import { Satellites } from "./satellites.ts";
 * import { GatewayMetrics } from "./gateway_metrics.ts";
 * import type { Worker } from "./workers.ts";
 * const satellites = new Satellites(new GatewayMetrics(), { handoff: () => {} }, {
 *   key: () => new Uint8Array(32),
 *   routes: () => new Uint8Array(0),
 * });
 * const moves = new UpgradeMoves(new Set<Worker>(), satellites);
 * console.log(moves.moving, moves.allLeft()); // false true
 * ```
 */
export class UpgradeMoves {
  #workers: ReadonlySet<Worker>;
  #satellites: Satellites;
  /** A new gateway took the control path over: every worker moves to it. */
  #moving = false;

  /** Moves of `workers` and `satellites`.
   *
   * @example
   * ```ts
   * import { UpgradeMoves } from "./upgrade_moves.ts";
   * import type { Satellites } from "./satellites.ts";
   * import type { Worker } from "./workers.ts";
   * declare const workers: Set<Worker>, satellites: Satellites;
   * new UpgradeMoves(workers, satellites);
   * ```
   */
  constructor(workers: ReadonlySet<Worker>, satellites: Satellites) {
    this.#workers = workers;
    this.#satellites = satellites;
  }

  /** A new gateway listens on the control path: whoever registers (or
   * joins) now is told MOVE at once.
   *
   * @example
   * ```ts
   * import type { UpgradeMoves } from "./upgrade_moves.ts";
   * declare const moves: UpgradeMoves;
   * if (moves.moving) console.log("on to the new gateway");
   * ```
   */
  get moving(): boolean {
    return this.#moving;
  }

  /** Tell every registered worker and every satellite that a new gateway
   * listens on the control path (MOVE); returns how many were told. Workers
   * on their way out (draining, handing over) move too, and say DRAIN there
   * at once.
   *
   * @example
   * ```ts
   * import type { UpgradeMoves } from "./upgrade_moves.ts";
   * declare const moves: UpgradeMoves;
   * console.log(`${moves.moveAll()} worker(s) move to the new gateway`);
   * ```
   */
  moveAll(): number {
    this.#moving = true;
    let n = 0;
    for (const w of this.#workers) {
      if (!w.registered) continue;
      w.channel.send(encodeJson(MessageType.MOVE, {}));
      n++;
    }
    n += this.#satellites.size;
    this.#satellites.broadcast(encodeJson(MessageType.MOVE, {}));
    return n;
  }

  /** The new gateway went away: workers that register from now on stay.
   *
   * @example
   * ```ts
   * import type { UpgradeMoves } from "./upgrade_moves.ts";
   * declare const moves: UpgradeMoves;
   * moves.stopMoving();
   * ```
   */
  stopMoving(): void {
    this.#moving = false;
  }

  /** Connections sent to workers and satellites, not confirmed yet.
   *
   * @example
   * ```ts
   * import type { UpgradeMoves } from "./upgrade_moves.ts";
   * declare const moves: UpgradeMoves;
   * console.log(`${moves.unconfirmed()} in flight`);
   * ```
   */
  unconfirmed(): number {
    let n = 0;
    for (const w of this.#workers) n += w.channel.unconfirmed;
    return n + this.#satellites.unconfirmed();
  }

  /** Whether every worker and satellite registered with the gateway that
   * took over (LEFT) and nothing sent to one is unconfirmed.
   *
   * @example
   * ```ts
   * import type { UpgradeMoves } from "./upgrade_moves.ts";
   * declare const moves: UpgradeMoves;
   * if (moves.allLeft()) console.log("retired");
   * ```
   */
  allLeft(): boolean {
    for (const w of this.#workers) {
      if (w.channel.unconfirmed > 0) return false;
      if (w.registered && !w.left) return false;
    }
    return this.#satellites.allLeft();
  }
}
