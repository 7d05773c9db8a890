/**
 * The gateway's route table, filled only by workers' registrations: which
 * function serves a path, and which of its worker processes gets the next
 * connection (the one holding the fewest, so a pool shares the load).
 *
 * Paths are matched by the one route matcher (src/routing/route_table.ts, which
 * workers use too): a route "/sum" matches "/sum" and every path below it
 * ("/sum/x"), never "/summary"; the longest matching route wins. When a
 * function's last worker leaves, its routes stay known for a grace period
 * ("vacant": the gateway answers 503 while a restart is likely), then are
 * forgotten ("unknown": 404) unless a worker registers again.
 *
 * Registration rules: a route belongs to one function; a route nested
 * inside another function's route, or containing one, is refused unless the
 * registering function allows nesting (`nestedRoutes`); at most
 * `RouteLimits.maxRoutes` routes in all, so the table fits one ROUTES message.
 * Every change of the table (a function added or forgotten) bumps its
 * version and is reported, so the gateway can push the table to workers.
 *
 * @module
 */

import { leastHeld } from "./balance.ts";
import { covers, RouteLimits, type RouteMatch, RouteTable } from "./route_table.ts";

/** A registered worker process as the router sees it. */
export interface WorkerRef {
  /** Function name, e.g. "sum" ("" until the worker registers). */
  name: string;
  /** Process id. */
  readonly pid: number;
  /** Connections handed to it and not handed back (an estimate of load). */
  held: number;
}

interface FunctionEntry<W extends WorkerRef> {
  name: string;
  routes: string[];
  workers: W[];
  next: number;
  /** When its last worker left (ms since epoch); 0 while it has workers. */
  vacantSince: number;
}

/** How a function registers.
 *
 * @example
 * ```ts
 * import { type AddOptions, Router } from "./router.ts";
 * const options: AddOptions = { nestedRoutes: true };
 * new Router().add({ name: "admin", pid: 8, held: 0 }, ["/sum/admin"], options);
 * ```
 */
export interface AddOptions {
  /** Allow its routes to nest with other functions' routes (default false). */
  nestedRoutes?: boolean;
}

/** What the router knows about a path. */
export type RouteStatus =
  /** A function serves it and has a worker. */
  | "served"
  /** Its function's last worker left recently: answer 503 and retry later. */
  | "vacant"
  /** No function serves it. */
  | "unknown";

/** A registration that cannot be accepted. */
export class RouteConflictError extends Error {
  /** Create an error naming the route and its owner.
   *
   * @example
   * ```ts
   * import { RouteConflictError } from "./router.ts";
   * throw new RouteConflictError("route /sum belongs to function sum");
   * ```
   */
  constructor(message: string) {
    super(message);
    this.name = "RouteConflictError";
  }
}

/** What a worker holds, for the balancing policy (one function, not one per pick). */
const heldOf = (w: WorkerRef): number => w.held;

/**
 * Routes paths to functions and functions to workers.
 *
 * @example
 * ```ts
 * import { Router } from "./router.ts";
 * const router = new Router();
 * router.add({ name: "sum", pid: 42, held: 0 }, ["/sum"]);
 * router.pick("/sum"); // the worker above
 * router.pick("/nope"); // undefined
 * ```
 */
export class Router<W extends WorkerRef = WorkerRef> {
  #table = new RouteTable<FunctionEntry<W>>();
  #byName = new Map<string, FunctionEntry<W>>();
  #graceMs: number;
  #onChange: (() => void) | undefined;
  #now: () => number;
  #version = 0;

  /** A router whose vacant functions are forgotten after `graceMs`;
   * `onChange` is called after each change of the route table; `now` is
   * the clock, in ms (tests pass one of their own).
   *
   * @example
   * ```ts
   * import { Router } from "./router.ts";
   * const router = new Router(30_000, () => console.log("routes changed"));
   * ```
   */
  constructor(graceMs = 30_000, onChange?: () => void, now: () => number = Date.now) {
    this.#graceMs = graceMs;
    this.#onChange = onChange;
    this.#now = now;
  }

  /** The route table's version: it grows with every change.
   *
   * @example
   * ```ts
   * import { Router } from "./router.ts";
   * const router = new Router();
   * router.add({ name: "sum", pid: 42, held: 0 }, ["/sum"]);
   * router.version; // 1
   * ```
   */
  get version(): number {
    return this.#version;
  }

  #changed(): void {
    this.#version++;
    this.#onChange?.();
  }

  /** Register a worker for its function's routes. A function's workers must
   * all announce the same routes; a route belongs to one function; a route
   * nested inside another function's route ("/sum/admin" in "/sum") or
   * containing one ("/a" around "/a/b") is refused unless `nestedRoutes`;
   * at most `RouteLimits.maxRoutes` routes in all. Throws
   * {@linkcode RouteConflictError} naming the routes and their owner.
   *
   * @example
   * ```ts
   * import { Router } from "./router.ts";
   * const router = new Router();
   * router.add({ name: "sum", pid: 7, held: 0 }, ["/sum"]);
   * router.add({ name: "admin", pid: 8, held: 0 }, ["/sum/admin"], { nestedRoutes: true });
   * ```
   */
  add(worker: W, routes: string[], options: AddOptions = {}): void {
    this.sweep(); // expired functions neither conflict nor count
    const wanted = [...new Set(routes)].sort();
    let existing = this.#byName.get(worker.name);
    if (
      existing && existing.workers.length === 0 && existing.routes.join("\n") !== wanted.join("\n")
    ) {
      this.#forget(existing); // a vacant function may come back with new routes
      existing = undefined;
    }
    if (existing) {
      if (existing.routes.join("\n") !== wanted.join("\n")) {
        throw new RouteConflictError(
          `function ${worker.name} is already registered with routes ${existing.routes.join(", ")}`,
        );
      }
      existing.workers.push(worker);
      existing.vacantSince = 0;
      return;
    }
    /** Vacant functions that own one of the routes: the new function takes over. */
    const taken = new Set<FunctionEntry<W>>();
    for (const route of wanted) {
      const owner = this.#table.get(route);
      if (!owner) continue;
      if (owner.workers.length > 0) {
        throw new RouteConflictError(`route ${route} belongs to function ${owner.name}`);
      }
      taken.add(owner);
    }
    if (!options.nestedRoutes) this.#checkNesting(wanted, taken);
    let size = this.#table.size + wanted.length;
    for (const owner of taken) size -= owner.routes.length;
    if (size > RouteLimits.maxRoutes) {
      throw new RouteConflictError(
        `function ${worker.name} would make ${size} routes; the gateway serves at most ${RouteLimits.maxRoutes}`,
      );
    }
    for (const owner of taken) this.#forget(owner);
    const entry: FunctionEntry<W> = {
      name: worker.name,
      routes: wanted,
      workers: [worker],
      next: 0,
      vacantSince: 0,
    };
    this.#byName.set(worker.name, entry);
    for (const route of wanted) this.#table.set(route, entry);
    this.#changed();
  }

  /** Refuse routes nested inside another function's route or containing
   * one (functions in `except` are being replaced). */
  #checkNesting(wanted: string[], except: Set<FunctionEntry<W>>): void {
    for (const route of wanted) {
      for (const { route: other, value: owner } of this.#table.entries()) {
        if (except.has(owner)) continue;
        const how = covers(other, route) ? "is inside" : covers(route, other) ? "contains" : "";
        if (how) {
          throw new RouteConflictError(
            `route ${route} ${how} route ${other} of function ${owner.name} ` +
              `(set nestedRoutes: true to allow it)`,
          );
        }
      }
    }
  }

  #forget(entry: FunctionEntry<W>): void {
    this.#byName.delete(entry.name);
    for (const route of entry.routes) {
      if (this.#table.get(route) === entry) this.#table.delete(route);
    }
    this.#changed();
  }

  #expired(entry: FunctionEntry<W>): boolean {
    return entry.vacantSince !== 0 && this.#now() - entry.vacantSince > this.#graceMs;
  }

  /** Forget the functions that have been vacant longer than the grace
   * period (the gateway calls it every second, so workers learn of it even
   * when no request asks); returns how many were forgotten.
   *
   * @example
   * ```ts
   * import { Router } from "./router.ts";
   * declare const router: Router;
   * router.sweep(); // 0
   * ```
   */
  sweep(): number {
    let n = 0;
    for (const entry of [...this.#byName.values()]) {
      if (this.#expired(entry)) {
        this.#forget(entry);
        n++;
      }
    }
    return n;
  }

  /** Forget a worker; a function with no worker left becomes vacant.
   *
   * @example
   * ```ts
   * import { Router, type WorkerRef } from "./router.ts";
   * declare const router: Router, worker: WorkerRef;
   * router.remove(worker);
   * ```
   */
  remove(worker: W): void {
    const entry = this.#byName.get(worker.name);
    if (!entry) return;
    const before = entry.workers.length;
    entry.workers = entry.workers.filter((w) => w !== worker);
    if (entry.workers.length === 0 && before > 0) entry.vacantSince = this.#now();
  }

  /** Whether `path` is served, vacant (503) or unknown (404).
   *
   * @example
   * ```ts
   * import { Router } from "./router.ts";
   * declare const router: Router;
   * router.status("/sum"); // "served"
   * ```
   */
  status(path: string): RouteStatus {
    const entry = this.#match(path)?.value;
    if (!entry) return "unknown";
    return entry.workers.length > 0 ? "served" : "vacant";
  }

  /** The function name serving `path`, or undefined.
   *
   * @example
   * ```ts
   * import { Router } from "./router.ts";
   * declare const router: Router;
   * router.functionFor("/sum/x"); // "sum"
   * ```
   */
  functionFor(path: string): string | undefined {
    return this.#match(path)?.value.name;
  }

  /** The longest route that covers `path`, forgetting expired functions on
   * the way (a shorter route of another function may then cover it). */
  #match(path: string): RouteMatch<FunctionEntry<W>> | undefined {
    for (;;) {
      const hit = this.#table.match(path);
      if (!hit || !this.#expired(hit.value)) return hit;
      this.#forget(hit.value);
    }
  }

  /** Like {@linkcode Router.pick}, and also the registered route that
   * matched (for metrics labels); never one of `exclude` (workers that
   * just refused the connection).
   *
   * @example
   * ```ts
   * import { Router } from "./router.ts";
   * declare const router: Router;
   * const hit = router.pickWithRoute("/sum/x"); // { worker, route: "/sum" }
   * ```
   */
  pickWithRoute(
    path: string,
    exclude?: ReadonlySet<W>,
  ): { worker: W; route: string } | undefined {
    const hit = this.#match(path);
    const worker = hit && this.#pick(hit.value, exclude);
    return worker ? { worker, route: hit.route } : undefined;
  }

  /** The worker that should take a connection whose request is for `path`:
   * of the function's workers, one holding the fewest connections.
   *
   * @example
   * ```ts
   * import { Router } from "./router.ts";
   * declare const router: Router;
   * const worker = router.pick("/sum");
   * ```
   */
  pick(path: string): W | undefined {
    const entry = this.#match(path)?.value;
    return entry && this.#pick(entry);
  }

  #pick(entry: FunctionEntry<W>, exclude?: ReadonlySet<W>): W | undefined {
    const ws = exclude?.size ? entry.workers.filter((w) => !exclude.has(w)) : entry.workers;
    if (ws.length <= 1) return ws[0];
    const best = leastHeld(ws, heldOf, entry.next);
    entry.next = (entry.next + 1) % ws.length;
    return best;
  }

  /** The workers serving function `name` now (none when it is unknown or
   * vacant).
   *
   * @example
   * ```ts
   * import { Router } from "./router.ts";
   * const router = new Router();
   * router.add({ name: "sum", pid: 42, held: 0 }, ["/sum"]);
   * console.log(router.workersOf("sum").length); // 1
   * ```
   */
  workersOf(name: string): readonly W[] {
    return this.#byName.get(name)?.workers ?? [];
  }

  /** Every function the router knows, with its routes and worker count.
   *
   * @example
   * ```ts
   * import { Router } from "./router.ts";
   * console.log(new Router().functions());
   * ```
   */
  functions(): { name: string; routes: string[]; workers: number }[] {
    this.sweep();
    return [...this.#byName.values()].map((e) => ({
      name: e.name,
      routes: e.routes,
      workers: e.workers.length,
    }));
  }

  /** The route table: every route and its function, vacant functions
   * included (their routes answer 503, and a worker must not keep a path
   * that falls under one of them). The body of a ROUTES message.
   *
   * @example
   * ```ts
   * import { Router } from "./router.ts";
   * const router = new Router();
   * router.add({ name: "sum", pid: 42, held: 0 }, ["/sum"]);
   * router.routes(); // { "/sum": "sum" }
   * ```
   */
  routes(): Record<string, string> {
    const routes: Record<string, string> = {};
    for (const { route, value } of this.#table.entries()) routes[route] = value.name;
    return routes;
  }
}
