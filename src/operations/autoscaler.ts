/**
 * The launcher's scaling decisions, as a pure function of what it knows:
 * each function's settings and processes, and the gateway's demand (requests
 * waiting for a function to start, each worker's CPU, requests and idle
 * time; src/gateway/demand.ts). Modelled on Knative's autoscaler:
 *
 * - **Cold start**: a function at zero workers with a request waiting gets
 *   one worker at once.
 * - **Panic window** (the last 2 s): when the pool's CPU (in cores) over its
 *   workers' target share asks for more workers than run, the pool grows to
 *   that many at once (up to `max`), once every worker has registered.
 * - **Stable window** (the idle time): a worker that answered nothing for the
 *   idle time is stopped while the pool is above `min`; so is one when the
 *   pool's CPU stayed below what one fewer worker could carry for the whole
 *   idle time. One worker per function per decision. A stopped worker hands
 *   its connections to its siblings; the last one's idle connections are
 *   parked in the gateway (src/gateway/parked.ts) until their clients speak.
 *
 * The launcher acts on the decisions (src/operations/scaler.ts).
 *
 * @module
 */

import type { Demand, FunctionDemand } from "../gateway/demand.ts";
import type { Scaling } from "./scaling.ts";

/** The panic window, ms. */
export const PANIC_WINDOW_MS = 2000;

/** One function's pool as the launcher runs it. */
export interface Pool {
  /** The function. */
  fn: string;
  /** Its settings. */
  scaling: Scaling;
  /** Pids of its processes running (registered or still starting), not
   * being stopped. */
  running: number[];
  /** Its processes waiting to be started again (a start failed: backoff). */
  restarting: number;
  /** A reload of it is under way: no decision now. */
  reloading: boolean;
}

/** Why a pool changes: the label of `hotpotato_scale_events_total`. */
export type ScaleCause = "minimum" | "cold start" | "busy" | "above max" | "idle" | "low load";

/** What to do: start `count` workers of `fn`, or stop worker `pid`; `cause`
 * says why in a word, `reason` with the numbers. */
export type Decision =
  & { fn: string; cause: ScaleCause; reason: string }
  & ({ action: "start"; count: number } | { action: "stop"; pid: number });

/**
 * Decides, from one demand to the next, which workers to start and stop.
 *
 * @example
 * ```ts
 * import { Autoscaler } from "./autoscaler.ts";
 * const scaler = new Autoscaler();
 * const decisions = scaler.decide(Date.now(), {
 *   seq: 1,
 *   gatewayPid: 42,
 *   functions: { hello: { waiting: 1, workers: [] } },
 * }, [{
 *   fn: "hello",
 *   scaling: { min: 0, max: 4, idleMs: 60_000, target: 0.6, spare: 0 },
 *   running: [],
 *   restarting: 0,
 *   reloading: false,
 * }]);
 * console.log(decisions[0].action, decisions[0].cause); // start cold start
 * ```
 */
export class Autoscaler {
  /** Each function's CPU samples (cores), newest last. */
  #samples = new Map<string, { at: number; cores: number }[]>();
  /** Since when each function's load has been low enough for one worker fewer. */
  #lowSince = new Map<string, number>();

  /** The decisions for `pools` given `demand`, at time `now` (ms).
   *
   * @example
   * ```ts
   * import { Autoscaler } from "./autoscaler.ts";
   * console.log(new Autoscaler().decide(Date.now(), { seq: 0, gatewayPid: 1, functions: {} }, []));
   * ```
   */
  decide(now: number, demand: Demand, pools: readonly Pool[]): Decision[] {
    const out: Decision[] = [];
    // Functions gone from the set take their history with them.
    const names = new Set(pools.map((p) => p.fn));
    for (const fn of this.#samples.keys()) if (!names.has(fn)) this.#samples.delete(fn);
    for (const fn of this.#lowSince.keys()) if (!names.has(fn)) this.#lowSince.delete(fn);
    for (const pool of pools) {
      if (pool.reloading) continue;
      const d: FunctionDemand = demand.functions[pool.fn] ?? { waiting: 0, workers: [] };
      const decision = this.#decideOne(now, pool, d);
      if (decision) out.push(decision);
    }
    return out;
  }

  #decideOne(now: number, pool: Pool, d: FunctionDemand): Decision | undefined {
    const { fn, scaling } = pool;
    const live = pool.running.length + pool.restarting;
    const mine = new Set(pool.running);
    const serving = d.workers.filter((w) => mine.has(w.pid) && w.state === "serving");
    const cores = serving.reduce((n, w) => n + w.cpuMs, 0) / 1000;
    const samples = this.#sample(fn, now, cores, scaling.idleMs);
    if (live < scaling.min) {
      return {
        fn,
        action: "start",
        count: scaling.min - live,
        cause: "minimum",
        reason: `below the minimum of ${scaling.min}`,
      };
    }
    if (live === 0) {
      if (d.waiting === 0) return undefined;
      const reason = `cold start: ${d.waiting} request(s) waiting`;
      return { fn, action: "start", count: 1, cause: "cold start", reason };
    }
    if (pool.running.length > scaling.max) {
      const reason = `above the maximum of ${scaling.max}`;
      return { fn, action: "stop", pid: pool.running.at(-1)!, cause: "above max", reason };
    }
    // Grow: the panic window's CPU asks for more workers than run (once
    // every running one has registered: no pile-up while they start).
    const panic = average(samples, now - PANIC_WINDOW_MS);
    const wanted = Math.min(scaling.max, Math.ceil(panic / scaling.target));
    if (wanted > live && serving.length === pool.running.length) {
      this.#lowSince.delete(fn);
      return {
        fn,
        action: "start",
        count: wanted - live,
        cause: "busy",
        reason: `busy: ${panic.toFixed(2)} cores over ${serving.length} worker(s)`,
      };
    }
    if (live <= scaling.min || serving.length === 0) {
      this.#lowSince.delete(fn);
      return undefined;
    }
    // Shrink: an idle worker (its idle connections go to its siblings, or,
    // the last one's, are parked in the gateway until their clients speak),
    // or a load one worker fewer could carry for the whole idle time.
    const lastOne = pool.running.length === 1;
    const idle = serving
      .filter((w) => w.idleMs >= scaling.idleMs)
      .sort((a, b) => a.conns - b.conns)[0];
    if (idle) {
      this.#lowSince.delete(fn);
      return {
        fn,
        action: "stop",
        pid: idle.pid,
        cause: "idle",
        reason: `idle ${Math.round(idle.idleMs / 1000)} s`,
      };
    }
    const stable = average(samples, now - scaling.idleMs);
    const fits = Math.ceil(stable / scaling.target) < live && !lastOne;
    if (!fits) {
      this.#lowSince.delete(fn);
      return undefined;
    }
    const since = this.#lowSince.get(fn) ?? now;
    this.#lowSince.set(fn, since);
    if (now - since < scaling.idleMs) return undefined;
    this.#lowSince.delete(fn);
    const least = [...serving].sort((a, b) => a.conns - b.conns)[0];
    return {
      fn,
      action: "stop",
      pid: least.pid,
      cause: "low load",
      reason: `load ${stable.toFixed(2)} cores fits ${live - 1} worker(s)`,
    };
  }

  /** Add a sample of `fn`'s CPU (cores) and keep those of the last
   * `windowMs` (at least the panic window). */
  #sample(fn: string, now: number, cores: number, windowMs: number) {
    const samples = this.#samples.get(fn) ?? [];
    samples.push({ at: now, cores });
    const from = now - Math.max(windowMs, PANIC_WINDOW_MS);
    while (samples.length > 0 && samples[0].at < from) samples.shift();
    this.#samples.set(fn, samples);
    return samples;
  }
}

/** The mean of the samples taken since `from` (0 when none). */
function average(samples: readonly { at: number; cores: number }[], from: number): number {
  let sum = 0, n = 0;
  for (const s of samples) {
    if (s.at < from) continue;
    sum += s.cores;
    n++;
  }
  return n === 0 ? 0 : sum / n;
}
