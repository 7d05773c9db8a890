/**
 * What each of the launcher's children gets as its environment. Nothing of
 * the launcher's own but the settings' variables and a few basics (as root
 * it may hold credentials a function must not see); then what its role is
 * told (supervised, restarted, its log prefix; a worker's generation and
 * standby; a gateway's takeover, satellite, expected workers, declared
 * routes, whether its secret comes on stdin), the launcher's environment for
 * every child or every gateway, and last the role's user's own (separate
 * users).
 *
 * @module
 */

import { projectRoot } from "../../ffi/paths.ts";
import { settingVariables } from "./config.ts";
import type { Role } from "./roles.ts";
import type { RoleUsers } from "./users.ts";

/** Each role user's own Deno cache (separate users): its DENO_DIR.
 *
 * @example
 * ```ts
 * import { CACHE_ROOT } from "./child_env.ts";
 * console.log(`each role's user caches its modules under ${CACHE_ROOT}/UID`);
 * ```
 */
export const CACHE_ROOT = `${projectRoot}/.local/deno-cache`;

/** What a child gets of the launcher's environment: the settings'
 * variables that are set, the wolfSSL build's location, and a few basics. */
const PASSED_ON = [
  ...settingVariables(),
  "HOTPOTATO_WOLFSSL_PREFIX",
  "HOTPOTATO_DUMPABLE",
  "XDG_RUNTIME_DIR",
  "PATH",
  "HOME",
  "LANG",
  "LC_ALL",
  "TZ",
  "NO_COLOR",
  "TERM",
  "DENO_DIR",
];

/** A variable of the launcher's own environment; undefined when it is
 * unset or cannot be read (not granted).
 *
 * @example
 * ```ts
 * import { readEnv } from "./child_env.ts";
 * const host = readEnv("HOTPOTATO_HOST") || "127.0.0.1";
 * console.log(host);
 * ```
 */
export function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

function inheritedEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of PASSED_ON) {
    const v = readEnv(name);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/** How one process of a role is started.
 *
 * @example
 * ```ts
 * import type { ChildStart } from "./child_env.ts";
 * // A reload's new worker: the next generation, on standby until promoted.
 * const start: ChildStart = { generation: 2, standby: true, restarted: false };
 * console.log(start);
 * ```
 */
export interface ChildStart {
  /** The generation it runs (workers; the launcher numbers its reloads). */
  generation: number;
  /** Register on standby until promoted (a reload's new workers). */
  standby: boolean;
  /** It replaces a process of its role that died. */
  restarted: boolean;
  /** A gateway's: how its role's processes exited before, by cause
   * ("signal SIGKILL": 2), for its /metrics (HOTPOTATO_GATEWAY_EXITS). */
  exits?: ReadonlyMap<string, number>;
  /** Set over the rest but its user's own (an upgrade's HOTPOTATO_TAKEOVER=on). */
  extraEnv?: Record<string, string>;
  /** A describe run: it prints what its function declares and exits
   * (src/operations/declarations.ts). */
  describe?: boolean;
}

/** The launcher's options that go into its children's environment.
 *
 * @example
 * ```ts
 * import type { ChildEnvOptions } from "./child_env.ts";
 * const options: ChildEnvOptions = { childEnv: { HOTPOTATO_CONTROL: "/run/hotpotato/gateway.sock" } };
 * console.log(options);
 * ```
 */
export interface ChildEnvOptions {
  /** The launcher's secret for this run: each gateway gets it on the first
   * line of its stdin (JOIN, TAKEOVER and the admin port's signatures). */
  secret?: Uint8Array;
  /** Separate users: how each role is started (undefined: one user). */
  users?: RoleUsers;
  /** Environment for every child (the control socket path with separate users). */
  childEnv?: Record<string, string>;
  /** Environment for every gateway process, primary, satellite or successor
   * (the key files' paths with separate users). */
  gatewaysEnv?: Record<string, string>;
  /** Extra environment for the gateway (the admin token, a chosen port). */
  gatewayEnv?: Record<string, string>;
}

/** What the launcher tells every child beyond its own start.
 *
 * @example
 * ```ts
 * import type { ChildEnvContext } from "./child_env.ts";
 * const context: ChildEnvContext = { width: 8, workers: 2, options: {} };
 * console.log(context);
 * ```
 */
export interface ChildEnvContext {
  /** The width of the names in the log prefixes. */
  width: number;
  /** How many workers the launcher runs (the primary gateway expects them). */
  workers: number;
  /** The routes each function declared (separate users), for the gateways. */
  declared?: ReadonlyMap<string, readonly string[]>;
  /** Each function's scaling (JSON, `--scaling`), for the primary gateway. */
  scaling?: string;
  /** The launcher's options. */
  options: ChildEnvOptions;
}

/** The launcher's secret when `role`'s process, started as `start` says,
 * gets it on its stdin (a gateway, not a describe run).
 *
 * @example
 * ```ts
 * import { secretFor } from "./child_env.ts";
 * const gateway = { name: "gateway", fn: "", file: "gateway.ts", args: [] };
 * const secret = crypto.getRandomValues(new Uint8Array(32));
 * const start = { generation: 0, standby: false, restarted: false };
 * console.log(secretFor(gateway, start, { secret }) === secret); // true
 * ```
 */
export function secretFor(
  role: Role,
  start: ChildStart,
  options: ChildEnvOptions,
): Uint8Array | undefined {
  return !role.fn && !start.describe ? options.secret : undefined;
}

/** The whole environment of `role`'s process started as `start` says.
 *
 * @example
 * ```ts
 * import { childEnv } from "./child_env.ts";
 * const sum = { name: "sum.2", fn: "sum", file: "workers/sum.ts", args: [] };
 * const env = childEnv(sum, { generation: 3, standby: true, restarted: false }, {
 *   width: 8,
 *   workers: 2,
 *   options: {},
 * });
 * console.log(env.HOTPOTATO_LOG_PREFIX, env.HOTPOTATO_GENERATION, env.HOTPOTATO_STANDBY); // "sum.2    | " 3 on
 * ```
 */
export function childEnv(
  role: Role,
  start: ChildStart,
  context: ChildEnvContext,
): Record<string, string> {
  const { options } = context;
  const env: Record<string, string> = {
    ...inheritedEnv(),
    HOTPOTATO_SUPERVISED: "1",
    HOTPOTATO_RESTARTED: start.restarted ? "1" : "0",
    HOTPOTATO_LOG_PREFIX: `${role.name.padEnd(context.width)} | `,
  };
  if (!role.fn && start.exits && start.exits.size > 0) {
    env.HOTPOTATO_GATEWAY_EXITS = JSON.stringify(Object.fromEntries(start.exits));
  }
  if (role.fn) {
    // The launcher's own workers never replace each other (a pool would
    // take turns replacing and restarting); --replace is for a worker
    // started by hand beside them. A reload starts them on standby.
    env.HOTPOTATO_REPLACE = "off";
    env.HOTPOTATO_GENERATION = String(start.generation);
    env.HOTPOTATO_STANDBY = start.standby ? "on" : "off";
  } else if (role.env?.HOTPOTATO_SATELLITE === "on") {
    env.HOTPOTATO_TAKEOVER = "off";
    Object.assign(env, role.env);
  } else {
    env.HOTPOTATO_TAKEOVER = "off"; // an upgrade says on
    env.HOTPOTATO_SATELLITE = "off";
    Object.assign(env, role.env ?? {}, options.gatewayEnv ?? {});
  }
  Object.assign(env, options.childEnv ?? {});
  if (!role.fn) Object.assign(env, options.gatewaysEnv ?? {});
  if (!role.fn && role.env?.HOTPOTATO_SATELLITE !== "on") {
    // The primary answers 503, not 404, for routes of workers it waits for.
    env.HOTPOTATO_EXPECT_WORKERS = String(context.workers);
  }
  if (!role.fn && context.scaling && role.env?.HOTPOTATO_SATELLITE !== "on") {
    env.HOTPOTATO_SCALING = context.scaling;
  }
  if (!role.fn && context.declared) {
    env.HOTPOTATO_FUNCTION_ROUTES = JSON.stringify(Object.fromEntries(context.declared));
  }
  Object.assign(env, start.extraEnv ?? {});
  if (start.describe) env.HOTPOTATO_DESCRIBE = "1";
  if (secretFor(role, start, options)) env.HOTPOTATO_SECRET = "stdin";
  if (options.users) Object.assign(env, options.users.env(role.fn, CACHE_ROOT));
  return env;
}
