/**
 * What the launcher's autoscaler reads from the gateway
 * (`POST /admin/demand?after=SEQ&wait=MS`, signed): for each function, the
 * requests waiting for it to start and each registered worker's load
 * (connections, CPU and requests over its last second, idle time). The
 * answer comes at once when something new waits (a function got its first
 * held request since `after`), else after `wait` ms: a cold start is noticed
 * without polling, and the load about once a second.
 *
 * @module
 */

import type { WorkerLoad } from "./workers.ts";

/** Longest wait of one demand request, ms (the admin port's deadline is 5 s). */
export const MAX_DEMAND_WAIT_MS = 2000;

/** One function's demand. */
export interface FunctionDemand {
  /** Requests held while it starts. */
  waiting: number;
  /** Its registered workers' loads. */
  workers: WorkerLoad[];
}

/** The demand on every function, as of `seq`.
 *
 * @example
 * ```ts
 * import type { Demand } from "./demand.ts";
 * const d: Demand = { seq: 3, gatewayPid: 42, functions: { hello: { waiting: 1, workers: [] } } };
 * console.log(d.functions.hello.waiting);
 * ```
 */
export interface Demand {
  /** Bumped each time a function gets its first waiting request. */
  seq: number;
  /** The gateway's pid (a new one means a new gateway: state starts afresh). */
  gatewayPid: number;
  /** Each function with waiting requests or registered workers. */
  functions: Record<string, FunctionDemand>;
}

/** Where {@linkcode DemandFeed} reads the demand. */
export interface DemandSource {
  /** Every registered worker's load. */
  loads(): WorkerLoad[];
  /** Requests held for function `fn` while it starts. */
  waiting(fn: string): number;
  /** Functions that may have requests waiting (those with scaling). */
  functions(): Iterable<string>;
}

/**
 * The demand, and waits for news of it.
 *
 * @example
 * ```ts
 * import { DemandFeed } from "./demand.ts";
 * const feed = new DemandFeed({ loads: () => [], waiting: () => 0, functions: () => [] });
 * const next = feed.next(0, 100); // resolves in 100 ms: nothing new
 * feed.bump(); // ...or at once when a function gets its first waiting request
 * console.log((await next).seq); // 1
 * ```
 */
export class DemandFeed {
  #source: DemandSource;
  #seq = 0;
  #waiters = new Set<() => void>();

  /** A feed over `source`.
   *
   * @example
   * ```ts
   * import { DemandFeed } from "./demand.ts";
   * new DemandFeed({ loads: () => [], waiting: () => 0, functions: () => [] });
   * ```
   */
  constructor(source: DemandSource) {
    this.#source = source;
  }

  /** Something new waits: answer the waiting demand requests now.
   *
   * @example
   * ```ts
   * import { DemandFeed } from "./demand.ts";
   * new DemandFeed({ loads: () => [], waiting: () => 0, functions: () => [] }).bump();
   * ```
   */
  bump(): void {
    this.#seq++;
    for (const wake of [...this.#waiters]) wake();
  }

  /** The demand now.
   *
   * @example
   * ```ts
   * import { DemandFeed } from "./demand.ts";
   * const feed = new DemandFeed({ loads: () => [], waiting: () => 0, functions: () => ["hello"] });
   * console.log(feed.snapshot().functions); // { hello: { waiting: 0, workers: [] } }
   * ```
   */
  snapshot(): Demand {
    const functions: Record<string, FunctionDemand> = {};
    const of = (fn: string) => functions[fn] ??= { waiting: this.#source.waiting(fn), workers: [] };
    for (const fn of this.#source.functions()) of(fn);
    for (const w of this.#source.loads()) of(w.name).workers.push(w);
    return { seq: this.#seq, gatewayPid: Deno.pid, functions };
  }

  /** The demand once its seq passes `after`, or after `waitMs` (at most
   * {@linkcode MAX_DEMAND_WAIT_MS}) whatever it is.
   *
   * @example
   * ```ts
   * import { DemandFeed } from "./demand.ts";
   * const feed = new DemandFeed({ loads: () => [], waiting: () => 0, functions: () => [] });
   * console.log((await feed.next(0, 10)).seq); // 0
   * ```
   */
  next(after: number, waitMs: number): Promise<Demand> {
    if (this.#seq > after || waitMs <= 0) return Promise.resolve(this.snapshot());
    return new Promise((done) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        done(this.snapshot());
      };
      const timer = setTimeout(wake, Math.min(waitMs, MAX_DEMAND_WAIT_MS));
      this.#waiters.add(wake);
    });
  }
}
