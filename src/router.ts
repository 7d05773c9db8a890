/**
 * The gateway's route table, filled only by workers' registrations: which
 * function serves a path, and which of its worker processes gets the next
 * connection (the one holding the fewest, so a pool shares the load).
 *
 * A route "/sum" matches the path "/sum" and every path below it
 * ("/sum/x"), never "/summary". The longest matching route wins.
 *
 * @module
 */

/** A registered worker process as the router sees it. */
export interface WorkerRef {
  /** Function name, e.g. "sum". */
  readonly name: string;
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
}

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
    const existing = this.#byName.get(worker.name);
    if (existing) {
      if (existing.routes.join("\n") !== wanted.join("\n")) {
        throw new RouteConflictError(
          `function ${worker.name} is already registered with routes ${existing.routes.join(", ")}`,
        );
      }
      existing.workers.push(worker);
      return;
    }
    for (const route of wanted) {
      const owner = this.#byRoute.get(route);
      if (owner) {
        throw new RouteConflictError(`route ${route} belongs to function ${owner.name}`);
      }
    }
    const entry: FunctionEntry<W> = {
      name: worker.name,
      routes: wanted,
      workers: [worker],
      next: 0,
    };
    this.#byName.set(worker.name, entry);
    for (const route of wanted) this.#byRoute.set(route, entry);
  }

  /** Forget a worker; a function with no worker left loses its routes.
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
    entry.workers = entry.workers.filter((w) => w !== worker);
    if (entry.workers.length > 0) return;
    this.#byName.delete(worker.name);
    for (const route of entry.routes) this.#byRoute.delete(route);
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
    const exact = this.#byRoute.get(path);
    if (exact) return exact;
    for (let i = path.lastIndexOf("/"); i > 0; i = path.lastIndexOf("/", i - 1)) {
      const hit = this.#byRoute.get(path.slice(0, i));
      if (hit) return hit;
    }
    return undefined;
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
    if (ws.length === 1) return ws[0];
    let best: W | undefined;
    for (let k = 0; k < ws.length; k++) {
      const w = ws[(entry.next + k) % ws.length];
      if (!best || w.held < best.held) best = w;
    }
    entry.next = (entry.next + 1) % ws.length;
    return best;
  }

  /** Registered functions with their routes and worker count.
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
