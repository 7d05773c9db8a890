/**
 * Which worker of a pool gets a connection: the one holding the fewest,
 * ties taken in turn. One policy for every placer: the gateway's router
 * (counts from the workers' reports and its own handoffs) and the workers
 * and satellites that move connections directly (counts from the gateway's
 * route table, plus what they placed since it came).
 *
 * @module
 */

/**
 * The least held of `pool` (ties broken from index `turn` on), or
 * undefined for an empty pool.
 *
 * @example
 * ```ts
 * import { leastHeld } from "./balance.ts";
 * const pool = [{ pid: 1, held: 3 }, { pid: 2, held: 1 }, { pid: 3, held: 1 }];
 * leastHeld(pool, (w) => w.held, 0)?.pid; // 2
 * leastHeld(pool, (w) => w.held, 2)?.pid; // 3: the tie taken from index 2 on
 * ```
 */
export function leastHeld<T>(
  pool: readonly T[],
  held: (item: T) => number,
  turn: number,
): T | undefined {
  let best: T | undefined;
  let least = Infinity;
  for (let k = 0; k < pool.length; k++) {
    const item = pool[(turn + k) % pool.length];
    const n = held(item);
    if (n < least) {
      best = item;
      least = n;
    }
  }
  return best;
}
