/**
 * The launcher's child processes, which may be gone already: signal one,
 * wait for a set of them with a deadline, and how long a stopped child may
 * drain.
 *
 * @module
 */

/** How long children may drain on stop before SIGKILL: their drain timeout
 * (HOTPOTATO_DRAIN_TIMEOUT, default 10 s) plus a margin.
 *
 * @example
 * ```ts
 * import { stopGraceMs } from "./processes.ts";
 * console.log(`children drain for ${stopGraceMs()} ms at most`); // 15000 by default
 * ```
 */
export function stopGraceMs(): number {
  let drain = 10;
  try {
    drain = Number(Deno.env.get("HOTPOTATO_DRAIN_TIMEOUT") ?? "10") || 10;
  } catch {
    // no env access: the default
  }
  return drain * 1000 + 5000;
}

/** Send `sig` to a process that may be gone already.
 *
 * @example
 * ```ts
 * import { signal } from "./processes.ts";
 * const p = new Deno.Command("sleep", { args: ["60"] }).spawn();
 * signal(p, "SIGTERM");
 * await p.status;
 * signal(p, "SIGTERM"); // gone: nothing happens
 * ```
 */
export function signal(p: Deno.ChildProcess, sig: Deno.Signal): void {
  try {
    p.kill(sig);
  } catch {
    // already gone
  }
}

/** Wait until every one of `procs` has exited, SIGKILLing those still
 * there after `graceMs`.
 *
 * @example
 * ```ts
 * import { reap, signal } from "./processes.ts";
 * const procs = [1, 2].map(() => new Deno.Command("sleep", { args: ["60"] }).spawn());
 * for (const p of procs) signal(p, "SIGTERM");
 * await reap(procs, 5000);
 * ```
 */
export async function reap(procs: Deno.ChildProcess[], graceMs: number): Promise<void> {
  const killer = setTimeout(() => procs.forEach((p) => signal(p, "SIGKILL")), graceMs);
  await Promise.all(procs.map((p) => p.status));
  clearTimeout(killer);
}
