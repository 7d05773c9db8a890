// handoff-mode: both
/**
 * Faults while connections change function (the handoff mode decides how
 * they move): a worker killed under load, the gateway restarted while
 * workers hold connections. Only what the failed process held is affected;
 * everyone else keeps being served. (The launcher bringing a worker back and
 * a stuck worker: faults_test.ts.)
 */

import assert from "node:assert/strict";
import { Client, HANDOFF_MODE, type HttpResponse, Proc, System } from "./support/system.ts";
import { sleep, waitUntil } from "./support/wait.ts";

interface Tally {
  ok: number;
  unavailable: number;
  retryAfter: boolean;
  dropped: number;
  wrong: string[];
}

/** Keep requesting `ops` in turn until `until()`, reconnecting when dropped;
 * `t` is the tally, counted as it goes. */
async function loadClient(
  port: number,
  ops: string[],
  until: () => boolean,
  t: Tally = { ok: 0, unavailable: 0, retryAfter: false, dropped: 0, wrong: [] },
): Promise<Tally> {
  let client: Client | undefined;
  for (let i = 0; !until(); i++) {
    const op = ops[i % ops.length];
    let res: HttpResponse;
    try {
      client ??= await Client.connect(port);
      res = await client.get(`/${op}?a=${i}&b=2`);
    } catch {
      t.dropped++;
      client?.close();
      client = undefined;
      await sleep(20);
      continue;
    }
    if (res.status === 503) {
      t.unavailable++;
      t.retryAfter ||= res.headers.get("retry-after") === "1";
      await sleep(20);
    } else if (res.status === 200) {
      const want = op === "sum" ? i + 2 : i * 2;
      if (JSON.parse(res.body).result === String(want)) t.ok++;
      else t.wrong.push(res.body);
    } else {
      t.wrong.push(`${res.status} ${res.body}`);
    }
  }
  client?.close();
  return t;
}

Deno.test("a worker killed under load: its route answers 503 until it is back, others unaffected", async () => {
  const sys = await System.start();
  let stop = false;
  try {
    const tally = (): Tally => ({
      ok: 0,
      unavailable: 0,
      retryAfter: false,
      dropped: 0,
      wrong: [],
    });
    const steadyTallies = Array.from({ length: 8 }, tally);
    const movingTallies = Array.from({ length: 12 }, tally);
    const sumOnly = steadyTallies.map((t) => loadClient(sys.port, ["sum"], () => stop, t));
    const mixed = movingTallies.map((t) => loadClient(sys.port, ["sum", "product"], () => stop, t));
    const all = [...steadyTallies, ...movingTallies];
    const oks = () => all.map((t) => t.ok).join(" ");
    // Every client served a few times.
    await waitUntil(() => all.every((t) => t.ok >= 4), { what: () => `4 answers each (${oks()})` });
    const product = sys.worker("product");
    await product.stop("SIGKILL");
    sys.workers = sys.workers.filter((w) => w !== product);
    // The route is vacant now: 503 with Retry-After.
    await waitUntil(() => movingTallies.some((t) => t.unavailable > 0 && t.retryAfter), {
      what: "a 503 with Retry-After for the vacant route",
    });
    await sys.addWorker("product", "workers/product.ts"); // what the launcher does
    // Every client is served again after the restart, more than 10 times in all.
    const since = all.map((t) => t.ok);
    await waitUntil(() => all.every((t, i) => t.ok >= Math.max(11, since[i] + 2)), {
      what: () => `2 more answers each, 11 in all (${oks()})`,
    });
    stop = true;
    const steady = await Promise.all(sumOnly);
    const moving = await Promise.all(mixed);
    for (const t of steady) {
      assert.deepEqual(t.wrong, []);
      assert.equal(t.dropped, 0, "connections held by sum are never dropped");
      assert.equal(t.unavailable, 0);
      assert.ok(t.ok > 10);
    }
    for (const t of moving) assert.deepEqual(t.wrong, []);
    assert.ok(moving.some((t) => t.unavailable > 0 && t.retryAfter), "503 + Retry-After seen");
    assert.ok(moving.every((t) => t.ok > 10));
    // After the restart every route works again on a new connection.
    const client = await Client.connect(sys.port);
    assert.equal((await client.get("/product?a=4&b=5")).status, 200);
    client.close();
    assert.equal(sys.gateway.exited, false);
  } finally {
    stop = true;
    await sys.stop();
  }
});

Deno.test("the gateway restarted: workers keep serving, move directly or answer 503, re-register", async () => {
  const sys = await System.start();
  const held = await Client.connect(sys.port);
  try {
    assert.equal((await held.get("/sum?a=1&b=1")).status, 200); // now held by sum
    await sys.gateway.stop();
    // The worker keeps serving what it holds.
    assert.equal(JSON.parse((await held.get("/sum?a=2&b=2")).body).result, "4");
    const moved = await held.get("/product?a=1&b=1");
    if (HANDOFF_MODE === "direct") {
      // Workers hand it to each other without the gateway.
      assert.equal(moved.status, 200, moved.body);
      assert.equal(JSON.parse(moved.body).result, "1");
    } else {
      // It cannot pass the connection on: a 503, and the connection stays usable.
      assert.equal(moved.status, 503);
      assert.equal(moved.headers.get("retry-after"), "1");
      assert.notEqual(moved.headers.get("connection"), "close");
    }
    assert.equal(JSON.parse((await held.get("/sum?a=3&b=3")).body).result, "6");
    // A new gateway on the same port and socket: the workers come back by themselves.
    sys.gateway = new Proc("gateway", "gateway.ts", [
      "--admin-port",
      "0",
      "--port",
      String(sys.port),
      "--control",
      sys.control,
    ]);
    await sys.gateway.waitFor(/registered for \/sum/);
    await sys.gateway.waitFor(/registered for \/product/);
    // The connection held all along moves again.
    const again = await held.get("/product?a=2&b=5");
    assert.equal(again.status, 200, again.body);
    assert.equal(JSON.parse(again.body).result, "10");
    const client = await Client.connect(sys.port);
    for (let i = 0; i < 6; i++) {
      const op = i % 2 ? "product" : "sum";
      assert.equal((await client.get(`/${op}?a=${i}&b=3`)).status, 200);
    }
    client.close();
  } finally {
    held.close();
    await sys.stop();
  }
});
