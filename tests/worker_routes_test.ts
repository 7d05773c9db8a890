import assert from "node:assert/strict";
import { WorkerRoutes } from "../src/routing/worker_routes.ts";

Deno.test("before the gateway's table a worker serves its own routes only", () => {
  const r = new WorkerRoutes("a", ["/a", "/z"]);
  assert.equal(r.version, -1);
  assert.equal(r.routeOf("/a"), "/a");
  assert.equal(r.routeOf("/a/b/c"), "/a");
  assert.equal(r.routeOf("/z/1"), "/z");
  assert.equal(r.routeOf("/ab"), undefined);
  assert.equal(r.routeOf("/other"), undefined);
});

Deno.test("with the gateway's table, a path is ours iff its longest route is our function's", () => {
  const r = new WorkerRoutes("a", ["/a"]);
  assert.equal(r.update({ version: 4, routes: { "/a": "a", "/a/b": "ab", "/sum": "sum" } }), true);
  assert.equal(r.version, 4);
  assert.equal(r.size, 3);
  assert.equal(r.routeOf("/a/x"), "/a");
  assert.equal(r.routeOf("/a/bc"), "/a");
  assert.equal(r.routeOf("/a/b"), undefined);
  assert.equal(r.routeOf("/a/b/c"), undefined);
  assert.equal(r.routeOf("/sum"), undefined);
  assert.equal(r.routeOf("/nowhere"), undefined);
  const ab = new WorkerRoutes("ab", ["/a/b"]);
  ab.update({ version: 4, routes: { "/a": "a", "/a/b": "ab" } });
  assert.equal(ab.routeOf("/a/b/c"), "/a/b");
  assert.equal(ab.routeOf("/a/x"), undefined);
});

Deno.test("the newest table wins; older and equal versions are ignored; reset goes back to ours", () => {
  const r = new WorkerRoutes("a", ["/a"]);
  r.update({ version: 5, routes: { "/a": "a", "/a/b": "ab" } });
  assert.equal(r.update({ version: 3, routes: { "/a": "a" } }), false);
  assert.equal(r.update({ version: 5, routes: { "/a": "a" } }), false);
  assert.equal(r.routeOf("/a/b/c"), undefined, "still version 5");
  assert.equal(r.update({ version: 6, routes: { "/a": "a" } }), true);
  assert.equal(r.routeOf("/a/b/c"), "/a");
  r.update({ version: 7, routes: { "/a": "a", "/a/b": "ab" } });
  r.reset(); // the gateway is gone
  assert.equal(r.version, -1);
  assert.equal(r.routeOf("/a/b/c"), "/a");
  assert.equal(
    r.update({ version: 0, routes: { "/a": "a", "/a/b": "ab" } }),
    true,
    "a new gateway",
  );
  assert.equal(r.routeOf("/a/b/c"), undefined);
});

Deno.test("a table without our function leaves us nothing; a vacant function's paths are not ours", () => {
  const r = new WorkerRoutes("a", ["/a"]);
  r.update({ version: 1, routes: { "/b": "b" } });
  assert.equal(r.routeOf("/a"), undefined);
  r.update({ version: 2, routes: { "/a": "a", "/a/b": "restarting" } });
  assert.equal(r.routeOf("/a/b/1"), undefined);
});
