/**
 * Every wait has a timeout: handshake, request head (slowloris), request
 * body, keep-alive idle, a function that hangs, a client that does not read. Each one costs
 * the offending connection only; everyone else keeps being served.
 */

import assert from "node:assert/strict";
import { Client, System } from "./support/system.ts";
import { sleep, waitUntil } from "./support/wait.ts";

const enc = new TextEncoder();
const MISBEHAVE = { name: "misbehave", file: "tests/fixtures/misbehave.ts" };

async function timeToClose(conn: Deno.Conn, limitMs = 10_000): Promise<number> {
  const started = Date.now();
  const buf = new Uint8Array(4096);
  const timer = setTimeout(() => conn.close(), limitMs);
  try {
    while ((await conn.read(buf)) !== null) { /* drain */ }
  } catch {
    // reset or our own timeout
  } finally {
    clearTimeout(timer);
  }
  return Date.now() - started;
}

Deno.test("handshake timeout: a TCP client that never says hello is closed", async () => {
  const sys = await System.start({ gatewayArgs: ["--handshake-timeout", "0.5"] });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: sys.port });
    const ms = await timeToClose(conn);
    assert.ok(ms >= 400 && ms < 3000, `closed after ${ms} ms`);
    try {
      conn.close();
    } catch { /* closed */ }
  } finally {
    await sys.stop();
  }
});

for (const where of ["gateway", "worker"] as const) {
  Deno.test(`slowloris: a head trickling in gets 408 at the header timeout (held by the ${where})`, async () => {
    const sys = await System.start({
      gatewayArgs: ["--header-timeout", "1"],
      workerArgs: ["--header-timeout", "1"],
    });
    const slow = await Client.connect(sys.port);
    let trickling = true;
    try {
      if (where === "worker") assert.equal((await slow.get("/sum?a=1&b=1")).status, 200);
      const started = Date.now();
      const head = "GET /sum?a=1&b=2 HTTP/1.1\r\nhost: x\r\nx-slow: ";
      await slow.write(enc.encode(head));
      // One byte every 100 ms (for 3 s at most) until the answer comes.
      const trickle = (async () => {
        for (let i = 0; i < 30 && trickling; i++) {
          await sleep(100);
          await slow.write(enc.encode("z")).catch(() => {});
        }
      })();
      // Meanwhile another client is served at once.
      const other = await Client.connect(sys.port);
      const t0 = Date.now();
      assert.equal((await other.get("/product?a=2&b=2")).status, 200);
      assert.ok(Date.now() - t0 < 500);
      other.close();
      const res = await slow.read();
      const ms = Date.now() - started;
      trickling = false;
      assert.equal(res.status, 408);
      assert.equal(res.headers.get("connection"), "close");
      assert.ok(ms >= 900 && ms < 2500, `408 after ${ms} ms`);
      assert.equal(await slow.closedByServer(), true);
      await trickle;
    } finally {
      trickling = false;
      slow.close();
      await sys.stop();
    }
  });
}

for (const where of ["worker", "gateway"] as const) {
  const path = where === "worker" ? "/echo" : "/nowhere";
  Deno.test(`a body trickling in gets 408 at the body timeout (POST ${path}, held by the ${where})`, async () => {
    const sys = await System.start({
      workers: [MISBEHAVE],
      gatewayArgs: ["--body-timeout", "1"],
      workerArgs: ["--body-timeout", "1"],
    });
    const slow = await Client.connect(sys.port);
    let trickling = true;
    try {
      // The body is good so far: a route that takes bodies answers it.
      await slow.write(
        enc.encode(`POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello`),
      );
      assert.equal((await slow.read()).status, where === "worker" ? 200 : 404);
      const started = Date.now();
      await slow.write(
        enc.encode(`POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n`),
      );
      // One byte every 150 ms: each read is well within the idle timeout (30 s).
      const trickle = (async () => {
        for (let i = 0; i < 40 && trickling; i++) {
          await sleep(150);
          await slow.write(enc.encode("z")).catch(() => {});
        }
      })();
      // (read()'s timeout is checked between reads: closing bounds this wait.)
      const guard = setTimeout(() => slow.close(), 5000);
      const res = await slow.read(5000).finally(() => clearTimeout(guard));
      const ms = Date.now() - started;
      trickling = false;
      assert.equal(res.status, 408);
      assert.equal(res.headers.get("connection"), "close");
      assert.deepEqual(JSON.parse(res.body), {
        error: "request body not received in time",
        status: 408,
      });
      assert.ok(ms >= 900 && ms < 2500, `408 after ${ms} ms`);
      assert.equal(await slow.closedByServer(), true);
      await trickle;
      // The process serves everyone else as before.
      const other = await Client.connect(sys.port);
      assert.equal((await other.get("/slow?ms=1")).status, 200);
      other.close();
    } finally {
      trickling = false;
      slow.close();
      await sys.stop();
    }
  });
}

Deno.test("idle timeout: quiet keep-alive connections are closed with close_notify", async () => {
  const sys = await System.start({
    gatewayArgs: ["--idle-timeout", "0.5"],
    workerArgs: ["--idle-timeout", "0.5"],
  });
  try {
    // Held by the gateway (no request yet), then held by a worker.
    const a = await Client.connect(sys.port);
    const b = await Client.connect(sys.port);
    assert.equal((await b.get("/sum?a=1&b=1")).status, 200);
    const started = Date.now();
    const [closedA, closedB] = await Promise.all([a.closedByServer(3000), b.closedByServer(3000)]);
    const ms = Date.now() - started;
    // closedByServer sees a clean EOF only when the server sent close_notify.
    assert.equal(closedA, true);
    assert.equal(closedB, true);
    assert.ok(ms >= 300 && ms < 2500, `closed after ${ms} ms`);
  } finally {
    await sys.stop();
  }
});

Deno.test("a function that hangs answers 504 at the handler timeout; one that throws, 500", async () => {
  const sys = await System.start({
    workers: [MISBEHAVE],
    workerArgs: ["--handler-timeout", "0.5"],
  });
  const client = await Client.connect(sys.port);
  try {
    const started = Date.now();
    const res = await client.get("/hang");
    assert.equal(res.status, 504);
    assert.ok(Date.now() - started < 2500);
    assert.deepEqual(JSON.parse(res.body), { error: "function timed out", status: 504 });
    const boom = await client.get("/throw");
    assert.equal(boom.status, 500);
    assert.deepEqual(JSON.parse(boom.body), { error: "function failed", status: 500 });
    // The connection is still good.
    assert.equal(JSON.parse((await client.get("/slow?ms=10")).body).slept, 10);
  } finally {
    client.close();
    await sys.stop();
  }
});

Deno.test("a client that does not read its responses is dropped at the write timeout", async () => {
  const sys = await System.start({
    workers: [MISBEHAVE],
    workerArgs: ["--write-timeout", "1"],
  });
  const greedy = await Client.connect(sys.port);
  try {
    // Pipelined requests for 200 KB each, written until the server gives up:
    // far more than socket buffers hold, and never a response read.
    const batch = enc.encode("GET /big?bytes=200000 HTTP/1.1\r\nhost: x\r\n\r\n".repeat(100));
    const started = Date.now();
    let batches = 0;
    const writing = (async () => {
      try {
        while (Date.now() - started < 15_000) {
          await greedy.write(batch);
          batches++;
        }
        return "still writing";
      } catch {
        return "failed";
      }
    })();
    // The connection reaches the worker, whose answers fill the socket: it
    // reads no more, and our writes stop going through.
    await waitUntil(async () => (await sys.gateway.stats()).handoffs === 1, {
      what: "the greedy client's connection to reach the worker",
    });
    let seen = -1;
    await waitUntil(() => seen === (seen = batches), {
      what: () => `the greedy client's writes to block (${batches} batches written)`,
      everyMs: 100,
    });
    // Others are served while the worker waits on the greedy client.
    const other = await Client.connect(sys.port);
    const t0 = Date.now();
    assert.equal((await other.get("/slow?ms=1")).status, 200);
    assert.ok(Date.now() - t0 < 1000, "another client is not held up");
    other.close();
    // The server gives up on the greedy client: our writes fail.
    const outcome = await Promise.race([writing, sleep(10_000).then(() => "still blocked")]);
    assert.equal(outcome, "failed", `after ${Date.now() - started} ms`);
  } finally {
    greedy.close();
    await sys.stop();
  }
});
