/**
 * Functions started on demand, as the gateway sees them: a request for a
 * function whose scaling has `min` 0 (`--scaling`) and that has no worker
 * right now is held, with its connection, while the launcher starts one
 * (the launcher learns of it from the demand it polls, src/gateway/demand.ts);
 * when the worker registers, every held connection moves to it with the
 * request bytes already read: no proxy hop and no second handshake. Bounded:
 * at most `--cold-hold-max` connections per function wait (more get 503 with
 * Retry-After at once), each for at most `--cold-start-timeout` (then 503).
 *
 * A connection the gateway holds waits here (src/gateway/gateway_policy.ts);
 * one a worker hands back for a cold function's route waits unconfirmed, its
 * sender still owning it (src/gateway/forwarder.ts): the gateway never
 * imports a function's TLS state.
 *
 * @module
 */

import { logger } from "../operations/log.ts";
import type { Scaling } from "../operations/scaling.ts";
import type { Router } from "../routing/router.ts";
import type { GatewayMetrics } from "./gateway_metrics.ts";
import type { Worker } from "./workers.ts";

const log = logger("gateway");

/** How a wait for a cold function ended: a worker serves it now, or none
 * came within the timeout. */
export type ColdOutcome = "ready" | "timeout";

/** What {@linkcode ColdStarts} works with. */
export interface ColdStartsOptions {
  /** The gateway's router (whether a function has a worker). */
  router: Router<Worker>;
  /** Where cold starts are counted. */
  metrics: GatewayMetrics;
  /** Each function's scaling (`--scaling`), replaced by the launcher's reloads. */
  scaling: Map<string, Scaling>;
  /** Longest wait, ms (`--cold-start-timeout`). */
  timeoutMs: number;
  /** Most connections waiting per function (`--cold-hold-max`). */
  maxHeld: number;
  /** The declared function whose route serves a path (`--function-routes`). */
  functionFor(path: string): string | undefined;
  /** A function got its first waiting request (the launcher is told). */
  wanted(fn: string): void;
}

interface Cold {
  /** Requests waiting now. */
  held: number;
  /** When the first of them came (ms since epoch). */
  since: number;
  /** Each waiting request's wake-up. */
  wakers: Set<() => void>;
}

/**
 * The requests waiting for functions to start.
 *
 * @example
 * ```ts
 * import { ColdStarts } from "./cold_starts.ts";
 * import { Router } from "../routing/router.ts";
 * import { GatewayMetrics } from "./gateway_metrics.ts";
 * import type { Worker } from "./workers.ts";
 * const cold = new ColdStarts({
 *   router: new Router<Worker>(),
 *   metrics: new GatewayMetrics(),
 *   scaling: new Map([["hello", { min: 0, max: 2, idleMs: 60_000, target: 0.6, spare: 0 }]]),
 *   timeoutMs: 10_000,
 *   maxHeld: 100,
 *   functionFor: (path) => path.startsWith("/hello") ? "hello" : undefined,
 *   wanted: (fn) => console.log(`start ${fn}`),
 * });
 * console.log(cold.coldFunction("/hello")); // "hello": no worker yet
 * ```
 */
export class ColdStarts {
  #o: ColdStartsOptions;
  #cold = new Map<string, Cold>();
  /** Functions with `min` 0: none (the usual case) costs a request nothing. */
  #onDemand = 0;

  /** Waits over these parts.
   *
   * @example
   * ```ts
   * import { ColdStarts, type ColdStartsOptions } from "./cold_starts.ts";
   * declare const options: ColdStartsOptions;
   * new ColdStarts(options);
   * ```
   */
  constructor(options: ColdStartsOptions) {
    this.#o = options;
    this.#count();
  }

  #count(): void {
    this.#onDemand = 0;
    for (const s of this.#o.scaling.values()) if (s.min === 0) this.#onDemand++;
  }

  /** Each function's scaling, as the gateway was last told.
   *
   * @example
   * ```ts
   * import type { ColdStarts } from "./cold_starts.ts";
   * declare const cold: ColdStarts;
   * for (const [fn, s] of cold.scaling) console.log(fn, s.min, s.max);
   * ```
   */
  get scaling(): ReadonlyMap<string, Scaling> {
    return this.#o.scaling;
  }

  /** Replace function `fn`'s scaling (the launcher's reload); undefined
   * forgets it.
   *
   * @example
   * ```ts
   * import type { ColdStarts } from "./cold_starts.ts";
   * declare const cold: ColdStarts;
   * cold.setScaling("hello", { min: 0, max: 4, idleMs: 30_000, target: 0.6, spare: 0 });
   * ```
   */
  setScaling(fn: string, scaling: Scaling | undefined): void {
    if (scaling) this.#o.scaling.set(fn, scaling);
    else this.#o.scaling.delete(fn);
    this.#count();
  }

  /** The function started on demand whose route serves `path`, when it has
   * no worker now (a request for it waits); else undefined.
   *
   * @example
   * ```ts
   * import type { ColdStarts } from "./cold_starts.ts";
   * declare const cold: ColdStarts;
   * const fn = cold.coldFunction("/hello");
   * if (fn) console.log(`${fn} is at zero workers`);
   * ```
   */
  coldFunction(path: string): string | undefined {
    if (this.#onDemand === 0) return undefined;
    const fn = this.#o.functionFor(path);
    if (fn === undefined || this.#o.scaling.get(fn)?.min !== 0) return undefined;
    return this.#o.router.workersOf(fn).length === 0 ? fn : undefined;
  }

  /** Requests waiting for function `fn` now.
   *
   * @example
   * ```ts
   * import type { ColdStarts } from "./cold_starts.ts";
   * declare const cold: ColdStarts;
   * console.log(cold.waiting("hello"));
   * ```
   */
  waiting(fn: string): number {
    return this.#cold.get(fn)?.held ?? 0;
  }

  /** Wait for a worker of `fn`: "full" at once when `--cold-hold-max`
   * requests wait already; else resolves "ready" when one serves it, or
   * "timeout" after `--cold-start-timeout`.
   *
   * @example
   * ```ts
   * import type { ColdStarts } from "./cold_starts.ts";
   * declare const cold: ColdStarts;
   * const wait = cold.hold("hello");
   * if (wait !== "full" && (await wait) === "ready") console.log("move it to the new worker");
   * ```
   */
  hold(fn: string): Promise<ColdOutcome> | "full" {
    const { metrics, maxHeld, timeoutMs } = this.#o;
    let cold = this.#cold.get(fn);
    if ((cold?.held ?? 0) >= maxHeld) {
      metrics.coldRefused.labels(fn, "full").inc();
      return "full";
    }
    const first = !cold;
    if (!cold) {
      cold = { held: 0, since: Date.now(), wakers: new Set() };
      this.#cold.set(fn, cold);
      log.info("{fn} has no worker: holding its requests while one starts", { fn });
    }
    const entry = cold;
    entry.held++;
    metrics.coldHeld.labels(fn).set(entry.held);
    if (first) this.#o.wanted(fn); // counted first: the demand it wakes shows this request
    return new Promise((done) => {
      const finish = (outcome: ColdOutcome) => {
        clearTimeout(timer);
        entry.wakers.delete(wake);
        entry.held--;
        if (this.#cold.get(fn) === entry) {
          metrics.coldHeld.labels(fn).set(entry.held);
          if (entry.held === 0) this.#cold.delete(fn);
        }
        done(outcome);
      };
      const wake = () => finish("ready");
      const timer = setTimeout(() => {
        metrics.coldRefused.labels(fn, "timeout").inc();
        finish("timeout");
      }, timeoutMs);
      entry.wakers.add(wake);
    });
  }

  /** A worker of `fn` serves now: what waits for it goes to it (counted as
   * a cold start when something waited).
   *
   * @example
   * ```ts
   * import type { ColdStarts } from "./cold_starts.ts";
   * declare const cold: ColdStarts;
   * cold.serving("hello");
   * ```
   */
  serving(fn: string): void {
    const cold = this.#cold.get(fn);
    if (!cold) return;
    this.#cold.delete(fn);
    const { metrics } = this.#o;
    const seconds = (Date.now() - cold.since) / 1000;
    metrics.coldStarts.labels(fn).inc();
    metrics.coldStartSeconds.labels(fn).observe(seconds);
    metrics.coldHeld.labels(fn).set(0);
    log.info("{fn}: a worker registered {ms} ms after the first held request; {n} go to it", {
      fn,
      ms: Math.round(seconds * 1000),
      n: cold.held,
    });
    for (const wake of [...cold.wakers]) wake();
  }
}
