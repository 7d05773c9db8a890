/**
 * The launcher's users plan: with separate users (the default when the
 * launcher runs as root), the gateways run as one unprivileged user and each
 * function as a user of its own, and the roles reach each other's sockets
 * through one group, as nginx's master/worker split and postfix's privilege
 * separation do. This module decides the accounts (creating missing system
 * users and the group on first use), prepares the sockets' directories and
 * the gateway's key files, and says how to start a role as its user
 * (`setpriv`: uid, gid, the socket group as the only supplementary group, no
 * capabilities, no new privileges).
 *
 * Settings (environment, read by the launcher):
 * - HOTPOTATO_USERS: auto (separate when root, else one user), separate, same.
 * - HOTPOTATO_GATEWAY_USER (default hotpotato-gw), HOTPOTATO_SOCKET_GROUP
 *   (default hotpotato), HOTPOTATO_FUNCTION_USERS (default
 *   `*=hotpotato-fn-*`: function NAME runs as hotpotato-fn-NAME; or
 *   `NAME=USER,...` with names or uids). Names that do not exist are created
 *   as system users; numbers are used as they are (a uid range of your own).
 *
 * @module
 */

import { groupId, processUid, SysError, userGroupId, userId } from "../../ffi/shim.ts";
import { functionUserOf } from "../handoff/trust.ts";

/** One account a role runs as. */
export interface Account {
  /** User name (or the uid, as text, for a bare uid). */
  name: string;
  uid: number;
  /** Primary gid. */
  gid: number;
}

/** The settings of separate users, as the launcher reads them. */
export interface UsersSettings {
  /** auto | separate | same. */
  mode: string;
  gatewayUser: string;
  socketGroup: string;
  functionUsers: string;
}

/** The defaults of {@linkcode UsersSettings}. */
export const DEFAULT_USERS: UsersSettings = {
  mode: "auto",
  gatewayUser: "hotpotato-gw",
  socketGroup: "hotpotato",
  functionUsers: "*=hotpotato-fn-*",
};

/** A users setting or step that cannot be done. */
export class UsersError extends Error {
  /** Create an error that says what to change.
   *
   * @example
   * ```ts
   * import { UsersError } from "./users.ts";
   * throw new UsersError("HOTPOTATO_USERS=separate needs root");
   * ```
   */
  constructor(message: string) {
    super(message);
    this.name = "UsersError";
  }
}

const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;

/** The user that runs function `fn` by `spec` (`--function-users`). */
function functionUserName(spec: string, fn: string): string {
  const user = functionUserOf(spec, fn);
  if (user === undefined) {
    throw new UsersError(`HOTPOTATO_FUNCTION_USERS names no user for function ${fn}`);
  }
  return user;
}

async function run(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new UsersError(
      `${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
}

function lookupGroup(name: string): number | undefined {
  try {
    return groupId(name);
  } catch (e) {
    if (e instanceof SysError) return undefined;
    throw e;
  }
}

function lookupUser(name: string): Account | undefined {
  if (/^\d{1,10}$/.test(name)) {
    const uid = Number(name);
    return { name, uid, gid: uid };
  }
  try {
    return { name, uid: userId(name), gid: userGroupId(name) };
  } catch (e) {
    if (e instanceof SysError) return undefined;
    throw e;
  }
}

/** `path`'s directories from the root down, `path` excluded. */
function ancestors(path: string): string[] {
  const parts = path.split("/").filter(Boolean);
  const out = ["/"];
  for (let i = 1; i < parts.length; i++) out.push("/" + parts.slice(0, i).join("/"));
  return out;
}

/**
 * The accounts of a run with separate users.
 *
 * @example
 * ```ts
 * import { DEFAULT_USERS, RoleUsers } from "./users.ts";
 * const users = await RoleUsers.prepare(DEFAULT_USERS, ["sum", "product"]);
 * if (users) console.log(users.gateway.name, users.of("sum").name);
 * ```
 */
export class RoleUsers {
  /** The gateways' account. */
  readonly gateway: Account;
  /** The socket group's gid. */
  readonly socketGid: number;
  readonly #settings: UsersSettings;
  readonly #functions = new Map<string, Account>();

  private constructor(settings: UsersSettings, gateway: Account, socketGid: number) {
    this.#settings = settings;
    this.gateway = gateway;
    this.socketGid = socketGid;
  }

  /** Whether `settings` ask for separate users on this process (root):
   * throws when they ask for something that cannot be.
   *
   * @example
   * ```ts
   * import { DEFAULT_USERS, RoleUsers } from "./users.ts";
   * console.log(RoleUsers.wanted(DEFAULT_USERS)); // true as root
   * ```
   */
  static wanted(settings: UsersSettings): boolean {
    const root = processUid() === 0;
    if (!["auto", "separate", "same"].includes(settings.mode)) {
      throw new UsersError(`HOTPOTATO_USERS=${settings.mode}: auto, separate or same`);
    }
    if (settings.mode === "separate" && !root) {
      throw new UsersError("HOTPOTATO_USERS=separate needs the launcher to run as root");
    }
    if (settings.mode === "same" && root) {
      throw new UsersError(
        "HOTPOTATO_USERS=same as root would run every function as root: " +
          "run the launcher as a normal user for one-user mode",
      );
    }
    return settings.mode === "separate" || (settings.mode === "auto" && root);
  }

  /** The plan for `functions` (creating the group and the missing system
   * users), or undefined for one user.
   *
   * @example
   * ```ts
   * import { DEFAULT_USERS, RoleUsers } from "./users.ts";
   * const users = await RoleUsers.prepare(DEFAULT_USERS, ["sum"]);
   * ```
   */
  static async prepare(
    settings: UsersSettings,
    functions: string[],
  ): Promise<RoleUsers | undefined> {
    if (!RoleUsers.wanted(settings)) return undefined;
    let gid = /^\d{1,10}$/.test(settings.socketGroup)
      ? Number(settings.socketGroup)
      : lookupGroup(settings.socketGroup);
    if (gid === undefined) {
      await run("groupadd", ["--system", settings.socketGroup]);
      gid = lookupGroup(settings.socketGroup);
      if (gid === undefined) throw new UsersError(`group ${settings.socketGroup} was not created`);
    }
    const gateway = await RoleUsers.#account(settings.gatewayUser);
    const users = new RoleUsers(settings, gateway, gid);
    for (const fn of functions) await users.ensure(fn);
    return users;
  }

  static async #account(name: string): Promise<Account> {
    let account = lookupUser(name);
    if (!account) {
      if (!USER_NAME.test(name)) {
        throw new UsersError(
          `user ${name}: not a valid system user name (at most 32 of a-z 0-9 _ -); ` +
            "name one in HOTPOTATO_FUNCTION_USERS",
        );
      }
      await run("useradd", [
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "Hot Potato role",
        name,
      ]);
      account = lookupUser(name);
      if (!account) throw new UsersError(`user ${name} was not created`);
    }
    if (account.uid === 0 || account.gid === 0) {
      throw new UsersError(`user ${name} is root or in group root: a role never runs as root`);
    }
    return account;
  }

  /** Make sure function `fn` has its account (created on first use).
   *
   * @example
   * ```ts
   * import type { RoleUsers } from "./users.ts";
   * declare const users: RoleUsers;
   * await users.ensure("hello");
   * ```
   */
  async ensure(fn: string, user?: string): Promise<Account> {
    const known = this.#functions.get(fn);
    if (known) return known;
    const account = await RoleUsers.#account(
      user ?? functionUserName(this.#settings.functionUsers, fn),
    );
    if (account.uid === this.gateway.uid) {
      throw new UsersError(`function ${fn} would run as the gateways' user ${account.name}`);
    }
    this.#functions.set(fn, account);
    return account;
  }

  /** The account of function `fn` (after {@linkcode RoleUsers.ensure}).
   *
   * @example
   * ```ts
   * import type { RoleUsers } from "./users.ts";
   * declare const users: RoleUsers;
   * console.log(users.of("sum").uid);
   * ```
   */
  of(fn: string): Account {
    const a = this.#functions.get(fn);
    if (!a) throw new UsersError(`no account for function ${fn}`);
    return a;
  }

  /** The command that starts `argv` as the role's account: in a session of
   * its own (setsid: no controlling terminal, so no TIOCSTI into the
   * launcher's), then setpriv with its uid and gid, the socket group as its
   * only supplementary group, no capabilities and no new privileges.
   *
   * @example
   * ```ts
   * import type { RoleUsers } from "./users.ts";
   * declare const users: RoleUsers;
   * const [cmd, ...args] = users.command("sum", [Deno.execPath(), "run", "workers/sum.ts"]);
   * ```
   */
  command(fn: string, argv: string[]): string[] {
    const a = fn ? this.of(fn) : this.gateway;
    return [
      "setsid",
      "setpriv",
      `--reuid=${a.uid}`,
      `--regid=${a.gid}`,
      `--groups=${this.socketGid}`,
      "--inh-caps=-all",
      "--bounding-set=-all",
      "--no-new-privs",
      "--",
      ...argv,
    ];
  }

  /** The environment that tells a role about the others (and, for a
   * gateway, who runs each function), plus its own Deno cache directory.
   *
   * @example
   * ```ts
   * import type { RoleUsers } from "./users.ts";
   * declare const users: RoleUsers;
   * console.log(users.env("", "/work/main/.local/deno-cache")); // the gateway's
   * ```
   */
  env(fn: string, cacheRoot: string): Record<string, string> {
    const a = fn ? this.of(fn) : this.gateway;
    const env: Record<string, string> = {
      HOTPOTATO_SOCKET_GROUP: String(this.socketGid),
      HOTPOTATO_GATEWAY_USER: String(this.gateway.uid),
      DENO_DIR: `${cacheRoot}/${a.uid}`,
      HOME: "/nonexistent",
    };
    if (!fn) {
      env.HOTPOTATO_FUNCTION_USERS = [...this.#functions]
        .map(([name, acc]) => `${name}=${acc.uid}`).join(",");
    }
    return env;
  }

  /** Every account's own Deno cache under `cacheRoot` (mode 0700: a
   * function cannot change what another one runs), made now.
   *
   * @example
   * ```ts
   * import type { RoleUsers } from "./users.ts";
   * declare const users: RoleUsers;
   * users.makeCaches("/work/main/.local/deno-cache");
   * ```
   */
  makeCaches(cacheRoot: string): void {
    Deno.mkdirSync(cacheRoot, { recursive: true, mode: 0o711 });
    Deno.chmodSync(cacheRoot, 0o711);
    for (const a of [this.gateway, ...this.#functions.values()]) {
      const dir = `${cacheRoot}/${a.uid}`;
      Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
      Deno.chownSync(dir, a.uid, a.gid);
      Deno.chmodSync(dir, 0o700);
    }
  }

  /** Prepare the control socket's directory for `control`: owned by the
   * gateways' user with the socket group, 02750 (the gateway makes `peers/`
   * in it). Every directory above must let the roles through (x for
   * others); the directory itself may not be a symlink.
   *
   * @example
   * ```ts
   * import type { RoleUsers } from "./users.ts";
   * declare const users: RoleUsers;
   * users.prepareSockets("/run/hotpotato/gateway.sock");
   * ```
   */
  prepareSockets(control: string): void {
    const dir = control.slice(0, control.lastIndexOf("/")) || "/";
    Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
    this.reachable(dir, "the control socket's directory");
    if (!Deno.lstatSync(dir).isDirectory) {
      throw new UsersError(`${dir} is not a directory (a symlink?): left as it is`);
    }
    Deno.chownSync(dir, this.gateway.uid, this.socketGid);
    Deno.chmodSync(dir, 0o2750);
  }

  /** Throw unless the roles' users can reach `path` (every directory above
   * it has the x bit for others).
   *
   * @example
   * ```ts
   * import type { RoleUsers } from "./users.ts";
   * declare const users: RoleUsers;
   * users.reachable("/work/main", "the project");
   * ```
   */
  reachable(path: string, what: string): void {
    for (const dir of ancestors(path)) {
      const st = Deno.statSync(dir);
      if (((st.mode ?? 0) & 0o001) === 0) {
        throw new UsersError(
          `${what} ${path} is out of the roles' reach: ${dir} has mode ` +
            `${((st.mode ?? 0) & 0o7777).toString(8).padStart(4, "0")} (others need x); ` +
            "move it, chmod o+x that directory, or run the launcher as a normal user",
        );
      }
    }
  }

  /** Throw unless `path` (a private key or ticket-key file) is readable by
   * the gateways' user and by no function: owned by it or root, nothing for
   * others, group bits only for a group no function and not the socket
   * group is in. A file root owns needs the group of the gateways' user.
   *
   * @example
   * ```ts
   * import type { RoleUsers } from "./users.ts";
   * declare const users: RoleUsers;
   * users.checkSecretFile("/etc/hotpotato/key.pem", "HOTPOTATO_KEY");
   * ```
   */
  checkSecretFile(path: string, setting: string): void {
    const st = Deno.statSync(path);
    const mode = (st.mode ?? 0) & 0o777;
    const fix = `chown ${this.gateway.name} ${path}; chmod 600 ${path}`;
    const functionGids = new Set([
      this.socketGid,
      ...[...this.#functions.values()].map((a) => a.gid),
    ]);
    if (mode & 0o007) {
      throw new UsersError(
        `${setting} ${path} is readable by others (mode ${mode.toString(8)}): ${fix}`,
      );
    }
    if ((mode & 0o070) && functionGids.has(st.gid ?? -1)) {
      throw new UsersError(
        `${setting} ${path} is readable by group ${st.gid}, which a function is in: ${fix}`,
      );
    }
    const byOwner = st.uid === this.gateway.uid && (mode & 0o400);
    const byGroup = st.gid === this.gateway.gid && (mode & 0o040);
    if (!byOwner && !byGroup) {
      throw new UsersError(`${setting} ${path} cannot be read by ${this.gateway.name}: ${fix}`);
    }
  }

  /** Copy a file into `dir` as the gateways' user's, mode 0600: the
   * development key, which stays root's where `make` wrote it. `dir` is
   * root's (0711: the gateway reaches the file, and cannot swap it for a
   * symlink that root would then write through). Returns the copy's path.
   *
   * @example
   * ```ts
   * import type { RoleUsers } from "./users.ts";
   * declare const users: RoleUsers;
   * const key = users.giveGateway("/work/main/.local/certs/key.pem", "/work/main/.local/gateway");
   * ```
   */
  giveGateway(path: string, dir: string): string {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o711 });
    if (!Deno.lstatSync(dir).isDirectory) {
      throw new UsersError(`${dir} is not a directory (a symlink?): left as it is`);
    }
    Deno.chownSync(dir, 0, 0);
    Deno.chmodSync(dir, 0o711);
    const to = `${dir}/${path.slice(path.lastIndexOf("/") + 1)}`;
    try {
      Deno.removeSync(to);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const bytes = Deno.readFileSync(path);
    try {
      Deno.writeFileSync(to, bytes, { createNew: true, mode: 0o600 });
    } finally {
      bytes.fill(0);
    }
    Deno.chownSync(to, this.gateway.uid, this.gateway.gid);
    return to;
  }
}
