import assert from "node:assert/strict";
import { Limits } from "../src/handoff/protocol.ts";
import { RouteConflictError, Router, type WorkerRef } from "../src/routing/router.ts";

const w = (name: string, pid: number): WorkerRef => ({ name, pid, held: 0 });

Deno.test("routes match exactly or below a path segment, longest first", () => {
  const r = new Router();
  const sum = w("sum", 1), deep = w("deep", 2);
  r.add(sum, ["/sum"]);
  r.add(deep, ["/sum/deep"], { nestedRoutes: true });
  assert.equal(r.pick("/sum"), sum);
  assert.equal(r.pick("/sum/x"), sum);
  assert.equal(r.pick("/sum/deep/y"), deep);
  assert.equal(r.pick("/summary"), undefined);
  assert.equal(r.pick("/"), undefined);
});

Deno.test("a route belongs to one function; a function's workers share its routes", () => {
  const r = new Router();
  r.add(w("sum", 1), ["/sum"]);
  assert.throws(() => r.add(w("other", 2), ["/x", "/sum"]), RouteConflictError);
  assert.equal(r.pick("/x"), undefined, "a refused registration adds nothing");
  assert.throws(() => r.add(w("sum", 3), ["/sum", "/more"]), RouteConflictError);
  r.add(w("sum", 4), ["/sum"]);
  assert.deepEqual(r.functions(), [{ name: "sum", routes: ["/sum"], workers: 2 }]);
});

Deno.test("pick spreads over a pool by held connections; removal leaves the route vacant", () => {
  const r = new Router();
  const a = w("sum", 1), b = w("sum", 2);
  r.add(a, ["/sum"]);
  r.add(b, ["/sum"]);
  a.held = 5;
  assert.equal(r.pick("/sum"), b);
  b.held = 9;
  assert.equal(r.pick("/sum"), a);
  r.remove(a);
  assert.equal(r.pick("/sum"), b);
  r.remove(b);
  assert.equal(r.pick("/sum"), undefined);
  assert.equal(r.status("/sum"), "vacant");
  assert.equal(r.status("/other"), "unknown");
  r.add(w("new", 3), ["/sum"]);
  assert.equal(r.functionFor("/sum"), "new", "another function may take a vacant route");
  assert.equal(r.status("/sum"), "served");
});

Deno.test("a vacant function is forgotten after the grace period", () => {
  let now = 1000;
  const r = new Router(30, undefined, () => now);
  const a = w("sum", 1);
  r.add(a, ["/sum"]);
  r.remove(a);
  assert.equal(r.status("/sum"), "vacant");
  now += 30;
  assert.equal(r.status("/sum"), "vacant", "the grace period itself is still vacant");
  now += 1;
  assert.equal(r.status("/sum"), "unknown");
  assert.deepEqual(r.functions(), []);
});

Deno.test("a route inside another function's route is refused unless nesting is allowed", () => {
  const r = new Router();
  r.add(w("sum", 1), ["/sum"]);
  assert.throws(
    () => r.add(w("admin", 2), ["/sum/admin"]),
    new RouteConflictError(
      "route /sum/admin is inside route /sum of function sum (set nestedRoutes: true to allow it)",
    ),
  );
  assert.throws(() => r.add(w("admin", 2), ["/sum/"]), /route \/sum\/ is inside route \/sum /);
  assert.equal(r.functionFor("/sum/admin"), "sum", "a refused registration adds nothing");
  r.add(w("summary", 3), ["/summary"]); // a string prefix is not nesting
  r.add(w("admin", 2), ["/sum/admin"], { nestedRoutes: true });
  assert.equal(r.functionFor("/sum/admin/x"), "admin");
  assert.equal(r.functionFor("/sum/x"), "sum");
});

Deno.test("a route containing another function's route is refused unless nesting is allowed", () => {
  const r = new Router();
  r.add(w("ab", 1), ["/a/b"]);
  assert.throws(
    () => r.add(w("a", 2), ["/x", "/a"]),
    new RouteConflictError(
      "route /a contains route /a/b of function ab (set nestedRoutes: true to allow it)",
    ),
  );
  assert.throws(() => r.add(w("root", 3), ["/"]), /route \/ contains route \/a\/b of function ab/);
  assert.equal(r.functionFor("/x"), undefined, "a refused registration adds nothing");
  r.add(w("a", 2), ["/x", "/a"], { nestedRoutes: true });
  assert.equal(r.functionFor("/a/b/c"), "ab");
  assert.equal(r.functionFor("/a/c"), "a");
  r.add(w("self", 4), ["/s", "/s/t"]); // a function may nest its own routes
  assert.equal(r.functionFor("/s/t/u"), "self");
});

Deno.test("a vacant function keeps its subtree; a function taking its route over does not nest with it", () => {
  const r = new Router(60_000);
  const sum = w("sum", 1);
  r.add(sum, ["/sum", "/sum/old"]);
  r.remove(sum);
  assert.equal(r.status("/sum/x"), "vacant");
  assert.throws(() => r.add(w("admin", 2), ["/sum/admin"]), /inside route \/sum of function sum/);
  // Taking /sum over forgets the vacant function, /sum/old included.
  r.add(w("new", 3), ["/sum"]);
  assert.deepEqual(r.routes(), { "/sum": "new" });
});

Deno.test(`at most ${Limits.maxRoutes} routes in all, so the table fits one ROUTES message`, () => {
  const r = new Router();
  for (let f = 0; f < Limits.maxRoutes / 64; f++) {
    r.add(w(`f${f}`, f + 1), Array.from({ length: 64 }, (_, i) => `/f${f}/${i}`));
  }
  assert.throws(
    () => r.add(w("one-more", 99), ["/one-more"]),
    new RouteConflictError(
      `function one-more would make ${Limits.maxRoutes + 1} routes; ` +
        `the gateway serves at most ${Limits.maxRoutes}`,
    ),
  );
});

Deno.test("the table's version and change reports: functions added and forgotten, not pool workers", () => {
  let changes = 0;
  let now = 1000;
  const r = new Router(30, () => changes++, () => now);
  const a = w("sum", 1), b = w("sum", 2);
  r.add(a, ["/sum"]);
  assert.equal(changes, 1);
  const v1 = r.version;
  r.add(b, ["/sum"]);
  r.remove(a);
  r.remove(b); // vacant: still in the table, with its function
  assert.equal(changes, 1);
  assert.equal(r.version, v1);
  assert.deepEqual(r.routes(), { "/sum": "sum" });
  assert.equal(r.sweep(), 0);
  now += 31;
  assert.equal(r.sweep(), 1);
  assert.equal(changes, 2);
  assert.ok(r.version > v1);
  assert.deepEqual(r.routes(), {});
});

Deno.test("a forgotten nested function gives its paths back to the route around it", () => {
  let now = 1000;
  const r = new Router(30, undefined, () => now);
  const a = w("a", 1), ab = w("ab", 2);
  r.add(a, ["/a"]);
  r.add(ab, ["/a/b"], { nestedRoutes: true });
  r.remove(ab);
  assert.equal(r.status("/a/b/c"), "vacant");
  assert.equal(r.pick("/a/b/c"), undefined);
  now += 31;
  assert.deepEqual(r.pickWithRoute("/a/b/c"), { worker: a, route: "/a" });
});
