/**
 * The layers of src/ (docs/architecture.md, "Layers"): every relative import
 * in src/ (static `import ... from` and `export ... from`) goes down the
 * layers or stays in its folder, and only the listed files of operations/ are
 * imported from outside it. Every violation is printed with its file and line.
 */

import assert from "node:assert/strict";
import { join, normalize, relative } from "node:path";
import { projectRoot } from "../ffi/paths.ts";

const SRC = join(projectRoot, "src");

/** A folder of src/, or ffi/ beside it (the native bindings). */
type Layer = Folder | "ffi";
type Folder = "http" | "connection" | "routing" | "handoff" | "gateway" | "worker" | "operations";

/** Each folder of src/ and the layers its files may import (their own folder
 * always, and the base utilities below). Everything else is a wrong-way import. */
const FOLDERS: Record<Folder, readonly Layer[]> = {
  // Pure codecs: no live connection, no process, no native code.
  http: [],
  connection: ["http", "ffi"],
  // Pure: route tables, the router, balancing.
  routing: ["http"],
  handoff: ["connection", "routing", "http", "ffi"],
  // The roles, side by side: neither imports the other.
  gateway: ["handoff", "connection", "routing", "http", "ffi"],
  worker: ["handoff", "connection", "routing", "http", "ffi"],
  // How it runs: on top of everything.
  operations: ["gateway", "worker", "handoff", "connection", "routing", "http", "ffi"],
};

/** Who may import a shared file of operations/: any layer, or only these
 * (a folder, or one file as "folder/file.ts"). */
type Importers = "any" | readonly string[];

const ROLES_AND_HOLDER = ["gateway", "worker", "connection/holder.ts"] as const;

/** The files of operations/ that lower layers may import (every other file
 * there is top-level: imported from operations/ only), who may import each,
 * and the layers each may import in turn (besides the base utilities; ffi/
 * for the roles' utilities). */
const SHARED: Record<string, { from: Importers; imports: readonly Layer[] }> = {
  // Base utilities: imported from any layer; they import only each other.
  "operations/log.ts": { from: "any", imports: [] },
  "operations/metrics.ts": { from: "any", imports: [] },
  "operations/lines.ts": { from: "any", imports: [] },
  "operations/cidr.ts": { from: "any", imports: [] },
  // A function's scaling settings: the launcher decides with them, the
  // gateway reads them (--scaling, in config.ts) to hold requests for a
  // function at zero workers.
  "operations/scaling.ts": { from: "any", imports: [] },
  // The roles' utilities: settings, process lifecycle, draining.
  "operations/config.ts": { from: ROLES_AND_HOLDER, imports: ["http", "ffi"] },
  "operations/lifecycle.ts": { from: ROLES_AND_HOLDER, imports: ["ffi"] },
  "operations/drain.ts": { from: ROLES_AND_HOLDER, imports: ["connection", "ffi"] },
  // The admin port's signatures: the launcher signs, the gateway checks.
  "operations/admin_signature.ts": { from: ["gateway"], imports: ["handoff"] },
};

/** One relative import: where it is and what it names (relative to src/,
 * or "../ffi/..." and the like for a file outside it). */
interface Import {
  file: string;
  line: number;
  target: string;
}

/** Every .ts file under src/, relative to src/. */
function sources(dir = SRC): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) found.push(...sources(path));
    else if (entry.isFile && entry.name.endsWith(".ts")) found.push(relative(SRC, path));
  }
  return found.sort();
}

/** What may stand between `import`/`export` and `from`: `type`, a default
 * name, `{ names }`, `* as name`. */
const CLAUSE = String.raw`(?:type\s+)?(?:[\w$]+\s*,?\s*)?(?:\{[^}]*\}|\*(?:\s+as\s+[\w$]+)?)?`;
/** A static import or re-export of a relative path, at the start of a line. */
const STATEMENT = new RegExp(
  String.raw`^[ \t]*(?:(?:import|export)\s*${CLAUSE}\s*from\s*|import\s*)(["'])(\.{1,2}/[^"']*)\1`,
  "gm",
);

/** The relative static imports and re-exports in `text`, the source of
 * `file` (relative to src/). A statement starts a line (so examples in doc
 * comments, ` * import ...`, are not read) and may span lines. */
function importsIn(file: string, text: string): Import[] {
  return [...text.matchAll(STATEMENT)].map((m) => ({
    file,
    // The line of the specifier (the last line of a statement over several).
    line: text.slice(0, m.index! + m[0].length - m[2].length).split("\n").length,
    target: normalize(join(file, "..", m[2])),
  }));
}

/** The layer of a path relative to src/ ("../ffi/shim.ts" is ffi), or
 * undefined for anything else. */
function layerOf(path: string): Layer | undefined {
  if (path.startsWith("../")) return path.startsWith("../ffi/") ? "ffi" : undefined;
  const folder = path.split("/")[0];
  return folder in FOLDERS ? folder as Layer : undefined;
}

/** Whether `file` is one of `importers`. */
function among(file: string, importers: Importers): boolean {
  return importers === "any" || importers.some((i) => i === file || i === layerOf(file));
}

/** Why `imp` goes the wrong way, or undefined when it may be. */
function violation(imp: Import): string | undefined {
  const from = layerOf(imp.file) as Folder | undefined;
  const to = layerOf(imp.target);
  if (from === undefined) return `src/${imp.file} is in no layer`;
  if (to === undefined) return "not a layer (src/ folders and ffi/ only)";
  const target = SHARED[imp.target];
  // Into a shared file of operations/: from operations/, and from those it
  // is shared with.
  if (target && from !== "operations" && !among(imp.file, target.from)) {
    return `it is imported only from ${(target.from as readonly string[]).join(", ")}`;
  }
  const shared = SHARED[imp.file];
  if (shared) {
    // Out of a shared file: the base utilities, and what its entry allows.
    if (target?.from === "any" || shared.imports.includes(to)) return undefined;
    const may = [...shared.imports.map((l) => `${l}/`), "the base utilities"].join(", ");
    return `src/${imp.file} is shared with lower layers: it may import only ${may}`;
  }
  if (target || to === from || FOLDERS[from].includes(to)) return undefined;
  if (to === "operations") return "top-level: imported from operations/ only";
  const may = [...FOLDERS[from].map((l) => `${l}/`), "the base utilities"].join(", ");
  return `${from}/ may not import ${to}/ (only ${may})`;
}

Deno.test("every relative import in src/ follows the layers", () => {
  const files = sources();
  assert.ok(files.length > 50, `only ${files.length} files found under ${SRC}`);
  const imports = files.flatMap((f) => importsIn(f, Deno.readTextFileSync(join(SRC, f))));
  assert.ok(imports.length > 100, `only ${imports.length} relative imports found`);
  const wrong: string[] = [];
  for (const imp of imports) {
    const why = violation(imp);
    if (why) wrong.push(`src/${imp.file}:${imp.line}: imports ${imp.target}: ${why}`);
  }
  if (wrong.length > 0) console.log(wrong.join("\n"));
  assert.deepEqual(wrong, [], `${wrong.length} wrong-way imports`);
});

Deno.test("the layers' rules name files that exist", () => {
  for (const file of Object.keys(SHARED)) {
    assert.ok(sources().includes(file), `SHARED names src/${file}, which does not exist`);
  }
});

Deno.test("the rules catch wrong-way imports and let the right ones through", () => {
  const check = (file: string, target: string) => violation({ file, line: 1, target });
  // Wrong way.
  for (
    const [file, target] of [
      ["http/x.ts", "connection/tls_connection.ts"],
      ["routing/router.ts", "handoff/protocol.ts"],
      ["connection/listener.ts", "handoff/wire.ts"],
      ["handoff/gateway_link.ts", "operations/lifecycle.ts"],
      ["handoff/x.ts", "gateway/forwarder.ts"],
      ["gateway/x.ts", "worker/function_server.ts"],
      ["worker/x.ts", "gateway/forwarder.ts"],
      ["gateway/x.ts", "operations/launcher.ts"],
      ["connection/request_reader.ts", "operations/config.ts"],
      ["operations/config.ts", "connection/request_reader.ts"],
      ["operations/config.ts", "gateway/proxy_protocol.ts"],
      ["operations/log.ts", "http/http.ts"],
      ["http/x.ts", "../ffi/shim.ts"],
      ["http/x.ts", "../mod.ts"],
    ]
  ) assert.ok(check(file, target), `${file} → ${target} should be refused`);
  // Right way.
  for (
    const [file, target] of [
      ["http/websocket_handshake.ts", "http/http_error.ts"],
      ["connection/responder.ts", "http/http.ts"],
      ["connection/responder.ts", "operations/log.ts"],
      ["connection/holder.ts", "operations/config.ts"],
      ["routing/router.ts", "routing/route_table.ts"],
      ["handoff/protocol.ts", "operations/metrics.ts"],
      ["handoff/wire.ts", "routing/route_table.ts"],
      ["handoff/peers.ts", "connection/listener.ts"],
      ["gateway/x.ts", "operations/drain.ts"],
      ["worker/x.ts", "operations/lifecycle.ts"],
      ["operations/config.ts", "operations/cidr.ts"],
      ["operations/config.ts", "http/http.ts"],
      ["operations/launcher.ts", "gateway/gateway_server.ts"],
      ["connection/x.ts", "../ffi/shim.ts"],
    ]
  ) assert.equal(check(file, target), undefined, `${file} → ${target} should be allowed`);
});

Deno.test("imports are found across lines, and not in doc comments or strings", () => {
  const text = [
    "/**",
    ' * import { x } from "../gateway/gateway_server.ts";',
    " */",
    "import {",
    "  a,",
    "  type B,",
    '} from "../http/http.ts";',
    "export { c } from './d.ts';",
    'import "../../ffi/shim.ts";',
    'import * as e from "../routing/router.ts";',
    'export type { F } from "../routing/worker_routes.ts";',
    "const s = \"import { y } from '../worker/x.ts'\";",
    'import { z } from "node:util";',
  ].join("\n");
  assert.deepEqual(importsIn("connection/t.ts", text).map(({ line, target }) => [line, target]), [
    [7, "http/http.ts"],
    [8, "connection/d.ts"],
    [9, "../ffi/shim.ts"],
    [10, "routing/router.ts"],
    [11, "routing/worker_routes.ts"],
  ]);
});
