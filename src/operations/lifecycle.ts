/**
 * Process lifecycle shared by the gateway and the workers: stop on SIGINT or
 * SIGTERM, raise the open-file limit at start, and, when started by the
 * launcher (HOTPOTATO_SUPERVISED=1), stop when the launcher's end of stdin
 * closes, so that a killed launcher leaves no orphans behind; the lines the
 * launcher writes there (a parked worker's "go") go to their listeners.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { raiseFileLimit } from "../../ffi/shim.ts";
import { printLine } from "./log.ts";

/** What the launcher says on a child's stdin, line by line (a parked
 * worker's "go"), to each listener. */
const launcherLines = new Set<(line: string) => void>();

/** Call `listener` with each line the launcher writes on stdin (read by
 * {@linkcode onShutdown}'s reader, under the launcher only): a parked
 * worker waits for "go".
 *
 * @example
 * ```ts
 * import { onLauncherLine } from "./lifecycle.ts";
 * onLauncherLine((line) => {
 *   if (line === "go") console.log("register now");
 * });
 * ```
 */
export function onLauncherLine(listener: (line: string) => void): void {
  launcherLines.add(listener);
}

/** Call `stop` once on SIGINT, SIGTERM or (under the launcher) stdin EOF.
 *
 * @example
 * ```ts
 * import { onShutdown } from "./lifecycle.ts";
 * onShutdown((why) => {
 *   console.log(`stopping: ${why}`);
 *   Deno.exit(0);
 * });
 * ```
 */
export function onShutdown(stop: (reason: string) => void | Promise<void>): void {
  let called = false;
  const once = (reason: string) => {
    if (called) return;
    called = true;
    Promise.resolve(stop(reason)).catch(() => Deno.exit(1));
  };
  Deno.addSignalListener("SIGINT", () => once("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => once("SIGTERM"));
  let supervised = false;
  try {
    supervised = Deno.env.get("HOTPOTATO_SUPERVISED") === "1";
  } catch {
    // no env access: not supervised
  }
  if (supervised) {
    (async () => {
      const buf = new Uint8Array(64);
      let line = "";
      try {
        for (;;) {
          const n = await Deno.stdin.read(buf);
          if (n === null) break;
          // The launcher writes short lines ("go"); anything longer is cut.
          line = (line + new TextDecoder().decode(buf.subarray(0, n))).slice(-256);
          for (let nl = line.indexOf("\n"); nl >= 0; nl = line.indexOf("\n")) {
            const said = line.slice(0, nl);
            line = line.slice(nl + 1);
            for (const listener of launcherLines) listener(said);
          }
        }
      } catch {
        // stdin gone
      }
      once("launcher gone");
    })();
  }
}

/** Print `hotpotato-stats {json}` on stdout at each SIGUSR2, whatever the log
 * level, after every log line written before it (with the log prefix under
 * the launcher): the role's counters plus memory use (after a full GC when the
 * process runs with `--v8-flags=--expose-gc`, as the leak test does). The
 * benchmark and the tests read it.
 *
 * @example
 * ```ts
 * import { printStatsOnSignal } from "./lifecycle.ts";
 * printStatsOnSignal(() => ({ requests: 42 }));
 * ```
 */
export function printStatsOnSignal(stats: () => Record<string, unknown>): void {
  Deno.addSignalListener("SIGUSR2", () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const m = Deno.memoryUsage();
    const memory = { rss: m.rss, heapUsed: m.heapUsed, external: m.external };
    // In order with the log lines before it (the tests use it as a barrier).
    printLine(`hotpotato-stats ${JSON.stringify({ ...stats(), memory })}`);
  });
}

/** Raise the soft open-file limit to the hard one (logged at debug; a
 * failure is a warning, the process goes on with the limit it has).
 *
 * @example
 * ```ts
 * import { raiseOpenFileLimit } from "./lifecycle.ts";
 * import { logger } from "./log.ts";
 * raiseOpenFileLimit(logger("worker"));
 * ```
 */
export function raiseOpenFileLimit(log: Logger): void {
  try {
    const { limit, before } = raiseFileLimit();
    log.debug("open-file limit {limit}{raised}", {
      limit,
      raised: before < limit ? ` (soft limit raised from ${before})` : "",
    });
  } catch (e) {
    log.warning("cannot raise the open-file limit: {error}", { error: (e as Error).message });
  }
}

/** How long after its start a process may find its gateway not up yet
 * without a warning: the launcher starts every role at once. */
const START_GRACE_MS = 2000;

/**
 * Whether this process started under 2 s ago: a worker or satellite that
 * cannot reach its gateway yet then only retries (the launcher starts the
 * gateway beside it), and warns if it still cannot after that.
 *
 * @example
 * ```ts
 * import { startingUp } from "./lifecycle.ts";
 * if (!startingUp()) console.warn("cannot reach the gateway");
 * ```
 */
export function startingUp(): boolean {
  return performance.now() < START_GRACE_MS;
}
