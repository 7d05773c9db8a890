/**
 * A worker's answer to "is this request mine?": the route that serves the
 * path, found by the one route matcher (src/routing/route_table.ts) over the
 * gateway's route table, is one of this function's. Then a connection holds
 * the same route whichever process has it: a worker on "/a" hands "/a/b/c"
 * on when another function serves "/a/b", to the function the gateway would
 * route a new connection to.
 *
 * The table comes from the gateway in ROUTES messages; the newest version
 * wins. Before the first one, or once the gateway is gone, the worker uses a
 * table of its own routes only.
 *
 * @module
 */

import { RouteTable } from "./route_table.ts";
import { leastHeld } from "./balance.ts";

/** The gateway's route table as a worker takes it ({@linkcode WorkerRoutes.update}):
 * the body of its ROUTES messages (src/handoff/protocol.ts's `Routes`).
 *
 * @example
 * ```ts
 * import { type RouteTableUpdate, WorkerRoutes } from "./worker_routes.ts";
 * const table: RouteTableUpdate = { version: 7, routes: { "/sum": "sum", "/product": "product" } };
 * new WorkerRoutes("sum", ["/sum"]).update(table); // true
 * ```
 */
export interface RouteTableUpdate {
  /** Grows with every change of the table (per gateway process); a worker
   * keeps the newest it has seen. */
  version: number;
  /** Route → function name, for every function the gateway knows, vacant
   * ones (no worker right now) included, e.g. `{ "/sum": "sum" }`. */
  routes: Record<string, string>;
  /** How connections change worker: "direct" (worker to worker, through the
   * members' peer sockets) or "gateway" (back through the gateway). */
  handoff?: "direct" | "gateway";
  /** Function name → the pids of its workers that take direct handoffs now
   * (serving, listening on `peer-<pid>.sock`). */
  members?: Record<string, number[]>;
  /** The gateway has just started or taken over and its workers are still
   * registering: a path this table does not serve may yet be served (503,
   * not 404). */
  settling?: boolean;
  /** Function name → how many connections each of its `members` held at
   * the gateway's last look (same order): placers pick the least held. */
  held?: Record<string, number[]>;
}

/**
 * The route table a worker decides by.
 *
 * @example
 * ```ts
 * import { WorkerRoutes } from "./worker_routes.ts";
 * const routes = new WorkerRoutes("a", ["/a"]);
 * routes.routeOf("/a/b/c"); // "/a": only our own routes are known
 * routes.update({ version: 3, routes: { "/a": "a", "/a/b": "ab" } });
 * routes.routeOf("/a/b/c"); // undefined: function ab serves it
 * routes.routeOf("/a/x"); // "/a"
 * ```
 */
export class WorkerRoutes {
  /** This worker's function name. */
  readonly name: string;
  #own: RouteTable<string>;
  #table: RouteTable<string>;
  #version = -1;
  #direct = false;
  #members = new Map<string, number[]>();
  /** What each member held at the gateway's last look, plus what we
   * placed with it since (by pid). */
  #held = new Map<number, number>();
  #heldOf = (pid: number): number => this.#held.get(pid) ?? 0;
  #turn = 0;
  /** The gateway's table may still lack functions (it says so). */
  #settling = false;

  /** The view of function `name`, serving `routes` until a table arrives.
   *
   * @example
   * ```ts
   * import { WorkerRoutes } from "./worker_routes.ts";
   * new WorkerRoutes("sum", ["/sum"]);
   * ```
   */
  constructor(name: string, routes: readonly string[]) {
    this.name = name;
    this.#own = new RouteTable(routes.map((route) => [route, name] as const));
    this.#table = this.#own;
  }

  /** The version of the gateway's table in use, or -1 while using our own
   * routes only.
   *
   * @example
   * ```ts
   * import { WorkerRoutes } from "./worker_routes.ts";
   * new WorkerRoutes("sum", ["/sum"]).version; // -1
   * ```
   */
  get version(): number {
    return this.#version;
  }

  /** How many routes the table in use holds.
   *
   * @example
   * ```ts
   * import { WorkerRoutes } from "./worker_routes.ts";
   * new WorkerRoutes("sum", ["/sum"]).size; // 1
   * ```
   */
  get size(): number {
    return this.#table.size;
  }

  /** The route of ours that serves `path`, or undefined when the route that
   * serves it belongs to another function (or no route does).
   *
   * @example
   * ```ts
   * import { WorkerRoutes } from "./worker_routes.ts";
   * new WorkerRoutes("sum", ["/sum"]).routeOf("/sum/x"); // "/sum"
   * ```
   */
  routeOf(path: string): string | undefined {
    const hit = this.#table.match(path);
    return hit !== undefined && hit.value === this.name ? hit.route : undefined;
  }

  /** Whether some function (ours or another's, vacant or not) serves `path`.
   *
   * @example
   * ```ts
   * import { WorkerRoutes } from "./worker_routes.ts";
   * new WorkerRoutes("sum", ["/sum"]).serves("/nope"); // false
   * ```
   */
  serves(path: string): boolean {
    return this.#table.match(path) !== undefined;
  }

  /** Whether no function serves `path`, as far as we can know: a table
   * from the gateway is in use, and that gateway is not settling (its
   * workers registering again after a start or takeover). Only then is a
   * path answered 404; else 503 with Retry-After.
   *
   * @example
   * ```ts
   * import { WorkerRoutes } from "./worker_routes.ts";
   * const routes = new WorkerRoutes("sum", ["/sum"]);
   * routes.absent("/nope"); // false: no table from a gateway yet
   * routes.update({ version: 1, routes: { "/sum": "sum" }, settling: true });
   * routes.absent("/nope"); // false: its workers are still registering
   * routes.update({ version: 2, routes: { "/sum": "sum" } });
   * routes.absent("/nope"); // true
   * ```
   */
  absent(path: string): boolean {
    return this.#version >= 0 && !this.#settling && !this.serves(path);
  }

  /** Use the gateway's table if it is newer than the one in use; returns
   * whether it was taken (an older or equal version is ignored).
   *
   * @example
   * ```ts
   * import { WorkerRoutes } from "./worker_routes.ts";
   * const routes = new WorkerRoutes("sum", ["/sum"]);
   * routes.update({ version: 2, routes: { "/sum": "sum" } }); // true
   * routes.update({ version: 1, routes: {} }); // false
   * ```
   */
  update(body: RouteTableUpdate): boolean {
    if (body.version <= this.#version) return false;
    this.#settling = body.settling === true;
    this.#version = body.version;
    this.#table = new RouteTable(Object.entries(body.routes));
    this.#direct = body.handoff === "direct";
    this.#members = new Map(Object.entries(body.members ?? {}));
    this.#held.clear();
    for (const [name, counts] of Object.entries(body.held ?? {})) {
      const pids = this.#members.get(name) ?? [];
      counts.forEach((n, i) => this.#held.set(pids[i], n));
    }
    return true;
  }

  /** Where a path that is not ours goes in one hop (direct handoffs): the
   * function and route that serve it and a worker of that function (the
   * member holding the fewest, by the gateway's counts plus what we placed
   * since, ties in turn: src/routing/balance.ts), or undefined when the gateway must decide (the
   * gateway's mode, no table, no route, no member listening).
   *
   * @example
   * ```ts
   * import { WorkerRoutes } from "./worker_routes.ts";
   * const routes = new WorkerRoutes("sum", ["/sum"]);
   * routes.update({
   *   version: 1, routes: { "/sum": "sum", "/product": "product" },
   *   handoff: "direct", members: { product: [4242] },
   * });
   * routes.peerFor("/product"); // { fn: "product", route: "/product", pid: 4242 }
   * ```
   */
  peerFor(path: string): { fn: string; route: string; pid: number } | undefined {
    if (!this.#direct) return undefined;
    const hit = this.#table.match(path);
    if (hit === undefined || hit.value === this.name) return undefined;
    const pids = this.#members.get(hit.value);
    if (!pids || pids.length === 0) return undefined;
    const pid = leastHeld(pids, this.#heldOf, this.#turn++ % pids.length)!;
    this.#held.set(pid, this.#heldOf(pid) + 1); // until the next table says better
    return { fn: hit.value, route: hit.route, pid };
  }

  /** The gateway is gone: keep deciding by its last table (direct moves
   * between known functions go on), but take any version the next gateway
   * sends (it counts from the start again).
   *
   * @example
   * ```ts
   * import { WorkerRoutes } from "./worker_routes.ts";
   * declare const routes: WorkerRoutes;
   * routes.gatewayGone();
   * ```
   */
  gatewayGone(): void {
    this.#version = -1;
  }

  /** Forget the gateway's table: decide by our own routes until the next
   * table.
   *
   * @example
   * ```ts
   * import { WorkerRoutes } from "./worker_routes.ts";
   * declare const routes: WorkerRoutes;
   * routes.reset();
   * ```
   */
  reset(): void {
    this.#version = -1;
    this.#table = this.#own;
    this.#direct = false;
    this.#members.clear();
  }
}
