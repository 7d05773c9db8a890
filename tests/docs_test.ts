/**
 * The documentation holds together: the README stays short (a page or two:
 * the depth lives in docs/), it links every page of docs/, and every relative
 * link in the README and in docs/*.md names a file that exists (and, for a
 * link into a Markdown file, a heading that file has).
 */

import assert from "node:assert/strict";
import { dirname, join, normalize } from "node:path";
import { projectRoot } from "../ffi/paths.ts";

const README_MAX_LINES = 250;

/** README.md and every docs/*.md, as paths relative to the project root. */
function pages(): string[] {
  const found = ["README.md"];
  for (const entry of Deno.readDirSync(join(projectRoot, "docs"))) {
    if (entry.isFile && entry.name.endsWith(".md")) found.push(`docs/${entry.name}`);
  }
  return found.sort();
}

/** Markdown without its fenced code blocks and inline code spans (links there are text). */
function prose(markdown: string): string {
  return markdown.replace(/^```[^]*?^```/gm, "").replace(/`[^`\n]*`/g, "");
}

/** The targets of every inline link and image in `markdown`. */
function linkTargets(markdown: string): string[] {
  return [...prose(markdown).matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) =>
    m[1]
  );
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens,
 * a repeated one suffixed -1, -2, ... */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const m of markdown.replace(/^```[^]*?^```/gm, "").matchAll(/^#{1,6}\s+(.+?)\s*#*$/gm)) {
    const base = m[1].toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").trim().replace(/\s/g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    result.add(n === 0 ? base : `${base}-${n}`);
  }
  return result;
}

Deno.test("anchors: GitHub's rule for headings with code, punctuation and repeats", () => {
  assert.deepEqual(
    [...anchors(
      "# What `make` installs (only what is missing)\n## Direct handoffs (`--handoff direct`, the default)\n## A\n## A\n",
    )],
    [
      "what-make-installs-only-what-is-missing",
      "direct-handoffs---handoff-direct-the-default",
      "a",
      "a-1",
    ],
  );
  assert.deepEqual(linkTargets("[a](b.md) `[c](d.md)` ![e](f.svg)\n```\n[g](h.md)\n```\n"), [
    "b.md",
    "f.svg",
  ]);
});

Deno.test(`README.md stays under ${README_MAX_LINES} lines`, async () => {
  const lines = (await Deno.readTextFile(join(projectRoot, "README.md"))).split("\n").length;
  assert.ok(lines < README_MAX_LINES, `README.md has ${lines} lines; move the depth to docs/`);
});

Deno.test("README.md links every page of docs/", async () => {
  const readme = await Deno.readTextFile(join(projectRoot, "README.md"));
  const linked = new Set(linkTargets(readme).map((t) => normalize(t.split("#")[0])));
  for (const page of pages().filter((p) => p.startsWith("docs/"))) {
    assert.ok(linked.has(page), `README.md links ${page}`);
  }
});

Deno.test("every relative link in README.md and docs/*.md names an existing file and heading", async () => {
  const broken: string[] = [];
  const text = new Map<string, string>();
  const read = async (path: string) => {
    if (!text.has(path)) text.set(path, await Deno.readTextFile(join(projectRoot, path)));
    return text.get(path)!;
  };
  for (const page of pages()) {
    for (const target of linkTargets(await read(page))) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, ...
      const [file, anchor] = target.split("#", 2);
      const path = file === "" ? page : normalize(join(dirname(page), decodeURI(file)));
      if (path.startsWith("..") || path.startsWith("/")) {
        broken.push(`${page}: ${target} leaves the project`);
        continue;
      }
      let stat: Deno.FileInfo;
      try {
        stat = await Deno.stat(join(projectRoot, path));
      } catch {
        broken.push(`${page}: ${target} (no ${path})`);
        continue;
      }
      if (anchor !== undefined && stat.isFile && path.endsWith(".md")) {
        if (!anchors(await read(path)).has(anchor)) {
          broken.push(`${page}: ${target} (${path} has no heading #${anchor})`);
        }
      }
    }
  }
  assert.deepEqual(broken, []);
});
