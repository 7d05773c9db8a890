/**
 * The launcher's separate-users setup (as root; src/operations/users.ts):
 * from its environment's settings, the accounts, the sockets' directories,
 * each account's Deno cache, the gateways' copies of the development key
 * files (or checks of the operator's), and the environment every child or
 * every gateway gets for it; and the line that tells the operator who runs
 * what.
 *
 * @module
 */

import { projectRoot } from "../../ffi/paths.ts";
import { CACHE_ROOT, readEnv } from "./child_env.ts";
import type { Role } from "./roles.ts";
import { DEFAULT_USERS, RoleUsers } from "./users.ts";

/** What separate users give the launcher's options.
 *
 * @example
 * ```ts
 * import type { SeparateUsers } from "./separate_users.ts";
 * declare const separate: SeparateUsers;
 * console.log(separate.childEnv.HOTPOTATO_CONTROL, separate.gatewaysEnv.HOTPOTATO_KEY);
 * ```
 */
export interface SeparateUsers {
  /** How each role is started. */
  users: RoleUsers;
  /** Environment for every child: the control socket's path. */
  childEnv: Record<string, string>;
  /** Environment for every gateway process: the key files' paths. */
  gatewaysEnv: Record<string, string>;
}

/** Separate users (as root): the accounts, the sockets' directories, the
 * gateway's key files and the environment every child gets; undefined for
 * one user. Throws UsersError (src/operations/users.ts) with what to change.
 *
 * @example
 * ```ts
 * import { separateUsers } from "./separate_users.ts";
 * import { rolesFor } from "./roles.ts";
 * const separate = await separateUsers(rolesFor([], []));
 * console.log(separate ? "separate users" : "one user");
 * ```
 */
export async function separateUsers(
  roles: Role[],
  fileUsers: ReadonlyMap<string, string> = new Map(),
): Promise<SeparateUsers | undefined> {
  // The function file's users first: HOTPOTATO_FUNCTION_USERS's own entries
  // (a flag, in effect) come after and win.
  const fromFile = [...fileUsers].map(([fn, user]) => `${fn}=${user}`);
  const settings = {
    mode: readEnv("HOTPOTATO_USERS") || DEFAULT_USERS.mode,
    gatewayUser: readEnv("HOTPOTATO_GATEWAY_USER") || DEFAULT_USERS.gatewayUser,
    socketGroup: readEnv("HOTPOTATO_SOCKET_GROUP") || DEFAULT_USERS.socketGroup,
    functionUsers: [
      ...fromFile,
      readEnv("HOTPOTATO_FUNCTION_USERS") || DEFAULT_USERS.functionUsers,
    ].join(","),
  };
  const fns = [...new Set(roles.filter((r) => r.fn).map((r) => r.fn))];
  const users = await RoleUsers.prepare(settings, fns);
  if (!users) return undefined;
  users.reachable(`${projectRoot}/deno.json`, "the project");
  for (const r of roles) {
    if (r.fn && r.file.startsWith("/")) users.reachable(r.file, `function ${r.fn}'s file`);
  }
  users.makeCaches(CACHE_ROOT);
  const control = readEnv("HOTPOTATO_CONTROL") || "/run/hotpotato/gateway.sock";
  users.prepareSockets(control);
  return { users, childEnv: { HOTPOTATO_CONTROL: control }, gatewaysEnv: gatewaysKeys(users) };
}

/** The gateways' key files: copies of the development key and certificate
 * of their own, or a check of the operator's key (and ticket key) file. */
function gatewaysKeys(users: RoleUsers): Record<string, string> {
  const gatewaysEnv: Record<string, string> = {};
  const devKey = `${projectRoot}/.local/certs/key.pem`;
  const key = readEnv("HOTPOTATO_KEY") || devKey;
  if (key === devKey) {
    // The development key stays root's where make wrote it (beside the
    // dev CA's key): the gateways get a copy of their own.
    const dir = `${projectRoot}/.local/gateway`;
    gatewaysEnv.HOTPOTATO_KEY = users.giveGateway(key, dir);
    if (!readEnv("HOTPOTATO_CERT")) {
      gatewaysEnv.HOTPOTATO_CERT = users.giveGateway(`${projectRoot}/.local/certs/cert.pem`, dir);
    }
  } else users.checkSecretFile(key, "HOTPOTATO_KEY");
  const ticketFile = readEnv("HOTPOTATO_TICKET_KEY_FILE");
  if (ticketFile) users.checkSecretFile(ticketFile, "HOTPOTATO_TICKET_KEY_FILE");
  return gatewaysEnv;
}

/** Who runs what, for the launcher's line: the gateways' user, each
 * function's of `roles`, and the socket group.
 *
 * @example
 * ```ts
 * import { usersSummary } from "./separate_users.ts";
 * import type { RoleUsers } from "./users.ts";
 * import { rolesFor } from "./roles.ts";
 * declare const users: RoleUsers;
 * console.log(`launcher | ${usersSummary(users, rolesFor([], []))}`);
 * ```
 */
export function usersSummary(users: RoleUsers, roles: readonly Role[]): string {
  return `separate users: gateway ${users.gateway.name} (uid ${users.gateway.uid}), ${
    [...new Set(roles.filter((r) => r.fn).map((r) => r.fn))]
      .map((fn) => `${fn} ${users.of(fn).name} (uid ${users.of(fn).uid})`).join(", ")
  }; socket group ${users.socketGid}`;
}
