/**
 * Switching a function from one version of its workers to the next: the
 * new version's workers register on standby (REGISTER's `standby`, a new
 * generation) and wait; promoting them puts them in the router and takes the
 * function's other workers out, which then hand their connections over
 * (HANDOVER) and exit, or only get no new ones. A worker that registers with
 * `replace` switches its function to itself at once.
 *
 * @module
 */

import { logger } from "../operations/log.ts";
import { encodeJson, MessageType } from "../handoff/protocol.ts";
import { RouteConflictError, type Router } from "../routing/router.ts";
import type { GatewayMetrics } from "./gateway_metrics.ts";
import type { RoutePush } from "./route_push.ts";
import type { Worker } from "./workers.ts";

const log = logger("gateway");

/** What {@linkcode Versions.promote} did.
 *
 * @example
 * ```ts
 * import type { PromoteResult } from "./versions.ts";
 * const r: PromoteResult = { ok: true, promoted: [4243], replaced: [4242] };
 * if (r.ok) console.log(`${r.promoted} replace ${r.replaced}`);
 * ```
 */
export type PromoteResult =
  | {
    ok: true;
    /** Pids of the workers that now serve the function. */
    promoted: number[];
    /** Pids of the workers they replace (told HANDOVER, or only taken out of
     * the router when `handover` was false). */
    replaced: number[];
  }
  | { ok: false; error: string };

/** What a switch works on.
 *
 * @example
 * ```ts
 * import type { VersionsParts } from "./versions.ts";
 * import type { RoutePush } from "./route_push.ts";
 * import { Router } from "../routing/router.ts";
 * import { GatewayMetrics } from "./gateway_metrics.ts";
 * import type { Worker } from "./workers.ts";
 * declare const push: RoutePush;
 * const parts: VersionsParts = {
 *   workers: new Set<Worker>(),
 *   router: new Router<Worker>(),
 *   push,
 *   metrics: new GatewayMetrics(),
 * };
 * console.log(parts.router.functions()); // []
 * ```
 */
export interface VersionsParts {
  /** The registry's workers. */
  workers: ReadonlySet<Worker>;
  /** The router the versions enter and leave. */
  router: Router<Worker>;
  /** The pushed table: the members change with a switch. */
  push: RoutePush;
  /** Counts switches by function. */
  metrics: GatewayMetrics;
}

/**
 * Version switches of the registry's functions.
 *
 * @example
 * ```ts
 * import { Versions } from "./versions.ts";
 * import { RoutePush } from "./route_push.ts";
 * import { Router } from "../routing/router.ts";
 * import { Satellites } from "./satellites.ts";
 * import { GatewayMetrics } from "./gateway_metrics.ts";
 * import { gatewayConfig } from "../operations/config.ts";
 * import type { Worker } from "./workers.ts";
 * const metrics = new GatewayMetrics();
 * const workers = new Set<Worker>();
 * const router = new Router<Worker>();
 * const satellites = new Satellites(metrics, { handoff: () => {} }, {
 *   key: () => new Uint8Array(32),
 *   routes: () => new Uint8Array(0),
 * });
 * const push = new RoutePush(gatewayConfig([]).config, { workers, router, satellites });
 * const versions = new Versions({ workers, router, push, metrics });
 * console.log(versions.promote("sum", "2", true)); // { ok: false, error: "no worker of sum ..." }
 * ```
 */
export class Versions {
  #workers: ReadonlySet<Worker>;
  #router: Router<Worker>;
  #push: RoutePush;
  #metrics: GatewayMetrics;

  /** Switches among `parts.workers`, in `parts.router`.
   *
   * @example
   * ```ts
   * import { Versions } from "./versions.ts";
   * import type { VersionsParts } from "./versions.ts";
   * declare const parts: VersionsParts;
   * new Versions(parts);
   * ```
   */
  constructor(parts: VersionsParts) {
    this.#workers = parts.workers;
    this.#router = parts.router;
    this.#push = parts.push;
    this.#metrics = parts.metrics;
  }

  /** Switch function `name` to its workers of `generation` that wait on
   * standby: they take new connections from now on, and the function's other
   * workers get none and (with `handover`) hand theirs over (HANDOVER) and
   * exit; without it they are only taken out of the router (the launcher
   * then stops them: a reload that closes connections, for comparison). On
   * failure (no such worker, or their routes conflict) nothing changes.
   *
   * @example
   * ```ts
   * import type { Versions } from "./versions.ts";
   * declare const versions: Versions;
   * const r = versions.promote("sum", "2", true);
   * if (!r.ok) console.log(r.error);
   * ```
   */
  promote(name: string, generation: string, handover: boolean): PromoteResult {
    const news = [...this.#workers].filter((w) =>
      w.registered && w.name === name && w.generation === generation && w.state === "standby"
    );
    if (news.length === 0) {
      return {
        ok: false,
        error: `no worker of ${name} generation ${JSON.stringify(generation)} is on standby`,
      };
    }
    return this.switchTo(news, handover);
  }

  /** `news` (on standby, one function) take over from the function's other
   * workers: see {@linkcode Versions.promote}. `tell`: send them PROMOTED (a
   * `replace` worker is not on standby in its own eyes).
   *
   * @example
   * ```ts
   * import type { Versions } from "./versions.ts";
   * import type { Worker } from "./workers.ts";
   * declare const versions: Versions, worker: Worker;
   * // A worker that registered with `replace`: it takes over at once.
   * const r = versions.switchTo([worker], true, false);
   * if (!r.ok) console.log(r.error);
   * ```
   */
  switchTo(news: Worker[], handover: boolean, tell = true): PromoteResult {
    const { name } = news[0];
    const olds = [...this.#workers].filter((w) =>
      w.registered && w.name === name && !news.includes(w) &&
      (w.state === "serving" || w.state === "stuck")
    );
    // The old ones leave the router first, so a new version may change the
    // function's routes; on a conflict they come back as they were.
    for (const w of olds) this.#router.remove(w);
    const added: Worker[] = [];
    try {
      for (const w of news) {
        this.#router.add(w, w.routes, { nestedRoutes: w.nestedRoutes });
        added.push(w);
      }
    } catch (e) {
      for (const w of added) this.#router.remove(w);
      for (const w of olds) {
        if (w.state !== "serving") continue;
        try {
          this.#router.add(w, w.routes, { nestedRoutes: w.nestedRoutes });
        } catch { /* its own routes: cannot conflict */ }
      }
      const error = e instanceof RouteConflictError ? e.message : String(e);
      log.error("cannot switch {name} to pid(s) {pids}: {error}", {
        name,
        pids: news.map((w) => w.pid).join(" "),
        error,
      });
      return { ok: false, error };
    }
    for (const w of news) {
      if (tell) w.channel.send(encodeJson(MessageType.PROMOTED, {}));
      w.state = "serving";
    }
    for (const w of olds) {
      w.state = "draining";
      if (handover) this.#handOver(w);
    }
    this.#push.membersChanged();
    this.#metrics.switches.labels(name).inc();
    log.info(
      "{name}: pid(s) {news} (generation {generation}) take over from {olds}{how}",
      {
        name,
        news: news.map((w) => w.pid).join(" "),
        generation: news[0].generation || "-",
        olds: olds.map((w) => `${w.name}/${w.pid}`).join(" ") || "no running worker",
        how: olds.length === 0
          ? ""
          : handover
          ? ": they hand their connections over"
          : ": they get no new connections",
      },
    );
    return { ok: true, promoted: news.map((w) => w.pid), replaced: olds.map((w) => w.pid) };
  }

  /** Stop `worker` (the launcher scales its function down): out of the
   * router, draining, told HANDOVER (every connection handed over, idle
   * ones at once, busy ones at their next request boundary, then it
   * exits), as a switch tells the workers it replaces.
   *
   * @example
   * ```ts
   * import type { Versions } from "./versions.ts";
   * import type { Worker } from "./workers.ts";
   * declare const versions: Versions, worker: Worker;
   * versions.retire(worker);
   * ```
   */
  retire(worker: Worker): void {
    this.#router.remove(worker);
    worker.state = "draining";
    this.#handOver(worker);
    this.#push.membersChanged();
  }

  /** What it hands back goes to the function's other (or new) workers. */
  #handOver(worker: Worker): void {
    worker.handingOver = true;
    worker.channel.send(encodeJson(MessageType.HANDOVER, {}));
  }
}
