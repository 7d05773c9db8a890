/**
 * Who may talk to a process on its Unix sockets: only processes of its own
 * uid (SO_PEERCRED). One check for the gateway's control socket and a
 * worker's peer socket.
 *
 * @module
 */

import { closeFd, peerCredentials, processUid } from "../../ffi/shim.ts";
import type { Logger } from "@logtape/logtape";

/** Our uid, read at the first check (not at import: importing this module
 * must not need the FFI permission, e.g. for the benchmark's backends). */
let ownUid: number | undefined;

/**
 * The credentials of the process at the other end of `fd` when it runs as
 * our uid; otherwise (or when they cannot be read) `fd` is closed, the
 * refusal logged as `what`, and undefined returned.
 *
 * @example
 * ```ts
 * import { sameUser } from "./same_user.ts";
 * import { logger } from "../operations/log.ts";
 * declare const fd: number;
 * const cred = sameUser(fd, "control connection", logger("gateway"));
 * if (cred) console.log(`pid ${cred.pid}`);
 * ```
 */
export function sameUser(
  fd: number,
  what: string,
  log: Logger,
): { uid: number; pid: number } | undefined {
  let cred;
  try {
    cred = peerCredentials(fd);
  } catch {
    closeFd(fd);
    return undefined;
  }
  ownUid ??= processUid();
  if (cred.uid !== ownUid) {
    log.warning("refused a {what} from uid {uid} (pid {pid})", { what, ...cred });
    closeFd(fd);
    return undefined;
  }
  return cred;
}
