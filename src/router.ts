/**
 * The gateway's route table, filled only by workers' registrations: which
 * function serves a path, and which of its worker processes gets the next
 * connection (the one holding the fewest, so a pool shares the load).
 *
 * A route "/sum" matches the path "/sum" and every path below it
 * ("/sum/x"), never "/summary". The longest matching route wins. When a
 * function's last worker leaves, its routes stay known for a grace period
 * ("vacant": the gateway answers 503 while a restart is likely), then are
 * forgotten ("unknown": 404) unless a worker registers again.
 *
 * @module
 */

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
  #byRoute = new Map<string, FunctionEntry<W>>();
  #byName = new Map<string, FunctionEntry<W>>();
  #graceMs: number;
  /** The route #match last matched (valid right after a match). */
  #route = "";

  /** A router whose vacant functions are forgotten after `graceMs`.
   *
   * @example
   * ```ts
   * import { Router } from "./router.ts";
   * const router = new Router(30_000);
   * ```
   */
  constructor(graceMs = 30_000) {
    this.#graceMs = graceMs;
  }

  /** Register a worker for its function's routes. A function's workers must
   * all announce the same routes; a route belongs to one function.
   *
   * @example
   * ```ts
   * import { Router } from "./router.ts";
   * new Router().add({ name: "product", pid: 7, held: 0 }, ["/product"]);
   * ```
   */
  add(worker: W, routes: string[]): void {
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
    for (const route of wanted) {
      const owner = this.#byRoute.get(route);
      if (owner && owner.workers.length > 0) {
        throw new RouteConflictError(`route ${route} belongs to function ${owner.name}`);
      }
    }
    for (const route of wanted) {
      const owner = this.#byRoute.get(route);
      if (owner) this.#forget(owner); // vacant: the new function takes over
    }
    const entry: FunctionEntry<W> = {
      name: worker.name,
      routes: wanted,
      workers: [worker],
      next: 0,
      vacantSince: 0,
    };
    this.#byName.set(worker.name, entry);
    for (const route of wanted) this.#byRoute.set(route, entry);
  }

  #forget(entry: FunctionEntry<W>): void {
    this.#byName.delete(entry.name);
    for (const route of entry.routes) {
      if (this.#byRoute.get(route) === entry) this.#byRoute.delete(route);
    }
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
    if (entry.workers.length === 0 && before > 0) entry.vacantSince = Date.now();
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
    const entry = this.#match(path);
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
    return this.#match(path)?.name;
  }

  #match(path: string): FunctionEntry<W> | undefined {
    this.#route = path;
    let hit = this.#byRoute.get(path);
    for (let i = path.lastIndexOf("/"); !hit && i > 0; i = path.lastIndexOf("/", i - 1)) {
      this.#route = path.slice(0, i);
      hit = this.#byRoute.get(this.#route);
    }
    if (hit && hit.vacantSince !== 0 && Date.now() - hit.vacantSince > this.#graceMs) {
      this.#forget(hit);
      return undefined;
    }
    return hit;
  }

  /** Like {@linkcode Router.pick}, and also the registered route that
   * matched (for metrics labels).
   *
   * @example
   * ```ts
   * import { Router } from "./router.ts";
   * declare const router: Router;
   * const hit = router.pickWithRoute("/sum/x"); // { worker, route: "/sum" }
   * ```
   */
  pickWithRoute(path: string): { worker: W; route: string } | undefined {
    const worker = this.pick(path);
    return worker ? { worker, route: this.#route } : undefined;
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
    const entry = this.#match(path);
    if (!entry) return undefined;
    const ws = entry.workers;
    if (ws.length <= 1) return ws[0];
    let best: W | undefined;
    for (let k = 0; k < ws.length; k++) {
      const w = ws[(entry.next + k) % ws.length];
      if (!best || w.held < best.held) best = w;
    }
    entry.next = (entry.next + 1) % ws.length;
    return best;
  }

  /** Registered functions (vacant ones included) with routes and worker count.
   *
   * @example
   * ```ts
   * import { Router } from "./router.ts";
   * console.log(new Router().functions());
   * ```
   */
  functions(): { name: string; routes: string[]; workers: number }[] {
    return [...this.#byName.values()].map((e) => ({
      name: e.name,
      routes: e.routes,
      workers: e.workers.length,
    }));
  }
}
