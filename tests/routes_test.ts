// handoff-mode: both
/**
 * One route matcher, end to end with real processes: a connection goes to
 * the function of the longest route whichever process holds it (workers
 * decide over the gateway's ROUTES table), a route nested inside or around
 * another function's route is refused unless the function sets
 * nestedRoutes, and vacant and forgotten functions reach the workers'
 * tables.
 */

import assert from "node:assert/strict";
import { Client, HANDOFF_MODE, type HttpResponse, Proc, System } from "./support/system.ts";

const A = "tests/fixtures/route_a.ts";
const A_B = "tests/fixtures/route_a_b.ts";
const SUM_ADMIN = "tests/fixtures/sum_admin.ts";
const NESTED = { HOTPOTATO_TEST_NESTED_ROUTES: "1" };
/** Workers log each route table they take at debug. */
const DEBUG = ["--log-level", "debug"];

const holder = (res: HttpResponse) => res.headers.get("x-hotpotato-worker");
const handoffs = (res: HttpResponse) => Number(res.headers.get("x-hotpotato-handoffs"));

/** Wait until `p` logs that it took a route table of `count` routes, in a
 * line after the first `since` lines. */
async function tableOf(p: Proc, count: number, since: number, timeoutMs = 10_000) {
  const re = new RegExp(`route table version \\d+ from the gateway: ${count} route`);
  const until = Date.now() + timeoutMs;
  while (!p.lines.slice(since).some((l) => re.test(l))) {
    if (Date.now() > until) {
      throw new Error(`${p.name}: no table of ${count} routes:\n${p.lines.slice(-10).join("\n")}`);
    }
    await new Promise((ok) => setTimeout(ok, 20));
  }
}

/** The exit code of a process expected to stop by itself; kills it if it
 * is still running after `timeoutMs`. */
async function exitCode(p: Proc, timeoutMs = 15_000): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"running">((ok) =>
    timer = setTimeout(() => ok("running"), timeoutMs)
  );
  const status = await Promise.race([p.child.status, timeout]);
  clearTimeout(timer);
  if (status === "running") {
    await p.stop("SIGKILL");
    throw new Error(`${p.name} still runs after ${timeoutMs} ms:\n${p.lines.join("\n")}`);
  }
  await p.done;
  return status.code;
}

Deno.test("a held connection goes to the function of the longest route, as a new one does", async () => {
  const sys = await System.start({ workers: [] });
  const clients: Client[] = [];
  try {
    const a = await sys.addWorker("a", A, DEBUG, NESTED);
    await tableOf(a, 1, 0);
    const client = await Client.connect(sys.port);
    clients.push(client);
    let res = await client.get("/a/x");
    assert.equal(holder(res), `a/${a.child.pid}`);

    // Function a-b registers while a holds the connection: a gets the new table.
    const since = a.lines.length;
    const ab = await sys.addWorker("a-b", A_B, [], NESTED);
    await tableOf(a, 2, since);
    res = await client.get("/a/b/c");
    assert.equal(res.status, 200);
    assert.equal(holder(res), `a-b/${ab.child.pid}`, "a hands /a/b/c to a-b");
    assert.deepEqual(JSON.parse(res.body), { function: "a-b", path: "/a/b/c" });
    assert.equal(handoffs(res), 2, "to a, then (via the gateway) to a-b");

    res = await client.get("/a/bc"); // not under /a/b
    assert.equal(holder(res), `a/${a.child.pid}`);
    res = await client.get("/a/b");
    assert.equal(holder(res), `a-b/${ab.child.pid}`);

    const fresh = await Client.connect(sys.port);
    clients.push(fresh);
    res = await fresh.get("/a/b/c");
    assert.equal(holder(res), `a-b/${ab.child.pid}`, "a new connection goes to a-b too");
    assert.equal(handoffs(res), 1);
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});

Deno.test("a vacant nested function keeps its paths (503); once forgotten they are the outer route's, without a move", async () => {
  const sys = await System.start({ workers: [], gatewayArgs: ["--vacant-grace", "1"] });
  const client = await Client.connect(sys.port);
  try {
    const a = await sys.addWorker("a", A, DEBUG, NESTED);
    const ab = await sys.addWorker("a-b", A_B, [], NESTED);
    await tableOf(a, 2, 0);
    assert.equal(holder(await client.get("/a/x")), `a/${a.child.pid}`);

    await ab.stop(); // drains and leaves: a-b is vacant, still in a's table
    sys.workers = sys.workers.filter((w) => w !== ab);
    await sys.gateway.waitFor(/worker a-b\/\d+ (disconnected|left after draining)/);
    // Another function arrives: the table a gets keeps the vacant /a/b.
    let since = a.lines.length;
    await sys.addWorker("sum", "workers/sum.ts");
    await tableOf(a, 3, since);
    let res = await client.get("/a/b/c");
    assert.equal(res.status, 503, "not answered by a: /a/b belongs to a restarting function");
    assert.equal(res.headers.get("retry-after"), "1");
    // a answers it: the gateway refuses a connection it cannot place rather
    // than import a function's TLS state.
    assert.equal(holder(res), `a/${a.child.pid}`);

    res = await client.get("/a/x");
    assert.equal(holder(res), `a/${a.child.pid}`);
    const moved = handoffs(res);
    // After --vacant-grace the gateway forgets a-b (its 1 s watchdog, with no
    // request asking) and tells a.
    since = a.lines.length;
    await tableOf(a, 2, since); // /a and /sum
    res = await client.get("/a/b/c");
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body), { function: "a", path: "/a/b/c" });
    assert.equal(handoffs(res), moved, "a kept the connection: no trip to the gateway");
  } finally {
    client.close();
    await sys.stop();
  }
});

Deno.test("with the gateway gone a worker keeps deciding by its last table", async () => {
  const sys = await System.start({ workers: [] });
  const client = await Client.connect(sys.port);
  try {
    const a = await sys.addWorker("a", A, DEBUG, NESTED);
    const ab = await sys.addWorker("a-b", A_B, [], NESTED);
    await tableOf(a, 2, 0);
    assert.equal(holder(await client.get("/a/x")), `a/${a.child.pid}`);
    await sys.gateway.stop("SIGKILL");
    await a.waitFor(/gateway went away/);
    // /a/b/c is a-b's by the table a knows: never answered by a. Direct
    // mode moves it to a-b in one hop without the gateway; in gateway mode
    // it cannot move: a 503, and the connection stays open.
    const res = await client.get("/a/b/c");
    if (HANDOFF_MODE === "direct") {
      assert.equal(res.status, 200, res.body);
      assert.equal(holder(res), `a-b/${ab.child.pid}`);
      assert.deepEqual(JSON.parse(res.body), { function: "a-b", path: "/a/b/c" });
    } else {
      assert.equal(res.status, 503, res.body);
      assert.equal(holder(res), `a/${a.child.pid}`);
    }
    assert.equal((await client.get("/a/y")).status, 200);
  } finally {
    client.close();
    await sys.stop();
  }
});

Deno.test("a route inside another function's route is refused without nestedRoutes, served with it", async () => {
  const sys = await System.start({ workers: [{ name: "sum", file: "workers/sum.ts" }] });
  try {
    const refused = new Proc("sum-admin", SUM_ADMIN, ["--control", sys.control]);
    assert.equal(await exitCode(refused), 1);
    const error = "route /sum/admin is inside route /sum of function sum " +
      "(set nestedRoutes: true to allow it)";
    assert.ok(
      refused.lines.some((l) => l.includes(`refused registration: ${error}`)),
      refused.lines.join("\n"),
    );
    await sys.gateway.waitFor(/refused worker sum-admin\/\d+: route \/sum\/admin is inside/);
    assert.ok(sys.gateway.lines.some((l) => l.includes(error)));

    const admin = await sys.addWorker("sum-admin", SUM_ADMIN, [], NESTED);
    const sum = sys.worker("sum");
    const client = await Client.connect(sys.port);
    let res = await client.get("/sum?a=1&b=2");
    assert.equal(holder(res), `sum/${sum.child.pid}`);
    assert.equal(JSON.parse(res.body).result, "3");
    res = await client.get("/sum/admin/users");
    assert.equal(holder(res), `sum-admin/${admin.child.pid}`, "sum hands it on");
    assert.deepEqual(JSON.parse(res.body), { function: "sum-admin", path: "/sum/admin/users" });
    res = await client.get("/sum/other?a=2&b=2");
    assert.equal(holder(res), `sum/${sum.child.pid}`);
    res = await client.get("/summary");
    assert.equal(res.status, 404, "/summary is under neither route");
    client.close();
  } finally {
    await sys.stop();
  }
});

Deno.test("a route containing another function's route is refused without nestedRoutes, served with it", async () => {
  const sys = await System.start({ workers: [] });
  try {
    const ab = await sys.addWorker("a-b", A_B); // nothing to nest with yet: accepted
    const refused = new Proc("a", A, ["--control", sys.control]);
    assert.equal(await exitCode(refused), 1);
    const error =
      "route /a contains route /a/b of function a-b (set nestedRoutes: true to allow it)";
    assert.ok(
      refused.lines.some((l) => l.includes(`refused registration: ${error}`)),
      refused.lines.join("\n"),
    );
    await sys.gateway.waitFor(/refused worker a\/\d+: route \/a contains route \/a\/b/);

    const a = await sys.addWorker("a", A, [], NESTED);
    const client = await Client.connect(sys.port);
    let res = await client.get("/a/b/c");
    assert.equal(holder(res), `a-b/${ab.child.pid}`);
    res = await client.get("/a/c");
    assert.equal(holder(res), `a/${a.child.pid}`);
    res = await client.get("/a/b/d");
    assert.equal(holder(res), `a-b/${ab.child.pid}`, "a hands it back to a-b");
    client.close();
  } finally {
    await sys.stop();
  }
});
