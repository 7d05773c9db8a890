/**
 * Test support: the launcher (`deno task start` or `deno task dev`) as a
 * user runs it, on free ports and a private control socket, with its output
 * (every child's lines, prefixed) collected line by line.
 *
 * @module
 */

import { projectRoot } from "../../ffi/paths.ts";
import { forEachLine } from "../../src/operations/lines.ts";
import { HANDOFF_MODE, metricOf } from "./system.ts";
import { processUid } from "../../ffi/shim.ts";
import { DEFAULT_USERS, RoleUsers } from "../../src/operations/users.ts";

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

/** A function as `GET /functions` lists it (the fields the tests read). */
export interface FunctionState {
  name: string;
  state: string;
  workers: number;
  waiting: number;
  parked: number;
  pool: { pid: number; conns: number }[];
}

/** A launcher and its children. */
export class Launched {
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  readonly dir: string;
  port = 0;
  adminPort = 0;
  #reading: Promise<void>;

  private constructor(child: Deno.ChildProcess, dir: string) {
    this.child = child;
    this.dir = dir;
    this.#reading = Promise.all([
      forEachLine(child.stdout, (line) => this.lines.push(line)),
      forEachLine(child.stderr, (line) => this.lines.push(line)),
    ]).then(() => {});
  }

  /** `deno task TASK ARGS` with HOTPOTATO_* from `env`; resolves once the
   * gateway listens and `functions` have registered. */
  static async start(
    task: "start" | "dev",
    args: string[],
    functions: string[],
    env: Record<string, string> = {},
    as?: { uid: number; gid: number },
  ): Promise<Launched> {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-launched-" });
    // Run as root, the launcher runs each role as a user of its own: they
    // must reach the control socket's directory inside this one.
    await Deno.chmod(dir, 0o755);
    // `as`: the launcher runs as that (normal) user, which owns the directory.
    if (as) await Deno.chown(dir, as.uid, as.gid);
    const wrapper = as
      ? ["setpriv", `--reuid=${as.uid}`, `--regid=${as.gid}`, "--clear-groups", "--"]
      : [];
    const command = [...wrapper, Deno.execPath()];
    const child = new Deno.Command(command[0], {
      args: [...command.slice(1), "task", task, ...args],
      cwd: projectRoot,
      env: {
        HOTPOTATO_PORT: "0",
        HOTPOTATO_ADMIN_PORT: "0",
        HOTPOTATO_CONTROL: `${dir}/run/gateway.sock`,
        HOTPOTATO_HANDOFF: HANDOFF_MODE,
        NO_COLOR: "1",
        ...env,
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const l = new Launched(child, dir);
    try {
      l.port = Number((await l.waitLine(/^gateway\s+\|.*listening on https:\/\/[^:]+:(\d+)/))[1]);
      l.adminPort = Number((await l.waitLine(/^gateway\s+\|.*admin on http:\/\/[^:]+:(\d+)/))[1]);
      for (const fn of functions) await l.waitLine(new RegExp(`worker ${fn}/\\d+ registered`));
    } catch (e) {
      await l.stop();
      throw e;
    }
    return l;
  }

  /** The first line from index `after` on that matches `re` (15 s at most). */
  async waitLine(re: RegExp, after = 0, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      for (let i = after; i < this.lines.length; i++) {
        const m = this.lines[i].match(re);
        if (m) return m;
      }
      if (Date.now() > until) {
        throw new Error(`no line ${re} in:\n${this.lines.slice(after).join("\n")}`);
      }
      await sleep(25);
    }
  }

  /** The launcher's own pid (the deno task runs it as a child; it says its pid). */
  async launcherPid(): Promise<number> {
    return Number((await this.waitLine(/^launcher\s+\| pid (\d+): kill -HUP/))[1]);
  }

  /** SIGHUP the launcher (directly, or by scripts/reload.sh) and wait for
   * its "reload N: ... in X ms" line; returns the lines it wrote from the
   * signal on. */
  async reload(how: "signal" | "script" = "signal"): Promise<string[]> {
    const mark = this.lines.length;
    if (how === "script") {
      // What a person types: ./hp reload (scripts/reload.sh) finds the launcher.
      const out = await new Deno.Command("bash", {
        args: ["scripts/reload.sh"],
        cwd: projectRoot,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const said = new TextDecoder().decode(out.stdout);
      if (!out.success || !said.includes(`launcher pid ${await this.launcherPid()}`)) {
        throw new Error(`reload.sh: ${said} ${new TextDecoder().decode(out.stderr)}`);
      }
    } else Deno.kill(await this.launcherPid(), "SIGHUP");
    await this.waitLine(
      /^launcher\s+\| reload \d+: (done|\d+ of \d+ failed) in \d+ ms/,
      mark,
      60_000,
    );
    return this.lines.slice(mark);
  }

  /** A metric's value from the gateway's /metrics (the sum of its series
   * whose labels contain `labels`). */
  metric(name: string, labels = ""): Promise<number> {
    return metricOf(this.adminPort, name, labels);
  }

  /** Function `name` as the gateway's `GET /functions` shows it (its
   * state, workers, waiting requests, parked connections), if known. */
  async functionState(name: string): Promise<FunctionState | undefined> {
    const res = await fetch(`http://127.0.0.1:${this.adminPort}/functions`);
    const all = await res.json() as FunctionState[];
    return all.find((f) => f.name === name);
  }

  /** SIGINT (Ctrl-C): everything drains and stops. */
  async stop(): Promise<void> {
    try {
      this.child.kill("SIGINT");
    } catch {
      // gone
    }
    const killer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 20_000);
    await this.child.status;
    clearTimeout(killer);
    await this.#reading;
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** Make the key file at `path` the gateways' own, as an operator does for
 * the launcher run as root (separate users: owned by the gateways' user,
 * mode 0600, its directory reachable); nothing to do for one user. */
export async function keyForTheGateways(path: string): Promise<void> {
  if (processUid() !== 0) return;
  const users = (await RoleUsers.prepare({ ...DEFAULT_USERS, mode: "separate" }, []))!;
  await Deno.chmod(path.slice(0, path.lastIndexOf("/")), 0o755);
  await Deno.chown(path, users.gateway.uid, users.gateway.gid);
  await Deno.chmod(path, 0o600);
}
