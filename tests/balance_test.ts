/**
 * One balancing policy for every placer (src/routing/balance.ts): the
 * least held worker, ties in turn. The gateway's router and a worker's or
 * satellite's direct moves (WorkerRoutes.peerFor, counts from the
 * gateway's table plus its own placements) pick alike.
 */

import assert from "node:assert/strict";
import { leastHeld } from "../src/routing/balance.ts";
import { Router } from "../src/routing/router.ts";
import { WorkerRoutes } from "../src/routing/worker_routes.ts";

Deno.test("leastHeld: the fewest wins; ties are taken in turn; an empty pool has none", () => {
  const pool = [{ pid: 1, held: 2 }, { pid: 2, held: 0 }, { pid: 3, held: 0 }, { pid: 4, held: 5 }];
  const held = (w: { held: number }) => w.held;
  assert.equal(leastHeld(pool, held, 0)?.pid, 2);
  assert.equal(leastHeld(pool, held, 2)?.pid, 3);
  assert.equal(leastHeld(pool, held, 3)?.pid, 2, "wraps around");
  assert.equal(leastHeld([], held, 0), undefined);
});

Deno.test("a worker's direct moves go to the least held member, counting its own placements", () => {
  const routes = new WorkerRoutes("sum", ["/sum"]);
  routes.update({
    version: 1,
    routes: { "/sum": "sum", "/product": "product" },
    handoff: "direct",
    members: { product: [10, 11, 12] },
    held: { product: [4, 1, 2] },
  });
  const picks = Array.from({ length: 6 }, () => routes.peerFor("/product")!.pid);
  // 11 (1) -> 11 (2) or 12 (2) in turn -> ... never 10 until the others reach 4.
  assert.equal(picks[0], 11);
  assert.ok(!picks.slice(0, 5).includes(10), picks.join(" "));
  const count = (pid: number) => picks.filter((p) => p === pid).length;
  assert.ok(Math.abs(count(11) + 1 - (count(12) + 2)) <= 1, picks.join(" "));
  // A new table's counts replace what was counted locally.
  routes.update({
    version: 2,
    routes: { "/sum": "sum", "/product": "product" },
    handoff: "direct",
    members: { product: [10, 11, 12] },
    held: { product: [0, 9, 9] },
  });
  assert.equal(routes.peerFor("/product")!.pid, 10);
});

Deno.test("the gateway's router and a worker's table pick the same member from the same counts", () => {
  const router = new Router<{ name: string; pid: number; held: number }>();
  const ws = [{ name: "p", pid: 21, held: 3 }, { name: "p", pid: 22, held: 0 }, {
    name: "p",
    pid: 23,
    held: 1,
  }];
  for (const w of ws) router.add(w, ["/p"]);
  const table = new WorkerRoutes("q", ["/q"]);
  table.update({
    version: 1,
    routes: { "/p": "p", "/q": "q" },
    handoff: "direct",
    members: { p: ws.map((w) => w.pid) },
    held: { p: ws.map((w) => w.held) },
  });
  assert.equal(router.pickWithRoute("/p")!.worker.pid, 22);
  assert.equal(table.peerFor("/p")!.pid, 22);
});
