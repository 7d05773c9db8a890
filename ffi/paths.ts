/**
 * Where the native libraries live. Both are loaded by absolute path, so the
 * code loads exactly these two files (`--allow-ffi` itself cannot be narrowed
 * to them: see src/operations/roles.ts).
 *
 * @module
 */

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The project's root directory (the folder holding `deno.json`).
 *
 * @example
 * ```ts
 * import { projectRoot } from "./paths.ts";
 * console.log(`${projectRoot}/certs/cert.pem`);
 * ```
 */
export const projectRoot: string = root;

/** Absolute path of libwolfssl.so (built with session export). `make setup`
 * builds it there, or links that prefix to `HOTPOTATO_WOLFSSL_PREFIX`.
 *
 * @example
 * ```ts
 * import { wolfsslPath } from "./paths.ts";
 * Deno.dlopen(wolfsslPath, {});
 * ```
 */
export const wolfsslPath: string = `${root}/.local/wolfssl/lib/libwolfssl.so`;

/** Absolute path of the project's C shim, `shim/libhotpotato.so`.
 *
 * @example
 * ```ts
 * import { shimPath } from "./paths.ts";
 * Deno.dlopen(shimPath, {});
 * ```
 */
export const shimPath: string = `${root}/shim/libhotpotato.so`;
