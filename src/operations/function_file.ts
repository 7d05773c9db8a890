/**
 * The declarative function list (`hotpotato.jsonc`, like wrangler.toml or
 * OpenFaaS's stack.yml): each function's file, its routes if the file should
 * not be asked for them, and its scaling. The launcher reads it at start and
 * again on SIGHUP, so adding, removing or rescaling a function is an edit and
 * a reload; its flags keep working and override it. JSON with comments and
 * trailing commas:
 *
 * ```jsonc
 * {
 *   "functions": {
 *     "sum": { "file": "workers/sum.ts" },                  // one worker, always
 *     "product": { "file": "workers/product.ts", "workers": 2 },
 *     "hello": { "file": "examples/hello.ts", "min": 0, "max": 4, "idle": 30, "spare": 1 },
 *   },
 * }
 * ```
 *
 * A file that cannot be used is refused with its line and the reason.
 *
 * @module
 */

import { checkScaling, fixedPool, type Scaling, ScalingError } from "./scaling.ts";

/** One function as the file (or the flags) declare it. */
export interface FunctionSpec {
  /** Its name (the log prefix, the gateway's function label). */
  name: string;
  /** Its file, relative to the project root or absolute. */
  file: string;
  /** The routes it may register, when given here (else its file is asked). */
  routes?: string[];
  /** How its pool follows the load. */
  scaling: Scaling;
  /** The user it runs as when the launcher runs each function as its own
   * (as root); else `HOTPOTATO_FUNCTION_USERS` says (`hotpotato-fn-NAME`). */
  user?: string;
}

/** The default file's name, looked for in the project root. */
export const FUNCTION_FILE = "hotpotato.jsonc";

/** Largest function file read, bytes. */
const MAX_FILE_BYTES = 1 << 20;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const KEYS = new Set([
  "file",
  "routes",
  "workers",
  "min",
  "max",
  "idle",
  "target",
  "spare",
  "user",
]);
/** A system user's name (as useradd takes it) or a uid. */
const USER = /^([a-z_][a-z0-9_-]{0,31}|\d{1,10})$/;

/** A function file that cannot be used: its path, line and the reason. */
export class FunctionFileError extends Error {
  /** An error at `line` of `path` (0: the file as a whole).
   *
   * @example
   * ```ts
   * import { FunctionFileError } from "./function_file.ts";
   * throw new FunctionFileError("hotpotato.jsonc", 4, "hello: min 5 is above max 4");
   * ```
   */
  constructor(path: string, line: number, reason: string) {
    super(`${path}${line > 0 ? `:${line}` : ""}: ${reason}`);
    this.name = "FunctionFileError";
  }
}

/**
 * `text` without its comments (`//` to the end of the line, `/* ... *\/`)
 * and trailing commas, each replaced by spaces so that positions (and
 * lines) stay where they were; strings are left alone.
 *
 * @example
 * ```ts
 * import { stripJsonc } from "./function_file.ts";
 * console.log(JSON.parse(stripJsonc('{"a": 1, // one\n}'))); // { a: 1 }
 * ```
 */
export function stripJsonc(text: string): string {
  const out = text.split("");
  const blank = (from: number, to: number) => {
    for (let k = from; k < to; k++) if (out[k] !== "\n") out[k] = " ";
  };
  let lastComma = -1; // a comma not yet followed by anything but blanks
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      lastComma = -1;
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === "\\") i++;
    } else if (c === "/" && text[i + 1] === "/") {
      const end = text.indexOf("\n", i);
      const stop = end < 0 ? text.length : end;
      blank(i, stop);
      i = stop - 1;
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      const stop = end < 0 ? text.length : end + 2;
      blank(i, stop);
      i = stop - 1;
    } else if (c === ",") {
      lastComma = i;
    } else if ((c === "}" || c === "]") && lastComma >= 0) {
      out[lastComma] = " ";
      lastComma = -1;
    } else if (!/\s/.test(c)) {
      lastComma = -1;
    }
  }
  return out.join("");
}

/** The line (from 1) of character `pos` in `text`. */
function lineAt(text: string, pos: number): number {
  let line = 1;
  for (let i = 0; i < pos && i < text.length; i++) if (text[i] === "\n") line++;
  return line;
}

/** The line where function `name`'s entry starts (its key), else 0. */
function lineOf(text: string, name: string): number {
  const at = text.indexOf(JSON.stringify(name) + ":") >= 0
    ? text.indexOf(JSON.stringify(name) + ":")
    : text.search(
      new RegExp(`${JSON.stringify(name).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*:`),
    );
  return at < 0 ? 0 : lineAt(text, at);
}

/**
 * Parse the function file's `text` (read from `path`, named in errors);
 * throws {@linkcode FunctionFileError} with the line and the reason.
 *
 * @example
 * ```ts
 * import { parseFunctionFile } from "./function_file.ts";
 * const specs = parseFunctionFile("hotpotato.jsonc", `{
 *   "functions": { "hello": { "file": "examples/hello.ts", "min": 0, "max": 4 } }
 * }`);
 * console.log(specs[0].scaling); // { min: 0, max: 4, idleMs: 60000, target: 0.6, spare: 0 }
 * ```
 */
export function parseFunctionFile(path: string, text: string): FunctionSpec[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stripJsonc(text));
  } catch (e) {
    const message = (e as Error).message;
    const pos = message.match(/position (\d+)/);
    const line = pos ? lineAt(text, Number(pos[1])) : 0;
    throw new FunctionFileError(path, line, `not JSON: ${message.replace(/ \(line.*$/, "")}`);
  }
  const top = parsed as { functions?: unknown };
  if (typeof top !== "object" || top === null || Array.isArray(top)) {
    throw new FunctionFileError(path, 1, 'must be an object with "functions"');
  }
  for (const key of Object.keys(top)) {
    if (key !== "functions") {
      throw new FunctionFileError(path, lineOf(text, key), `unknown key "${key}"`);
    }
  }
  const fns = top.functions;
  if (typeof fns !== "object" || fns === null || Array.isArray(fns)) {
    throw new FunctionFileError(path, lineOf(text, "functions"), '"functions" must be an object');
  }
  const specs: FunctionSpec[] = [];
  for (const [name, raw] of Object.entries(fns)) {
    const at = lineOf(text, name);
    const fail = (why: string) => new FunctionFileError(path, at, `${name}: ${why}`);
    if (!NAME.test(name)) throw fail("not a function name (letters, digits, '.', '_', '-')");
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      throw fail("must be an object");
    }
    const o = raw as Record<string, unknown>;
    for (const key of Object.keys(o)) if (!KEYS.has(key)) throw fail(`unknown key "${key}"`);
    if (typeof o.file !== "string" || !/\.(ts|js|tsx|jsx|mjs)$/.test(o.file)) {
      throw fail('"file" must name a .ts or .js file');
    }
    let routes: string[] | undefined;
    if (o.routes !== undefined) {
      const r = o.routes;
      if (
        !Array.isArray(r) || r.length === 0 || r.length > 64 ||
        !r.every((x) => typeof x === "string" && x.startsWith("/") && x.length <= 256)
      ) {
        throw fail('"routes" must be a list of 1 to 64 paths');
      }
      routes = r as string[];
    }
    if (o.workers !== undefined && (o.min !== undefined || o.max !== undefined)) {
      throw fail('give "workers" (a fixed pool) or "min" and "max", not both');
    }
    let scaling: Scaling;
    try {
      const fixed = o.workers !== undefined ? { min: o.workers, max: o.workers } : {};
      scaling = checkScaling(name, { ...o, ...fixed }, fixedPool(1), "");
    } catch (e) {
      if (!(e instanceof ScalingError)) throw e;
      throw fail(e.message.replace(/^: [^:]+: /, ""));
    }
    if (o.user !== undefined && (typeof o.user !== "string" || !USER.test(o.user))) {
      throw fail('"user" must be a system user name or a uid');
    }
    specs.push({ name, file: o.file, routes, scaling, user: o.user as string | undefined });
  }
  return specs;
}

/**
 * Read and parse the function file at `path`; undefined when it does not
 * exist and `optional` (the default file), else throws
 * {@linkcode FunctionFileError}.
 *
 * @example
 * ```ts
 * import { readFunctionFile } from "./function_file.ts";
 * const specs = readFunctionFile("hotpotato.jsonc", true);
 * console.log(specs ? `${specs.length} function(s)` : "no function file");
 * ```
 */
export function readFunctionFile(path: string, optional = false): FunctionSpec[] | undefined {
  let text: string;
  try {
    const info = Deno.statSync(path);
    if (info.size > MAX_FILE_BYTES) {
      throw new FunctionFileError(path, 0, `larger than ${MAX_FILE_BYTES} bytes`);
    }
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof FunctionFileError) throw e;
    if (optional && e instanceof Deno.errors.NotFound) return undefined;
    throw new FunctionFileError(path, 0, `cannot read it: ${(e as Error).message}`);
  }
  return parseFunctionFile(path, text);
}
