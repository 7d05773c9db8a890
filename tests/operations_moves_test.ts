// handoff-mode: both
/**
 * Running it like production, for a connection that changes function (the
 * handoff mode decides how it moves): metrics and health on the admin port,
 * request logs as JSON lines. (The rest: operations_test.ts.)
 */

import assert from "node:assert/strict";
import { Client, System } from "./support/system.ts";
import { waitUntil } from "./support/wait.ts";

Deno.test("metrics and health on the admin port", async () => {
  const sys = await System.start();
  try {
    const client = await Client.connect(sys.port);
    for (let i = 0; i < 6; i++) await client.get(i % 2 ? "/product?a=1&b=2" : "/sum?a=1&b=2");
    await client.get("/nowhere");
    client.close();
    // Workers report their counters every second: wait for theirs.
    await waitUntil(
      async () =>
        await sys.metric("hotpotato_requests_total", 'function="sum",route="/sum"') >= 3 &&
        await sys.metric("hotpotato_requests_total", 'function="product",route="-"') >= 1 &&
        await sys.metric("hotpotato_handoff_latency_seconds_count") >= 6,
      { what: "the workers' counts in /metrics", everyMs: 100 },
    );
    const admin = `http://127.0.0.1:${sys.adminPort}`;
    const res = await fetch(`${admin}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const value = (series: string) => {
      const line = text.split("\n").find((l) => l.startsWith(series + " "));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    assert.equal(value("hotpotato_connections_accepted_total"), 1);
    assert.equal(value('hotpotato_tls_handshakes_total{resumed="false",version="TLSv1.3"}'), 1);
    assert.equal(value('hotpotato_handoffs_total{function="product",route="/product"}'), 3);
    assert.equal(value('hotpotato_handoffs_total{function="sum",route="/sum"}'), 3);
    assert.equal(value('hotpotato_connections_returned_total{function="sum"}'), 3);
    assert.equal(value('hotpotato_requests_total{function="sum",route="/sum",status="200"}'), 3);
    // The 404 comes from product, which held the connection: the gateway
    // refuses a hand-back no worker can take (it never imports a function's
    // TLS state), and the worker answers.
    assert.equal(value('hotpotato_requests_total{function="product",route="-",status="404"}'), 1);
    assert.equal(
      value('hotpotato_requests_total{function="gateway",route="",status="404"}'),
      undefined,
    );
    assert.equal(value('hotpotato_workers{function="product"}'), 1);
    // Six arrivals at workers.
    assert.equal(value("hotpotato_handoff_latency_seconds_count"), 6);
    assert.equal(value('hotpotato_handoff_latency_seconds_bucket{le="+Inf"}'), 6);
    const health = await fetch(`${admin}/healthz`);
    assert.equal(health.status, 200);
    const body = await health.json();
    assert.equal(body.status, "ok");
    assert.deepEqual(body.functions.map((f: { name: string }) => f.name).sort(), [
      "product",
      "sum",
    ]);
    assert.equal((await fetch(`${admin}/nope`)).status, 404);
  } finally {
    await sys.stop();
  }
});

Deno.test("request log lines as JSON: route, status, duration, worker, handoffs", async () => {
  const sys = await System.start({ workerArgs: ["--log-format", "json"] });
  try {
    const client = await Client.connect(sys.port);
    await client.get("/sum?a=1&b=2");
    await client.get("/product?a=1&b=2");
    client.close();
    const line = await sys.worker("product").waitFor(/^\{.*"status":200.*\}$/);
    const entry = JSON.parse(line[0]);
    assert.equal(entry.route, "/product");
    assert.equal(entry.status, 200);
    assert.equal(typeof entry.ms, "number");
    assert.match(entry.worker, /^product\/\d+$/);
    assert.equal(entry.handoffs, 2);
  } finally {
    await sys.stop();
  }
});
