/**
 * Test support: waiting on a condition instead of for a fixed time. A test
 * that sleeps "long enough" for something to happen is slow when the
 * machine is fast and flaky when it is loaded; one that waits for the thing
 * itself (a log line: {@linkcode Proc.waitFor}; a metric, a process's exit,
 * a counter of the test's own: {@linkcode waitUntil}) is neither, and says
 * what it waited for when it fails. A fixed sleep stays only where the time
 * is what is tested ("nothing happens for N ms", a timeout), as short as
 * the timeout the test configures allows.
 *
 * @module
 */

/** Resolve after `ms` (for the waits where time itself is under test). */
export function sleep(ms: number): Promise<void> {
  return new Promise((ok) => setTimeout(ok, Math.max(0, ms)));
}

/** How {@linkcode waitUntil} waits. */
export interface WaitOptions {
  /** What the condition stands for, in the error when it never holds (a
   * function: for the state at that moment too). */
  what: string | (() => string | Promise<string>);
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  /** Check this often (default 20 ms). */
  everyMs?: number;
}

/**
 * Resolve once `cond()` holds (checked at once, then every `everyMs`);
 * reject after `timeoutMs` with an error that says what was waited for.
 * A condition that throws fails the wait with that error.
 *
 * @example
 * ```ts
 * import { waitUntil } from "./wait.ts";
 * let requests = 0;
 * setTimeout(() => requests = 3, 50);
 * await waitUntil(() => requests >= 3, { what: "3 requests", timeoutMs: 1000 });
 * ```
 */
export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  opts: WaitOptions,
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const started = Date.now();
  for (;;) {
    if (await cond()) return;
    if (Date.now() - started >= timeoutMs) {
      const what = typeof opts.what === "string" ? opts.what : await opts.what();
      throw new Error(`waited ${timeoutMs} ms for ${what}`);
    }
    await sleep(opts.everyMs ?? 20);
  }
}
