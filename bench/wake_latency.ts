/**
 * One hop between two processes, as a handoff makes it: a message with an fd
 * (SCM_RIGHTS) over a Unix SOCK_SEQPACKET socket, received through the
 * project's event loop (the shim's epoll thread waking JavaScript through
 * its wake pipe, which Deno's own event loop watches), and the answer back. Ping-pong N times;
 * one hop = round trip / 2. bench/wake_floor.c does the same in C with
 * blocking calls: the kernel's and the scheduler's part alone.
 *
 *   deno run -A bench/wake_latency.ts [--rounds 20000]
 *   taskset -c 0 deno run -A bench/wake_latency.ts     (everything on one CPU)
 *
 * Prints `wake-json {...}` with µs per hop (p50, p90, p99, mean): through
 * the event loop, and the C floor with both processes on one CPU and on two.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  accept,
  closeFd,
  EAGAIN,
  receiveMessage,
  sendMessage,
  tcpListen,
  unixConnect,
  unixListen,
} from "../ffi/shim.ts";
import { EventLoop } from "../src/connection/event_loop.ts";
import { root, run } from "./lib.ts";

const { values } = parseArgs({
  options: {
    child: { type: "string" },
    rounds: { type: "string", default: "20000" },
  },
});
const loop = EventLoop.instance();
const msg = new Uint8Array(480); // about a HANDOFF message
const buf = new Uint8Array(65536);

/** Call onMessage for every message waiting on fd, each time it is readable. */
function watch(fd: number, onMessage: (passedFd: number) => void): void {
  loop.add(fd, () => {
    for (;;) {
      const r = receiveMessage(fd, buf);
      if (typeof r === "number") {
        if (r !== -EAGAIN) loop.remove(fd);
        return;
      }
      if (r.length === 0) {
        loop.remove(fd);
        return;
      }
      onMessage(r.fd);
    }
  });
}

if (values.child) {
  // Echo: take the fd (close it, as a worker would after import), answer.
  const fd = unixConnect(values.child);
  watch(fd, (passed) => {
    closeFd(passed);
    sendMessage(fd, msg);
  });
  // exits when the parent closes the socket (loop.remove leaves nothing to wait for)
  const t = setInterval(() => {
    if (loop.size === 0) {
      clearInterval(t);
      loop.close().then(() => Deno.exit(0));
    }
  }, 50);
} else {
  const rounds = Number(values.rounds);
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-wake-" });
  const listenFd = unixListen(`${dir}/s.sock`);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, "--child", `${dir}/s.sock`],
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const conn = Promise.withResolvers<number>();
  loop.add(listenFd, () => {
    const c = accept(listenFd);
    if (c) conn.resolve(c.fd);
  });
  const fd = await conn.promise;
  const payload = tcpListen("127.0.0.1", 0); // an fd to pass along, like a client socket
  const times: number[] = [];
  let t0 = 0, n = 0;
  const done = Promise.withResolvers<void>();
  const ping = () => {
    t0 = performance.now();
    sendMessage(fd, msg, payload);
  };
  watch(fd, () => {
    times.push((performance.now() - t0) * 1000 / 2);
    if (++n < rounds) ping();
    else done.resolve();
  });
  ping();
  await done.promise;
  loop.remove(fd);
  closeFd(fd);
  closeFd(payload);
  loop.remove(listenFd);
  closeFd(listenFd);
  await child.status;
  await loop.close();
  await Deno.remove(dir, { recursive: true });

  const stats = (xs: number[]) => {
    const s = xs.slice(1000).sort((a, b) => a - b); // after warm-up
    const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
    return {
      p50: +q(0.5).toFixed(1),
      p90: +q(0.9).toFixed(1),
      p99: +q(0.99).toFixed(1),
      mean: +(s.reduce((a, b) => a + b, 0) / s.length).toFixed(1),
    };
  };
  const result: Record<string, unknown> = { rounds, eventLoopHopUs: stats(times) };

  // The floor: the same ping-pong in C, blocking recvmsg (bench/wake_floor.c).
  const bin = `${root}/.local/build/wake_floor`;
  await Deno.mkdir(`${root}/.local/build`, { recursive: true });
  const cc = await run("cc", ["-O2", "-o", bin, `${root}/bench/wake_floor.c`]);
  if (cc.code === 0) {
    for (const mode of ["same", "cross"]) {
      const r = await run(bin, [String(rounds), mode]);
      const m = r.stdout.match(/^floor (\{.*\})$/m);
      if (m) result[`kernelFloorHopUs_${mode}Cpu`] = JSON.parse(m[1]);
    }
  }
  console.log(`wake-json ${JSON.stringify(result)}`);
}
