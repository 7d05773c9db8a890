// handoff-mode: both
/**
 * Streamed responses on a connection that then changes function (a route
 * change after the stream: the handoff mode decides how it moves), end to
 * end with real clients (curl, Deno's rustls): a body that fails or falls
 * short cannot look complete while a right one keeps the connection, which
 * moves on; a request pipelined behind a stream waits for it, then goes to
 * its own function. (The rest of the streaming tests: stream_test.ts.)
 */

import assert from "node:assert/strict";
import { CA_CERT, Client, run, System } from "./support/system.ts";

const WORKERS = [
  { name: "sum", file: "workers/sum.ts" },
  { name: "streams", file: "tests/fixtures/streams.ts" },
  { name: "clock", file: "examples/clock.ts" },
];

/** curl's arguments: the paths of this test's functions become URLs. */
function curl(sys: System, ...args: string[]) {
  const path = /^\/(streams|clock|sum|nowhere)\b/;
  return ["-s", "--cacert", CA_CERT, ...args].map((a) =>
    path.test(a) ? `https://localhost:${sys.port}${a}` : a
  );
}

Deno.test("a body that fails or falls short of its length cannot look complete", async () => {
  const sys = await System.start({ workers: WORKERS });
  try {
    const fail = await run("curl", curl(sys, "/streams/fail"));
    assert.match(fail.stdout, /part 1\npart 2\n/);
    assert.notEqual(fail.code, 0, "curl saw an incomplete chunked body");
    const short = await run("curl", curl(sys, "/streams/short", "-o", "/dev/null"));
    assert.equal(short.code, 18, "curl: partial file (18)");
    // A declared length that is right is served, and the connection is kept.
    const kept = await run(
      "curl",
      curl(
        sys,
        ...["-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null"],
        "-w",
        "%{http_code} %{num_connects} %{size_download}\\n",
        `/streams/bytes?size=${1 << 20}&length=1`,
        `/streams/bytes?size=${1 << 20}`,
        "/sum?a=1&b=2",
      ),
    );
    assert.deepEqual(kept.stdout.trim().split("\n"), [
      `200 1 ${1 << 20}`,
      `200 0 ${1 << 20}`,
      "200 0 42",
    ]);
  } finally {
    await sys.stop();
  }
});

Deno.test("a request pipelined behind a streamed response waits, then goes to its own function", async () => {
  const sys = await System.start({ workers: WORKERS });
  const client = await Client.connect(sys.port);
  try {
    // One write: a stream of 3 events from clock, then sum, then clock again.
    await client.write(
      new Uint8Array([
        ...Client.request("/clock?every=100&count=3"),
        ...Client.request("/sum?a=1&b=2"),
        ...Client.request("/clock?count=1"),
      ]),
    );
    const events = await client.read();
    assert.equal(events.status, 200);
    assert.deepEqual([...events.body.matchAll(/^id: (\d)$/gm)].map((m) => m[1]), ["1", "2", "3"]);
    const sum = await client.read();
    assert.equal(JSON.parse(sum.body).result, "3");
    assert.match(sum.headers.get("x-hotpotato-worker")!, /^sum\//);
    const again = await client.read();
    assert.match(again.body, /^id: 1\n/);
    assert.match(again.headers.get("x-hotpotato-worker")!, /^clock\//);
    assert.equal(await sys.handshakes(), 1);
  } finally {
    client.close();
    await sys.stop();
  }
});
