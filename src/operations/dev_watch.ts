/**
 * Development mode's watcher (`./hp dev FILE.ts`): the local modules a
 * function file imports (from `deno info --json`, so the set follows its
 * imports as they change; npm packages and remote modules are left out), and
 * a call when one of them changes, debounced so an editor's burst of writes
 * makes one reload.
 *
 * @module
 */

import { projectRoot } from "../../ffi/paths.ts";

const DEBOUNCE_MS = 150;

/** The local files `file` loads, itself included (throws when `deno info`
 * fails, e.g. on a syntax error).
 *
 * @example
 * ```ts
 * import { localModules } from "./dev_watch.ts";
 * console.log(await localModules("examples/hello.ts"));
 * ```
 */
export async function localModules(file: string): Promise<string[]> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", file],
    cwd: projectRoot,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    const why = new TextDecoder().decode(stderr).trim().split("\n")[0];
    throw new Error(`deno info ${file}: ${why}`);
  }
  const info = JSON.parse(new TextDecoder().decode(stdout)) as {
    modules?: { specifier?: string; local?: string }[];
  };
  const files = new Set<string>();
  for (const m of info.modules ?? []) {
    if (!m.specifier?.startsWith("file://") || !m.local) continue;
    if (m.local.includes("/node_modules/")) continue;
    files.add(m.local);
  }
  return [...files].sort();
}

/**
 * Call `changed(path)` whenever `file` or a local module it imports is
 * written, created or replaced (editors often write a new file and rename
 * it over the old one). `say` gets one line on start and on a failure to
 * read the imports. Returns a function that stops watching.
 *
 * @example
 * ```ts
 * import { watchModule } from "./dev_watch.ts";
 * const stop = watchModule("examples/hello.ts", (path) => console.log(`${path} changed`), console.log);
 * setTimeout(stop, 1000);
 * ```
 */
export function watchModule(
  file: string,
  changed: (path: string) => void,
  say: (message: string) => void,
): () => void {
  let watcher: Deno.FsWatcher | undefined;
  let files = new Set<string>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let last = "";
  let stopped = false;
  const refresh = async (): Promise<void> => {
    let list: string[];
    try {
      list = await localModules(file);
    } catch (e) {
      say(`${(e as Error).message}; watching the files it imported before`);
      if (files.size === 0) list = [file.startsWith("/") ? file : `${projectRoot}/${file}`];
      else return;
    }
    const same = list.length === files.size && list.every((f) => files.has(f));
    if (same && watcher) return;
    files = new Set(list);
    watcher?.close();
    if (stopped) return;
    // Watch the directories (a rename over a file replaces the file's inode).
    const dirs = [...new Set(list.map((f) => f.slice(0, f.lastIndexOf("/")) || "/"))];
    watcher = Deno.watchFs(dirs, { recursive: false });
    say(`watching ${files.size} file(s) of ${file}`);
    const w = watcher;
    (async () => {
      try {
        for await (const event of w) {
          const hit = event.paths.find((p) => files.has(p));
          if (!hit || event.kind === "access") continue;
          last = hit;
          clearTimeout(timer);
          timer = setTimeout(async () => {
            await refresh(); // the imports may have changed too
            changed(last.startsWith(projectRoot + "/") ? last.slice(projectRoot.length + 1) : last);
          }, DEBOUNCE_MS);
        }
      } catch {
        // closed
      }
    })();
  };
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
    watcher?.close();
  };
}
