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

/** A process the launcher runs. */
export interface Role {
  /** Name used as the log prefix, e.g. "sum". */
  name: string;
  /** Script to run, relative to the project root. */
  file: string;
  /** Extra arguments. */
  args: string[];
}

/** The default system: the gateway and the two example functions.
 *
 * @example
 * ```ts
 * import { DEFAULT_ROLES } from "./roles.ts";
 * console.log(DEFAULT_ROLES.map((r) => r.name)); // ["gateway", "sum", "product"]
 * ```
 */
export const DEFAULT_ROLES: readonly Role[] = [
  { name: "gateway", file: "gateway.ts", args: [] },
  { name: "sum", file: "workers/sum.ts", args: [] },
  { name: "product", file: "workers/product.ts", args: [] },
];
