/**
 * The gateway at its open-file limit: connections that wait in the listen
 * queue are accepted once fds are free again, even though no new client
 * arrives to wake the (edge-triggered) listener, and waiting costs no CPU.
 */

import assert from "node:assert/strict";
import { CA_CERT, Proc } from "./support/system.ts";
import { sleep, waitUntil } from "./support/wait.ts";

/** CPU time (user + system) a process has used, ms. (Read with cat: Deno
 * asks for --allow-all to read another process's /proc files.) */
async function cpuMs(pid: number): Promise<number> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/stat`] }).output();
  const stat = new TextDecoder().decode(out.stdout);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime in 1/100 s
}

/** Connections waiting in the accept queue of the listener on `port`
 * (the Recv-Q `ss` shows for a listening socket). */
async function queued(port: number): Promise<number> {
  const out = await new Deno.Command("ss", { args: ["-Hltn", `sport = :${port}`] }).output();
  return Number(new TextDecoder().decode(out.stdout).trim().split(/\s+/)[1] ?? 0);
}

/** A real curl request; resolves with the HTTP status ("000": no answer). */
async function curl(port: number, path: string, maxSeconds: number): Promise<string> {
  const out = await new Deno.Command("curl", {
    args: [
      "-s",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "--cacert",
      CA_CERT,
      "--max-time",
      String(maxSeconds),
      `https://localhost:${port}${path}`,
    ],
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(out.stdout);
}

Deno.test("at its open-file limit the gateway serves queued connections once fds are freed, without spinning", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-test-" });
  const gateway = new Proc(
    "gateway",
    "gateway.ts",
    [
      "--port",
      "0",
      "--admin-port",
      "off",
      "--control",
      `${dir}/run/gateway.sock`,
      "--handshake-timeout",
      "4",
      "--log-level",
      "debug",
    ],
    {},
    [],
    ["prlimit", "--nofile=48:64"], // soft 48, hard 64: the gateway raises it to 64
  );
  const idle: Deno.Conn[] = [];
  try {
    const port = Number((await gateway.waitFor(/listening on https:\/\/[^:]+:(\d+)/))[1]);
    // The soft limit in force is the hard one (Deno raises it at start too).
    await gateway.waitFor(/\[DBG\].*open-file limit 64\b/);
    const pid = gateway.child.pid;

    // Idle TCP connections (no ClientHello) until the gateway runs out of fds.
    while (gateway.count(/EMFILE/) === 0) {
      assert.ok(idle.length < 200, "the gateway never reached its fd limit");
      for (let i = 0; i < 4; i++) {
        idle.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      }
      await sleep(30);
    }

    // Real TLS clients now wait in the listen queue, behind the last idle ones.
    const inQueue = await queued(port);
    const answers = [0, 1, 2].map(() => curl(port, "/nowhere", 15));
    let waiting = inQueue;
    await waitUntil(async () => (waiting = await queued(port)) >= inQueue + 3, {
      what: () => `3 more connections in the listen queue (${waiting - inQueue})`,
    });

    // At the limit, waiting costs (almost) nothing: no busy retry loop.
    const before = await cpuMs(pid);
    const windowStart = Date.now();
    await sleep(1500);
    const used = (await cpuMs(pid)) - before;
    const windowMs = Date.now() - windowStart;
    assert.equal(gateway.count(/accepting again/), 0, "still at the limit during the window");
    assert.ok(used < windowMs * 0.3, `${used} ms of CPU in ${windowMs} ms at the limit`);

    // The handshake timeout frees the idle connections' fds; nothing new
    // arrives, and the queued clients are answered all the same.
    assert.deepEqual(await Promise.all(answers), ["404", "404", "404"]);
    await gateway.waitFor(/\[INF\].*clients: accepting again after \d+ ms/, 1000);
    assert.equal(gateway.exited, false);
  } finally {
    for (const c of idle) {
      try {
        c.close();
      } catch {
        // closed
      }
    }
    await gateway.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
