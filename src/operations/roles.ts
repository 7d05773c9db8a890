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
  const files = new Map<string, string>([["sum", "workers/sum.ts"], [
    "product",
    "workers/product.ts",
  ]]);
  const counts = new Map<string, number>([["sum", 1], ["product", 1]]);
  for (const [name, file] of pairs("--function", functions)) {
    if (!file.endsWith(".ts") && !file.endsWith(".js")) {
      throw new RoleError(`--function: ${name}=${file} must name a .ts or .js file`);
    }
    files.set(name, file);
    if (!counts.has(name)) counts.set(name, 1);
  }
  for (const [name, value] of pairs("--workers", workers)) {
    if (!/^\d{1,3}$/.test(value) || Number(value) > 64) {
      throw new RoleError(`--workers: ${name}=${value}: the count must be 0 to 64`);
    }
    if (!files.has(name)) {
      throw new RoleError(`--workers: no file for function ${name} (add --function ${name}=FILE)`);
    }
    counts.set(name, Number(value));
  }
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
  for (const [name, n] of counts) {
    for (let i = 1; i <= n; i++) {
      roles.push({
        name: n > 1 ? `${name}.${i}` : name,
        fn: name,
        file: files.get(name)!,
        args: [],
      });
    }
  }
  return roles;
}
