/**
 * What a process does at start to keep what it holds from the other roles:
 * it becomes non-dumpable (another process of the same user can then neither
 * ptrace it nor read its memory, environment or fds through /proc), and a
 * gateway under the launcher reads the launcher's secret from the first line
 * of its stdin (never from the environment or a file, which a function of the
 * same user could read).
 *
 * `HOTPOTATO_DUMPABLE=on` leaves a process dumpable, for a debugger or strace
 * run as the same user (root can attach to it anyway).
 *
 * @module
 */

import { makeNonDumpable } from "../../ffi/shim.ts";

/** Longest wait for the secret on stdin. */
const SECRET_TIMEOUT_MS = 5000;
/** The secret line: 64 hex digits and a newline. */
const SECRET_LINE = /^([0-9a-f]{64})\n$/;

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/**
 * Make this process non-dumpable, unless HOTPOTATO_DUMPABLE=on. Throws when
 * that fails or when a process already traces this one.
 *
 * @example
 * ```ts
 * import { protectProcess } from "./privileges.ts";
 * protectProcess(); // first thing at start, before any key is read
 * ```
 */
export function protectProcess(): void {
  if (env("HOTPOTATO_DUMPABLE") === "on") return;
  makeNonDumpable();
}

/**
 * The launcher's secret, when HOTPOTATO_SECRET=stdin says it comes as the
 * first line of stdin (64 hex digits); undefined otherwise. Rejects when the
 * line does not come within 5 s or is not a secret.
 *
 * @example
 * ```ts
 * import { readLauncherSecret } from "./privileges.ts";
 * const secret = await readLauncherSecret(); // undefined when started by hand
 * ```
 */
export async function readLauncherSecret(): Promise<Uint8Array | undefined> {
  if (env("HOTPOTATO_SECRET") !== "stdin") return undefined;
  const line = new Uint8Array(65);
  let got = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, fail) => {
    timer = setTimeout(
      () => fail(new Error("the launcher's secret did not come on stdin within 5 s")),
      SECRET_TIMEOUT_MS,
    );
  });
  try {
    // One byte at a time: nothing after the newline is taken from stdin.
    const one = new Uint8Array(1);
    while (got < line.length) {
      const n = await Promise.race([Deno.stdin.read(one), late]);
      if (n === null) throw new Error("stdin closed before the launcher's secret came");
      if (n === 0) continue;
      line[got++] = one[0];
      if (one[0] === 0x0a) break;
    }
  } finally {
    clearTimeout(timer);
  }
  const text = new TextDecoder().decode(line.subarray(0, got));
  line.fill(0);
  const m = text.match(SECRET_LINE);
  if (!m) throw new Error("the first line of stdin is not the launcher's secret");
  const secret = new Uint8Array(32);
  for (let i = 0; i < 32; i++) secret[i] = parseInt(m[1].slice(i * 2, i * 2 + 2), 16);
  return secret;
}
