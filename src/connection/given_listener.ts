/**
 * The public listening socket a gateway was given instead of binding one:
 * by the launcher, which binds the port and keeps it across gateway crashes
 * (`HOTPOTATO_LISTEN_FD`, an inherited fd), or by systemd socket activation
 * (sd_listen_fds' protocol: `LISTEN_PID` is this process, `LISTEN_FDS` counts
 * the sockets from fd 3; the first is the HTTPS port). While a gateway is
 * down its successor's socket stays open in the launcher or in systemd, so
 * new clients wait in the kernel's queue instead of being refused.
 *
 * @module
 */

import { isTcpListener, setNonBlocking } from "../../ffi/shim.ts";

/** The environment variable the launcher names the inherited fd in. */
export const LISTEN_FD_VARIABLE = "HOTPOTATO_LISTEN_FD";

/** The first fd systemd passes (SD_LISTEN_FDS_START). */
const SD_LISTEN_FDS_START = 3;

/** A listening socket this process was given, and by whom. */
export interface GivenListener {
  /** The listening fd (non-blocking; the caller owns it). */
  fd: number;
  /** Who passed it. */
  from: "launcher" | "systemd";
}

/** An environment variable, or undefined when unset or not granted. */
function variable(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** A decimal fd number, or undefined. */
function fdNumber(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,9}$/.test(text)) return undefined;
  return Number(text);
}

/** The listening socket this process was given (the launcher's first, then
 * systemd's), or undefined when it should bind its own. A variable that
 * names no listening TCP socket is an error: binding instead would hide a
 * deployment mistake behind a port conflict.
 *
 * @example
 * ```ts
 * import { givenListener } from "./given_listener.ts";
 * import { tcpListen } from "../../ffi/shim.ts";
 * const fd = givenListener()?.fd ?? tcpListen("127.0.0.1", 8443);
 * console.log(fd);
 * ```
 */
export function givenListener(): GivenListener | undefined {
  const fromLauncher = variable(LISTEN_FD_VARIABLE);
  if (fromLauncher !== undefined && fromLauncher !== "") {
    return take(fdNumber(fromLauncher), "launcher", `${LISTEN_FD_VARIABLE}=${fromLauncher}`);
  }
  const pid = variable("LISTEN_PID");
  const count = fdNumber(variable("LISTEN_FDS"));
  if (pid === undefined || count === undefined || count < 1) return undefined;
  if (pid !== String(Deno.pid)) return undefined; // meant for another process
  return take(SD_LISTEN_FDS_START, "systemd", `LISTEN_FDS=${count}`);
}

function take(fd: number | undefined, from: GivenListener["from"], what: string): GivenListener {
  if (fd === undefined || !isTcpListener(fd)) {
    throw new Error(`${what}: not a listening TCP socket`);
  }
  setNonBlocking(fd);
  return { fd, from };
}
