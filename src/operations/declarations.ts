/**
 * What each function claims, asked before it runs: the launcher starts a
 * function's file once with HOTPOTATO_DESCRIBE=1 (as its own user, with its
 * own permissions), and `serveFunction` prints its name, routes and whether
 * they may nest under another function's, then exits. The launcher checks
 * the set (one owner per route, no function nesting under another's routes
 * unless the operator allows it, the name the file gives is the one the
 * launcher runs it as) and declares it to the gateway
 * (`--function-routes`): a function then registers those routes or none, so
 * it cannot take another function's traffic by registering its routes
 * first, or a route nested under them.
 *
 * @module
 */

import { covers } from "../routing/route_table.ts";

/** What a function's file says it serves. */
export interface Declaration {
  /** The function as the launcher names it (`--function NAME=FILE`). */
  fn: string;
  /** The name the file registers with. */
  name: string;
  /** Its routes. */
  routes: string[];
  /** Its routes may nest with other functions'. */
  nestedRoutes: boolean;
}

/**
 * The declaration in a describe run's output (`hotpotato-describe {...}`),
 * or why there is none.
 *
 * @example
 * ```ts
 * import { parseDeclaration } from "./declarations.ts";
 * const d = parseDeclaration("sum", 'hotpotato-describe {"name":"sum","routes":["/sum"],"nestedRoutes":false}\n');
 * ```
 */
export function parseDeclaration(fn: string, output: string): Declaration | string {
  const line = output.split("\n").find((l) => l.startsWith("hotpotato-describe "));
  if (!line) return "it did not say what it serves (does the file call serveFunction?)";
  let o: { name?: unknown; routes?: unknown; nestedRoutes?: unknown };
  try {
    o = JSON.parse(line.slice("hotpotato-describe ".length));
  } catch {
    return "what it said is not JSON";
  }
  const routes = o.routes;
  if (
    typeof o.name !== "string" || !Array.isArray(routes) || routes.length === 0 ||
    routes.length > 64 || !routes.every((r) => typeof r === "string" && r.startsWith("/"))
  ) {
    return "what it said is not a name with a list of routes";
  }
  return { fn, name: o.name, routes: routes as string[], nestedRoutes: o.nestedRoutes === true };
}

/**
 * What is wrong with a set of declarations (empty when nothing is): a file
 * that gives another name than the launcher's, a route claimed twice, a route
 * nested under another function's unless both functions allow nesting and the
 * operator named the inner one in `allowNested` (HOTPOTATO_ALLOW_NESTED).
 *
 * @example
 * ```ts
 * import { declarationProblems } from "./declarations.ts";
 * const problems = declarationProblems([
 *   { fn: "sum", name: "sum", routes: ["/sum"], nestedRoutes: false },
 *   { fn: "evil", name: "evil", routes: ["/sum/x"], nestedRoutes: true },
 * ], new Set());
 * console.log(problems); // evil's /sum/x is under sum's /sum ...
 * ```
 */
export function declarationProblems(
  decls: readonly Declaration[],
  allowNested: ReadonlySet<string>,
): string[] {
  const problems: string[] = [];
  for (const d of decls) {
    if (d.name !== d.fn) {
      problems.push(`${d.fn}'s file registers as ${JSON.stringify(d.name)}, not ${d.fn}`);
    }
  }
  for (const a of decls) {
    for (const b of decls) {
      if (a.fn >= b.fn && a !== b) continue;
      if (a === b) continue;
      for (const ra of a.routes) {
        for (const rb of b.routes) {
          if (ra === rb) {
            problems.push(`${a.fn} and ${b.fn} both claim ${ra}`);
            continue;
          }
          const [inner, innerRoute, outer, outerRoute] = covers(rb, ra)
            ? [a, ra, b, rb]
            : covers(ra, rb)
            ? [b, rb, a, ra]
            : [];
          if (!inner || !outer) continue;
          const allowed = inner.nestedRoutes && outer.nestedRoutes && allowNested.has(inner.fn);
          if (!allowed) {
            problems.push(
              `${inner.fn}'s ${innerRoute} is under ${outer.fn}'s ${outerRoute}: ` +
                `nesting needs both to allow it and HOTPOTATO_ALLOW_NESTED=${inner.fn}`,
            );
          }
        }
      }
    }
  }
  return problems;
}
