// handoff-mode: both
/**
 * An unchanged Hono app from npm (examples/hono_app.ts: routing,
 * middleware, `streamSSE`) served with `serveFunction(options, app.fetch)`,
 * through the gateway, on connections that also move to other functions;
 * and the handler's second argument shaped as `Deno.serve`'s.
 */

import assert from "node:assert/strict";
import { CA_CERT, run, System } from "./support/system.ts";

const WORKERS = [
  { name: "sum", file: "workers/sum.ts" },
  { name: "hono", file: "examples/hono_app.ts" },
  { name: "streams", file: "tests/fixtures/streams.ts" },
];

Deno.test("a Hono app: routes, middleware, JSON bodies, its 404, and streamSSE", async () => {
  const sys = await System.start({ workers: WORKERS });
  try {
    const base = `https://localhost:${sys.port}`;
    const r = await run("curl", [
      "-s",
      "--cacert",
      CA_CERT,
      "-D",
      "-",
      "-w",
      "\\nconnects=%{num_connects}\\n",
      `${base}/hono/hello/Ada`,
      `${base}/sum?a=2&b=3`,
      `${base}/hono/nope`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^x-app-ms: \d+\.\d\d\r$/m, "the middleware ran");
    assert.match(r.stdout, /\{"hello":"Ada"\}\nconnects=1\n/);
    assert.match(r.stdout, /"result":"5"\}\n\nconnects=0\n/);
    assert.match(
      r.stdout,
      /HTTP\/1\.1 404 [^\n]*\n[^]*\{"error":"not in this app"\}\nconnects=0\n/,
    );
    const echo = await run("curl", [
      "-s",
      "--cacert",
      CA_CERT,
      "-H",
      "content-type: application/json",
      "--data",
      '{"x":[1,2,3]}',
      `${base}/hono/echo`,
    ]);
    assert.deepEqual(JSON.parse(echo.stdout), { received: { x: [1, 2, 3] } });
    const sse = await run("curl", [
      "-sN",
      "--cacert",
      CA_CERT,
      "-D",
      "-",
      `${base}/hono/events?count=3`,
    ]);
    assert.equal(sse.code, 0, "a complete chunked body");
    assert.match(sse.stdout, /content-type: text\/event-stream/i);
    assert.match(sse.stdout, /transfer-encoding: chunked/i);
    const events = [...sse.stdout.matchAll(/event: count\ndata: (\{.*\})\nid: (\d)/g)];
    assert.deepEqual(events.map((m) => m[2]), ["1", "2", "3"], sse.stdout);
  } finally {
    await sys.stop();
  }
});

Deno.test("the handler's info: remoteAddr as Deno.serve gives it, with the connection's id and handoffs", async () => {
  const sys = await System.start({ workers: WORKERS });
  try {
    const out = await run("curl", [
      "-s",
      "--cacert",
      CA_CERT,
      `https://localhost:${sys.port}/sum?a=1&b=1`,
      `https://localhost:${sys.port}/streams/info`,
    ]);
    const info = JSON.parse(out.stdout.split("\n")[1]);
    assert.equal(info.remoteAddr.transport, "tcp");
    assert.equal(info.remoteAddr.hostname, "127.0.0.1");
    assert.ok(info.remoteAddr.port > 0);
    assert.equal(info.handoffs, 2, "gateway to sum, sum to streams");
    assert.equal(typeof info.connId, "number");
    assert.equal(info.protocol, "TLSv1.3");
  } finally {
    await sys.stop();
  }
});
