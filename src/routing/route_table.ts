/**
 * The one route matcher: which registered route, and so which function,
 * serves a path. The gateway's router and every worker answer that question
 * with this module, so a request goes to the same function whichever
 * process holds its connection.
 *
 * The rule: a route covers the path equal to it and every path below it at a
 * "/" boundary ("/sum" covers "/sum" and "/sum/x", never "/summary"); a route
 * that ends with "/" covers the paths that start with it ("/" covers every
 * path). Of the routes that cover a path, the longest wins.
 *
 * @module
 */

/** What the gateway's route table may hold: its ROUTES message, which
 * carries the whole table to every worker, must fit one control message
 * (src/handoff/wire.ts's `Limits` carries these same numbers).
 *
 * @example
 * ```ts
 * import { RouteLimits } from "./route_table.ts";
 * const fits = (route: string) => route.length <= RouteLimits.maxRouteLength;
 * ```
 */
export const RouteLimits = {
  /** Most routes the gateway serves in all (so the ROUTES table fits). */
  maxRoutes: 128,
  /** Longest route, in bytes. */
  maxRouteLength: 256,
} as const;

/** A route of a {@linkcode RouteTable} and what it maps to.
 *
 * @example
 * ```ts
 * import { type RouteMatch, RouteTable } from "./route_table.ts";
 * const hit: RouteMatch<string> | undefined = new RouteTable([["/sum", "sum"]]).match("/sum/x");
 * console.log(hit?.route, hit?.value); // "/sum" "sum"
 * ```
 */
export interface RouteMatch<T> {
  /** The registered route, e.g. "/sum". */
  readonly route: string;
  /** What it maps to, e.g. the function name "sum". */
  readonly value: T;
}

/** Whether `route` covers `path`: equal to it, or `path` lies below it.
 *
 * @example
 * ```ts
 * import { covers } from "./route_table.ts";
 * covers("/sum", "/sum/x"); // true
 * covers("/sum", "/summary"); // false
 * covers("/", "/anything"); // true
 * ```
 */
export function covers(route: string, path: string): boolean {
  if (!path.startsWith(route)) return false;
  return path.length === route.length || route.endsWith("/") || path[route.length] === "/";
}

/**
 * Routes and what each maps to, matched by the longest covering route.
 * A lookup costs one map lookup per "/" in the path at most and allocates
 * nothing when the path itself is a route.
 *
 * @example
 * ```ts
 * import { RouteTable } from "./route_table.ts";
 * const table = new RouteTable([["/a", "x"], ["/a/b", "y"]]);
 * table.match("/a/b/c"); // { route: "/a/b", value: "y" }
 * table.match("/a/bc"); // { route: "/a", value: "x" }
 * table.match("/b"); // undefined
 * ```
 */
export class RouteTable<T> {
  #byRoute = new Map<string, RouteMatch<T>>();

  /** A table holding `entries` (route, value).
   *
   * @example
   * ```ts
   * import { RouteTable } from "./route_table.ts";
   * const table = new RouteTable(Object.entries({ "/sum": "sum", "/product": "product" }));
   * ```
   */
  constructor(entries: Iterable<readonly [string, T]> = []) {
    for (const [route, value] of entries) this.set(route, value);
  }

  /** How many routes the table holds.
   *
   * @example
   * ```ts
   * import { RouteTable } from "./route_table.ts";
   * new RouteTable([["/sum", "sum"]]).size; // 1
   * ```
   */
  get size(): number {
    return this.#byRoute.size;
  }

  /** Map `route` to `value` (replacing what it mapped to).
   *
   * @example
   * ```ts
   * import { RouteTable } from "./route_table.ts";
   * const table = new RouteTable<string>();
   * table.set("/sum", "sum");
   * ```
   */
  set(route: string, value: T): void {
    this.#byRoute.set(route, { route, value });
  }

  /** What `route` itself maps to (no matching), or undefined.
   *
   * @example
   * ```ts
   * import { RouteTable } from "./route_table.ts";
   * new RouteTable([["/sum", "sum"]]).get("/sum"); // "sum"
   * ```
   */
  get(route: string): T | undefined {
    return this.#byRoute.get(route)?.value;
  }

  /** Remove `route`; true if it was there.
   *
   * @example
   * ```ts
   * import { RouteTable } from "./route_table.ts";
   * new RouteTable([["/sum", "sum"]]).delete("/sum"); // true
   * ```
   */
  delete(route: string): boolean {
    return this.#byRoute.delete(route);
  }

  /** Every route with its value, in insertion order.
   *
   * @example
   * ```ts
   * import { RouteTable } from "./route_table.ts";
   * for (const { route, value } of new RouteTable([["/sum", "sum"]]).entries()) {
   *   console.log(route, value);
   * }
   * ```
   */
  entries(): IterableIterator<RouteMatch<T>> {
    return this.#byRoute.values();
  }

  /** The longest route that covers `path` (see {@linkcode covers}), or
   * undefined when none does.
   *
   * @example
   * ```ts
   * import { RouteTable } from "./route_table.ts";
   * const table = new RouteTable([["/sum", "sum"], ["/sum/admin", "admin"]]);
   * table.match("/sum/admin/users")?.value; // "admin"
   * table.match("/sum/x")?.route; // "/sum"
   * ```
   */
  match(path: string): RouteMatch<T> | undefined {
    const byRoute = this.#byRoute;
    const exact = byRoute.get(path);
    if (exact) return exact;
    // Longest first: at each "/" from the end, the route ending with that
    // "/" ("/a/" covers "/a/x"), then the route just before it ("/a").
    for (
      let i = path.lastIndexOf("/");
      i >= 0;
      i = i > 0 ? path.lastIndexOf("/", i - 1) : -1
    ) {
      if (i + 1 < path.length) {
        const hit = byRoute.get(path.slice(0, i + 1));
        if (hit) return hit;
      }
      if (i > 0) {
        const hit = byRoute.get(path.slice(0, i));
        if (hit) return hit;
      }
    }
    return undefined;
  }
}
