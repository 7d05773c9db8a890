/**
 * The comparative benchmark (`make bench` → bench/run.sh → this file).
 *
 * One run, on this machine, of the same workload — small GETs of /sum and
 * /product — against every system, with the patched wrk
 * (bench/wrk/connection.patch) at 1, 50 and 500 connections, with an ECDSA
 * P-256 and an RSA-2048 certificate, TLS 1.3 everywhere:
 *
 *   (1) affinity           hot potato, the same route on every request
 *   (1s) affinity-shipped  the same with the shipped settings (below)
 *   (2) alternating        hot potato, --handoff direct (the default): the
 *                          route alternating on every request of each
 *                          connection, a worker → worker handoff per request
 *   (2g) alternating-gateway  the same with --handoff gateway (the old flow):
 *                          worker → gateway → worker per request
 *   (2s) alternating-shipped  (2) with the shipped settings (below)
 *   (3) full-handshake     no migration: a new TLS connection per route change
 *                          (Connection: close), gateway --tls-resumption off
 *   (4) resumption         the same with resumption on; wrk resumes
 *   (5) nginx              nginx, 2 workers, TLS, upstream keep-alive to two
 *                          plain-HTTP Deno.serve backends (routes alternating)
 *   (5b) nginx-same        the same, same route on every request
 *   (6) bound              ONE process, hot potato's TLS stack and event loop,
 *                          both functions, no handoff (routes alternating)
 *   (7) deno-serve         ONE Deno.serve process with Deno's TLS (alternating)
 *
 * Hot potato runs quiet (--log-level warning) except in (1s) and (2s), which
 * run the shipped configuration: no log flags, so the request log is on (info,
 * text). The bench reads every process's stdout and throws the log lines away,
 * as a terminal would take them, counting them (the proof column).
 *
 * Each system is started, warmed up, measured at each connection count and
 * stopped before the next, so systems never compete for the 2 cores (wrk
 * does: its CPU is reported). Server CPU is utime+stime from /proc/PID/stat
 * of every server process; peak RSS is the sum of their VmHWM, reset before
 * each measurement (/proc/PID/clear_refs). The counters that prove what was
 * measured (handshakes, resumed, route changes direct and through the gateway,
 * log lines, backend requests) are read before and after each measurement with
 * SIGUSR2.
 *
 * Then the run-length sweep: the route changes every k requests of each
 * connection (bench/runs.lua, k = 1, 2, 4, 8, 16), ECDSA, 50 connections, for
 * hot potato direct, hot potato --handoff gateway (both quiet) and nginx.
 *
 * Then: 10,000 idle keep-alive connections held by hot potato (bench/idle.ts),
 * the handoff micro benchmark (bench/handoff_bench.ts) and the latency of one
 * process-to-process hop (bench/wake_latency.ts, bench/wake_floor.c).
 *
 * Settings (environment): BENCH_SECONDS (8), BENCH_WARMUP (2),
 * BENCH_CONNECTIONS (1,50,500), BENCH_CERTS (ecdsa,rsa; empty: no matrix),
 * BENCH_RSA_CONNECTIONS (same as BENCH_CONNECTIONS), BENCH_SYSTEMS (all; also
 * limits the sweep to the sweep systems listed), BENCH_SWEEP (1; 0 skips),
 * BENCH_SWEEP_KS (1,2,4,8,16), BENCH_IDLE (10000; 0 skips), BENCH_MICRO (1; 0
 * skips), BENCH_PORT_BASE (18740; uses 18740-18760).
 *
 * @module
 */

import {
  type CertSet,
  certSet,
  countKernelWork,
  cpuSeconds,
  deno,
  machineBusySeconds,
  probeTls,
  Proc,
  resetPeak,
  root,
  run,
  type Running,
  runWrk,
  sleep,
  startBound,
  startDenoServe,
  startHotPotato,
  startNginx,
  statusKb,
  WRK_TLS_ENV,
  wrkBin,
} from "./lib.ts";
import { renderChart, renderMarkdown, renderSweepChart } from "./report.ts";

const env = (k: string, d: string) => Deno.env.get(k) ?? d;
const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);

const settings = {
  seconds: Number(env("BENCH_SECONDS", "8")),
  warmupSeconds: Number(env("BENCH_WARMUP", "2")),
  connections: list(env("BENCH_CONNECTIONS", "1,50,500")).map(Number),
  rsaConnections: list(env("BENCH_RSA_CONNECTIONS", env("BENCH_CONNECTIONS", "1,50,500"))).map(
    Number,
  ),
  certs: list(env("BENCH_CERTS", "ecdsa,rsa")) as ("ecdsa" | "rsa")[],
  systems: list(env("BENCH_SYSTEMS", "")),
  idleConnections: Number(env("BENCH_IDLE", "10000")),
  micro: env("BENCH_MICRO", "1") !== "0",
  sweep: env("BENCH_SWEEP", "1") !== "0",
  sweepRunLengths: list(env("BENCH_SWEEP_KS", "1,2,4,8,16")).map(Number),
  portBase: Number(env("BENCH_PORT_BASE", "18740")),
  client: { tool: "wrk (patched, bench/wrk/connection.patch)", ...WRK_TLS_ENV },
};

interface SystemDef {
  id: string;
  label: string;
  script: "same" | "alternate" | "alternate_close";
  latencyFromConnect?: boolean;
  start(certs: CertSet, port: number): Promise<Running>;
}

const P = settings.portBase;
const SYSTEMS: SystemDef[] = [
  {
    id: "affinity",
    label: "(1) hot potato, same route (affinity)",
    script: "same",
    start: (certs, port) => startHotPotato({ port, certs, resumption: true, handoff: "direct" }),
  },
  {
    id: "affinity-shipped",
    label: "(1s) hot potato, same route, shipped settings (request log on)",
    script: "same",
    start: (certs, port) => startHotPotato({ port, certs, resumption: true, log: "shipped" }),
  },
  {
    id: "alternating",
    label: "(2) hot potato direct, route alternating (a worker → worker handoff per request)",
    script: "alternate",
    start: (certs, port) => startHotPotato({ port, certs, resumption: true, handoff: "direct" }),
  },
  {
    id: "alternating-gateway",
    label: "(2g) hot potato --handoff gateway, route alternating (worker → gateway → worker)",
    script: "alternate",
    start: (certs, port) => startHotPotato({ port, certs, resumption: true, handoff: "gateway" }),
  },
  {
    id: "alternating-shipped",
    label: "(2s) hot potato direct, route alternating, shipped settings (request log on)",
    script: "alternate",
    start: (certs, port) => startHotPotato({ port, certs, resumption: true, log: "shipped" }),
  },
  {
    id: "full-handshake",
    label: "(3) new TLS connection per route change, full handshake",
    script: "alternate_close",
    latencyFromConnect: true,
    start: (certs, port) => startHotPotato({ port, certs, resumption: false }),
  },
  {
    id: "resumption",
    label: "(4) new TLS connection per route change, resumed",
    script: "alternate_close",
    latencyFromConnect: true,
    start: (certs, port) => startHotPotato({ port, certs, resumption: true }),
  },
  {
    id: "nginx",
    label: "(5) nginx (2 workers) + 2 Deno.serve backends, alternating",
    script: "alternate",
    start: (certs, port) => startNginx({ port, certs, backendPorts: [P + 18, P + 19] }),
  },
  {
    id: "nginx-same",
    label: "(5b) nginx + backends, same route",
    script: "same",
    start: (certs, port) => startNginx({ port, certs, backendPorts: [P + 18, P + 19] }),
  },
  {
    id: "bound",
    label: "(6) bound: one process, hot potato's TLS stack, no handoff",
    script: "alternate",
    start: (certs, port) => startBound({ port, certs }),
  },
  {
    id: "deno-serve",
    label: "(7) Deno.serve with Deno's TLS, one process",
    script: "alternate",
    start: (certs, port) => startDenoServe({ port, certs }),
  },
];

/** The systems of the run-length sweep (bench/runs.lua), by their id in
 * SYSTEMS: the route changes every k requests of each connection. */
const SWEEP_SYSTEMS = ["alternating", "alternating-gateway", "nginx"];
/** Its certificate and connection count. */
const SWEEP_CERT = "ecdsa", SWEEP_CONNECTIONS = 50;

/** One measured cell. */
export interface Cell {
  cert: string;
  system: string;
  label: string;
  connections: number;
  seconds: number;
  requests: number;
  rps: number;
  latencyUs: { mean: number; p50: number; p90: number; p99: number; max: number };
  latencyFromConnect: boolean;
  errors: Record<string, number>;
  serverCpuS: number;
  cpuPer10k: number;
  clientCpuS: number;
  clientCpuPer10k: number;
  peakRssMiB: number;
  /** System calls and context switches of every server thread per request
   * (perf stat), absent when perf could not count. */
  syscallsPerReq?: number;
  contextSwitchesPerReq?: number;
  /** CPU seconds the rest of the machine used meanwhile (other processes:
   * the machine is shared), i.e. busy time minus server and wrk. */
  otherCpuS: number;
  processes: number;
  proof: Record<string, number>;
  /** Sweep cells: the route changes every runLength requests of each connection. */
  runLength?: number;
}

function delta(
  a: Record<string, Record<string, unknown>>,
  b: Record<string, Record<string, unknown>>,
  proc: string,
  field: string,
): number {
  return Number(b[proc]?.[field] ?? 0) - Number(a[proc]?.[field] ?? 0);
}

function proofOf(
  a: Record<string, Record<string, unknown>>,
  b: Record<string, Record<string, unknown>>,
): Record<string, number> {
  if (b.gateway) {
    return {
      handshakes: delta(a, b, "gateway", "handshakes"),
      resumed: delta(a, b, "gateway", "resumed"),
      // connections that left a function: direct moves (told in MOVED) and
      // hand-backs through the gateway
      returned: delta(a, b, "gateway", "returned"),
      // of those, direct moves (--handoff direct)
      moved: delta(a, b, "gateway", "moved"),
      handoffs: delta(a, b, "gateway", "handoffs"),
      accepted: delta(a, b, "gateway", "accepted"),
    };
  }
  if (b.bound) {
    return {
      handshakes: delta(a, b, "bound", "handshakes"),
      resumed: delta(a, b, "bound", "resumed"),
      served: delta(a, b, "bound", "requests"),
    };
  }
  if (b["backend-sum"]) {
    return {
      sumServed: delta(a, b, "backend-sum", "requests"),
      productServed: delta(a, b, "backend-product", "requests"),
    };
  }
  if (b["deno-serve"]) return { served: delta(a, b, "deno-serve", "requests") };
  return {};
}

async function measure(
  sys: SystemDef,
  r: Running,
  certs: CertSet,
  connections: number,
  runLength?: number,
): Promise<Cell> {
  const url = `https://127.0.0.1:${r.port}`;
  const pids = r.pids();
  for (const pid of pids) resetPeak(pid);
  const c0 = await r.counters();
  const log0 = r.logLines();
  const cpu0 = pids.reduce((t, p) => t + cpuSeconds(p), 0);
  const busy0 = machineBusySeconds();
  const counting = countKernelWork(pids);
  const w = await runWrk({
    url,
    connections,
    seconds: settings.seconds,
    ...wrkScript(sys, runLength),
  });
  const kernel = await counting.stop();
  const cpu1 = pids.reduce((t, p) => t + cpuSeconds(p), 0);
  const busy1 = machineBusySeconds();
  const peakKb = pids.reduce((t, p) => t + statusKb(p, "VmHWM"), 0);
  await sleep(200); // let the last answers, closes and log lines land before reading counters
  const log1 = r.logLines();
  const c1 = await r.counters();
  const serverCpuS = cpu1 - cpu0;
  const proof = proofOf(c0, c1);
  if (c1.gateway) {
    proof.logLines = log1.written - log0.written;
    proof.logDropped = log1.dropped - log0.dropped;
  }
  return {
    cert: certs.type,
    system: sys.id,
    label: sys.label,
    connections,
    seconds: w.durationUs / 1e6,
    requests: w.requests,
    rps: w.rps,
    latencyUs: w.latencyUs,
    latencyFromConnect: !!sys.latencyFromConnect,
    errors: w.errors,
    serverCpuS,
    cpuPer10k: serverCpuS / w.requests * 10_000,
    clientCpuS: w.clientCpuS,
    clientCpuPer10k: w.clientCpuS / w.requests * 10_000,
    peakRssMiB: peakKb / 1024,
    ...(kernel && w.requests > 0
      ? {
        syscallsPerReq: kernel.syscalls / w.requests,
        contextSwitchesPerReq: kernel.contextSwitches / w.requests,
      }
      : {}),
    otherCpuS: Math.max(0, busy1 - busy0 - serverCpuS - w.clientCpuS),
    processes: pids.length,
    proof,
    ...(runLength !== undefined ? { runLength } : {}),
  };
}

/** The wrk script of a system, or bench/runs.lua with k = runLength (sweep). */
function wrkScript(
  sys: SystemDef,
  runLength?: number,
): { script: string; latencyFromConnect?: boolean; env?: Record<string, string> } {
  if (runLength === undefined) {
    return { script: sys.script, latencyFromConnect: sys.latencyFromConnect };
  }
  return { script: "runs", env: { BENCH_RUN_LENGTH: String(runLength) } };
}

function fmtCell(c: Cell): string {
  const p = Object.entries(c.proof).map(([k, v]) => `${k}=${v}`).join(" ");
  const errs = Object.values(c.errors).reduce((a, b) => a + b, 0);
  const k = c.runLength !== undefined ? ` k=${String(c.runLength).padEnd(2)}` : "";
  return `  ${c.cert} ${c.system.padEnd(19)}${k} c=${String(c.connections).padStart(3)}  ` +
    `${c.rps.toFixed(0).padStart(6)} req/s  p50 ${(c.latencyUs.p50 / 1000).toFixed(2)} ms  ` +
    `p99 ${(c.latencyUs.p99 / 1000).toFixed(2)} ms  cpu ${c.cpuPer10k.toFixed(3)} s/10k  ` +
    (c.syscallsPerReq !== undefined
      ? `sys ${c.syscallsPerReq.toFixed(1)}/req  cs ${c.contextSwitchesPerReq!.toFixed(2)}/req  `
      : "") +
    `rss ${c.peakRssMiB.toFixed(0)} MiB  other ${c.otherCpuS.toFixed(1)} s  errors ${errs}  ${p}`;
}

async function machine(): Promise<Record<string, string | number>> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo");
  const meminfo = await Deno.readTextFile("/proc/meminfo");
  const memKb = Number(meminfo.match(/MemTotal:\s+(\d+)/)?.[1] ?? 0);
  return {
    nproc: navigator.hardwareConcurrency,
    cpu: cpuinfo.match(/model name\s*:\s*(.*)/)?.[1]?.trim() ?? "?",
    memoryGiB: Math.round(memKb / 1024 / 1024 * 10) / 10,
    kernel: (await run("uname", ["-r"])).stdout.trim(),
    loadAverageAtStart: (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" "),
  };
}

async function versions(): Promise<Record<string, string>> {
  const first = (s: string) => s.trim().split("\n")[0];
  const wolf = await Deno.readTextFile(`${root}/.local/wolfssl/include/wolfssl/version.h`)
    .then((t) => t.match(/LIBWOLFSSL_VERSION_STRING\s+"([^"]+)"/)?.[1] ?? "?")
    .catch(() => "?");
  const nginx = await run("nginx", ["-V"]);
  return {
    deno: first((await run(deno, ["--version"])).stdout),
    wolfssl: `${wolf} (built from Debian's source with session export, .local/wolfssl)`,
    nginx: `${first(nginx.stderr).replace("nginx version: ", "")}; ${
      nginx.stderr.match(/built with (OpenSSL [^\n]*)/)?.[1] ?? ""
    }`,
    wrk: first((await run(wrkBin, ["-v"])).stdout + (await run(wrkBin, ["-v"])).stderr)
      .split(" Copyright")[0],
    openssl: first((await run("openssl", ["version"])).stdout),
    denoTls: "rustls (Deno's built-in TLS)",
  };
}

/** 10,000 idle keep-alive connections held by hot potato. */
async function idleTest(n: number, certs: CertSet): Promise<Record<string, unknown>> {
  const port = P + 16;
  const r = await startHotPotato({
    port,
    certs,
    resumption: true,
    extra: ["--idle-timeout", "600"],
  });
  try {
    const pids = r.pids();
    const before = pids.reduce((t, p) => t + statusKb(p, "VmRSS"), 0);
    const client = new Proc("idle-client", "bash", [
      "-c",
      'ulimit -n "$(ulimit -Hn)"; exec "$@"',
      "idle",
      deno,
      "run",
      "--no-prompt",
      "--allow-net=127.0.0.1",
      `--allow-read=${root}`,
      "bench/idle.ts",
      "--port",
      String(port),
      "--connections",
      String(n),
      "--ca",
      certs.ca,
    ], { stdin: "piped" });
    const started = performance.now();
    const m = await client.waitFor(/^idle-holding (\{.*\})$/, 180_000);
    const openSeconds = (performance.now() - started) / 1000;
    const holding = JSON.parse(m[1]);
    await sleep(1500);
    const counters = await r.counters();
    const per: Record<string, { rssMiB: number; peakMiB: number; held?: unknown }> = {};
    let total = 0, peak = 0;
    for (const p of r.procs) {
      const rss = statusKb(p.pid, "VmRSS"), hwm = statusKb(p.pid, "VmHWM");
      total += rss;
      peak += hwm;
      per[p.name] = { rssMiB: rss / 1024, peakMiB: hwm / 1024, held: counters[p.name]?.held };
    }
    const clientRss = statusKb(client.pid, "VmRSS") || 0;
    // bash exec'd deno: the pid is deno's
    const w = client.child.stdin.getWriter();
    await w.close().catch(() => {});
    await client.stop(15_000);
    return {
      connections: n,
      opened: holding.ok,
      failed: holding.failed,
      openSeconds: Math.round(openSeconds * 10) / 10,
      serverRssBeforeMiB: before / 1024,
      serverRssMiB: total / 1024,
      serverPeakMiB: peak / 1024,
      perProcess: per,
      bytesPerConnection: Math.round((total - before) * 1024 / Math.max(1, holding.ok)),
      clientRssMiB: clientRss / 1024,
      clientReportedRssMiB: holding.rssMiB,
      gateway: counters.gateway,
    };
  } finally {
    await r.stop();
  }
}

/** bench/handoff_bench.ts through `deno bench --json`. */
async function microBench(): Promise<Record<string, unknown>[]> {
  const r = await run(deno, [
    "bench",
    "--no-prompt",
    "--allow-ffi",
    "--allow-net=127.0.0.1",
    `--allow-read=${root}`,
    "--allow-write=/tmp",
    "--allow-env",
    "--json",
    "bench/handoff_bench.ts",
  ]);
  const start = r.stdout.indexOf("{");
  if (r.code !== 0 || start < 0) throw new Error(`deno bench failed:\n${r.stdout}\n${r.stderr}`);
  const j = JSON.parse(r.stdout.slice(start));
  // deno bench --json: { benches: [{ name, group, results: [{ ok: { avg, min, max, p75, p99, n } }] }] }
  return (j.benches ?? []).map((b: Record<string, unknown>) => {
    const ok = ((b.results as Record<string, unknown>[])?.[0]?.ok ?? {}) as Record<
      string,
      number
    >;
    // "×N" in a name: N operations per iteration (see handoff_bench.ts)
    const per = Number(String(b.name).match(/×(\d+)/)?.[1] ?? 1);
    return {
      name: String(b.name).replace(/ ×\d+$/, ""),
      group: b.group ?? null,
      opsPerIteration: per,
      avgNs: ok.avg / per,
      p75Ns: ok.p75 / per,
      p99Ns: ok.p99 / per,
      minNs: ok.min / per,
      iterations: ok.n,
    };
  });
}

function ratios(cells: Cell[]): Record<string, unknown>[] {
  const at = (system: string, conns: number, cert = "ecdsa") =>
    cells.find((c) => c.system === system && c.connections === conns && c.cert === cert);
  const out: Record<string, unknown>[] = [];
  /** a's req/s over b's; with `cpu`, a must also need no more server CPU per
   * request than b to meet the target. */
  const ratio = (
    name: string,
    a: string,
    b: string,
    target: number,
    opts: { cpu?: boolean } = {},
  ) => {
    const conns = 50;
    const x = at(a, conns), y = at(b, conns);
    if (!x || !y) return;
    const v = x.rps / y.rps;
    const cpu = y.cpuPer10k / x.cpuPer10k; // >1: a costs less CPU per request than b
    out.push({
      name,
      connections: conns,
      value: v,
      target: `>= ${target}x` + (opts.cpu ? `, CPU per request <= ${b}'s` : ""),
      met: v >= target && (!opts.cpu || cpu >= 1),
      cpuRatio: cpu,
    });
  };
  ratio("affinity / bound", "affinity", "bound", 0.9);
  ratio("affinity / Deno.serve", "affinity", "deno-serve", 0.7);
  ratio("alternating (direct) / affinity", "alternating", "affinity", 0.6);
  ratio("alternating (direct) / full handshake", "alternating", "full-handshake", 15);
  ratio("alternating (direct) / resumption", "alternating", "resumption", 0);
  ratio("affinity / nginx", "affinity", "nginx", 1.5);
  ratio("alternating (direct) / nginx", "alternating", "nginx", 1.0, { cpu: true });
  ratio("alternating-gateway / nginx", "alternating-gateway", "nginx", 0.6);
  ratio("alternating (direct) / alternating-gateway", "alternating", "alternating-gateway", 0);
  ratio("affinity: shipped / quiet", "affinity-shipped", "affinity", 0.9);
  ratio("alternating: shipped / quiet", "alternating-shipped", "alternating", 0.9);
  // What a route change adds to a request: at 1 connection, against the
  // targets; at 50 for information only (queueing behind the other
  // connections is most of it there).
  const modes = [
    { system: "alternating", name: "direct: p50(2) - p50(1)", limit: 50 },
    { system: "alternating-gateway", name: "gateway: p50(2g) - p50(1)", limit: 100 },
  ];
  for (const conns of [1, 50]) {
    for (const m of modes) {
      const a = at("affinity", conns), b = at(m.system, conns);
      if (!a || !b) continue;
      const v = b.latencyUs.p50 - a.latencyUs.p50;
      out.push({
        name: `handoff added latency, ${m.name}, µs`,
        connections: conns,
        value: v,
        ...(conns === 1 ? { target: `<= ${m.limit} µs`, met: v <= m.limit } : { target: "—" }),
      });
    }
  }
  return out;
}

/** Per k of the sweep: each hot potato mode's req/s over nginx's, and
 * nginx's server CPU per request over its (>1: hot potato needs less). */
function sweepRatios(cells: Cell[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const k of [...new Set(cells.map((c) => c.runLength))]) {
    const nginx = cells.find((c) => c.system === "nginx" && c.runLength === k);
    if (!nginx) continue;
    for (const c of cells) {
      if (c.runLength !== k || c.system === "nginx") continue;
      out.push({
        runLength: k,
        system: c.system,
        value: c.rps / nginx.rps,
        cpuRatio: nginx.cpuPer10k / c.cpuPer10k,
      });
    }
  }
  return out;
}

/** The run-length sweep: each sweep system started once, warmed up, measured
 * at every k, stopped. */
async function runSweep(selected: SystemDef[], failures: string[]): Promise<Cell[]> {
  const cells: Cell[] = [];
  const certs = certSet(SWEEP_CERT);
  const ks = settings.sweepRunLengths;
  console.log(
    `bench: run-length sweep, ${SWEEP_CERT}, ${SWEEP_CONNECTIONS} connections, k = ${ks}`,
  );
  for (const [i, sys] of selected.entries()) {
    const port = P + SYSTEMS.length + i;
    let r: Running | undefined;
    try {
      r = await sys.start(certs, port);
      if (settings.warmupSeconds > 0) {
        await runWrk({
          url: `https://127.0.0.1:${port}`,
          connections: SWEEP_CONNECTIONS,
          seconds: settings.warmupSeconds,
          ...wrkScript(sys, ks[0]),
        });
      }
      for (const k of ks) {
        const cell = await measure(sys, r, certs, SWEEP_CONNECTIONS, k);
        cells.push(cell);
        console.log(fmtCell(cell));
        await sleep(300);
      }
    } catch (e) {
      const msg = `sweep/${sys.id}: ${(e as Error).message}`;
      failures.push(msg);
      console.error(`bench: FAILED ${msg}`);
    } finally {
      await r?.stop();
    }
    await sleep(500);
  }
  return cells;
}

async function main() {
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  await Deno.mkdir(`${root}/bench/results`, { recursive: true });
  const selected = settings.systems.length
    ? SYSTEMS.filter((s) => settings.systems.includes(s.id))
    : SYSTEMS;
  const info = { machine: await machine(), versions: await versions() };
  console.log(`bench: ${JSON.stringify(info.machine)}`);
  console.log(`bench: ${JSON.stringify(info.versions)}`);
  console.log(
    `bench: ${settings.seconds}s per cell, ${settings.warmupSeconds}s warm-up, connections ${settings.connections}, certs ${settings.certs}, client ${WRK_TLS_ENV.WRK_CIPHERSUITES} ${WRK_TLS_ENV.WRK_GROUPS}`,
  );
  const cells: Cell[] = [];
  const tls: Record<string, Record<string, string>> = {};
  const failures: string[] = [];
  for (const certType of settings.certs) {
    const certs = certSet(certType);
    const conns = certType === "rsa" ? settings.rsaConnections : settings.connections;
    if (!conns.length) continue;
    for (const sys of selected) {
      const port = P + SYSTEMS.indexOf(sys);
      let r: Running | undefined;
      try {
        r = await sys.start(certs, port);
        tls[`${certType}/${sys.id}`] = await probeTls(port);
        if (settings.warmupSeconds > 0) {
          await runWrk({
            url: `https://127.0.0.1:${port}`,
            connections: 50,
            seconds: settings.warmupSeconds,
            script: sys.script,
          });
        }
        for (const c of conns) {
          const cell = await measure(sys, r, certs, c);
          cells.push(cell);
          console.log(fmtCell(cell));
          await sleep(300);
        }
      } catch (e) {
        const msg = `${certType}/${sys.id}: ${(e as Error).message}`;
        failures.push(msg);
        console.error(`bench: FAILED ${msg}`);
      } finally {
        await r?.stop();
      }
      await sleep(500);
    }
  }

  let sweep: Record<string, unknown> | undefined;
  const sweepSystems = SWEEP_SYSTEMS.filter((id) =>
    !settings.systems.length || settings.systems.includes(id)
  ).map((id) => SYSTEMS.find((s) => s.id === id)!);
  if (settings.sweep && sweepSystems.length && settings.sweepRunLengths.length) {
    const sweepCells = await runSweep(sweepSystems, failures);
    sweep = {
      cert: SWEEP_CERT,
      connections: SWEEP_CONNECTIONS,
      runLengths: settings.sweepRunLengths,
      cells: sweepCells,
      ratios: sweepRatios(sweepCells),
    };
  }

  let idle: Record<string, unknown> | undefined;
  if (settings.idleConnections > 0) {
    try {
      console.log(`bench: ${settings.idleConnections} idle keep-alive connections...`);
      idle = await idleTest(settings.idleConnections, certSet("ecdsa"));
      console.log(
        `  ${idle.opened} held, server RSS ${(idle.serverRssMiB as number).toFixed(0)} MiB ` +
          `(${(idle.serverRssBeforeMiB as number).toFixed(0)} MiB before), client RSS ${
            (idle.clientRssMiB as number).toFixed(0)
          } MiB`,
      );
    } catch (e) {
      failures.push(`idle: ${(e as Error).message}`);
      console.error(`bench: FAILED idle: ${(e as Error).message}`);
    }
  }

  let micro: Record<string, unknown>[] | undefined;
  if (settings.micro) {
    try {
      console.log("bench: handoff micro benchmark (deno bench bench/handoff_bench.ts)...");
      micro = await microBench();
    } catch (e) {
      failures.push(`micro: ${(e as Error).message}`);
      console.error(`bench: FAILED micro: ${(e as Error).message}`);
    }
  }

  let wake: Record<string, unknown> | undefined;
  if (settings.micro) {
    try {
      console.log("bench: one hop between processes (bench/wake_latency.ts)...");
      const args = ["run", "--no-prompt", "--allow-all", "bench/wake_latency.ts"];
      const free = await run(deno, args);
      const m = free.stdout.match(/^wake-json (\{.*\})$/m);
      if (!m) throw new Error(`wake_latency failed:\n${free.stdout}\n${free.stderr}`);
      wake = JSON.parse(m[1]);
      // the same with every thread of both processes on CPU 0
      const one = await run("taskset", ["-c", "0", deno, ...args]);
      const m1 = one.stdout.match(/^wake-json (\{.*\})$/m);
      if (m1) wake!.eventLoopHopOneCpuUs = JSON.parse(m1[1]).eventLoopHopUs;
    } catch (e) {
      failures.push(`wake: ${(e as Error).message}`);
      console.error(`bench: FAILED wake: ${(e as Error).message}`);
    }
  }

  const result = {
    startedAt,
    durationSeconds: Math.round((performance.now() - t0) / 100) / 10,
    ...info,
    settings,
    tls,
    cells,
    ratios: ratios(cells),
    sweep,
    idle,
    micro,
    wake,
    failures,
  };
  const dir = `${root}/bench/results`;
  await Deno.writeTextFile(`${dir}/results.json`, JSON.stringify(result, null, 2) + "\n");
  const md = renderMarkdown(result);
  await Deno.writeTextFile(`${dir}/results.md`, md);
  const chart = renderChart(result);
  await Deno.writeTextFile(`${dir}/chart.svg`, chart);
  const sweepChart = sweep ? renderSweepChart(result) : undefined;
  if (sweepChart) await Deno.writeTextFile(`${dir}/sweep.svg`, sweepChart);
  console.log("\n" + md);
  console.log(
    `bench: wrote ${dir}/results.json, results.md, chart.svg${sweepChart ? ", sweep.svg" : ""}`,
  );
  // The README shows docs/benchmark.svg: only a complete run replaces it
  // (and docs/sweep.svg, when the sweep ran).
  const complete = settings.systems.length === 0 && settings.certs.length === 2 &&
    settings.connections.includes(50) && failures.length === 0;
  if (complete) {
    await Deno.writeTextFile(`${root}/docs/benchmark.svg`, chart);
    console.log(`bench: wrote ${root}/docs/benchmark.svg (the README's chart)`);
    if (sweepChart) {
      await Deno.writeTextFile(`${root}/docs/sweep.svg`, sweepChart);
      console.log(`bench: wrote ${root}/docs/sweep.svg`);
    }
  }
  if (failures.length) Deno.exitCode = 1;
}

if (import.meta.main) await main();
