/**
 * What a reload (src/operations/reload.ts) or a gateway upgrade
 * (src/operations/upgrade.ts) works with: the launcher's children, one
 * record per role whose process the launcher restarts when it dies, and
 * what the launcher (src/operations/launcher.ts) lets them do with them.
 *
 * @module
 */

import type { ChildStart } from "./child_env.ts";
import type { Role } from "./roles.ts";

/** One role the launcher supervises, and its process.
 *
 * @example
 * ```ts
 * import type { Child } from "./supervision.ts";
 * declare const child: Child;
 * console.log(child.role.name, child.process?.pid ?? "not running", child.restarts);
 * ```
 */
export interface Child {
  /** The role. */
  role: Role;
  /** Its current process, while one runs. */
  process?: Deno.ChildProcess;
  /** The delay before its next restart. */
  backoffMs: number;
  /** When its next start is due (ms since the epoch), while a restart waits. */
  restartAt?: number;
  /** When its current process started (ms since the epoch). */
  startedAt?: number;
  /** How many times it was restarted. */
  restarts: number;
  /** How its processes exited, by cause ("signal SIGKILL", "code 1"). */
  exits?: Map<string, number>;
  /** The generation its process runs (workers; the launcher numbers reloads). */
  generation: number;
  /** The gateway taking over from this child's process (an upgrade): it
   * becomes the child's process when the old one exits. */
  successor?: Deno.ChildProcess;
  /** A reload of its function is under way: its process's exit is not a
   * crash to restart from now (the reload's outcome decides). */
  reloading?: boolean;
  /** A worker of a scaled pool that is not wanted now: no process, and
   * none started until the autoscaler asks (src/operations/scaler.ts). */
  dormant?: boolean;
  /** Being stopped (scaled down: it hands its connections over); its exit
   * makes it dormant, not a crash to restart from. `reason` is said. */
  retiring?: { reason: string; removed: boolean };
  /** When it was told to stop (ms since the epoch), while it stops. */
  stoppedAt?: number;
  /** A parked spare: its process runs (module loaded) but has not
   * registered; `wake` tells it to (a cold start or a scale-up). */
  parked?: boolean;
  /** Tell a parked spare to register ("go" on its stdin). */
  wake?: () => void;
}

/** The launcher's supervision, as reloads and upgrades use it.
 *
 * @example
 * ```ts
 * import type { Supervision } from "./supervision.ts";
 * declare const s: Supervision;
 * const gateway = s.primaryGateway();
 * s.say(`gateway: pid ${gateway?.process?.pid}`);
 * ```
 */
export interface Supervision {
  /** Every child, in the order of the roles. */
  readonly children: readonly Child[];
  /** Processes outside the children: a reload's new ones before the
   * switch, old ones after it, an upgrade's successor (stopped with the
   * rest). */
  readonly others: Set<Deno.ChildProcess>;
  /** Whether the launcher is stopping. */
  stopping(): boolean;
  /** Print one line of the launcher's own. */
  say(message: string): void;
  /** The primary gateway's child (not a satellite). */
  primaryGateway(): Child | undefined;
  /** Start a process of `role` (throws when it cannot be started). */
  run(role: Role, start: ChildStart): Deno.ChildProcess;
  /** Make `proc`, running `generation`, `child`'s process from now on
   * (its backoff reset; restarted when it dies). */
  adopt(child: Child, proc: Deno.ChildProcess, generation: number): void;
  /** Restart `child` after its backoff (reset when its process, started at
   * `started`, ran long enough). */
  scheduleRestart(child: Child, started: number): void;
  /** Run `f` when no reload or upgrade runs (they never overlap). */
  exclusive<T>(f: () => Promise<T>): Promise<T>;
  /** Replace a parked spare (it runs an old version): stopped, and parked
   * again with the child's generation. */
  repark(child: Child): void;
}
