/**
 * The Deno permissions of each role, in one place: the launcher starts its
 * children with these, and `deno.json`'s tasks spell out the same flags (a
 * test checks that they agree). The gateway and workers read only HOTPOTATO_*
 * and XDG_RUNTIME_DIR and get no file, network or subprocess permission (the
 * sockets and files they need are opened by the shim).
 *
 * `--allow-ffi` cannot be narrowed to the two libraries: Deno 2.9 requires
 * the unrestricted permission for `Deno.UnsafeCallback`, which the epoll
 * thread needs to wake JavaScript. The code dlopens only two absolute paths
 * (ffi/paths.ts).
 *
 * @module
 */

import type { FunctionSpec } from "./function_file.ts";
import {
  checkScaling,
  fixedPool,
  parseScaleFlag,
  parseSpareFlag,
  type Scaling,
} from "./scaling.ts";

/** Flags for the gateway and every worker process. */
export const SERVER_FLAGS: readonly string[] = [
  "--no-prompt",
  "--allow-ffi",
  "--allow-env=HOTPOTATO_*,XDG_RUNTIME_DIR",
];

/** Flags for a gateway started on its own (`deno task gateway`, the systemd
 * unit): the server flags, and systemd's socket-activation variables to read
 * (LISTEN_FDS, LISTEN_PID: the public port it is given, see
 * src/connection/given_listener.ts). The launcher's gateways get the port
 * through HOTPOTATO_LISTEN_FD instead. */
export const STANDALONE_GATEWAY_FLAGS: readonly string[] = [
  "--no-prompt",
  "--allow-ffi",
  "--allow-env=HOTPOTATO_*,XDG_RUNTIME_DIR,LISTEN_FDS,LISTEN_PID",
];

/** Flags for the launcher: the supervisor, like nginx's master. It starts
 * the roles (`--allow-run`, as their users when it is root), reaches the
 * gateway's admin port, makes itself non-dumpable and looks users up through
 * the shim (`--allow-ffi`), and with separate users prepares the sockets'
 * directories and the gateway's key files (`--allow-read`, `--allow-write`):
 * `--allow-run` without a path list can do all of that anyway. It reads the
 * settings' variables and a few basics (PATH, HOME, locale, terminal, Deno's
 * cache), which are all its children get of its environment. */
export const LAUNCHER_FLAGS: readonly string[] = [
  "--no-prompt",
  "--allow-run",
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-env=HOTPOTATO_*,XDG_RUNTIME_DIR,PATH,HOME,LANG,LC_ALL,TZ,NO_COLOR,TERM,DENO_DIR,LISTEN_FDS,LISTEN_PID",
  "--allow-net=127.0.0.1,[::1],localhost",
];

/** A process the launcher runs. */
export interface Role {
  /** Name used as the log prefix, e.g. "sum" or "sum.2". */
  name: string;
  /** The function it runs ("" for the gateway). */
  fn: string;
  /** Script to run, relative to the project root. */
  file: string;
  /** Extra arguments. */
  args: string[];
  /** Extra environment (a satellite gateway's settings). */
  env?: Record<string, string>;
  /** A worker's place in its function's pool, from 1: the launcher runs the
   * first `min` always and the rest on demand (src/operations/scaling.ts). */
  slot?: number;
}

/** A launcher setting that cannot be used. */
export class RoleError extends Error {
  /** Create an error naming the setting.
   *
   * @example
   * ```ts
   * import { RoleError } from "./roles.ts";
   * throw new RoleError("--workers: sum=x is not NAME=COUNT");
   * ```
   */
  constructor(message: string) {
    super(message);
    this.name = "RoleError";
  }
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function pairs(flag: string, list: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (const item of list.flatMap((l) => l.split(",")).map((x) => x.trim()).filter(Boolean)) {
    const eq = item.indexOf("=");
    const name = item.slice(0, eq), value = item.slice(eq + 1);
    if (eq <= 0 || !NAME.test(name) || !value) {
      throw new RoleError(`${flag}: ${JSON.stringify(item)} is not NAME=VALUE`);
    }
    out.push([name, value]);
  }
  return out;
}

/**
 * The functions to run: sum and product (one worker each) unless `file`
 * (the function file's list) says otherwise; then `functions` (`NAME=FILE`)
 * adds or re-points functions, `workers` (`NAME=COUNT`) gives fixed pools (0
 * leaves a function out), `scale` (`NAME=MIN..MAX`) scaled ones, and
 * `idleSeconds` the idle time of the functions `scale` names, and `spare`
 * (`NAME=N`) the spares parked for a pool.
 *
 * @example
 * ```ts
 * import { functionSpecs } from "./roles.ts";
 * const specs = functionSpecs({ functions: ["hello=examples/hello.ts"], scale: ["hello=0..4"] });
 * console.log(specs.map((s) => `${s.name} ${s.scaling.min}..${s.scaling.max}`));
 * // ["sum 1..1", "product 1..1", "hello 0..4"]
 * ```
 */
export function functionSpecs(o: {
  workers?: string[];
  functions?: string[];
  scale?: string[];
  spare?: string[];
  idleSeconds?: number;
  file?: FunctionSpec[];
}): FunctionSpec[] {
  const specs = new Map<string, FunctionSpec>(
    (o.file ?? [
      { name: "sum", file: "workers/sum.ts", scaling: fixedPool(1) },
      { name: "product", file: "workers/product.ts", scaling: fixedPool(1) },
    ]).map((s) => [s.name, { ...s }]),
  );
  for (const [name, file] of pairs("--function", o.functions ?? [])) {
    if (!file.endsWith(".ts") && !file.endsWith(".js")) {
      throw new RoleError(`--function: ${name}=${file} must name a .ts or .js file`);
    }
    const had = specs.get(name);
    specs.set(name, { name, file, scaling: had?.scaling ?? fixedPool(1) });
  }
  for (const [name, value] of pairs("--workers", o.workers ?? [])) {
    if (!/^\d{1,3}$/.test(value) || Number(value) > 64) {
      throw new RoleError(`--workers: ${name}=${value}: the count must be 0 to 64`);
    }
    const spec = specs.get(name);
    if (!spec) {
      throw new RoleError(`--workers: no file for function ${name} (add --function ${name}=FILE)`);
    }
    if (Number(value) === 0) specs.delete(name);
    else spec.scaling = { ...spec.scaling, ...fixedPool(Number(value)) };
  }
  // --scale, then --spare: each over what the function has so far.
  const over = (
    flag: string,
    values: string[] | undefined,
    parse: (values: readonly string[], base: (fn: string) => Scaling) => Map<string, Scaling>,
    adjust: (fn: string, s: Scaling) => Scaling = (_, s) => s,
  ) => {
    let parsed: Map<string, Scaling>;
    try {
      parsed = parse(values ?? [], (fn) => specs.get(fn)?.scaling ?? fixedPool(1));
    } catch (e) {
      throw new RoleError((e as Error).message);
    }
    for (const [name, scaling] of parsed) {
      const spec = specs.get(name);
      if (!spec) {
        throw new RoleError(`${flag}: no file for function ${name} (add --function ${name}=FILE)`);
      }
      spec.scaling = adjust(name, scaling);
    }
  };
  over(
    "--scale",
    o.scale,
    parseScaleFlag,
    (name, scaling) =>
      o.idleSeconds === undefined
        ? scaling
        : checkScaling(name, { idle: o.idleSeconds }, scaling, "--scale-idle"),
  );
  over("--spare", o.spare, parseSpareFlag);
  return [...specs.values()];
}

/**
 * The processes to run: the gateway (and `gateways - 1` satellite gateways
 * sharing its port), then each function's pool: `max` workers, named
 * `NAME.1` to `NAME.max` (`NAME` alone for a pool of one); the launcher runs
 * the first `min` always and the rest on demand.
 *
 * @example
 * ```ts
 * import { functionSpecs, rolesOf } from "./roles.ts";
 * const roles = rolesOf(functionSpecs({ workers: ["sum=2"] }), 1);
 * console.log(roles.map((r) => r.name)); // ["gateway", "sum.1", "sum.2", "product"]
 * ```
 */
export function rolesOf(specs: readonly FunctionSpec[], gateways = 1): Role[] {
  if (!Number.isInteger(gateways) || gateways < 1 || gateways > 64) {
    throw new RoleError(`--gateways: ${gateways} is not 1 to 64 (or auto)`);
  }
  // Several gateways share the port (SO_REUSEPORT): the first is the
  // primary (registry, control socket, admin port), the others satellites.
  const shared = gateways > 1 ? { HOTPOTATO_REUSE_PORT: "on" } : undefined;
  const roles: Role[] = [{ name: "gateway", fn: "", file: "gateway.ts", args: [], env: shared }];
  for (let i = 2; i <= gateways; i++) {
    roles.push({
      name: `gateway.${i}`,
      fn: "",
      file: "gateway.ts",
      args: [],
      env: { ...shared, HOTPOTATO_SATELLITE: "on", HOTPOTATO_ADMIN_PORT: "off" },
    });
  }
  for (const spec of specs) roles.push(...poolRoles(spec, 1, spec.scaling.max));
  return roles;
}

/**
 * The roles of `spec`'s pool from slot `from` to `to` (a pool of one is
 * named after its function, a larger one `NAME.N`).
 *
 * @example
 * ```ts
 * import { poolRoles } from "./roles.ts";
 * import { fixedPool } from "./scaling.ts";
 * const spec = { name: "hello", file: "examples/hello.ts", scaling: fixedPool(3) };
 * console.log(poolRoles(spec, 1, 3).map((r) => r.name)); // ["hello.1", "hello.2", "hello.3"]
 * ```
 */
export function poolRoles(spec: FunctionSpec, from: number, to: number): Role[] {
  const roles: Role[] = [];
  for (let i = from; i <= to; i++) {
    roles.push({
      name: spec.scaling.max > 1 || i > 1 ? `${spec.name}.${i}` : spec.name,
      fn: spec.name,
      file: spec.file,
      args: [],
      slot: i,
    });
  }
  return roles;
}

/**
 * The processes to run: the gateway (and `gateways - 1` satellite gateways
 * sharing its port), then for each function its file and
 * its number of workers. `workers` lists `NAME=COUNT` (e.g. "sum=2,product=2");
 * `functions` lists `NAME=FILE` for functions beyond sum and product (e.g.
 * "hello=examples/hello.ts"). A function listed in `functions` but not in
 * `workers` gets one worker; a count of 0 leaves a function out.
 *
 * @example
 * ```ts
 * import { rolesFor } from "./roles.ts";
 * const roles = rolesFor(["sum=2"], ["hello=examples/hello.ts"]);
 * // gateway, sum.1, sum.2, product, hello
 * rolesFor([], [], 2); // gateway, gateway.2 (a satellite), sum, product
 * ```
 */
export function rolesFor(workers: string[], functions: string[], gateways = 1): Role[] {
  return rolesOf(functionSpecs({ workers, functions }), gateways);
}
