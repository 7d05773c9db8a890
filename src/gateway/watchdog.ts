/**
 * The gateway's watchdog over its workers: a worker silent past
 * --worker-timeout has a stuck event loop, so it leaves the router (a
 * connection handed to it would wait forever) until it speaks again; and
 * functions vacant past --vacant-grace are forgotten, so the workers' tables
 * drop them even when no request asks for their routes.
 *
 * @module
 */

import type { GatewayConfig } from "../operations/config.ts";
import { logger } from "../operations/log.ts";
import type { Router } from "../routing/router.ts";
import type { RoutePush } from "./route_push.ts";
import type { Worker } from "./workers.ts";

const log = logger("gateway");

/** What the watchdog watches.
 *
 * @example
 * ```ts
 * import type { WatchdogParts } from "./watchdog.ts";
 * import type { RoutePush } from "./route_push.ts";
 * import { Router } from "../routing/router.ts";
 * import type { Worker } from "./workers.ts";
 * declare const push: RoutePush;
 * const parts: WatchdogParts = { workers: new Set<Worker>(), router: new Router<Worker>(), push };
 * console.log(parts.workers.size); // 0
 * ```
 */
export interface WatchdogParts {
  /** The registry's workers. */
  workers: ReadonlySet<Worker>;
  /** The router stuck workers leave and come back to. */
  router: Router<Worker>;
  /** The pushed table: its members and their counts change. */
  push: RoutePush;
}

/**
 * Takes silent workers out of the router, and back in when they speak.
 *
 * @example
 * ```ts
 * import { Watchdog } from "./watchdog.ts";
 * import type { WatchdogParts } from "./watchdog.ts";
 * import { gatewayConfig } from "../operations/config.ts";
 * declare const parts: WatchdogParts;
 * const watchdog = new Watchdog(gatewayConfig([]).config, parts);
 * setInterval(() => watchdog.check(), 1000);
 * ```
 */
export class Watchdog {
  #config: GatewayConfig;
  #workers: ReadonlySet<Worker>;
  #router: Router<Worker>;
  #push: RoutePush;

  /** A watchdog over `parts.workers` with `config.workerTimeoutMs`.
   *
   * @example
   * ```ts
   * import { Watchdog } from "./watchdog.ts";
   * import type { WatchdogParts } from "./watchdog.ts";
   * import { gatewayConfig } from "../operations/config.ts";
   * declare const parts: WatchdogParts;
   * new Watchdog(gatewayConfig(["--worker-timeout", "5000"]).config, parts);
   * ```
   */
  constructor(config: GatewayConfig, parts: WatchdogParts) {
    this.#config = config;
    this.#workers = parts.workers;
    this.#router = parts.router;
    this.#push = parts.push;
  }

  /** One round (every second): forget functions vacant past --vacant-grace,
   * push the table again if the members' counts changed, and take workers
   * that have been silent past --worker-timeout out of the router (their
   * routes answer 503, or go to the function's other workers, until they
   * speak again).
   *
   * @example
   * ```ts
   * import type { Watchdog } from "./watchdog.ts";
   * declare const watchdog: Watchdog;
   * watchdog.check();
   * ```
   */
  check(): void {
    this.#router.sweep(); // forgotten functions leave the workers' tables too
    // Direct placers balance by the counts in the table: refresh them when
    // they changed (at most once a second).
    this.#push.heldChanged();
    const limit = Date.now() - this.#config.workerTimeoutMs;
    for (const w of this.#workers) {
      if (!w.registered || w.state !== "serving" || w.lastSeen >= limit) continue;
      w.state = "stuck";
      this.#router.remove(w);
      this.#push.membersChanged();
      log.warning(
        "worker {worker} silent for {ms} ms; no new connections for it until it answers",
        { worker: `${w.name}/${w.pid}`, ms: Date.now() - w.lastSeen },
      );
    }
  }

  /** A stuck worker spoke again: back in the router, or, when another
   * function took its routes meanwhile, its channel closed.
   *
   * @example
   * ```ts
   * import type { Watchdog } from "./watchdog.ts";
   * import type { Worker } from "./workers.ts";
   * declare const watchdog: Watchdog, worker: Worker;
   * if (worker.state === "stuck") watchdog.revive(worker);
   * ```
   */
  revive(worker: Worker): void {
    try {
      this.#router.add(worker, worker.routes, { nestedRoutes: worker.nestedRoutes });
      this.#push.membersChanged();
    } catch (e) {
      // Another function took its routes while it was silent.
      log.warning("worker {worker} answers again but cannot return: {error}", {
        worker: `${worker.name}/${worker.pid}`,
        error: (e as Error).message,
      });
      worker.channel.close();
      return;
    }
    worker.state = "serving";
    log.info("worker {worker} answers again; it gets new connections", {
      worker: `${worker.name}/${worker.pid}`,
    });
  }
}
