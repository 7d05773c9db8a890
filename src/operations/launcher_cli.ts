/**
 * The launcher's command line (`./hp start`, `make start ARGS=...`,
 * `./hp dev FILE.ts`): its usage text, and its options (or the HOTPOTATO_*
 * variables that stand for them) read into the roles to run, the reload
 * mode and the development file.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { readEnv } from "./child_env.ts";
import { functionSpecs, type Role, RoleError, rolesOf } from "./roles.ts";
import { FUNCTION_FILE, type FunctionSpec, readFunctionFile } from "./function_file.ts";
import { fixedPool } from "./scaling.ts";
import { projectRoot } from "../../ffi/paths.ts";

/** What `./hp start --help` prints.
 *
 * @example
 * ```ts
 * import { LAUNCHER_USAGE } from "./launcher_cli.ts";
 * console.log(LAUNCHER_USAGE);
 * ```
 */
export const LAUNCHER_USAGE = `Usage: ./hp start [options]
       make start ARGS="[options]"
       ./hp dev FILE.ts

Runs the gateway and the function workers, restarts any that die, stops all on Ctrl-C,
reloads every function on SIGHUP (./hp reload) and upgrades the gateway on SIGUSR1
(./hp reload --gateway), without dropping a connection.

  --workers NAME=COUNT,...   workers per function (default sum=1,product=1)   HOTPOTATO_WORKERS
  --function NAME=FILE       another function to run (repeatable)            HOTPOTATO_FUNCTIONS
  --scale NAME=MIN..MAX,...  a pool that follows the load: MIN always (0:     HOTPOTATO_SCALE
                             started on demand by its first request), up to
                             MAX while busy
  --scale-idle SECONDS       stop a worker of those pools above MIN after    HOTPOTATO_SCALE_IDLE
                             this long without a request (default 60)
  --spare NAME=COUNT,...     spares parked for a pool: started ahead, woken  HOTPOTATO_SPARE
                             by a cold start (a registration, not a process
                             start; each costs a process's memory)
  --functions-file FILE      the function list (default: hotpotato.jsonc in  HOTPOTATO_FUNCTIONS_FILE
                             the project, if there is one); read again on
                             SIGHUP; the options above override it
  --gateways N|auto          gateway processes sharing the port (default 1;   HOTPOTATO_GATEWAYS
                             auto: one per CPU); the first is the primary
  --reload-mode MODE         handover (default): old workers hand their      HOTPOTATO_RELOAD_MODE
                             connections to the new version; close: they
                             close them (what other proxies do; to compare)
  --dev FILE                 development: run the gateway and FILE's function
                             only, and reload it whenever FILE or a local
                             module it imports changes
  -h, --help                 this text

Reloads talk to the gateway's admin port (HOTPOTATO_ADMIN_HOST, HOTPOTATO_ADMIN_PORT:
0 picks a free one, off disables reloads) with a token made for this run.
The gateway and workers read their own settings from HOTPOTATO_* variables
(./hp gateway --help and ./hp sum --help list them).`;

/** What the launcher's command line asks for.
 *
 * @example
 * ```ts
 * import type { LauncherArgs } from "./launcher_cli.ts";
 * declare const args: LauncherArgs;
 * if (!args.help) console.log(args.roles.map((r) => r.name), args.handover, args.dev?.file);
 * ```
 */
export type LauncherArgs = { help: true } | {
  help: false;
  /** The roles to run. */
  roles: Role[];
  /** The functions they run, with their scaling. */
  specs: FunctionSpec[];
  /** The functions as they are now: the function file read again, the
   * options over it (SIGHUP); throws when the file cannot be used. */
  reread: () => FunctionSpec[];
  /** Whether a reload's old workers hand their connections over
   * (`--reload-mode handover`) or close them (`close`). */
  handover: boolean;
  /** `--dev FILE`: the file, and its function (named after the file). */
  dev?: { file: string; fn: string };
};

/** Read the launcher's command line `args` (and the HOTPOTATO_* variables
 * for the options it does not give). Throws (a RoleError, or parseArgs's
 * error for an unknown option) when it cannot be used.
 *
 * @example
 * ```ts
 * import { launcherArgs } from "./launcher_cli.ts";
 * const args = launcherArgs(["--workers", "sum=2", "--reload-mode", "close"]);
 * if (!args.help) console.log(args.roles.map((r) => r.name)); // gateway, sum.1, sum.2, product
 * ```
 */
export function launcherArgs(args: string[]): LauncherArgs {
  const { values } = parseArgs({
    args,
    options: {
      workers: { type: "string", multiple: true },
      function: { type: "string", multiple: true },
      scale: { type: "string", multiple: true },
      spare: { type: "string", multiple: true },
      "scale-idle": { type: "string" },
      "functions-file": { type: "string" },
      gateways: { type: "string" },
      "reload-mode": { type: "string" },
      dev: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) return { help: true };
  const mode = values["reload-mode"] ?? readEnv("HOTPOTATO_RELOAD_MODE") ?? "handover";
  if (mode !== "handover" && mode !== "close") {
    throw new RoleError(`--reload-mode: ${JSON.stringify(mode)} is not handover or close`);
  }
  const handover = mode === "handover";
  if (values.dev !== undefined) {
    const fn = values.dev.replace(/^.*\//, "").replace(/\.(ts|js)$/, "");
    const specs = [{ name: fn, file: values.dev, scaling: fixedPool(1) }];
    return {
      help: false,
      roles: rolesOf(specs),
      specs,
      reread: () => specs,
      handover,
      dev: { file: values.dev, fn },
    };
  }
  const g = values.gateways ?? readEnv("HOTPOTATO_GATEWAYS") ?? "1";
  const gateways = g === "auto" ? Math.min(64, navigator.hardwareConcurrency) : Number(g);
  const idle = values["scale-idle"] ?? readEnv("HOTPOTATO_SCALE_IDLE");
  if (idle !== undefined && !/^\d{1,6}(\.\d{1,3})?$/.test(idle)) {
    throw new RoleError(`--scale-idle: ${JSON.stringify(idle)} is not a number of seconds`);
  }
  const named = values["functions-file"] ?? readEnv("HOTPOTATO_FUNCTIONS_FILE");
  const path = named ?? `${projectRoot}/${FUNCTION_FILE}`;
  const reread = () =>
    functionSpecs({
      workers: envOr(values.workers, "HOTPOTATO_WORKERS"),
      functions: envOr(values.function, "HOTPOTATO_FUNCTIONS"),
      scale: envOr(values.scale, "HOTPOTATO_SCALE"),
      spare: envOr(values.spare, "HOTPOTATO_SPARE"),
      idleSeconds: idle === undefined ? undefined : Number(idle),
      file: readFunctionFile(path, named === undefined),
    });
  const specs = reread();
  return { help: false, roles: rolesOf(specs, gateways), specs, reread, handover };
}

/** The option's values, else the variable `name` as one value (none when unset). */
function envOr(values: string[] | undefined, name: string): string[] {
  if (values) return values;
  const v = readEnv(name);
  return v ? [v] : [];
}
