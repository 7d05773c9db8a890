/**
 * Cold starts' bounds and the pool following the load (issue 21): at most
 * `--cold-hold-max` requests wait for a function that starts (more get 503
 * with Retry-After at once), a function that cannot start answers 503 after
 * `--cold-start-timeout` and is retried with backoff, and a busy pool grows
 * to its maximum with its connections rebalanced (SHED). Real launcher,
 * gateway, workers and TLS clients.
 */

import assert from "node:assert/strict";
import { Launched } from "./support/launched.ts";
import { Client } from "./support/system.ts";
import { waitUntil } from "./support/wait.ts";

Deno.test("the held-while-cold limit: one request waits for the function to start, the next gets 503 with Retry-After on a connection that stays open", async () => {
  const sys = await Launched.start(
    "start",
    ["--function", "slow=tests/fixtures/slow_start.ts", "--scale", "slow=0..1"],
    ["sum", "product"],
    { HOTPOTATO_COLD_HOLD_MAX: "1" },
  );
  const clients: Client[] = [];
  try {
    const first = await Client.connect(sys.port);
    const second = await Client.connect(sys.port);
    clients.push(first, second);
    const waited = first.get("/slow");
    await waitUntil(async () => (await sys.functionState("slow"))?.waiting === 1, {
      what: "one request held",
    });
    const t0 = performance.now();
    const full = await second.get("/slow");
    assert.equal(full.status, 503, full.body);
    assert.equal(full.headers.get("retry-after"), "1");
    assert.match(JSON.parse(full.body).error, /function slow is starting; too many requests wait/);
    assert.ok(performance.now() - t0 < 1000, "answered at once, not after the start");
    const ok = await waited;
    assert.equal(ok.status, 200, ok.body);
    // The refused client's connection stayed open: it retries and is served.
    assert.equal((await second.get("/slow")).status, 200);
    assert.equal(
      await sys.metric("hotpotato_cold_refused_total", 'function="slow",reason="full"'),
      1,
    );
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});

Deno.test("a function that cannot start: 503 with Retry-After after the cold-start timeout, retried with backoff meanwhile; the next version (a reload) starts", async () => {
  const sys = await Launched.start(
    "start",
    ["--function", "broken=tests/fixtures/no_start.ts", "--scale", "broken=0..1"],
    ["sum", "product"],
    { HOTPOTATO_COLD_START_TIMEOUT: "3" },
  );
  const clients: Client[] = [];
  try {
    const c = await Client.connect(sys.port);
    clients.push(c);
    const mark = sys.lines.length;
    const t0 = performance.now();
    const res = await c.get("/broken");
    const ms = performance.now() - t0;
    assert.equal(res.status, 503, res.body);
    assert.equal(res.headers.get("retry-after"), "1");
    assert.match(JSON.parse(res.body).error, /function broken did not start in time/);
    assert.ok(ms >= 2900 && ms < 6000, `answered after the 3 s timeout (${Math.round(ms)} ms)`);
    // Restarted with backoff while it waited (200 ms, then 400 ms).
    await sys.waitLine(/^launcher\s+\| restarting broken in 400 ms/, mark);
    const exits = () =>
      sys.lines.slice(mark).filter((l) => /^launcher\s+\| broken exited \(code 3\)/.test(l));
    await waitUntil(() => exits().length >= 2, { what: "two failed starts" });
    assert.equal(
      await sys.metric("hotpotato_cold_refused_total", 'function="broken",reason="timeout"'),
      1,
    );
    await waitUntil(
      async () => await sys.metric("hotpotato_scale_events_total", 'direction="failed"') >= 2,
      { what: "each failed start counted" },
    );
    // Nothing waits any more: it is not started again...
    await sys.waitLine(/broken: not started again \(nothing waits for broken now\)/, mark);
    // ...until a reload brings a version that starts, on its next request.
    const lines = await sys.reload();
    assert.ok(lines.some((l) => /broken has no worker running: its next start loads/.test(l)));
    const ok = await c.get("/broken");
    assert.equal(ok.status, 200, ok.body);
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});

Deno.test("a busy pool grows to its maximum, and the new worker takes a share of the open connections (SHED), with no new handshake", async () => {
  const sys = await Launched.start(
    "start",
    ["--function", "busy=tests/fixtures/busy.ts", "--scale", "busy=1..2"],
    ["sum", "product", "busy"],
  );
  const clients: Client[] = [];
  let running = true;
  try {
    for (let i = 0; i < 4; i++) clients.push(await Client.connect(sys.port));
    const seen = new Set<string>();
    const loops = clients.map(async (c) => {
      while (running) {
        const r = await c.get("/busy");
        assert.equal(r.status, 200, r.body);
        seen.add(r.headers.get("x-hotpotato-worker")!);
      }
    });
    await sys.waitLine(/^launcher\s+\| busy: 1 more worker\(s\) \(busy: [\d.]+ cores/, 0, 20_000);
    await waitUntil(() => seen.size === 2, { what: "both workers answering", timeoutMs: 15_000 });
    running = false;
    await Promise.all(loops);
    assert.equal(await sys.metric("hotpotato_tls_handshakes_total"), 4);
    assert.equal(await sys.metric("hotpotato_scale_events_total", 'reason="busy"'), 1);
  } finally {
    running = false;
    for (const c of clients) c.close();
    await sys.stop();
  }
});

Deno.test("with two gateways, and after the primary gateway's crash and restart, a request for a function at zero workers starts it", async () => {
  const sys = await Launched.start(
    "start",
    [
      "--gateways",
      "2",
      "--function",
      "hello=examples/hello.ts",
      "--scale",
      "hello=0..1",
      "--scale-idle",
      "1",
    ],
    ["sum", "product"],
  );
  const clients: Client[] = [];
  try {
    await sys.waitLine(/^gateway\.2\s+\|.*joined the primary gateway/);
    // Connections spread over both gateways (SO_REUSEPORT): a satellite
    // passes what no worker takes to the primary, which holds it.
    const answers = await Promise.all(Array.from({ length: 8 }, async () => {
      const c = await Client.connect(sys.port);
      clients.push(c);
      return (await c.get("/hello?name=cold")).status;
    }));
    assert.deepEqual(answers, Array(8).fill(200));
    assert.equal(await sys.metric("hotpotato_cold_starts_total", 'function="hello"'), 1);
    for (const c of clients) c.close();
    clients.length = 0;
    await sys.waitLine(/^launcher\s+\| hello stopped in \d+ ms \(idle \d+ s\)/);
    // The primary crashes: its successor gets the scaling and the declared
    // routes from the launcher, and the autoscaler follows the new one.
    const gatewayPid = Number((await sys.waitLine(/with gateway pid (\d+)/))[1]);
    const mark = sys.lines.length;
    Deno.kill(gatewayPid, "SIGKILL");
    await sys.waitLine(/^gateway\s+\|.*listening on https/, mark);
    // The satellite joins the new primary (until then it answers 503).
    await sys.waitLine(/^gateway\.2\s+\|.*joined the primary gateway/, mark);
    const c = await Client.connect(sys.port);
    clients.push(c);
    const r = await c.get("/hello?name=after");
    assert.equal(r.status, 200, r.body);
    assert.equal(JSON.parse(r.body).hello, "after");
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});

Deno.test("a parked spare: a cold start wakes it (a registration, no process start), another is parked, and a reload parks them again with the new version", async () => {
  const sys = await Launched.start(
    "start",
    ["--function", "hello=examples/hello.ts", "--scale", "hello=0..2", "--spare", "hello=1"],
    ["sum", "product"],
  );
  const clients: Client[] = [];
  try {
    await sys.waitLine(/^hello\.1\s+\|.*hello: parked \(\d+ ms after the process started\)/);
    const mark = sys.lines.length;
    const c = await Client.connect(sys.port);
    clients.push(c);
    const r = await c.get("/hello?name=spare");
    assert.equal(r.status, 200, r.body);
    await sys.waitLine(
      /^launcher\s+\| hello: 1 more worker\(s\) \(cold start.*hello\.1 \(a parked spare\)/,
      mark,
    );
    await sys.waitLine(/^hello\.1\s+\|.*registered hello .* ms after it was told to go/, mark);
    // The pool has room for one more: the next spare is parked.
    await sys.waitLine(/^hello\.2\s+\|.*hello: parked/, mark);
    // A reload: the running worker is replaced as usual, the spare parked anew.
    const before = sys.lines.length;
    const lines = await sys.reload();
    assert.ok(
      lines.some((l) =>
        /hello\.2 stopped in \d+ ms \(a reload: parked again with the new version\)/.test(l)
      ),
      lines.join("\n"),
    );
    await sys.waitLine(/^hello\.2\s+\|.*hello: parked/, before);
    assert.equal((await c.get("/hello?name=after")).status, 200);
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});
