// handoff-mode: both
/**
 * A new version of a function replaces the running one without a client
 * noticing (issue 13, single worker upgrade): started with `--replace on`, it
 * registers, the old worker hands every connection over at its next request
 * boundary (idle ones at once) and exits. Clients keep their connections and
 * their one handshake.
 */

import assert from "node:assert/strict";
import { Client, HANDOFF_MODE, System } from "./support/system.ts";

Deno.test(`a replaced worker hands its connections to the new version (${HANDOFF_MODE} mode)`, async () => {
  const sys = await System.start();
  const clients: Client[] = [];
  try {
    const old = sys.worker("sum");
    // Some connections held by sum (idle), some by product.
    for (let i = 0; i < 6; i++) {
      const c = await Client.connect(sys.port);
      clients.push(c);
      const res = await c.get(i % 2 ? "/product?a=1&b=2" : "/sum?a=1&b=2");
      assert.equal(res.status, 200);
    }
    // A client in a tight loop, alternating, during the switch.
    let stop = false;
    const looper = await Client.connect(sys.port);
    const loop = (async () => {
      const seen = new Set<string>();
      for (let i = 0; !stop; i++) {
        const op = i % 2 ? "product" : "sum";
        const res = await looper.get(`/${op}?a=${i}&b=1`); // throws on EOF or reset
        assert.equal(res.status, 200, res.body);
        assert.equal(JSON.parse(res.body).result, String(op === "sum" ? i + 1 : i));
        if (op === "sum") seen.add(res.headers.get("x-hotpotato-worker")!);
      }
      return seen;
    })();
    const fresh = await sys.addWorker("sum", "workers/sum.ts", ["--replace", "on"]);
    // The old version exits once it holds nothing (within 15 s here).
    const exited = await Promise.race([
      old.child.status.then(() => true),
      new Promise<false>((ok) => setTimeout(() => ok(false), 15_000)),
    ]);
    assert.ok(exited, "the replaced worker is still running");
    // Every connection still works, and sum answers from the new version.
    for (const [i, c] of clients.entries()) {
      const res = await c.get(`/sum?a=${i}&b=10`);
      assert.equal(res.status, 200, res.body);
      assert.equal(res.headers.get("x-hotpotato-worker"), `sum/${fresh.child.pid}`);
    }
    stop = true;
    const seen = await loop;
    looper.close();
    assert.ok(seen.has(`sum/${fresh.child.pid}`), [...seen].join(" "));
    // No client connected again: one handshake each.
    assert.equal(await sys.handshakes(), clients.length + 1);
    assert.match(old.lines.join("\n"), /handing \d+ connection\(s\) over/);
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});
