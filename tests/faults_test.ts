/**
 * Faults: the launcher bringing a killed worker back, a worker whose event
 * loop is stuck. Only what the failed process held is affected; everyone
 * else keeps being served. (A worker killed under load and the gateway
 * restarted, while connections change function: faults_moves_test.ts.)
 */

import { forEachLine } from "../src/operations/lines.ts";
import assert from "node:assert/strict";
import { projectRoot } from "../ffi/paths.ts";
import { Client, System } from "./support/system.ts";
import { sleep } from "./support/wait.ts";

Deno.test("the launcher restarts a killed worker and stops everything on SIGINT", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-launcher-" });
  await Deno.chmod(dir, 0o755); // the roles' users (launcher as root) reach the control socket
  const launcher = new Deno.Command(Deno.execPath(), {
    args: ["task", "start"],
    cwd: projectRoot,
    env: {
      HOTPOTATO_PORT: "0",
      HOTPOTATO_ADMIN_PORT: "0",
      HOTPOTATO_CONTROL: `${dir}/run/gateway.sock`,
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const reading = forEachLine(launcher.stdout, (line) => lines.push(line));
  const waitLine = async (re: RegExp, after = 0): Promise<RegExpMatchArray> => {
    for (let i = 0; i < 300; i++) {
      for (const l of lines.slice(after)) {
        const m = l.match(re);
        if (m) return m;
      }
      await sleep(50);
    }
    throw new Error(`no line ${re}:\n${lines.join("\n")}`);
  };
  try {
    const port = Number((await waitLine(/^gateway\s+\|.*listening on https:\/\/[^:]+:(\d+)/))[1]);
    const pid = Number((await waitLine(/worker sum\/(\d+) registered/))[1]);
    await waitLine(/worker product\/\d+ registered/);
    const mark = lines.length;
    Deno.kill(pid, "SIGKILL");
    await waitLine(/^launcher\s+\| restarting sum in \d+ ms/, mark);
    const again = Number((await waitLine(/worker sum\/(\d+) registered/, mark))[1]);
    assert.notEqual(again, pid);
    const client = await Client.connect(port);
    assert.equal((await client.get("/sum?a=20&b=22")).status, 200);
    client.close();
    launcher.kill("SIGINT");
    const status = await launcher.status;
    assert.equal(status.code, 0);
    for (const child of [again]) {
      let alive = true;
      try {
        Deno.kill(child, "SIGCONT");
      } catch {
        alive = false;
      }
      assert.equal(alive, false, "children are gone after the launcher stops");
    }
  } finally {
    try {
      launcher.kill("SIGKILL");
    } catch { /* exited */ }
    await launcher.status;
    await reading;
    await launcher.stderr.cancel();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a worker whose event loop is stuck gets no new connections until it answers again", async () => {
  const sys = await System.start({
    workers: [{ name: "misbehave", file: "tests/fixtures/misbehave.ts" }],
    gatewayArgs: ["--worker-timeout", "1.5"],
  });
  const stuck = await Client.connect(sys.port);
  try {
    await stuck.write(Client.request("/block?ms=4500")); // its worker stops answering anything
    await sys.gateway.waitFor(/worker misbehave\/\d+ silent for \d+ ms/, 6000);
    // A new client is told at once, instead of being handed to a process that cannot answer.
    const other = await Client.connect(sys.port);
    const t0 = Date.now();
    const res = await other.get("/slow?ms=1");
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("retry-after"), "1");
    assert.ok(Date.now() - t0 < 1000);
    other.close();
    // When the loop comes back, the blocked request is answered and the worker serves again.
    assert.equal(JSON.parse((await stuck.read(10_000)).body).blocked, true);
    await sys.gateway.waitFor(/worker misbehave\/\d+ answers again/, 5000);
    const later = await Client.connect(sys.port);
    assert.equal((await later.get("/slow?ms=1")).status, 200);
    later.close();
  } finally {
    stuck.close();
    await sys.stop();
  }
});
