/**
 * The gateway's control socket: the Unix socket workers register on, in a
 * directory kept at mode 0700 (one user), or 02750 with the roles' socket
 * group when each role runs as its own user (src/handoff/trust.ts). A gateway
 * never removes a live socket (one
 * another gateway answers on) nor a file that is not its own; it notices
 * when its socket's path stops naming its socket (removed, replaced), since
 * workers can then no longer (re)register, and says so in /healthz.
 *
 * @module
 */

import {
  EADDRINUSE,
  ENOENT,
  fileIdentity,
  removeFile,
  SysError,
  unixListen,
  unixListenOver,
} from "../../ffi/shim.ts";
import { logger } from "../operations/log.ts";
import { trust } from "../handoff/trust.ts";
import { peerDirectory } from "../handoff/peers.ts";

const log = logger("gateway");

function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/**
 * A bound control socket.
 *
 * @example
 * ```ts
 * import { ControlSocket } from "./control_socket.ts";
 * const dir = Deno.makeTempDirSync();
 * const control = ControlSocket.listen(`${dir}/control.sock`);
 * console.log(control.check()); // "" while the path names our socket
 * control.close();
 * ```
 */
export class ControlSocket {
  /** The listening socket's fd. */
  readonly fd: number;
  /** The socket's path. */
  readonly path: string;
  /** The socket file's identity ("dev:inode") when we bound it. */
  #identity: string;
  /** Why the path does not name our socket ("" while it does). */
  #lost = "";
  #closed = false;

  private constructor(fd: number, path: string) {
    this.fd = fd;
    this.path = path;
    this.#identity = fileIdentity(path);
  }

  /** Make the directory private and listen on `path`. Throws a clear
   * error when another gateway answers there, or when the path is something
   * that is not ours to remove.
   *
   * @example
   * ```ts
   * import { ControlSocket } from "./control_socket.ts";
   * const control = ControlSocket.listen(`${Deno.makeTempDirSync()}/control.sock`);
   * control.close();
   * ```
   */
  static listen(path: string): ControlSocket {
    trust().controlDirectory(dirname(path));
    // The workers' peer sockets beside it (made before any worker can connect).
    trust().peerDirectory(peerDirectory(path));
    try {
      return new ControlSocket(unixListen(path, trust().socketMode), path);
    } catch (e) {
      if (e instanceof SysError && e.errno === EADDRINUSE) {
        throw new Error(
          `control socket ${path} is in use: another gateway answers there ` +
            `(stop it first, or give this one another --control)`,
        );
      }
      if (e instanceof SysError) {
        // Not ours to remove (not a socket, a socket of another kind, no
        // access...): say what it is and leave it alone.
        throw new Error(`control socket ${path}: ${e.reason}; left as it is`);
      }
      throw e;
    }
  }

  /** Listen on a new socket renamed over `path`, where a live gateway's
   * socket is (this gateway takes over from it): workers connecting to the
   * path reach the old one or this one, never nothing.
   *
   * @example
   * ```ts
   * import { ControlSocket } from "./control_socket.ts";
   * const path = `${Deno.makeTempDirSync()}/control.sock`;
   * const old = ControlSocket.listen(path);
   * const successor = ControlSocket.listenOver(path);
   * console.log(old.check()); // "control socket ... now names another file: ..."
   * successor.close();
   * ```
   */
  static listenOver(path: string): ControlSocket {
    trust().controlDirectory(dirname(path));
    try {
      return new ControlSocket(unixListenOver(path, trust().socketMode), path);
    } catch (e) {
      if (e instanceof SysError) throw new Error(`control socket ${path}: ${e.reason}`);
      throw e;
    }
  }

  /** Whether the path still names our socket (one lstat; asked by /healthz
   * and the gateway's 1 s watchdog): "" when it does, else why not. A
   * change is logged once.
   *
   * @example
   * ```ts
   * import { ControlSocket } from "./control_socket.ts";
   * const path = `${Deno.makeTempDirSync()}/control.sock`;
   * const control = ControlSocket.listen(path);
   * Deno.removeSync(path);
   * console.log(control.check()); // "control socket ... was removed: ..."
   * control.close();
   * ```
   */
  check(): string {
    if (this.#closed) return "";
    let why = "";
    try {
      if (fileIdentity(this.path) !== this.#identity) why = "now names another file";
    } catch (e) {
      why = !(e instanceof SysError)
        ? String(e)
        : e.errno === ENOENT
        ? "was removed"
        : `cannot be checked: ${e.reason}`;
    }
    if (why && why !== this.#lost) {
      log.error("control socket {path} {why}: workers cannot register with this gateway", {
        path: this.path,
        why,
      });
    } else if (!why && this.#lost) {
      log.info("control socket {path} is this gateway's again", { path: this.path });
    }
    this.#lost = why;
    return why && `control socket ${this.path} ${why}: workers cannot register with this gateway`;
  }

  /** Forget the socket's path: removed only while it still names our
   * socket. (The fd is closed by whoever watches it.)
   *
   * @example
   * ```ts
   * import { ControlSocket } from "./control_socket.ts";
   * ControlSocket.listen(`${Deno.makeTempDirSync()}/control.sock`).close();
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    let ours = false;
    try {
      ours = fileIdentity(this.path) === this.#identity;
    } catch {
      ours = false;
    }
    if (ours) removeFile(this.path);
  }
}
