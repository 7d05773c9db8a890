/**
 * Who may talk to whom on the Unix sockets: the one place that decides it,
 * from what the kernel reports of the other end (SO_PEERCRED, SO_PEERGROUPS)
 * and what the settings declare. Every socket check calls it: the gateway's
 * control socket, a worker's peer socket, a worker or satellite checking the
 * gateway, a successor checking the gateway it takes over from.
 *
 * Two modes:
 * - **one user** (no `--socket-group`): every role runs as one uid; only that
 *   uid may connect, directories are 0700 and sockets 0600. A function could
 *   then claim any role, so JOIN and TAKEOVER also carry a proof of the
 *   launcher's secret (given to gateways only, on stdin).
 * - **separate users** (`--socket-group`, `--gateway-user`,
 *   `--function-users`): the gateway runs as its own user, each function as
 *   its own; the group lets them reach each other's sockets (directories
 *   02750 and 03770, sockets 0660). JOIN and TAKEOVER come only from the
 *   gateway's uid, REGISTER of a function only from that function's user.
 *
 * The proof is HMAC-SHA256(secret, "hotpotato TYPE v1|SERVER_PID|CLIENT_PID"),
 * both pids as the kernel reports them to each side: it proves the secret
 * and is worth nothing to anyone it is shown to (a fake gateway cannot replay
 * it to the real one, whose pid differs).
 *
 * @module
 */

import { createHmac } from "node:crypto";
import type { Logger } from "@logtape/logtape";
import {
  closeFd,
  groupId,
  peerCredentials,
  peerInGroup,
  privateDirectory,
  processUid,
  sharedDirectory,
  userId,
} from "../../ffi/shim.ts";
import { sameBytes } from "./bytes.ts";
import { RouteTable } from "../routing/route_table.ts";

/** The credentials of the process at the other end of a Unix socket. */
export interface PeerCred {
  /** Its uid. */
  uid: number;
  /** Its pid. */
  pid: number;
}

/** What the settings declare about the roles. */
export interface TrustSettings {
  /** The roles' shared socket group ("" = one user for every role). */
  socketGroup: string;
  /** The gateways' user ("" = this process's own). */
  gatewayUser: string;
  /** The gateway's `--function-users` ("" = not declared). */
  functionUsers?: string;
  /** The launcher's secret (gateways under the launcher only). */
  secret?: Uint8Array;
  /** The gateway's `--function-routes`: JSON `{"NAME": ["/route", ...]}`,
   * the only routes each function may register ("" = not declared). */
  functionRoutes?: string;
}

/** A setting about users that cannot be used. */
export class TrustError extends Error {
  /** Create an error naming the setting.
   *
   * @example
   * ```ts
   * import { TrustError } from "./trust.ts";
   * throw new TrustError("--socket-group: no group nobody-at-all");
   * ```
   */
  constructor(message: string) {
    super(message);
    this.name = "TrustError";
  }
}

type FunctionUsers = { explicit: Map<string, string>; pattern?: [string, string] };

function parseFunctionUsers(spec: string): FunctionUsers {
  const out: FunctionUsers = { explicit: new Map() };
  for (const item of spec.split(",").map((s) => s.trim()).filter(Boolean)) {
    const eq = item.indexOf("=");
    const name = item.slice(0, eq), user = item.slice(eq + 1);
    if (eq <= 0 || !user) {
      throw new TrustError(`--function-users: ${JSON.stringify(item)} is not NAME=USER`);
    }
    if (name !== "*") {
      out.explicit.set(name, user);
      continue;
    }
    const star = user.indexOf("*");
    if (out.pattern || star < 0 || user.indexOf("*", star + 1) >= 0) {
      throw new TrustError(
        `--function-users: one pattern entry at most, *=PREFIX*SUFFIX (got ${item})`,
      );
    }
    out.pattern = [user.slice(0, star), user.slice(star + 1)];
  }
  return out;
}

/**
 * The user that runs function `fn` by a `--function-users` list: its own
 * entry (`sum=10002`), else the pattern (`*=hotpotato-fn-*` gives
 * hotpotato-fn-sum), else undefined. Throws {@linkcode TrustError} for a
 * malformed list. The gateway and the launcher both read the list with it.
 *
 * @example
 * ```ts
 * import { functionUserOf } from "./trust.ts";
 * console.log(functionUserOf("*=hotpotato-fn-*,decimal=61003", "sum")); // "hotpotato-fn-sum"
 * ```
 */
export function functionUserOf(spec: string, fn: string): string | undefined {
  return userOf(parseFunctionUsers(spec), fn);
}

function userOf(users: FunctionUsers, fn: string): string | undefined {
  const own = users.explicit.get(fn);
  if (own !== undefined) return own;
  return users.pattern ? `${users.pattern[0]}${fn}${users.pattern[1]}` : undefined;
}

function declared(users: FunctionUsers): boolean {
  return users.explicit.size > 0 || users.pattern !== undefined;
}

const enc = new TextEncoder();

/**
 * The roles' rules for this process.
 *
 * @example
 * ```ts
 * import { Trust } from "./trust.ts";
 * const trust = new Trust({ socketGroup: "", gatewayUser: "" }); // one user
 * console.log(trust.isGateway(trust.ownUid)); // true
 * ```
 */
export class Trust {
  /** This process's uid. */
  readonly ownUid: number;
  /** The gateways' uid. */
  readonly gatewayUid: number;
  /** The shared socket group, in separate-users mode. */
  readonly socketGid: number | undefined;
  #functionUsers: FunctionUsers;
  /** The routes each function may register, when declared. */
  #routes: Map<string, Set<string>> | undefined;
  /** The declared routes as one table (built when first asked). */
  #declaredTable: RouteTable<string> | undefined;
  #secret: Uint8Array | undefined;
  #refused: (reason: string) => void = () => {};

  /** Rules from `settings`; throws {@linkcode TrustError} when a user or group
   * it names does not exist.
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * new Trust({ socketGroup: "", gatewayUser: "", functionUsers: "" });
   * ```
   */
  constructor(settings: TrustSettings) {
    this.ownUid = processUid();
    try {
      this.gatewayUid = settings.gatewayUser ? userId(settings.gatewayUser) : this.ownUid;
    } catch {
      throw new TrustError(`--gateway-user: no user ${settings.gatewayUser}`);
    }
    try {
      this.socketGid = settings.socketGroup ? groupId(settings.socketGroup) : undefined;
    } catch {
      throw new TrustError(`--socket-group: no group ${settings.socketGroup}`);
    }
    this.#functionUsers = parseFunctionUsers(settings.functionUsers ?? "");
    if (this.socketGid === undefined && declared(this.#functionUsers)) {
      throw new TrustError("--function-users needs --socket-group (separate users share it)");
    }
    if (this.socketGid === undefined && this.gatewayUid !== this.ownUid) {
      throw new TrustError("--gateway-user names another user: --socket-group is needed too");
    }
    this.#secret = settings.secret?.slice();
    if (settings.functionRoutes) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(settings.functionRoutes);
      } catch {
        throw new TrustError("--function-routes: not JSON");
      }
      this.#routes = new Map();
      for (const [name, routes] of Object.entries(parsed as Record<string, unknown>)) {
        this.declareRoutes(name, routes);
      }
    }
  }

  /** Declare the routes function `name` may register (the launcher's
   * reload, when a new version changes them); throws {@linkcode TrustError}
   * when `routes` is not a list of paths.
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * const trust = new Trust({ socketGroup: "", gatewayUser: "", functionRoutes: "{}" });
   * trust.declareRoutes("sum", ["/sum"]);
   * ```
   */
  declareRoutes(name: string, routes: unknown): void {
    const ok = Array.isArray(routes) && routes.length <= 64 &&
      routes.every((r) => typeof r === "string" && r.startsWith("/") && r.length <= 256);
    if (!ok) throw new TrustError(`--function-routes: ${name}: not a list of paths`);
    (this.#routes ??= new Map()).set(name, new Set(routes as string[]));
    this.#declaredTable = undefined;
  }

  /** Whether a declared function (`--function-routes`) has a route that
   * serves `path` (the longest-route matcher the router uses).
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * const trust = new Trust({ socketGroup: "", gatewayUser: "", functionRoutes: '{"sum":["/sum"]}' });
   * trust.declares("/sum/x"); // true
   * ```
   */
  declares(path: string): boolean {
    return this.declaredFunction(path) !== undefined;
  }

  /** Declare that function `name` runs as `uid` (a function the launcher
   * added after this gateway started: `--function-users` named the others).
   * Only with separate users; throws {@linkcode TrustError} otherwise.
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * const trust = new Trust({ socketGroup: "", gatewayUser: "" });
   * try {
   *   trust.declareUser("hello", 1234);
   * } catch (e) {
   *   console.log((e as Error).message); // one user: nothing to declare
   * }
   * ```
   */
  declareUser(name: string, uid: number): void {
    if (!this.separateUsers) throw new TrustError("one user: no function user to declare");
    if (!Number.isSafeInteger(uid) || uid <= 0 || uid === this.gatewayUid) {
      throw new TrustError(`function ${name}: uid ${uid} cannot run a function`);
    }
    this.#functionUsers.explicit.set(name, String(uid));
  }

  /** The routes declared for function `name` (`--function-routes`); none
   * when nothing is declared for it.
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * const trust = new Trust({ socketGroup: "", gatewayUser: "", functionRoutes: '{"sum":["/sum"]}' });
   * trust.declaredRoutes("sum"); // ["/sum"]
   * ```
   */
  declaredRoutes(name: string): string[] {
    return [...(this.#routes?.get(name) ?? [])];
  }

  /** The declared function (`--function-routes`) whose route serves `path`
   * (the longest-route matcher the router uses), if any: the function the
   * gateway starts on demand when it has no worker.
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * const trust = new Trust({ socketGroup: "", gatewayUser: "", functionRoutes: '{"sum":["/sum"]}' });
   * trust.declaredFunction("/sum/x"); // "sum"
   * ```
   */
  declaredFunction(path: string): string | undefined {
    if (!this.#routes) return undefined;
    this.#declaredTable ??= new RouteTable(
      [...this.#routes].flatMap(([name, routes]) => [...routes].map((r) => [r, name] as const)),
    );
    return this.#declaredTable.match(path)?.value;
  }

  /** True in separate-users mode (`--socket-group`).
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * console.log(new Trust({ socketGroup: "", gatewayUser: "" }).separateUsers); // false
   * ```
   */
  get separateUsers(): boolean {
    return this.socketGid !== undefined;
  }

  /** The mode of this process's listening socket files: 0o600 for one
   * user, 0o660 (the directory's group) for separate users.
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * console.log(new Trust({ socketGroup: "", gatewayUser: "" }).socketMode.toString(8)); // "600"
   * ```
   */
  get socketMode(): number {
    return this.separateUsers ? 0o660 : 0o600;
  }

  /** Count (and let the caller log) a refusal: `onRefused(reason)`.
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * const trust = new Trust({ socketGroup: "", gatewayUser: "" });
   * trust.onRefused((reason) => console.log(`refused: ${reason}`));
   * ```
   */
  onRefused(count: (reason: string) => void): void {
    this.#refused = count;
  }

  /** Make or check the control socket's directory: 0700 and ours (one
   * user), or 02750 with the socket group (separate users: functions enter,
   * only the gateway writes).
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * new Trust({ socketGroup: "", gatewayUser: "" }).controlDirectory(Deno.makeTempDirSync());
   * ```
   */
  controlDirectory(dir: string): void {
    if (this.socketGid === undefined) privateDirectory(dir);
    else sharedDirectory(dir, this.socketGid, 0o2750);
  }

  /** Make or check the peer sockets' directory: 0700 (one user), or 03770
   * with the socket group (every role writes; the sticky bit keeps each
   * socket its owner's).
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * new Trust({ socketGroup: "", gatewayUser: "" }).peerDirectory(Deno.makeTempDirSync());
   * ```
   */
  peerDirectory(dir: string): void {
    if (this.socketGid === undefined) privateDirectory(dir);
    else sharedDirectory(dir, this.socketGid, 0o3770, this.gatewayUid);
  }

  /** The kernel's credentials of the process at the other end of `fd` when
   * it may be what `claim` says: "gateway" (the gateways' user), or "role"
   * (any of the roles: this process's user, the gateways', or, with separate
   * users, a member of the socket group). Otherwise `fd` is closed, the
   * refusal logged as `what` and counted, and undefined returned.
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * import { logger } from "../operations/log.ts";
   * declare const fd: number;
   * const cred = new Trust({ socketGroup: "", gatewayUser: "" }).admit(fd, "role", "peer", logger("peers"));
   * ```
   */
  admit(fd: number, claim: "gateway" | "role", what: string, log: Logger): PeerCred | undefined {
    let cred: PeerCred;
    let ok = false;
    try {
      cred = peerCredentials(fd);
      ok = cred.uid === this.gatewayUid ||
        (claim === "role" &&
          (cred.uid === this.ownUid ||
            (this.socketGid !== undefined && cred.uid !== 0 && peerInGroup(fd, this.socketGid))));
    } catch {
      closeFd(fd);
      this.#refused("no credentials");
      return undefined;
    }
    if (!ok) {
      log.warning("refused a {what} from uid {uid} (pid {pid}): not {claim}", {
        what,
        ...cred,
        claim: claim === "gateway" ? "the gateways' user" : "one of the roles' users",
      });
      closeFd(fd);
      this.#refused(claim === "gateway" ? "not the gateway user" : "not a role");
      return undefined;
    }
    return cred;
  }

  /** Whether `uid` is the gateways' user (JOIN and TAKEOVER may come from it).
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * const trust = new Trust({ socketGroup: "", gatewayUser: "" });
   * console.log(trust.isGateway(trust.ownUid)); // true
   * ```
   */
  isGateway(uid: number): boolean {
    return uid === this.gatewayUid;
  }

  /** Why `uid` may not register function `name` on `routes` ("" when it
   * may). Declared routes (`--function-routes`) bound what a function may
   * claim. With separate users only the function's declared user may, and
   * never the gateways' user; with one user, anyone who reached the socket.
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * const trust = new Trust({ socketGroup: "", gatewayUser: "" });
   * console.log(trust.registerRefusal("sum", trust.ownUid) || "may register");
   * ```
   */
  registerRefusal(name: string, uid: number, routes: readonly string[] = []): string {
    if (this.#routes) {
      const mine = this.#routes.get(name);
      if (!mine) return `no routes are declared for function ${name} (--function-routes)`;
      const other = routes.find((r) => !mine.has(r));
      if (other !== undefined) return `route ${other} is not one declared for function ${name}`;
    }
    if (!this.separateUsers) return "";
    if (uid === this.gatewayUid) return "a function may not run as the gateways' user";
    const user = userOf(this.#functionUsers, name);
    if (user === undefined) return `no user is declared for function ${name} (--function-users)`;
    let expected: number;
    try {
      expected = userId(user);
    } catch {
      return `function ${name} runs as user ${user}, which does not exist`;
    }
    if (expected !== uid) return `function ${name} runs as user ${user}, not uid ${uid}`;
    return "";
  }

  /** Whether this process has the launcher's secret (then JOIN and
   * TAKEOVER must prove it).
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * console.log(new Trust({ socketGroup: "", gatewayUser: "" }).hasSecret); // false
   * ```
   */
  get hasSecret(): boolean {
    return this.#secret !== undefined;
  }

  /** The proof that this process holds the launcher's secret, for a `type`
   * message from `clientPid` to `serverPid` (hex), or undefined without one.
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * const trust = new Trust({ socketGroup: "", gatewayUser: "", secret: new Uint8Array(32) });
   * console.log(trust.proof("JOIN", 100, 200)?.length); // 64
   * ```
   */
  proof(type: string, serverPid: number, clientPid: number): string | undefined {
    if (!this.#secret) return undefined;
    return createHmac("sha256", this.#secret)
      .update(`hotpotato ${type} v1|${serverPid}|${clientPid}`)
      .digest("hex");
  }

  /** Whether `proof` proves the secret for a `type` message from
   * `clientPid` to `serverPid`; true when this process has no secret (a
   * gateway started by hand, where only the user is checked). Compared in
   * constant time.
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * const trust = new Trust({ socketGroup: "", gatewayUser: "", secret: new Uint8Array(32) });
   * console.log(trust.proves("JOIN", 100, 200, trust.proof("JOIN", 100, 200))); // true
   * ```
   */
  proves(type: string, serverPid: number, clientPid: number, proof: string | undefined): boolean {
    const want = this.proof(type, serverPid, clientPid);
    if (want === undefined) return true;
    return proof !== undefined && sameBytes(enc.encode(want), enc.encode(proof));
  }

  /** A key derived from the launcher's secret for `purpose` (the admin
   * port's signatures, the handoff sealing key), or undefined without one.
   *
   * @example
   * ```ts
   * import { Trust } from "./trust.ts";
   * const trust = new Trust({ socketGroup: "", gatewayUser: "", secret: new Uint8Array(32) });
   * console.log(trust.derivedKey("admin")?.length); // 32
   * ```
   */
  derivedKey(purpose: string): Uint8Array | undefined {
    return this.#secret ? deriveKey(this.#secret, purpose) : undefined;
  }
}

/**
 * The key for `purpose` derived from the launcher's `secret`: the launcher
 * and its gateways compute the same one.
 *
 * @example
 * ```ts
 * import { deriveKey } from "./trust.ts";
 * console.log(deriveKey(new Uint8Array(32), "admin").length); // 32
 * ```
 */
export function deriveKey(secret: Uint8Array, purpose: string): Uint8Array {
  return new Uint8Array(
    createHmac("sha256", secret).update(`hotpotato ${purpose} key v1`).digest(),
  );
}

let current: Trust | undefined;

/**
 * This process's rules: the ones {@linkcode configureTrust} set at start,
 * else one user and no secret (a process started by hand, a test).
 *
 * @example
 * ```ts
 * import { trust } from "./trust.ts";
 * console.log(trust().separateUsers);
 * ```
 */
export function trust(): Trust {
  current ??= new Trust({ socketGroup: "", gatewayUser: "" });
  return current;
}

/**
 * Set this process's rules (once, at start, from its settings).
 *
 * @example
 * ```ts
 * import { configureTrust } from "./trust.ts";
 * configureTrust({ socketGroup: "", gatewayUser: "" });
 * ```
 */
export function configureTrust(settings: TrustSettings): Trust {
  current = new Trust(settings);
  return current;
}
