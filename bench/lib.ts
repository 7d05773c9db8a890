/**
 * Benchmark helpers: child processes with their output collected, CPU time
 * and memory from /proc, the `hotpotato-stats` counters (SIGUSR2), the
 * patched wrk, and starting/stopping each system under test.
 *
 * @module
 */

import { forEachLine } from "../src/operations/lines.ts";
import { projectRoot } from "../ffi/paths.ts";

export const root: string = projectRoot;
export const deno: string = Deno.execPath();
export const wrkBin = `${root}/.local/wrk/bin/wrk`;
export const CLK_TCK = 100;

export const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

/** A child process whose stdout and stderr lines are kept. */
export class Proc {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  readonly lines: string[] = [];
  /** Lines of stdout read and thrown away (not matching `stdoutKeep`): the
   * request log of a system that runs with it on. */
  discarded = 0;
  /** Log lines the process itself dropped because its output did not take
   * them in time (from its "N log line(s) dropped" warnings). */
  logDropped = 0;
  exited = false;
  readonly done: Promise<void>;
  readonly #stdoutKeep: RegExp | undefined;

  constructor(
    name: string,
    cmd: string,
    args: string[],
    opts: {
      env?: Record<string, string>;
      /** Start from `env` alone, not the bench's environment plus `env`. */
      clearEnv?: boolean;
      cwd?: string;
      stdin?: "piped" | "null";
      /** Keep only the stdout lines matching this (the rest are read, counted
       * in `discarded` and thrown away, as a terminal would take them);
       * stderr lines are all kept. Default: keep every line. */
      stdoutKeep?: RegExp;
    } = {},
  ) {
    this.name = name;
    this.#stdoutKeep = opts.stdoutKeep;
    this.child = new Deno.Command(cmd, {
      args,
      cwd: opts.cwd ?? root,
      env: opts.env,
      clearEnv: opts.clearEnv,
      stdin: opts.stdin ?? "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.child.pid;
    this.done = Promise.all([
      this.#collect(this.child.stdout, this.#stdoutKeep),
      this.#collect(this.child.stderr),
    ]).then(() => {});
    this.child.status.then(() => this.exited = true);
  }

  #collect(stream: ReadableStream<Uint8Array>, keep?: RegExp): Promise<void> {
    return forEachLine(stream, (line) => {
      if (keep && !keep.test(line)) {
        this.discarded++;
        return;
      }
      const dropped = line.match(/(\d+) log line\(s\) dropped/);
      if (dropped) this.logDropped += Number(dropped[1]);
      this.lines.push(line);
    });
  }

  /** The first line from index `from` on matching re (waits up to timeoutMs). */
  async waitFor(re: RegExp, timeoutMs = 10_000, from = 0): Promise<RegExpMatchArray> {
    const end = Date.now() + timeoutMs;
    let i = from;
    for (;;) {
      for (; i < this.lines.length; i++) {
        const m = this.lines[i].match(re);
        if (m) return m;
      }
      if (this.exited) {
        throw new Error(`${this.name} exited:\n${this.lines.slice(-20).join("\n")}`);
      }
      if (Date.now() > end) {
        throw new Error(
          `${this.name}: no line ${re} in ${timeoutMs} ms:\n` +
            this.lines.slice(-20).join("\n"),
        );
      }
      await sleep(20);
    }
  }

  /** SIGUSR2 → the `hotpotato-stats {json}` line it prints. */
  async stats(): Promise<Record<string, unknown>> {
    const from = this.lines.length;
    Deno.kill(this.pid, "SIGUSR2");
    const m = await this.waitFor(/^hotpotato-stats (\{.*\})$/, 5000, from);
    return JSON.parse(m[1]);
  }

  /** SIGTERM, then SIGKILL after graceMs. */
  async stop(graceMs = 3000, signal: Deno.Signal = "SIGTERM"): Promise<void> {
    if (this.exited) return;
    try {
      Deno.kill(this.pid, signal);
    } catch { /* gone */ }
    const end = Date.now() + graceMs;
    while (!this.exited && Date.now() < end) await sleep(20);
    if (!this.exited) {
      try {
        Deno.kill(this.pid, "SIGKILL");
      } catch { /* gone */ }
      await this.child.status;
    }
    await this.done.catch(() => {});
  }
}

/** utime + stime of a process (all its threads), in seconds. */
export function cpuSeconds(pid: number): number {
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
export function machineBusySeconds(): number {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0];
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / CLK_TCK;
}

/** A field of /proc/PID/status in kB (VmHWM, VmRSS), 0 when gone. */
export function statusKb(pid: number, field: "VmHWM" | "VmRSS"): number {
  try {
    const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(
      new RegExp(`^${field}:\\s+(\\d+) kB`, "m"),
    );
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Reset a process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0). */
export function resetPeak(pid: number): boolean {
  try {
    Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/** What the kernel did for the server processes while perf watched: system
 * calls entered and context switches, over every thread. */
export interface KernelWork {
  syscalls: number;
  contextSwitches: number;
}

/**
 * Count system calls and context switches of `pids` (every thread) from now
 * until `stop()`: `perf stat -e raw_syscalls:sys_enter,context-switches -p`.
 * Undefined from `stop()` when perf is missing or not permitted (then
 * `why` says so, once, in the results).
 *
 * @example
 * ```ts
 * import { countKernelWork } from "./lib.ts";
 * const counting = countKernelWork([Deno.pid]);
 * await new Promise((ok) => setTimeout(ok, 100));
 * console.log(await counting.stop());
 * ```
 */
export function countKernelWork(
  pids: number[],
): { stop(): Promise<KernelWork | undefined>; why?: string } {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("perf", {
      args: [
        "stat",
        "-x,",
        "-e",
        "raw_syscalls:sys_enter,context-switches",
        "-p",
        pids.join(","),
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    const why = `perf cannot run (${(e as Error).message}): apt-get install linux-perf`;
    return { stop: () => Promise.resolve(undefined), why };
  }
  const out = child.output();
  return {
    async stop() {
      try {
        child.kill("SIGINT");
      } catch { /* it ended: not permitted, or a pid was gone */ }
      const text = new TextDecoder().decode((await out).stderr);
      const count = (event: string) => {
        const line = text.split("\n").find((l) =>
          l.includes(`,${event},`) || l.includes(`,${event}`)
        );
        const n = line ? Number(line.split(",")[0]) : NaN;
        return Number.isFinite(n) ? n : undefined;
      };
      const syscalls = count("raw_syscalls:sys_enter");
      const contextSwitches = count("context-switches");
      if (syscalls === undefined || contextSwitches === undefined) return undefined;
      return { syscalls, contextSwitches };
    },
  };
}

/** Child pids of a process (nginx workers). */
export function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const s = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
      if (Number(f[1]) === ppid) out.push(Number(e.name));
    } catch { /* gone */ }
  }
  return out;
}

/** Run a command to completion; stdout + stderr as text. */
export async function run(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; stdin?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: root,
    env: opts.env,
    stdin: opts.stdin !== undefined ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const r = await child.output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

/** The certificate set of one run. */
export interface CertSet {
  type: "ecdsa" | "rsa";
  cert: string;
  key: string;
  ca: string;
}

export function certSet(type: "ecdsa" | "rsa"): CertSet {
  const dir = `${root}/.local/certs`;
  return type === "rsa"
    ? { type, cert: `${dir}/cert-rsa.pem`, key: `${dir}/key-rsa.pem`, ca: `${dir}/ca.pem` }
    : { type, cert: `${dir}/cert.pem`, key: `${dir}/key.pem`, ca: `${dir}/ca.pem` };
}

/** Wait until every path answers 200 with a "result" (curl, verifying the CA). */
export async function waitReady(
  base: string,
  ca: string,
  timeoutMs = 20_000,
  /** Whether curl's output of /sum?a=1&b=2 and /product?a=3&b=4 says ready
   * (default: both computed). */
  ready = (out: string) => out.includes('"result":"3"') && out.includes('"result":"12"'),
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await run("curl", [
      "-s",
      "--max-time",
      "2",
      "--cacert",
      ca,
      `${base}/sum?a=1&b=2`,
      `${base}/product?a=3&b=4`,
    ]);
    if (ready(r.stdout)) return;
    if (Date.now() > end) throw new Error(`${base} not ready: ${r.stdout} ${r.stderr}`);
    await sleep(100);
  }
}

/** What the client negotiates with the same settings wrk uses. */
export async function probeTls(port: number): Promise<Record<string, string>> {
  const r = await run("openssl", [
    "s_client",
    "-connect",
    `127.0.0.1:${port}`,
    "-tls1_3",
    "-ciphersuites",
    WRK_TLS_ENV.WRK_CIPHERSUITES,
    "-groups",
    WRK_TLS_ENV.WRK_GROUPS,
    "-brief",
  ], { stdin: "" });
  const text = r.stdout + r.stderr;
  const get = (re: RegExp) => text.match(re)?.[1]?.trim() ?? "?";
  return {
    protocol: get(/Protocol version:\s*(\S+)/),
    cipher: get(/Ciphersuite:\s*(\S+)/),
    group: get(/(?:Server|Peer) Temp Key:\s*([^,\n]+)/),
    signature: get(/Signature type:\s*(\S+)/),
  };
}

/** Client TLS settings, the same for every system (see bench/wrk/connection.patch). */
export const WRK_TLS_ENV = {
  WRK_TLS13: "1",
  WRK_CIPHERSUITES: Deno.env.get("BENCH_CIPHERSUITE") ?? "TLS_AES_128_GCM_SHA256",
  WRK_GROUPS: Deno.env.get("BENCH_GROUP") ?? "X25519",
};

/** One wrk run's figures. */
export interface WrkResult {
  requests: number;
  durationUs: number;
  rps: number;
  errors: Record<string, number>;
  latencyUs: { mean: number; p50: number; p90: number; p99: number; max: number };
  /** wrk's own user+system CPU seconds. */
  clientCpuS: number;
}

/** Run the patched wrk with a bench/*.lua script; parses its `wrk-json` line. */
export async function runWrk(opts: {
  url: string;
  connections: number;
  seconds: number;
  script: string;
  latencyFromConnect?: boolean;
  /** More environment for the script (BENCH_RUN_LENGTH for runs.lua). */
  env?: Record<string, string>;
}): Promise<WrkResult> {
  const threads = opts.connections === 1 ? 1 : 2;
  const env: Record<string, string> = {
    ...WRK_TLS_ENV,
    BENCH_DIR: `${root}/bench`,
    WRK_LATENCY_FROM_CONNECT: opts.latencyFromConnect ? "1" : "0",
    ...opts.env,
  };
  // bash's `times` gives wrk's CPU (children of that shell).
  const r = await run("bash", [
    "-c",
    'ulimit -n "$(ulimit -Hn)"; "$@"; rc=$?; times >&2; exit $rc',
    "wrk",
    wrkBin,
    `-t${threads}`,
    `-c${opts.connections}`,
    `-d${opts.seconds}s`,
    "--timeout",
    "10s",
    "-s",
    `${root}/bench/${opts.script}.lua`,
    opts.url,
  ], { env });
  const m = r.stdout.match(/^wrk-json (\{.*\})$/m);
  if (r.code !== 0 || !m) throw new Error(`wrk failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  const j = JSON.parse(m[1]);
  const t = r.stderr.trim().split("\n").slice(-1)[0].match(/(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s/);
  const clientCpuS = t ? Number(t[1]) * 60 + Number(t[2]) + Number(t[3]) * 60 + Number(t[4]) : 0;
  return {
    requests: j.requests,
    durationUs: j.duration_us,
    rps: j.requests / (j.duration_us / 1e6),
    errors: j.errors,
    latencyUs: j.latency_us,
    clientCpuS,
  };
}

/** A running system under test. */
export interface Running {
  procs: Proc[];
  /** Every server pid whose CPU and memory count (nginx workers included). */
  pids(): number[];
  /** Counters of the processes that have them (name → stats). */
  counters(): Promise<Record<string, Record<string, unknown>>>;
  /** Log lines written so far: read and thrown away, and dropped by the
   * processes themselves (hot potato only; 0 for the others). */
  logLines(): { written: number; dropped: number };
  stop(): Promise<void>;
  port: number;
}

function running(procs: Proc[], port: number, extraPids: () => number[] = () => []): Running {
  return {
    procs,
    port,
    pids: () => [...procs.map((p) => p.pid), ...extraPids()],
    logLines: () => ({
      written: procs.reduce((t, p) => t + p.discarded, 0),
      dropped: procs.reduce((t, p) => t + p.logDropped, 0),
    }),
    async counters() {
      const out: Record<string, Record<string, unknown>> = {};
      for (const p of procs) {
        if (p.name.startsWith("nginx")) continue;
        out[p.name] = await p.stats();
      }
      return out;
    },
    async stop() {
      for (const p of [...procs].reverse()) await p.stop();
    },
  };
}

const SERVER_FLAGS = ["--no-prompt", "--allow-ffi", "--allow-env=HOTPOTATO_*,XDG_RUNTIME_DIR"];

/** Settings the bench decides with flags (or leaves at their defaults, for
 * the shipped configuration): never taken from the bench's environment. */
const DECIDED_ENV = ["HOTPOTATO_LOG_LEVEL", "HOTPOTATO_LOG_FORMAT", "HOTPOTATO_HANDOFF"];

/** The bench's environment without {@linkcode DECIDED_ENV}. */
function hotPotatoEnv(): Record<string, string> {
  const env = Deno.env.toObject();
  for (const k of DECIDED_ENV) delete env[k];
  return env;
}

/** The gateway's and workers' stdout lines the bench keeps; the rest (the
 * request log, info) is read and thrown away, as a terminal would take it. */
const KEEP_STDOUT = /^hotpotato-stats /;

/** The gateway and the sum and product workers. */
export async function startHotPotato(opts: {
  port: number;
  certs: CertSet;
  resumption: boolean;
  /** Route changes: `--handoff direct|gateway` (a gateway flag; workers
   * refuse it). Default: no flag, the gateway's default (direct). */
  handoff?: "direct" | "gateway";
  /** "quiet" (default): `--log-level warning` for every process; "shipped":
   * no log flags, the defaults (info, text: the request log on). */
  log?: "quiet" | "shipped";
  extra?: string[];
  denoFlags?: { gateway?: string[]; worker?: string[] };
  /** The sum and product worker files (default workers/sum.ts and
   * workers/product.ts; bench/sizes.ts serves bodies of a given size). */
  workerFiles?: [string, string];
  /** Whether curl's output of /sum and /product says ready (with other
   * worker files; see {@linkcode waitReady}). */
  ready?: (out: string) => boolean;
  /** Satellite gateways sharing the port (`--gateways N` is 1 + this). */
  satellites?: number;
}): Promise<Running> {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-bench-" });
  const common = [
    "--control",
    `${dir}/ctl/gateway.sock`,
    ...(opts.log === "shipped" ? [] : ["--log-level", "warning"]),
    ...(opts.extra ?? []),
  ];
  const procOpts = { env: hotPotatoEnv(), clearEnv: true, stdoutKeep: KEEP_STDOUT };
  // What every gateway process gets (the primary and any satellites).
  const tls = [
    ...common,
    "--port",
    String(opts.port),
    "--cert",
    opts.certs.cert,
    "--key",
    opts.certs.key,
    "--tls-resumption",
    opts.resumption ? "on" : "off",
  ];
  const gw = new Proc("gateway", deno, [
    "run",
    ...SERVER_FLAGS,
    ...(opts.denoFlags?.gateway ?? []),
    "gateway.ts",
    ...tls,
    ...(opts.handoff ? ["--handoff", opts.handoff] : []),
    ...(opts.satellites ? ["--reuse-port", "on"] : []),
  ], procOpts);
  await sleep(300);
  const satellites = Array.from(
    { length: opts.satellites ?? 0 },
    (_, i) =>
      new Proc(`gateway.${i + 2}`, deno, [
        "run",
        ...SERVER_FLAGS,
        "gateway.ts",
        ...tls,
        "--satellite",
        "on",
        "--admin-port",
        "off",
      ], procOpts),
  );
  const files = opts.workerFiles ?? ["workers/sum.ts", "workers/product.ts"];
  const workers = ["sum", "product"].map((w, i) =>
    new Proc(w, deno, [
      "run",
      ...SERVER_FLAGS,
      ...(opts.denoFlags?.worker ?? []),
      files[i],
      ...common,
    ], procOpts)
  );
  const r = running([gw, ...satellites, ...workers], opts.port);
  const stop = r.stop;
  r.stop = async () => {
    // workers first, then the gateways
    for (const w of workers) await w.stop();
    for (const s of satellites) await s.stop();
    await gw.stop();
    await stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  await waitReady(
    `https://127.0.0.1:${opts.port}`,
    opts.certs.ca,
    undefined,
    opts.ready ?? (opts.workerFiles ? (out) => out.length >= 2048 : undefined),
  );
  return r;
}

/** bench/servers/bound.ts. */
export async function startBound(opts: { port: number; certs: CertSet }): Promise<Running> {
  const p = new Proc("bound", deno, [
    "run",
    ...SERVER_FLAGS,
    "bench/servers/bound.ts",
    "--port",
    String(opts.port),
    "--cert",
    opts.certs.cert,
    "--key",
    opts.certs.key,
  ]);
  await p.waitFor(/bound listening/);
  await waitReady(`https://127.0.0.1:${opts.port}`, opts.certs.ca);
  return running([p], opts.port);
}

/** bench/servers/deno_serve.ts. */
export async function startDenoServe(opts: { port: number; certs: CertSet }): Promise<Running> {
  const p = new Proc("deno-serve", deno, [
    "run",
    "--no-prompt",
    "--allow-net=127.0.0.1",
    `--allow-read=${root}`,
    "bench/servers/deno_serve.ts",
    "--port",
    String(opts.port),
    "--cert",
    opts.certs.cert,
    "--key",
    opts.certs.key,
  ]);
  await p.waitFor(/deno-serve listening/);
  await waitReady(`https://127.0.0.1:${opts.port}`, opts.certs.ca);
  return running([p], opts.port);
}

/** nginx (2 workers) terminating TLS, proxying with upstream keep-alive to two
 * plain-HTTP Deno.serve backends (bench/servers/backend.ts). */
export async function startNginx(opts: {
  port: number;
  backendPorts: [number, number];
  certs: CertSet;
  /** The backends' function: "sum"/"product" (default) or "blob" (both
   * answer `?size=N` bytes: bench/sizes.ts). */
  backendFunction?: "blob";
}): Promise<Running> {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-bench-nginx-" });
  const [sumPort, productPort] = opts.backendPorts;
  const backends = [["sum", sumPort], ["product", productPort]].map(([fn, port]) =>
    new Proc(`backend-${fn}`, deno, [
      "run",
      "--no-prompt",
      "--allow-net=127.0.0.1",
      "bench/servers/backend.ts",
      "--function",
      opts.backendFunction ?? String(fn),
      "--port",
      String(port),
    ])
  );
  for (const b of backends) await b.waitFor(/listening/);
  const conf = `
worker_processes 2;
worker_rlimit_nofile 16384;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 75s;
  upstream sum { server 127.0.0.1:${sumPort}; keepalive 128; keepalive_requests 100000000; }
  upstream product { server 127.0.0.1:${productPort}; keepalive 128; keepalive_requests 100000000; }
  server {
    listen 127.0.0.1:${opts.port} ssl;
    ssl_certificate ${opts.certs.cert};
    ssl_certificate_key ${opts.certs.key};
    ssl_protocols TLSv1.3;
    location /sum { proxy_pass http://sum; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location /product { proxy_pass http://product; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`;
  await Deno.writeTextFile(`${dir}/nginx.conf`, conf);
  const nginx = new Proc("nginx", "nginx", [
    "-p",
    dir,
    "-e",
    `${dir}/error.log`,
    "-c",
    `${dir}/nginx.conf`,
    "-g",
    "daemon off; master_process on;",
  ]);
  let workers: number[] = [];
  const r = running([...backends, nginx], opts.port, () => workers);
  const stop = r.stop;
  r.stop = async () => {
    await nginx.stop(5000, "SIGQUIT");
    await stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await waitReady(
      `https://127.0.0.1:${opts.port}`,
      opts.certs.ca,
      undefined,
      opts.backendFunction ? (out) => out.length >= 2048 : undefined,
    );
  } catch (e) {
    const log = await Deno.readTextFile(`${dir}/error.log`).catch(() => "");
    await r.stop();
    throw new Error(`${(e as Error).message}\nnginx error.log:\n${log}`);
  }
  for (let i = 0; i < 50 && workers.length < 2; i++) {
    workers = childrenOf(nginx.pid);
    if (workers.length < 2) await sleep(50);
  }
  return r;
}
