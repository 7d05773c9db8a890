/**
 * WebSockets under load: 1,000 connections through the real gateway to one
 * examples/echo.ts worker, each sending a numbered message every second for
 * 10 s (WS_LOAD_SECONDS). Every echo must come back on its own connection, in order, once;
 * then every connection closes cleanly (checked on both sides). The
 * gateway's `hotpotato_websockets_open` gauge must reach 1,000 and return to
 * 0, and the worker's RSS is reported before, during and after.
 *
 * The client is tests/support/websocket_client.ts (frames over
 * `Deno.connectTls`, trusting the test CA), all 1,000 in this process, whose
 * open-file limit is raised first. Runs in the default handoff mode only
 * (about 25 s): upgraded connections never move, and a connection's first
 * handoff, from the gateway to the worker, is the same in both modes (the
 * mode decides route changes only).
 */

import assert from "node:assert/strict";
import { run, System } from "./support/system.ts";
import { sleep, waitUntil } from "./support/wait.ts";
import { RawWebSocket } from "./support/websocket_client.ts";
import { closePayload, Opcode } from "../src/http/websocket_frames.ts";
import { raiseFileLimit } from "../ffi/shim.ts";

const CONNECTIONS = 1000;
/** How long each connection talks: 10 s in the suite (10,000 echoes), longer
 * with WS_LOAD_SECONDS (the docs' figures are from a 30-s run). */
const SECONDS = Number(Deno.env.get("WS_LOAD_SECONDS") ?? 10);
const GAUGE = 'hotpotato_websockets_open{function="echo"}';
const MB = (bytes: number) => Math.round(bytes / (1 << 20));

/** `p`, or an error naming `what` after `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, fail) => {
        timer = setTimeout(() => fail(new Error(`${what}: not within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function metric(sys: System, series: string): Promise<number | undefined> {
  const res = await within(
    fetch(`http://127.0.0.1:${sys.adminPort}/metrics`),
    5_000,
    "GET /metrics",
  );
  const text = await res.text();
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Wait (up to `ms`: workers report every second) until `series` is `n`. */
async function metricBecomes(sys: System, series: string, n: number, ms = 10_000) {
  let v: number | undefined;
  await waitUntil(async () => (v = await metric(sys, series)) === n, {
    what: () => `${series} to be ${n} (it is ${v})`,
    timeoutMs: ms,
    everyMs: 200,
  });
}

/** What one connection saw. */
interface Conversation {
  /** The message numbers echoed, in arrival order. */
  got: number[];
  /** Echoes that were not this connection's, or not a message at all. */
  strays: string[];
  /** The server's close frame. */
  close: string;
  /** The server closed the connection after the closing handshake. */
  closedByServer: boolean;
  /** The longest time from a send to its echo, ms. */
  slowest: number;
  /** What went wrong (a write or read that failed or timed out). */
  error: string;
}

/** Connection `i`: message m ("conn i message m") at start + m s (plus an
 * offset that spreads the connections over the second), every echo read as
 * it comes; once all are back (or 10 s after the last send), close 1000. */
async function converse(ws: RawWebSocket, i: number, start: number): Promise<Conversation> {
  const c: Conversation = {
    got: [],
    strays: [],
    close: "",
    closedByServer: false,
    slowest: 0,
    error: "",
  };
  const failed = (e: unknown) => c.error ||= String(e);
  const sentAt: number[] = [];
  let allIn: () => void = () => {};
  const allInP = new Promise<void>((ok) => allIn = ok);
  const reader = (async () => {
    for (;;) {
      const e = await ws.next(SECONDS * 1000 + 20_000);
      if (e === null) return;
      if (e.type === "ping") {
        await ws.send(Opcode.Pong, e.data);
      } else if (e.type === "text" && e.data.startsWith(`conn ${i} message `)) {
        const m = Number(e.data.slice(`conn ${i} message `.length));
        c.got.push(m);
        c.slowest = Math.max(c.slowest, Date.now() - (sentAt[m] ?? Infinity));
        if (c.got.length === SECONDS) allIn();
      } else if (e.type === "close") {
        c.close = `${e.code} ${JSON.stringify(e.reason)}`;
        c.closedByServer = await ws.closedByServer(5_000);
        return;
      } else {
        c.strays.push(JSON.stringify(e).slice(0, 100));
      }
    }
  })().catch(failed);
  const offset = (i * 1000) / CONNECTIONS;
  try {
    for (let m = 0; m < SECONDS; m++) {
      await sleep(start + offset + m * 1000 - Date.now());
      sentAt[m] = Date.now();
      await ws.send(Opcode.Text, `conn ${i} message ${m}`);
    }
    await within(allInP, 10_000, `conn ${i}: echoes`).catch(failed);
    await ws.send(Opcode.Close, closePayload(1000));
  } catch (e) {
    failed(e);
  }
  await within(reader, 15_000, `conn ${i}: close`).catch(failed);
  ws.close();
  return c;
}

Deno.test(`${CONNECTIONS} WebSockets, a numbered message each per second for ${SECONDS} s: every echo in order, once; all close cleanly; the gauge reaches ${CONNECTIONS} and 0`, async () => {
  const { limit } = raiseFileLimit();
  assert.ok(limit >= CONNECTIONS + 200, `open-file limit ${limit}: too low for this test`);
  const sys = await System.start({ workers: [{ name: "echo", file: "examples/echo.ts" }] });
  const sockets: RawWebSocket[] = [];
  try {
    const echo = sys.worker("echo");
    const first = (await echo.stats()).memory;
    const rss = { before: first.rss, during: 0, after: 0 };
    const heap = { before: first.heapUsed, during: 0, after: 0 };
    const opening = Date.now();
    for (let i = 0; i < CONNECTIONS; i += 50) {
      const batch = Array.from(
        { length: Math.min(50, CONNECTIONS - i) },
        () => within(RawWebSocket.open(sys.port), 20_000, "open a WebSocket"),
      );
      sockets.push(...await Promise.all(batch));
    }
    const opened = Date.now() - opening;
    await metricBecomes(sys, GAUGE, CONNECTIONS);
    const start = Date.now() + 200;
    const conversations = Promise.all(sockets.map((ws, i) => converse(ws, i, start)));
    // Meanwhile, every 2 s: the gauge (it stays at 1,000) and the worker's RSS (the most is kept).
    const gauge: (number | undefined)[] = [];
    for (let s = 0; s < SECONDS - 2; s += 2) {
      await sleep(start + s * 1000 + 1000 - Date.now());
      gauge.push(await metric(sys, GAUGE));
      const m = (await echo.stats()).memory;
      rss.during = Math.max(rss.during, m.rss);
      heap.during = Math.max(heap.during, m.heapUsed);
    }
    const results = await within(conversations, SECONDS * 1000 + 40_000, "the conversations");
    const expected = Array.from({ length: SECONDS }, (_, m) => m);
    const wrong = results
      .map((c, i) => ({ i, ...c }))
      .filter((c) =>
        c.got.length !== SECONDS || c.got.some((m, k) => m !== expected[k]) ||
        c.strays.length > 0 || c.close !== '1000 ""' || !c.closedByServer || c.error !== ""
      );
    assert.deepEqual(
      wrong.slice(0, 5).map((c) => JSON.stringify(c)),
      [],
      `${wrong.length} connections went wrong`,
    );
    assert.ok(gauge.every((v) => v === CONNECTIONS), `gauge during the run: ${gauge}`);
    await metricBecomes(sys, GAUGE, 0);
    // The server's side: every close clean, with the client's code.
    await sys.settle();
    assert.equal(echo.count(/^echo close 1000 "" true$/), CONNECTIONS);
    assert.equal(echo.count(/^echo close /), CONNECTIONS);
    assert.equal(echo.count(/GET \/echo\W+101\b/), CONNECTIONS);
    const last = (await echo.stats()).memory;
    rss.after = last.rss;
    heap.after = last.heapUsed;
    const slowest = Math.max(...results.map((c) => c.slowest));
    console.log(
      `${CONNECTIONS} opened in ${opened} ms; slowest echo ${slowest} ms; ` +
        `worker RSS before ${MB(rss.before)} MB, during (most) ${MB(rss.during)} MB, ` +
        `after ${MB(rss.after)} MB; V8 heap used ${MB(heap.before)}, ${MB(heap.during)}, ` +
        `${MB(heap.after)} MB`,
    );
    // A bound, not a measurement (which was about 70 KB a connection, most of
    // it outside the V8 heap: TLS state and buffers): 20 MB plus 100 KB a
    // connection.
    const grew = rss.during - rss.before;
    assert.ok(grew < 20e6 + CONNECTIONS * 100_000, `RSS grew ${MB(grew)} MB`);
  } finally {
    for (const ws of sockets) ws.close();
    await sys.stop();
  }
});

/** Open fds of a process (`ls`, because Deno reads /proc/PID/fd only with -A). */
async function fdCount(pid: number): Promise<number> {
  const { stdout } = await run("ls", ["-1", `/proc/${pid}/fd`]);
  return stdout.trim().split("\n").length;
}

/** `count` WebSockets, 50 at a time, each echoing a message and then ending
 * one of three ways: a clean close from the client, the server's close
 * ("close 3000"), or the client going away without a close frame. */
async function wsWave(port: number, count: number): Promise<void> {
  for (let i = 0; i < count; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, count - i) }, async (_, k) => {
      const ws = await within(RawWebSocket.open(port), 20_000, "open a WebSocket");
      try {
        await ws.send(Opcode.Text, "hello");
        assert.deepEqual(await ws.next(), { type: "text", data: "hello" });
        const how = (i + k) % 3;
        if (how === 2) return; // gone without a close frame
        await ws.send(Opcode.Text, how === 0 ? "x" : "close 3000");
        if (how === 0) {
          assert.deepEqual(await ws.next(), { type: "text", data: "x" });
          await ws.send(Opcode.Close, closePayload(1000));
        }
        const e = await ws.next();
        assert.equal(e?.type, "close");
        if (how === 1) await ws.send(Opcode.Close, closePayload(3000));
        assert.ok(await ws.closedByServer());
      } finally {
        ws.close();
      }
    }));
  }
}

Deno.test("WebSockets leave no fd and no live heap behind in the gateway or the worker", async () => {
  const sys = await System.start({
    workers: [{ name: "echo", file: "examples/echo.ts" }],
    denoFlags: ["--v8-flags=--expose-gc"], // stats() collects garbage first
  });
  const procs = [sys.gateway, sys.worker("echo")];
  try {
    await wsWave(sys.port, 300); // warm up: JIT, buffers, pools
    await metricBecomes(sys, GAUGE, 0);
    const fds0 = await Promise.all(procs.map((p) => fdCount(p.child.pid)));
    const mem0 = await Promise.all(procs.map((p) => p.stats().then((s) => s.memory)));
    await wsWave(sys.port, 1500);
    await metricBecomes(sys, GAUGE, 0);
    const fds1 = await Promise.all(procs.map((p) => fdCount(p.child.pid)));
    const mem1 = await Promise.all(procs.map((p) => p.stats().then((s) => s.memory)));
    assert.deepEqual(fds1, fds0, "open fds per process are back to baseline");
    for (let i = 0; i < procs.length; i++) {
      const growth = mem1[i].heapUsed - mem0[i].heapUsed;
      assert.ok(growth < 4 << 20, `${procs[i].name}: live heap grew ${MB(growth)} MB`);
    }
    console.log(
      `fds ${fds0} -> ${fds1}; live heap MB ${mem0.map((m) => MB(m.heapUsed))} -> ${
        mem1.map((m) => MB(m.heapUsed))
      }; RSS MB ${mem0.map((m) => MB(m.rss))} -> ${mem1.map((m) => MB(m.rss))}`,
    );
  } finally {
    await sys.stop();
  }
});
