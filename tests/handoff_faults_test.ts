// handoff-mode: both
/**
 * Connections in transit are never lost: a handoff is acknowledged, and its
 * sender keeps the connection until then. A receiver that dies before
 * confirming, or cannot take the socket (fd limit), gives the connection
 * back: another worker serves it, or a 503 arrives on a connection that
 * stays open. Real processes, real signals, real TLS clients.
 */

import assert from "node:assert/strict";
import { Client, HANDOFF_MODE, Proc, System } from "./support/system.ts";
import { waitUntil } from "./support/wait.ts";

const SUM = { name: "sum", file: "workers/sum.ts" };
const PRODUCT = { name: "product", file: "workers/product.ts" };

Deno.test("handoffs queued to a stopped worker go to its sibling when it is killed; none is lost", async () => {
  const sys = await System.start({ workers: [SUM, SUM, PRODUCT] });
  const [stopped, sibling] = sys.workers.filter((w) => w.name === "sum");
  const clients: Client[] = [];
  try {
    stopped.child.kill("SIGSTOP");
    // New connections for /sum: the pool alternates, so about half are sent
    // to the stopped worker and wait in its socket, unconfirmed.
    const answers = [];
    for (let i = 0; i < 20; i++) {
      const c = await Client.connect(sys.port);
      clients.push(c);
      await c.write(Client.request(`/sum?a=${i}&b=1`));
    }
    // Every one handed off (about half wait for the stopped worker).
    await waitUntil(async () => (await sys.gateway.stats()).handoffs === 20, {
      what: "the gateway to send all 20 connections to the workers",
    });
    stopped.child.kill("SIGKILL");
    for (const c of clients) answers.push(await c.read());
    for (const [i, res] of answers.entries()) {
      assert.equal(res.status, 200, res.body);
      assert.equal(JSON.parse(res.body).result, String(i + 1));
      assert.match(
        res.headers.get("x-hotpotato-worker")!,
        new RegExp(`^sum/${sibling.child.pid}$`),
      );
    }
    await sys.gateway.settle(); // the gateway's log lines so far have been read
    const replaced = sys.gateway.count(/did not take it \(the receiver went away\); to sum\//);
    assert.ok(replaced >= 5, `${replaced} connections came back from the killed worker`);
    // Every connection is still usable, and moves on.
    for (const [i, c] of clients.entries()) {
      const res = await c.get(`/product?a=${i}&b=2`);
      assert.equal(res.status, 200, res.body);
    }
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});

Deno.test("the gateway killed under alternating load: every request is answered, connections stay usable", async () => {
  const sys = await System.start();
  const clients: Client[] = [];
  try {
    for (let i = 0; i < 10; i++) clients.push(await Client.connect(sys.port));
    const statuses: number[][] = clients.map(() => []);
    /** Clients that got an EOF instead of an answer (gateway mode only, below). */
    const lost: string[] = [];
    let killed = false;
    const run = clients.map(async (c, k) => {
      for (let i = 0; i < 30; i++) {
        if (i === 10 && k === 0) {
          sys.gateway.child.kill("SIGKILL");
          killed = true;
        }
        const op = i % 2 === 0 ? "sum" : "product";
        let res;
        try {
          res = await c.get(`/${op}?a=${i}&b=2`);
        } catch (e) {
          // Gateway mode relays a route change: between its confirmation to
          // the sender and its forward to the receiver (two sendmsg calls)
          // the connection is the gateway's alone, and a SIGKILL there loses
          // it (README, "Bad input and faults"). Direct mode has no relay.
          if (HANDOFF_MODE === "direct") throw e;
          lost.push(`client ${k} request ${i}: ${(e as Error).message}`);
          return;
        }
        assert.ok(res.status === 200 || res.status === 503, `${res.status} ${res.body}`);
        if (res.status === 503) {
          assert.equal(res.headers.get("retry-after"), "1");
          assert.notEqual(res.headers.get("connection"), "close");
        } else {
          assert.equal(JSON.parse(res.body).result, String(op === "sum" ? i + 2 : i * 2));
        }
        statuses[k].push(res.status);
      }
    });
    await Promise.all(run);
    assert.ok(killed);
    // At most the one connection in the relay at the kill.
    assert.ok(lost.length <= 1, `lost in the relay: ${lost.join("; ")}`);
    for (const s of statuses) {
      if (s.length < 30) continue; // the one lost in the relay
      // Direct mode: route changes between running functions go on without
      // the gateway.
      if (HANDOFF_MODE === "direct") assert.deepEqual(s, Array(30).fill(200));
      // After the kill, the route of the worker that holds the connection is
      // still served: half of the last requests are answered 200.
      assert.ok(s.slice(20).filter((x) => x === 200).length >= 5, s.join(" "));
    }
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});

Deno.test("a worker at its fd limit refuses a connection; the gateway answers 503 and keeps it", async () => {
  const sys = await System.start({ workers: [PRODUCT] });
  const limited = new Proc(
    "sum",
    "workers/sum.ts",
    ["--control", sys.control],
    {},
    [],
    ["prlimit", "--nofile=40:40"],
  );
  sys.workers.push(limited);
  const clients: Client[] = [];
  try {
    await limited.waitFor(/registered\W{0,3}sum\W{0,3} for/);
    let refused: Client | undefined;
    for (let i = 0; i < 60 && !refused; i++) {
      const c = await Client.connect(sys.port);
      clients.push(c);
      const res = await c.get(`/sum?a=${i}&b=0`);
      if (res.status === 503) {
        assert.match(res.body, /no worker could take/);
        assert.equal(res.headers.get("retry-after"), "1");
        refused = c;
      } else {
        assert.equal(res.status, 200, res.body);
      }
    }
    assert.ok(refused, "the worker never reached its fd limit");
    await limited.waitFor(/open-file limit/);
    assert.equal(limited.count(/larger than/), 0, "the real reason is logged");
    // The refused connection stays usable; every other one too.
    assert.equal((await refused.get("/product?a=3&b=4")).status, 200);
    for (const c of clients.slice(0, 5)) assert.equal((await c.get("/sum?a=1&b=1")).status, 200);
    // A connection held by product whose next request is sum's: the move to
    // the worker at its limit is refused (in direct mode by the worker
    // itself), it is answered 503 and stays usable, and no move is told.
    // The worker may have freed an fd since it refused (one it held for a
    // moment of its own); a move that still fits is taken, and holds that fd,
    // so a few tries bring the worker back to its limit.
    let moveRefused: { status: number; body: string } | undefined;
    let onProduct: Client | undefined;
    let moved = 0;
    for (let i = 0; i < 5 && moveRefused?.status !== 503; i++) {
      onProduct = await Client.connect(sys.port);
      clients.push(onProduct);
      assert.equal((await onProduct.get("/product?a=1&b=1")).status, 200);
      moveRefused = await onProduct.get("/sum?a=1&b=1");
      if (moveRefused.status !== 503) {
        assert.equal(moveRefused.status, 200, moveRefused.body);
        moved++;
      }
    }
    assert.equal(moveRefused?.status, 503, moveRefused?.body);
    assert.equal((await onProduct!.get("/product?a=2&b=2")).status, 200);
    await sys.settle();
    // Only direct mode tells the gateway of a move (MOVED).
    const told = HANDOFF_MODE === "direct" ? moved : 0;
    assert.equal(
      sys.gateway.count(/connection moved:/),
      told,
      "a refused move is not told as a move",
    );
    assert.equal(limited.exited, false);
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});
