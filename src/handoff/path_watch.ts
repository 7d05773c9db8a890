/**
 * Hearing at once that a path appeared (a gateway's control socket, bound
 * and renamed into place by a gateway that has just started), instead of
 * polling for it: an inotify watch on its directory, read by the process's
 * event loop. A worker or satellite that lost its gateway registers with
 * the next one the moment its socket exists.
 *
 * @module
 */

import { closeFd, watchDirectory, watchSaw } from "../../ffi/shim.ts";
import { EventLoop } from "../connection/event_loop.ts";

/**
 * Calls `appeared` each time `path` is created or renamed into place, until
 * `close()`.
 *
 * @example
 * ```ts
 * import { PathWatch } from "./path_watch.ts";
 * const dir = Deno.makeTempDirSync();
 * const watch = PathWatch.open(`${dir}/gateway.sock`, () => console.log("there"));
 * Deno.writeTextFileSync(`${dir}/gateway.sock`, ""); // "there", on the next event-loop turn
 * setTimeout(() => watch?.close(), 100);
 * ```
 */
export class PathWatch {
  #fd: number;
  #name: string;
  #appeared: () => void;

  private constructor(fd: number, name: string, appeared: () => void) {
    this.#fd = fd;
    this.#name = name;
    this.#appeared = appeared;
    EventLoop.instance().add(fd, () => this.#ready(), { writable: false });
  }

  /** Watch `path`; undefined when its directory cannot be watched (absent,
   * not readable by this process, no inotify): the caller polls instead.
   *
   * @example
   * ```ts
   * import { PathWatch } from "./path_watch.ts";
   * const watch = PathWatch.open("/run/hotpotato/gateway.sock", () => console.log("up"));
   * if (!watch) console.log("polling instead");
   * ```
   */
  static open(path: string, appeared: () => void): PathWatch | undefined {
    const slash = path.lastIndexOf("/");
    const dir = slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
    const name = path.slice(slash + 1);
    if (!name) return undefined;
    try {
      return new PathWatch(watchDirectory(dir), name, appeared);
    } catch {
      return undefined;
    }
  }

  #ready(): void {
    if (this.#fd < 0) return;
    let saw = false;
    try {
      saw = watchSaw(this.#fd, this.#name);
    } catch {
      return; // a failed read: the caller's poll still runs
    }
    if (saw) this.#appeared();
  }

  /** Stop watching (idempotent).
   *
   * @example
   * ```ts
   * import { PathWatch } from "./path_watch.ts";
   * PathWatch.open("/tmp/gateway.sock", () => {})?.close();
   * ```
   */
  close(): void {
    if (this.#fd < 0) return;
    EventLoop.instance().remove(this.#fd);
    closeFd(this.#fd);
    this.#fd = -1;
  }
}
