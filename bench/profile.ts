/**
 * Where hot potato's per-request time goes in scenario (2) (route alternating
 * on every request: a handoff per request), 50 connections, ECDSA:
 *
 *   A. V8's sampling profiler: gateway and both workers run with
 *      `--cpu-prof`; the .cpuprofile files are summarized (top self time and
 *      top inclusive time per process, and self time per source file).
 *   B. `perf record -g` on the gateway and the sum worker, the workers with
 *      `--v8-flags=--perf-basic-prof` so JIT frames have names; summarized by
 *      shared object and by symbol (kernel, wolfSSL, V8, JIT code).
 *
 *   deno run -A bench/profile.ts        (bench/run.sh --profile runs it too)
 *
 * Writes bench/results/profile.md (and the raw profiles under
 * bench/results/profile/). BENCH_PROFILE_SECONDS (8) per phase.
 *
 * @module
 */

import { certSet, root, runWrk, sleep, startHotPotato } from "./lib.ts";

const seconds = Number(Deno.env.get("BENCH_PROFILE_SECONDS") ?? "8");
const port = Number(Deno.env.get("BENCH_PORT_BASE") ?? "18740") + 17;
const out = `${root}/bench/results/profile`;
const certs = certSet("ecdsa");

interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  samples: number[];
  timeDeltas: number[];
}

function shortUrl(url: string): string {
  if (!url) return "";
  return url.replace(`file://${root}/`, "").replace(/^file:\/\/.*\/node_modules\//, "npm:");
}

/** Self and inclusive time per function, self time per file. */
export function summarize(p: CpuProfile, top = 20): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const key = (id: number) => {
    const f = byId.get(id)!.callFrame;
    const u = shortUrl(f.url);
    return `${f.functionName || "(anonymous)"}${u ? ` ${u}:${f.lineNumber + 1}` : ""}`;
  };
  const self = new Map<string, number>(), incl = new Map<string, number>();
  const files = new Map<string, number>();
  let total = 0, idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i], dt = p.timeDeltas[i] ?? 0;
    total += dt;
    const k = key(id);
    if (k.startsWith("(idle)")) {
      idle += dt;
      continue;
    }
    self.set(k, (self.get(k) ?? 0) + dt);
    const f = byId.get(id)!.callFrame;
    const file = shortUrl(f.url) || f.functionName;
    files.set(file, (files.get(file) ?? 0) + dt);
    const seen = new Set<string>();
    for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
      const kk = key(n);
      if (seen.has(kk) || kk === "(root)") continue;
      seen.add(kk);
      incl.set(kk, (incl.get(kk) ?? 0) + dt);
    }
  }
  const busy = total - idle;
  const pct = (v: number) => `${(v / busy * 100).toFixed(1)}%`;
  const ms = (v: number) => `${(v / 1000).toFixed(0)} ms`;
  const lines: string[] = [];
  lines.push(
    `Profiled ${ms(total)}, of which idle ${ms(idle)}; busy ${
      ms(busy)
    } (percentages are of busy time).`,
  );
  lines.push("");
  lines.push("| top self time | self | % |");
  lines.push("|---|--:|--:|");
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    lines.push(`| \`${k}\` | ${ms(v)} | ${pct(v)} |`);
  }
  lines.push("");
  lines.push("| top inclusive time | total | % |");
  lines.push("|---|--:|--:|");
  for (const [k, v] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    lines.push(`| \`${k}\` | ${ms(v)} | ${pct(v)} |`);
  }
  lines.push("");
  lines.push("| self time by file | self | % |");
  lines.push("|---|--:|--:|");
  for (const [k, v] of [...files].sort((a, b) => b[1] - a[1]).slice(0, 12)) {
    lines.push(`| \`${k}\` | ${ms(v)} | ${pct(v)} |`);
  }
  return lines.join("\n");
}

async function cmd(c: string, args: string[]): Promise<string> {
  const r = await new Deno.Command(c, { args, stdout: "piped", stderr: "piped" }).output();
  return new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
}

async function phaseCpuProf(): Promise<string> {
  const dirs = { gateway: `${out}/gateway`, workers: `${out}/workers` };
  await Deno.remove(out, { recursive: true }).catch(() => {});
  for (const d of Object.values(dirs)) await Deno.mkdir(d, { recursive: true });
  // Each process gets its own directory: the gateway's flags go to it, the
  // workers' to both workers (the sum worker's file is told apart by pid).
  const r = await startHotPotato({
    port,
    certs,
    resumption: true,
    denoFlags: {
      gateway: ["--cpu-prof", `--cpu-prof-dir=${dirs.gateway}`],
      worker: ["--cpu-prof", `--cpu-prof-dir=${dirs.workers}`],
    },
  });
  let w;
  try {
    await runWrk({
      url: `https://127.0.0.1:${port}`,
      connections: 50,
      seconds: 2,
      script: "alternate",
    });
    w = await runWrk({
      url: `https://127.0.0.1:${port}`,
      connections: 50,
      seconds,
      script: "alternate",
    });
  } finally {
    await r.stop();
  }
  const pids = Object.fromEntries(r.procs.map((p) => [p.name, p.pid]));
  const parts: string[] = [
    `## A. V8 CPU profile (--cpu-prof), scenario (2), 50 connections, ${seconds} s + 2 s warm-up`,
    "",
    `wrk: ${Math.round(w.rps)} req/s, p50 ${
      (w.latencyUs.p50 / 1000).toFixed(2)
    } ms. The profiles ` +
    "cover each process's whole life (start-up and warm-up included).",
    "",
  ];
  const files: [string, string][] = [];
  for await (const e of Deno.readDir(dirs.gateway)) {
    files.push(["gateway", `${dirs.gateway}/${e.name}`]);
  }
  for await (const e of Deno.readDir(dirs.workers)) {
    // Deno names them CPU.<time>.<pid>.<n>.cpuprofile
    const pid = Number(e.name.split(".")[2]);
    const who = pid === pids.sum ? "sum" : pid === pids.product ? "product" : `worker ${pid}`;
    files.push([who, `${dirs.workers}/${e.name}`]);
  }
  if (!files.length) parts.push("No .cpuprofile written (did the processes exit cleanly?).");
  for (const [who, f] of files.sort()) {
    if (who === "product") continue; // the same code as sum
    const prof = JSON.parse(await Deno.readTextFile(f)) as CpuProfile;
    parts.push(`### ${who} (${f.replace(`${root}/`, "")})`, "", summarize(prof), "");
  }
  return parts.join("\n");
}

async function phasePerf(): Promise<string> {
  const have = await cmd("bash", ["-c", "command -v perf || true"]);
  if (!have.trim()) return "## B. perf\n\nperf is not installed (apt-get install linux-perf).\n";
  const r = await startHotPotato({
    port,
    certs,
    resumption: true,
    denoFlags: {
      gateway: ["--v8-flags=--perf-basic-prof"],
      worker: ["--v8-flags=--perf-basic-prof"],
    },
  });
  const gw = r.procs.find((p) => p.name === "gateway")!.pid;
  const sum = r.procs.find((p) => p.name === "sum")!.pid;
  const product = r.procs.find((p) => p.name === "product")!.pid;
  const data = `${out}/perf.data`;
  let report = "";
  try {
    await runWrk({
      url: `https://127.0.0.1:${port}`,
      connections: 50,
      seconds: 2,
      script: "alternate",
    });
    const wrk = runWrk({
      url: `https://127.0.0.1:${port}`,
      connections: 50,
      seconds,
      script: "alternate",
    });
    await sleep(1000);
    await cmd("perf", [
      "record",
      "-q",
      "-F",
      "999",
      "-g",
      "-o",
      data,
      "-p",
      `${gw},${sum},${product}`,
      "--",
      "sleep",
      String(Math.max(2, seconds - 3)),
    ]);
    await wrk;
    const flat = (sort: string, limit: string) =>
      cmd("perf", [
        "report",
        "-i",
        data,
        "--stdio",
        "--no-children",
        "-g",
        "none",
        "--sort",
        sort,
        "--percent-limit",
        limit,
      ]);
    const clean = (s: string) =>
      s.split("\n").filter((l) => l.trim() && !l.startsWith("#")).slice(0, 45).join("\n");
    report = [
      `## B. perf record -g, gateway (pid ${gw}), sum (pid ${sum}) and product (pid ${product}) workers, scenario (2), 50 connections`,
      "",
      "Samples are per thread (tid:name); a process's main (JavaScript) thread has tid = pid, " +
      "the shim's epoll thread and V8's helper threads have their own tids.",
      "",
      "By thread:",
      "",
      "```",
      clean(await flat("pid", "0.5")),
      "```",
      "",
      "By thread and shared object (JIT = code V8 generated, named through perf-PID.map):",
      "",
      "```",
      clean(await flat("pid,dso", "1")),
      "```",
      "",
      "Top symbols:",
      "",
      "```",
      clean(await flat("pid,sym", "0.7")),
      "```",
      "",
    ].join("\n");
  } finally {
    await r.stop();
    await Deno.remove(`/tmp/perf-${gw}.map`).catch(() => {});
    for (const p of r.procs) await Deno.remove(`/tmp/perf-${p.pid}.map`).catch(() => {});
  }
  return report;
}

if (import.meta.main) {
  const a = await phaseCpuProf();
  console.log(a);
  const b = await phasePerf();
  console.log(b);
  const md = `# Hot potato: where the time goes, scenario (2)\n\n${a}\n\n${b}\n`;
  await Deno.writeTextFile(`${root}/bench/results/profile.md`, md);
  console.log(`profile: wrote ${root}/bench/results/profile.md`);
}
