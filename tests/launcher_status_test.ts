/**
 * `./hp status` (issue 24: crash loops are visible): the launcher's status
 * file, and the real launcher in a crash loop of its gateway, read the way
 * an operator does (`deno task status`) and through the file.
 */

import assert from "node:assert/strict";
import { projectRoot } from "../ffi/paths.ts";
import {
  formatStatus,
  type LauncherStatus,
  readStatuses,
  StatusFile,
} from "../src/operations/launcher_status.ts";
import { Launched } from "./support/launched.ts";
import { waitUntil } from "./support/wait.ts";

Deno.test("status files: written whole, read back; a stale or foreign file is skipped", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const now = Date.now();
    const status: LauncherStatus = {
      pid: 4242,
      at: now,
      roles: [
        {
          role: "gateway",
          state: "backoff",
          restarts: 4,
          exits: { "signal SIGKILL": 4 },
          restartInMs: 1600,
        },
        { role: "sum", pid: 4250, state: "running", restarts: 0, exits: {}, since: now - 61_000 },
      ],
    };
    new StatusFile(dir, 4242).write(status);
    // A killed launcher's file (not rewritten for a minute), and one not ours.
    new StatusFile(dir, 4243).write({ ...status, pid: 4243, at: now - 60_000 });
    Deno.writeTextFileSync(`${dir}/launcher.4244.status.json`, "{not json");
    Deno.writeTextFileSync(`${dir}/launcher.4245.status.json`, JSON.stringify({ ...status }));
    assert.deepEqual(readStatuses(dir, now), [status]);
    const text = formatStatus(status, now + 600);
    assert.match(text, /^launcher pid 4242\n/);
    assert.match(text, /gateway +- +backoff \(next start in 1\.0 s\) +4 +4 x signal SIGKILL/);
    assert.match(text, /sum +4250 +running 62 s +0 +-/);
    assert.equal(Deno.statSync(new StatusFile(dir, 4242).path).mode! & 0o777, 0o600);
    new StatusFile(dir, 4242).remove();
    assert.deepEqual(readStatuses(dir, now), []);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

/** `deno task status` (what ./hp status runs) with this run directory. */
async function statusCommand(xdg: string): Promise<{ code: number; out: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "status"],
    cwd: projectRoot,
    env: { XDG_RUNTIME_DIR: xdg, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, out: text };
}

Deno.test("./hp status shows a gateway in a crash loop: its backoff, restarts and exits", async () => {
  const xdg = await Deno.makeTempDir({ prefix: "hotpotato-xdg-" });
  await Deno.chmod(xdg, 0o700);
  const sys = await Launched.start("start", [], ["sum", "product"], { XDG_RUNTIME_DIR: xdg });
  const run = `${xdg}/hotpotato`;
  try {
    const first = await statusCommand(xdg);
    assert.equal(first.code, 0, first.out);
    assert.match(first.out, /gateway +\d+ +running \d+ s +0 +-/);
    assert.match(first.out, /sum +\d+ +running/);
    // Four kills, each as soon as the new gateway listens: the backoff doubles.
    for (let k = 1; k <= 4; k++) {
      const mark = sys.lines.length;
      const gateway = readStatuses(run)[0].roles.find((r) => r.role === "gateway")!;
      assert.ok(gateway.pid, `kill ${k}: the gateway runs`);
      Deno.kill(gateway.pid, "SIGKILL");
      await sys.waitLine(/^launcher\s+\| restarting gateway in \d+ ms/, mark);
      if (k < 4) {
        await sys.waitLine(/^gateway\s+\|.*listening on https/, mark);
        await waitUntil(() => readStatuses(run)[0]?.roles[0].state === "running", {
          what: `the gateway running again after kill ${k}`,
        });
      }
    }
    // The fourth restart waits 1.6 s: the file and the command say so.
    const inLoop = readStatuses(run)[0].roles.find((r) => r.role === "gateway")!;
    assert.equal(inLoop.state, "backoff");
    assert.ok(inLoop.restartInMs! > 0 && inLoop.restartInMs! <= 1600, String(inLoop.restartInMs));
    assert.equal(inLoop.restarts, 4);
    assert.deepEqual(inLoop.exits, { "signal SIGKILL": 4 });
    const shown = await statusCommand(xdg);
    assert.match(
      shown.out,
      /gateway +- +backoff \(next start in \d\.\d s\) +4 +4 x signal SIGKILL/,
    );
    // And it comes back.
    await waitUntil(() => readStatuses(run)[0]?.roles[0].state === "running", {
      what: "the gateway running after its backoff",
    });
  } finally {
    await sys.stop();
  }
  // A launcher that stopped leaves no file: nothing to show.
  assert.deepEqual(readStatuses(run), []);
  const none = await statusCommand(xdg);
  assert.equal(none.code, 1);
  assert.match(none.out, /no launcher of yours is running/);
  await Deno.remove(xdg, { recursive: true });
});
