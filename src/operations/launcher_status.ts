/**
 * What a launcher tells `./hp status`: each role's process, state (running,
 * or waiting out a restart backoff after a crash), restarts and exits. The
 * launcher rewrites its file in the run directory at every change and
 * every {@linkcode STATUS_EVERY_MS} ({@linkcode StatusFile}); `./hp status` reads every live launcher's file
 * ({@linkcode readStatuses}) and prints it ({@linkcode formatStatus}). The
 * file holds no key material, and only its user may read it.
 *
 * @module
 */

import { defaultRunDir } from "./config.ts";

/** One role as its launcher sees it.
 *
 * @example
 * ```ts
 * import type { RoleStatus } from "./launcher_status.ts";
 * const gateway: RoleStatus = { role: "gateway", state: "backoff", restarts: 3,
 *   exits: { "signal SIGKILL": 3 }, restartInMs: 1600 };
 * ```
 */
export interface RoleStatus {
  /** The role's name ("gateway", "sum.2"). */
  role: string;
  /** Its process's pid, while one runs. */
  pid?: number;
  /** running; backoff (a crash loop: restarted after `restartInMs`);
   * restarting (at once, after a healthy run); reloading; stopping (scaled
   * down: handing its connections over); idle (a worker of a scaled pool
   * not running now: started on demand); parked (a spare started ahead, not
   * registered); stopped. */
  state:
    | "running"
    | "backoff"
    | "restarting"
    | "reloading"
    | "stopping"
    | "idle"
    | "parked"
    | "stopped";
  /** How many times the launcher restarted it. */
  restarts: number;
  /** Its processes' exits by cause ("signal SIGKILL", "code 1"). */
  exits: Record<string, number>;
  /** In backoff: how long until the next start, from `at`. */
  restartInMs?: number;
  /** Since when its current process runs (ms since the epoch). */
  since?: number;
}

/** A launcher's whole status, as written to its file.
 *
 * @example
 * ```ts
 * import type { LauncherStatus } from "./launcher_status.ts";
 * const status: LauncherStatus = { pid: 4242, at: Date.now(), roles: [] };
 * ```
 */
export interface LauncherStatus {
  /** The launcher's pid. */
  pid: number;
  /** When it was written (ms since the epoch). */
  at: number;
  /** Every role, in the launcher's order. */
  roles: RoleStatus[];
}

const PREFIX = "launcher.";
const SUFFIX = ".status.json";
/** A status file larger than this is not one of ours: skipped. */
const MAX_FILE = 256 * 1024;
/** A launcher rewrites its file at least this often, so a file older than
 * STALE_MS is a launcher's that was killed (it removes it when it stops). */
export const STATUS_EVERY_MS = 2000;
const STALE_MS = 5 * STATUS_EVERY_MS;

/**
 * A launcher's status file, rewritten whole (write, then rename) at each
 * change, and removed when the launcher stops.
 *
 * @example
 * ```ts
 * import { StatusFile } from "./launcher_status.ts";
 * const file = new StatusFile(Deno.makeTempDirSync(), 4242);
 * file.write({ pid: 4242, at: Date.now(), roles: [] });
 * file.remove();
 * ```
 */
export class StatusFile {
  /** The file's path. */
  readonly path: string;
  #dir: string;

  /** The file of launcher `pid` in `dir` (the run directory by default).
   *
   * @example
   * ```ts
   * import { StatusFile } from "./launcher_status.ts";
   * console.log(new StatusFile(undefined, Deno.pid).path);
   * ```
   */
  constructor(dir: string = defaultRunDir(), pid: number = Deno.pid) {
    this.#dir = dir;
    this.path = `${dir}/${PREFIX}${pid}${SUFFIX}`;
  }

  /** Write `status` (errors are the caller's: a status is not worth a crash).
   *
   * @example
   * ```ts
   * import { StatusFile } from "./launcher_status.ts";
   * new StatusFile(Deno.makeTempDirSync(), 1).write({ pid: 1, at: Date.now(), roles: [] });
   * ```
   */
  write(status: LauncherStatus): void {
    Deno.mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.new`;
    Deno.writeTextFileSync(tmp, JSON.stringify(status), { mode: 0o600 });
    Deno.renameSync(tmp, this.path);
  }

  /** Remove the file (when the launcher stops).
   *
   * @example
   * ```ts
   * import { StatusFile } from "./launcher_status.ts";
   * new StatusFile(Deno.makeTempDirSync(), 1).remove();
   * ```
   */
  remove(): void {
    try {
      Deno.removeSync(this.path);
    } catch {
      // never written, or gone
    }
  }
}

/**
 * The status of every launcher that runs and has a file in `dir`: a file
 * not rewritten for a while is a killed launcher's and is skipped, as is one
 * that does not parse.
 *
 * @example
 * ```ts
 * import { readStatuses } from "./launcher_status.ts";
 * for (const s of readStatuses()) console.log(s.pid, s.roles.length);
 * ```
 */
export function readStatuses(
  dir: string = defaultRunDir(),
  now: number = Date.now(),
): LauncherStatus[] {
  const found: LauncherStatus[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return found;
  }
  for (const e of entries) {
    if (!e.isFile || !e.name.startsWith(PREFIX) || !e.name.endsWith(SUFFIX)) continue;
    const pid = Number(e.name.slice(PREFIX.length, -SUFFIX.length));
    if (!Number.isInteger(pid) || pid <= 0) continue;
    try {
      const path = `${dir}/${e.name}`;
      if (Deno.statSync(path).size > MAX_FILE) continue;
      const status = JSON.parse(Deno.readTextFileSync(path)) as LauncherStatus;
      const fresh = typeof status.at === "number" && now - status.at < STALE_MS;
      if (status.pid === pid && fresh && Array.isArray(status.roles)) found.push(status);
    } catch {
      // being replaced, or not ours
    }
  }
  return found.sort((a, b) => a.pid - b.pid);
}

/**
 * A launcher's status as a table, one line per role: its pid, state (with
 * the time left in a backoff), restarts and exits by cause.
 *
 * @example
 * ```ts
 * import { formatStatus } from "./launcher_status.ts";
 * console.log(formatStatus({ pid: 4242, at: Date.now(), roles: [
 *   { role: "gateway", pid: 4250, state: "running", restarts: 0, exits: {}, since: Date.now() },
 * ] }, Date.now()));
 * ```
 */
export function formatStatus(status: LauncherStatus, now: number = Date.now()): string {
  const rows = [["ROLE", "PID", "STATE", "RESTARTS", "EXITS"]];
  for (const r of status.roles) {
    let state: string = r.state;
    if (r.state === "running" && r.since) state += ` ${Math.round((now - r.since) / 1000)} s`;
    if (r.state === "backoff" && r.restartInMs !== undefined) {
      const left = Math.max(0, r.restartInMs - (now - status.at));
      state += ` (next start in ${(left / 1000).toFixed(1)} s)`;
    }
    const exits = Object.entries(r.exits).map(([how, n]) => `${n} x ${how}`).join(", ");
    rows.push([r.role, r.pid ? String(r.pid) : "-", state, String(r.restarts), exits || "-"]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const lines = rows.map((row) =>
    row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i])).join("  ")
  );
  return [`launcher pid ${status.pid}`, ...lines].join("\n");
}
