/**
 * The launcher's gateway upgrade (SIGUSR1, `./hp reload --gateway`): a new
 * gateway process started with `--takeover on` takes the listening sockets,
 * the workers and what the running one holds, and the old one exits; the
 * launcher then supervises the new one in its place (src/operations/launcher.ts
 * adopts a child's successor when its process exits cleanly).
 *
 * @module
 */

import { signal, stopGraceMs } from "./processes.ts";
import type { Supervision } from "./supervision.ts";

/**
 * Upgrade the primary gateway of `s` (run it with `s.exclusive`: never
 * beside a reload). Resolves true once the old process is gone and the new
 * one serves; false (the old one serving on) when there is none, the new
 * one exits first or the old one does not hand over in time.
 *
 * @example
 * ```ts
 * import { upgradeGateway } from "./upgrade.ts";
 * import type { Supervision } from "./supervision.ts";
 * declare const s: Supervision;
 * console.log(await s.exclusive(() => upgradeGateway(s)) ? "upgraded" : "not upgraded");
 * ```
 */
export async function upgradeGateway(s: Supervision): Promise<boolean> {
  const child = s.primaryGateway();
  const old = child?.process;
  if (!child || !old || child.successor) {
    s.say(`gateway upgrade: ${child?.successor ? "one is under way" : "no gateway running"}`);
    return false;
  }
  const t0 = performance.now();
  let next: Deno.ChildProcess;
  try {
    next = s.run(child.role, {
      generation: 0,
      standby: false,
      restarted: false,
      extraEnv: { HOTPOTATO_TAKEOVER: "on" },
    });
  } catch (e) {
    s.say(`gateway upgrade failed: ${(e as Error).message}`);
    return false;
  }
  s.others.add(next);
  child.successor = next;
  s.say(`gateway upgrade: pid ${next.pid} takes over from pid ${old.pid}`);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const first = await Promise.race([
    old.status.then(() => "old" as const),
    next.status.then(() => "new" as const),
    new Promise<"late">((ok) => timer = setTimeout(() => ok("late"), stopGraceMs() + 15_000)),
  ]);
  clearTimeout(timer);
  if (first === "late" && child.successor === next) {
    child.successor = undefined;
    s.others.delete(next);
    signal(next, "SIGKILL");
    s.say(`gateway upgrade failed: pid ${old.pid} did not hand over in time; it keeps serving`);
    return false;
  }
  if (first === "new" && child.successor === next) {
    child.successor = undefined;
    s.others.delete(next);
    const status = await next.status;
    s.say(
      `gateway upgrade failed: pid ${next.pid} exited with ${
        status.signal ? `signal ${status.signal}` : `code ${status.code}`
      }; pid ${old.pid} keeps serving`,
    );
    return false;
  }
  await Promise.resolve(); // the old one's exit handler has run: it adopted the new one, or not
  if (child.process !== next) {
    s.say(`gateway upgrade failed: pid ${old.pid} exited with an error; starting afresh`);
    return false;
  }
  s.say(
    `gateway upgrade: done in ${Math.round(performance.now() - t0)} ms; pid ${next.pid} serves`,
  );
  return true;
}
