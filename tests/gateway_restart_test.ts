// handoff-mode: both
/**
 * A gateway that has just (re)started holds a request for a route whose
 * workers have not registered with it yet (up to 5 s), then moves it; never a
 * cacheable 404 (issue 19), and under the launcher no refused connection and
 * no 503 either (issue 24: the launcher keeps the public port). Tried as an
 * operator would: the shipped launcher with pools of
 * two, 30 keep-alive clients alternating routes, the gateway SIGKILLed; the
 * launcher restarts it and the workers register again. Real launcher,
 * gateway, workers and TLS clients.
 */

import assert from "node:assert/strict";
import { Launched } from "./support/launched.ts";
import { Client, HANDOFF_MODE } from "./support/system.ts";
import { waitUntil } from "./support/wait.ts";

Deno.test("a gateway killed under 30 alternating clients comes back: no 404; direct moves go on (no 503), through-gateway moves get 503 while it is away", async () => {
  // A fixed port: the restarted gateway listens where the first one did.
  const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (free.addr as Deno.NetAddr).port;
  free.close();
  const sys = await Launched.start("start", ["--workers", "sum=2,product=2"], ["sum", "product"], {
    HOTPOTATO_PORT: String(port),
  });
  const statuses = new Map<number, number>();
  const errors: string[] = [];
  let running = true;
  const loop = async (i: number) => {
    let c: Client | undefined;
    for (let k = 0; running; k++) {
      try {
        c ??= await Client.connect(sys.port);
        const op = (i + k) % 2 ? "product" : "sum";
        const res = await c.get(`/${op}?a=${i}&b=${k}`);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status === 404) errors.push(`${op}: 404 ${res.body}`);
        if (res.status === 503) {
          assert.equal(res.headers.get("retry-after"), "1", res.body);
          await new Promise((ok) => setTimeout(ok, 50));
        }
      } catch {
        // The killed gateway held this connection (or its port was closed
        // for a moment): a client connects again.
        c?.close();
        c = undefined;
        await new Promise((ok) => setTimeout(ok, 20));
      }
    }
    c?.close();
  };
  try {
    await sys.waitLine(/worker sum\/\d+ registered/);
    const gatewayPid = Number((await sys.waitLine(/with gateway pid (\d+)/))[1]);
    // Every worker (two per function) is registered before the kill.
    for (let n = 0; sys.lines.filter((l) => /worker \w+\/\d+ registered/.test(l)).length < 4; n++) {
      assert.ok(n < 300, "four workers register");
      await new Promise((ok) => setTimeout(ok, 25));
    }
    const loops = Array.from({ length: 30 }, (_, i) => loop(i));
    await sys.waitLine(/worker \w+\/\d+ registered/); // load running
    await new Promise((ok) => setTimeout(ok, 500));
    const mark = sys.lines.length;
    Deno.kill(gatewayPid, "SIGKILL");
    await sys.waitLine(/^launcher\s+\| restarting gateway in \d+ ms/, mark);
    const up = await sys.waitLine(/^gateway\s+\|.*listening on https/, mark);
    assert.ok(up);
    // The workers register with the new gateway: every one of them.
    const after = sys.lines.length;
    for (let n = 0; n < 400; n++) {
      const again = sys.lines.slice(mark).filter((l) =>
        /registered \w+ for .* gateway pid/.test(l)
      );
      if (again.length >= 4) break;
      await new Promise((ok) => setTimeout(ok, 25));
    }
    assert.ok(after > mark);
    // Load goes on a little after they are back, then stops.
    await new Promise((ok) => setTimeout(ok, 1500));
    running = false;
    await Promise.all(loops);
    assert.deepEqual(errors, [], "no 404 for a route that exists");
    // Direct moves between workers need no gateway: the restarted one gives
    // them the sealing key they hold (derived from the launcher's secret),
    // so one that registered again and one that has not yet still trust
    // each other. Through the gateway (--handoff gateway), a move waits for it.
    if (HANDOFF_MODE === "direct") {
      assert.equal(statuses.get(503) ?? 0, 0, JSON.stringify([...statuses]));
    }
    assert.ok((statuses.get(200) ?? 0) > 100, JSON.stringify([...statuses]));
    // Each client is served again once the workers are back.
    const c = await Client.connect(sys.port);
    assert.equal((await c.get("/sum?a=1&b=2")).status, 200);
    assert.equal((await c.get("/product?a=3&b=4")).status, 200);
    c.close();
  } finally {
    running = false;
    await sys.stop();
  }
});

for (const gateways of [1, 2]) {
  Deno.test(`the launcher keeps the public port: a gateway SIGKILL refuses no new connection, answers none with an error (--gateways ${gateways})`, async () => {
    const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (free.addr as Deno.NetAddr).port;
    free.close();
    const sys = await Launched.start(
      "start",
      ["--gateways", String(gateways)],
      ["sum", "product"],
      {
        HOTPOTATO_PORT: String(port),
      },
    );
    const outcomes: string[] = [];
    const answered: { at: number; ms: number; status: number }[] = [];
    // A new client every 50 ms, each with one request (curl -m 8, as an operator would).
    const newcomer = async (i: number) => {
      const began = Date.now();
      let c: Client | undefined;
      const timer = setTimeout(() => c?.close(), 8_000);
      try {
        c = await Client.connect(sys.port);
        const res = await c.get(`/sum?a=${i}&b=1`);
        outcomes.push(String(res.status));
        answered.push({ at: began, ms: Date.now() - began, status: res.status });
      } catch (e) {
        outcomes.push(e instanceof Deno.errors.ConnectionRefused ? "refused" : `error ${e}`);
      } finally {
        clearTimeout(timer);
        c?.close();
      }
    };
    try {
      await sys.waitLine(/worker sum\/\d+ registered/);
      await sys.waitLine(/worker product\/\d+ registered/);
      const gatewayPid = Number((await sys.waitLine(/with gateway pid (\d+)/))[1]);
      const mark = sys.lines.length;
      const clients: Promise<void>[] = [];
      let killedAt = 0;
      for (let i = 0; i < 60; i++) {
        if (i === 6) {
          killedAt = Date.now();
          Deno.kill(gatewayPid, "SIGKILL");
        }
        clients.push(newcomer(i));
        await new Promise((ok) => setTimeout(ok, 50));
      }
      await Promise.all(clients);
      // It had not run 10 s (healthy), so the restart came after the first backoff step.
      await sys.waitLine(/^launcher\s+\| restarting gateway in \d+ ms/, mark);
      const counts = new Map<string, number>();
      for (const o of outcomes) counts.set(o, (counts.get(o) ?? 0) + 1);
      const summary = JSON.stringify([...counts]);
      assert.equal(counts.get("refused") ?? 0, 0, `no new connection refused: ${summary}`);
      assert.equal(counts.get("404") ?? 0, 0, `no 404: ${summary}`);
      // Held while the restarted gateway's workers register, then moved:
      // no 503 either.
      assert.deepEqual(
        outcomes.filter((o) => o !== "200"),
        [],
        `every client answered 200: ${summary}`,
      );
      // The restarted gateway shows the crash in /metrics, with its cause.
      await waitUntil(
        async () =>
          await sys.metric("hotpotato_gateway_restarts_total", 'cause="signal SIGKILL"') === 1,
        { what: 'hotpotato_gateway_restarts_total{cause="signal SIGKILL"} 1' },
      );
      const first = answered.filter((a) => a.at >= killedAt && a.status === 200)
        .map((a) => a.at + a.ms - killedAt).sort((a, b) => a - b)[0];
      console.log(
        `--gateways ${gateways}, after the primary's kill: ${summary}; ` +
          `first 200 on a new connection ${first} ms after it`,
      );
    } finally {
      await sys.stop();
    }
  });
}
