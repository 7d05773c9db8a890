// handoff-mode: both
/**
 * No leak: 5,000 connections with handoffs, errors, timeouts and abrupt
 * closes mixed in. Afterwards the gateway's and workers' open fd counts are
 * back to their baseline and their memory has not grown with the load.
 */

import assert from "node:assert/strict";
import { Client, run, System } from "./support/system.ts";
import { sleep, waitUntil } from "./support/wait.ts";

const enc = new TextEncoder();

/** Open fds of a process (`ls`, because Deno reads /proc/PID/fd only with -A). */
async function fdCount(pid: number): Promise<number> {
  const { stdout } = await run("ls", ["-1", `/proc/${pid}/fd`]);
  return stdout.trim().split("\n").length;
}

/** One connection doing one of several things, chosen by `kind`. */
async function oneConnection(port: number, kind: number): Promise<void> {
  if (kind === 5) {
    // TCP only: the handshake never happens (closed or timed out).
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    if (kind % 2) await c.write(new Uint8Array([0x16, 3, 1, 0, 50]));
    c.close();
    return;
  }
  const client = await Client.connect(port);
  try {
    switch (kind) {
      case 0: // handoffs: sum → product → sum, then close
        for (const op of ["sum", "product", "sum"]) await client.get(`/${op}?a=1&b=2`);
        break;
      case 1: // Connection: close from a worker
        await client.get("/product?a=1&b=2", "connection: close\r\n");
        break;
      case 2: // a bad request: 400 and close
        await client.write(enc.encode("GET /sum HTTP/1.1\r\n\r\n"));
        await client.read();
        break;
      case 3: // unknown route from a worker: back to the gateway, 404
        await client.get("/sum?a=1&b=2");
        await client.get("/nowhere");
        break;
      case 4: // abrupt close in the middle of a request held by a worker
        await client.get("/product?a=1&b=2");
        await client.write(enc.encode("GET /sum?a=1&b=2 HTTP/1.1\r\nho"));
        break;
      default: // left idle: the idle timeout closes it
        await client.get("/sum?a=1&b=2");
        await sleep(10);
    }
  } finally {
    client.close();
  }
}

export async function wave(port: number, count: number, concurrency: number): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const i = next++;
      await oneConnection(port, i % 7).catch(() => {});
    }
  }));
}

Deno.test("5,000 mixed connections leave no fd behind and memory flat", async () => {
  const sys = await System.start({
    denoFlags: ["--v8-flags=--expose-gc"],
    gatewayArgs: ["--idle-timeout", "0.5", "--handshake-timeout", "0.5"],
    workerArgs: ["--idle-timeout", "0.5"],
  });
  const procs = [sys.gateway, ...sys.workers];
  const fdCounts = () => Promise.all(procs.map((p) => fdCount(p.child.pid)));
  /** Once no connection is held any more (the idle and handshake timeouts,
   * 0.5 s, close what clients left open), the processes' open fds. */
  const settled = async (): Promise<number[]> => {
    let held = "";
    await waitUntil(async () => {
      const gateway = await sys.metric("hotpotato_connections_open", 'holder="gateway"');
      const workers = await Promise.all(sys.workers.map((w) => w.stats().then((s) => s.held)));
      held = `gateway ${gateway}, workers ${workers}`;
      return gateway === 0 && workers.every((n) => n === 0);
    }, { what: () => `no connection held (${held})`, everyMs: 100 });
    // (A socket closes a moment after its holder lets it go: the same count twice.)
    let fds: number[] = [], last = "";
    await waitUntil(async () => last === (last = String(fds = await fdCounts())), {
      what: () => `the open fds to stay the same for 100 ms (${last})`,
      everyMs: 100,
    });
    return fds;
  };
  try {
    await wave(sys.port, 1000, 50); // warm up: JIT, buffers, pools
    const fds0 = await settled();
    const mem0 = await Promise.all(procs.map((p) => p.stats().then((s) => s.memory)));
    await wave(sys.port, 5000, 50);
    await settled();
    // Back where they were within 3 s (or never: a leak).
    let fds1: number[] = [];
    await waitUntil(async () => String(fds1 = await fdCounts()) === String(fds0), {
      what: () => `open fds per process back to baseline ${fds0} (${fds1} now)`,
      timeoutMs: 3000,
      everyMs: 100,
    });
    const mem1 = await Promise.all(procs.map((p) => p.stats().then((s) => s.memory)));
    assert.deepEqual(fds1, fds0, "open fds per process are back to baseline");
    const mib = (n: number) => Math.round(n / 1048576 * 10) / 10;
    for (let i = 0; i < procs.length; i++) {
      // Live JavaScript heap after a full GC: what a leak of connection
      // objects, buffers or timers would grow. (RSS moves with V8's heap
      // sizing and is reported, not asserted.)
      const growth = mem1[i].heapUsed - mem0[i].heapUsed;
      assert.ok(growth < 4 * 1048576, `${procs[i].name}: live heap grew ${mib(growth)} MiB`);
    }
    console.log(
      `fds ${JSON.stringify(fds0)} -> ${JSON.stringify(fds1)}; live heap MiB ${
        JSON.stringify(mem0.map((m) => mib(m.heapUsed)))
      } -> ${JSON.stringify(mem1.map((m) => mib(m.heapUsed)))}; RSS MiB ${
        JSON.stringify(mem0.map((m) => mib(m.rss)))
      } -> ${JSON.stringify(mem1.map((m) => mib(m.rss)))}`,
    );
  } finally {
    await sys.stop();
  }
});
