/**
 * The launcher (`./hp start`, `make start`, `deno task start`): runs the gateway and the workers as
 * child processes with their minimal permissions, restarts a child that dies
 * (with exponential backoff), and stops them all on SIGINT or SIGTERM (each
 * drains first). Children write to the launcher's own stdout and stderr
 * (inherited), each line prefixed with the child's name: the launcher passes
 * the prefix in HOTPOTATO_LOG_PREFIX and src/operations/log.ts writes it, so no line
 * passes through the launcher. Each child's stdin is a pipe from the
 * launcher; children exit when it closes, so a killed launcher leaves no
 * orphans.
 *
 *   ./hp start [--workers sum=2,product=2] [--function hello=examples/hello.ts]
 *   make start ARGS="--workers sum=2,product=2 --function hello=examples/hello.ts"
 *
 * @module
 */

import { projectRoot } from "../../ffi/paths.ts";
import { parseArgs } from "node:util";
import { type Role, rolesFor, SERVER_FLAGS } from "./roles.ts";

const BACKOFF_MIN_MS = 200;
const BACKOFF_MAX_MS = 10_000;
/** A child that ran this long is healthy again: its backoff resets. */
const HEALTHY_MS = 10_000;
/** How long children may drain on stop before SIGKILL: their drain timeout
 * (HOTPOTATO_DRAIN_TIMEOUT, default 10 s) plus a margin. */
function stopGraceMs(): number {
  let drain = 10;
  try {
    drain = Number(Deno.env.get("HOTPOTATO_DRAIN_TIMEOUT") ?? "10") || 10;
  } catch {
    // no env access: the default
  }
  return drain * 1000 + 5000;
}

interface Child {
  role: Role;
  process?: Deno.ChildProcess;
  backoffMs: number;
  restarts: number;
}

/**
 * Runs and supervises a set of roles.
 *
 * @example
 * ```ts
 * import { Launcher } from "./launcher.ts";
 * import { rolesFor } from "./roles.ts";
 * const launcher = new Launcher(rolesFor(["sum=2"], [])); // gateway, sum.1, sum.2, product
 * launcher.start();
 * // later: await launcher.stop();
 * ```
 */
export class Launcher {
  #children: Child[];
  #stopping = false;
  #width: number;

  /** Prepare to run `roles`.
   *
   * @example
   * ```ts
   * import { Launcher } from "./launcher.ts";
   * new Launcher([{ name: "gateway", file: "gateway.ts", args: [] }]);
   * ```
   */
  constructor(roles: readonly Role[]) {
    this.#children = roles.map((role) => ({ role, backoffMs: BACKOFF_MIN_MS, restarts: 0 }));
    this.#width = Math.max(8, ...roles.map((r) => r.name.length));
  }

  #say(message: string): void {
    console.log(`${"launcher".padEnd(this.#width)} | ${message}`);
  }

  /** Start every child.
   *
   * @example
   * ```ts
   * import type { Launcher } from "./launcher.ts";
   * declare const launcher: Launcher;
   * launcher.start();
   * ```
   */
  start(): void {
    for (const child of this.#children) this.#spawn(child);
  }

  #spawn(child: Child): void {
    if (this.#stopping) return;
    const { role } = child;
    const cmd = new Deno.Command(Deno.execPath(), {
      args: ["run", ...SERVER_FLAGS, role.file, ...role.args],
      cwd: projectRoot,
      env: {
        HOTPOTATO_SUPERVISED: "1",
        HOTPOTATO_RESTARTED: child.restarts > 0 ? "1" : "0",
        HOTPOTATO_LOG_PREFIX: `${role.name.padEnd(this.#width)} | `,
        // The launcher's own workers never replace each other (a pool would
        // take turns replacing and restarting); --replace is for a worker
        // started by hand beside them.
        HOTPOTATO_REPLACE: "off",
      },
      stdin: "piped", // never written: its EOF tells the child the launcher is gone
      stdout: "inherit",
      stderr: "inherit",
    });
    const started = Date.now();
    let proc: Deno.ChildProcess;
    try {
      proc = cmd.spawn();
    } catch (e) {
      this.#say(`cannot start ${role.name}: ${(e as Error).message}`);
      this.#scheduleRestart(child, started);
      return;
    }
    child.process = proc;
    proc.status.then((status) => {
      child.process = undefined;
      if (this.#stopping) return;
      const how = status.signal ? `signal ${status.signal}` : `code ${status.code}`;
      this.#say(`${role.name} exited (${how})`);
      this.#scheduleRestart(child, started);
    });
  }

  #scheduleRestart(child: Child, started: number): void {
    if (Date.now() - started >= HEALTHY_MS) child.backoffMs = BACKOFF_MIN_MS;
    const delay = child.backoffMs;
    child.backoffMs = Math.min(child.backoffMs * 2, BACKOFF_MAX_MS);
    child.restarts++;
    this.#say(`restarting ${child.role.name} in ${delay} ms (restart ${child.restarts})`);
    setTimeout(() => this.#spawn(child), delay);
  }

  /** Stop every child: SIGTERM, then SIGKILL after a grace period.
   *
   * @example
   * ```ts
   * import type { Launcher } from "./launcher.ts";
   * declare const launcher: Launcher;
   * await launcher.stop();
   * ```
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    const running = this.#children.map((c) => c.process).filter((p) => p !== undefined);
    for (const p of running) {
      try {
        p.kill("SIGTERM");
      } catch {
        // already gone
      }
    }
    const killer = setTimeout(() => {
      for (const p of running) {
        try {
          p.kill("SIGKILL");
        } catch {
          // already gone
        }
      }
    }, stopGraceMs());
    await Promise.all(running.map((p) => p.status));
    clearTimeout(killer);
  }
}

const USAGE = `Usage: ./hp start [options]
       make start ARGS="[options]"

Runs the gateway and the function workers, restarts any that die, stops all on Ctrl-C.

  --workers NAME=COUNT,...   workers per function (default sum=1,product=1)   HOTPOTATO_WORKERS
  --function NAME=FILE       another function to run (repeatable)            HOTPOTATO_FUNCTIONS
  -h, --help                 this text

The gateway and workers read their own settings from HOTPOTATO_* variables
(./hp gateway --help and ./hp sum --help list them).`;

function envList(name: string): string[] {
  try {
    const v = Deno.env.get(name);
    return v ? [v] : [];
  } catch {
    return [];
  }
}

if (import.meta.main) {
  let roles: Role[];
  try {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        workers: { type: "string", multiple: true },
        function: { type: "string", multiple: true },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    });
    if (values.help) {
      console.log(USAGE);
      Deno.exit(0);
    }
    roles = rolesFor(
      values.workers ?? envList("HOTPOTATO_WORKERS"),
      values.function ?? envList("HOTPOTATO_FUNCTIONS"),
    );
  } catch (e) {
    console.error(`launcher: ${(e as Error).message.split("\n")[0]}`);
    Deno.exit(2);
  }
  const launcher = new Launcher(roles);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${"launcher".padEnd(8)} | ${signal}: stopping all`);
    await launcher.stop();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
  launcher.start();
}
