import assert from "node:assert/strict";
import { RouteConflictError, Router, type WorkerRef } from "../src/router.ts";

const w = (name: string, pid: number): WorkerRef => ({ name, pid, held: 0 });

Deno.test("routes match exactly or below a path segment, longest first", () => {
  const r = new Router();
  const sum = w("sum", 1), deep = w("deep", 2);
  r.add(sum, ["/sum"]);
  r.add(deep, ["/sum/deep"]);
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

Deno.test("a vacant function is forgotten after the grace period", async () => {
  const r = new Router(30);
  const a = w("sum", 1);
  r.add(a, ["/sum"]);
  r.remove(a);
  assert.equal(r.status("/sum"), "vacant");
  await new Promise((ok) => setTimeout(ok, 60));
  assert.equal(r.status("/sum"), "unknown");
  assert.deepEqual(r.functions(), []);
});
