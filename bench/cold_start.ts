/**
 * Functions on demand (issue 21), measured on the shipped launcher
 * (`./hp start`, default settings) with `--function hello=examples/hello.ts
 * --scale hello=0..N`:
 *
 * - **Cold start**: 20 first requests to hello at zero workers, each on a new
 *   connection once the previous worker has been stopped (idle 1 s): the
 *   response time with the TLS handshake excluded (request sent after the
 *   handshake) and included, p50 and p99; beside a warm request (the next one
 *   on that connection) and the bare start of `deno run` on an empty file on
 *   the same machine, in the same run. Each cold start's worker says where
 *   its time went (its first registration's line: modules loaded, serving,
 *   registered, in ms after its process started).
 * - **Load step** (`--load`): idle, then 50 keep-alive clients on the
 *   CPU-bound examples/primes.ts scaled 0..4 for 20 s: time to the first
 *   answer, the pool's size over time, requests, failed requests (target 0),
 *   extra handshakes (target 0); then the clients idle with their
 *   connections open (the pool shrinks to zero: the stopped workers hand
 *   their connections over, the last one's are parked in the gateway), then
 *   one more request on each parked connection (a cold start; idle 5 s).
 *
 *   deno run -A bench/cold_start.ts [--load]     (bash bench/run.sh --cold)
 *
 * Writes bench/results/cold_start.md. BENCH_COLD (20 cold starts).
 *
 * @module
 */

import { forEachLine } from "../src/operations/lines.ts";
import { deno, root, sleep } from "./lib.ts";

const COLD = Number(Deno.env.get("BENCH_COLD") ?? "20");
const enc = new TextEncoder();
const dec = new TextDecoder();
const ca = Deno.readTextFileSync(`${root}/.local/certs/ca.pem`);

/** The p-th percentile (0-100) of `xs`. */
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

const ms = (x: number) => x.toFixed(1);

/** The shipped launcher with `args`, on free ports; its output collected. */
async function launch(args: string[]) {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-cold-" });
  await Deno.chmod(dir, 0o755);
  const child = new Deno.Command(deno, {
    args: ["task", "start", ...args],
    cwd: root,
    env: {
      HOTPOTATO_PORT: "0",
      HOTPOTATO_ADMIN_PORT: "0",
      HOTPOTATO_CONTROL: `${dir}/run/gateway.sock`,
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const reading = Promise.all([
    forEachLine(child.stdout, (l) => lines.push(l)),
    forEachLine(child.stderr, (l) => lines.push(l)),
  ]);
  const wait = async (re: RegExp, after = 0, timeoutMs = 20_000) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      for (let i = after; i < lines.length; i++) {
        const m = lines[i].match(re);
        if (m) return m;
      }
      if (Date.now() > until) throw new Error(`no ${re}:\n${lines.slice(-30).join("\n")}`);
      await sleep(10);
    }
  };
  let port = 0, admin = 0;
  try {
    port = Number((await wait(/listening on https:\/\/[^:]+:(\d+)/))[1]);
    admin = Number((await wait(/admin on http:\/\/[^:]+:(\d+)/))[1]);
    await wait(/worker product\/\d+ registered/);
    await wait(/worker sum\/\d+ registered/);
  } catch (e) {
    child.kill("SIGINT"); // nothing left running behind a failed start
    await child.status;
    throw e;
  }
  const functions = async () =>
    (await (await fetch(`http://127.0.0.1:${admin}/functions`)).json()) as {
      name: string;
      state: string;
      workers: number;
    }[];
  const metric = async (name: string) => {
    const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    return text.split("\n").filter((l) => l.startsWith(name)).reduce(
      (n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)),
      0,
    );
  };
  const stop = async () => {
    child.kill("SIGINT");
    await child.status;
    await reading;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  return { port, lines, wait, functions, metric, stop };
}

/** One keep-alive TLS connection to `port`, timing its handshake. */
async function connect(port: number): Promise<{ conn: Deno.TlsConn; handshakeMs: number }> {
  const t0 = performance.now();
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  // As curl and browsers do: a request is not held back by Nagle's
  // algorithm behind the handshake's last unacknowledged bytes.
  tcp.setNoDelay(true);
  const conn = await Deno.startTls(tcp, { hostname: "localhost", caCerts: [ca] });
  await conn.handshake();
  return { conn, handshakeMs: performance.now() - t0 };
}

/** GET `path` on `conn`; the status and the time to the whole response. */
async function get(conn: Deno.TlsConn, path: string): Promise<{ status: number; ms: number }> {
  const buf = new Uint8Array(16384);
  const t0 = performance.now();
  await conn.write(enc.encode(`GET ${path} HTTP/1.1\r\nhost: localhost\r\n\r\n`));
  let have = "";
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) throw new Error("closed");
    have += dec.decode(buf.subarray(0, n));
    const end = have.indexOf("\r\n\r\n");
    if (end < 0) continue;
    const len = Number(have.slice(0, end).match(/content-length: *(\d+)/i)?.[1] ?? 0);
    if (have.length - end - 4 < len) continue;
    return { status: Number(have.slice(9, 12)), ms: performance.now() - t0 };
  }
}

/** The bare start of `deno run` on an empty file (spawn to exit), ms. */
async function bareStarts(n: number): Promise<number[]> {
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  const out: number[] = [];
  await new Deno.Command(deno, { args: ["run", file] }).output(); // cached once
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await new Deno.Command(deno, { args: ["run", "--no-prompt", file] }).output();
    out.push(performance.now() - t0);
  }
  await Deno.remove(file);
  return out;
}

/** What one series of cold starts measured, ms. */
interface ColdSeries {
  excluded: number[];
  included: number[];
  warm: number[];
  /** The worker's registration line and the gateway's, per cold start. */
  steps: { loaded: number[]; serving: number[]; registered: number[]; held: number[] };
}

/** COLD cold starts of hello scaled 0..1 (`extra`: more launcher options). */
async function coldSeries(extra: string[]): Promise<ColdSeries> {
  const sys = await launch([
    "--function",
    "hello=examples/hello.ts",
    "--scale",
    "hello=0..1",
    "--scale-idle",
    "1",
    ...extra,
  ]);
  const out: ColdSeries = {
    excluded: [],
    included: [],
    warm: [],
    steps: { loaded: [], serving: [], registered: [], held: [] },
  };
  try {
    let previous = 0;
    for (let i = 0; i < COLD; i++) {
      const until = Date.now() + 20_000;
      for (;;) {
        const state = (await sys.functions()).find((f) => f.name === "hello")?.state;
        // At zero workers, and (with a spare) a spare parked since the last
        // cold start (the slot's next process, started when the worker stopped).
        const parked = extra.length === 0 ||
          sys.lines.slice(previous).some((l) => /hello: parked/.test(l));
        if (state === "idle" && parked) break;
        if (Date.now() > until) throw new Error("hello did not go back to zero workers");
        await sleep(50);
      }
      await sleep(1000); // the machine quiet again (a process just started)
      const mark = sys.lines.length;
      previous = mark;
      const { conn, handshakeMs } = await connect(sys.port);
      const cold = await get(conn, "/hello");
      if (cold.status !== 200) throw new Error(`cold start ${i}: ${cold.status}`);
      out.excluded.push(cold.ms);
      out.included.push(handshakeMs + cold.ms);
      for (let w = 0; w < 5; w++) out.warm.push((await get(conn, "/hello")).ms);
      conn.close();
      const g = await sys.wait(
        /hello: a worker registered (\d+) ms after the first held request/,
        mark,
      );
      out.steps.held.push(Number(g[1]));
      if (extra.length === 0) {
        const m = await sys.wait(
          /registered hello .* (\d+) ms after the process started \(modules loaded at (\d+) ms, serving from (\d+) ms\)/,
          mark,
        );
        out.steps.registered.push(Number(m[1]));
        out.steps.loaded.push(Number(m[2]));
        out.steps.serving.push(Number(m[3]));
      } else {
        const m = await sys.wait(/registered hello .* (\d+) ms after it was told to go/, mark);
        out.steps.registered.push(Number(m[1]));
      }
    }
  } finally {
    await sys.stop();
  }
  return out;
}

async function coldStarts(): Promise<string[]> {
  const bare = await bareStarts(COLD);
  const fresh = await coldSeries([]);
  const spare = await coldSeries(["--spare", "hello=1"]);
  const p50 = pct(bare, 50);
  const row = (what: string, xs: number[]) =>
    `| ${what} | ${ms(pct(xs, 50))} | ${ms(pct(xs, 99))} | ${(pct(xs, 50) / p50).toFixed(2)}x |`;
  const st = fresh.steps;
  return [
    `## Cold start (${COLD} cold starts each, hello at zero workers, shipped settings)`,
    "",
    "| | p50 ms | p99 ms | p50 / bare deno run |",
    "|---|--:|--:|--:|",
    row("bare `deno run` of an empty file (spawn to exit)", bare),
    row("cold first response, handshake excluded", fresh.excluded),
    row("cold first response, handshake included", fresh.included),
    row("cold first response with a parked spare, handshake excluded", spare.excluded),
    row("cold first response with a parked spare, handshake included", spare.included),
    row("warm request (same connection, after)", fresh.warm),
    "",
    "Where a cold start's time goes (p50, ms; the worker's first registration line and the gateway's):",
    "",
    "| step | without a spare | with a parked spare |",
    "|---|--:|--:|",
    `| request held → process spawned and Deno's own start (launcher told, setsid, setpriv, exec) | ${
      ms(pct(st.held, 50) - pct(st.registered, 50))
    } | - |`,
    `| → the runtime's modules loaded | ${ms(pct(st.loaded, 50))} | - |`,
    `| → the function's file ran (serveFunction) | ${
      ms(pct(st.serving, 50) - pct(st.loaded, 50))
    } | - |`,
    `| → connected and registered | ${ms(pct(st.registered, 50) - pct(st.serving, 50))} | ${
      ms(pct(spare.steps.registered, 50))
    } (from "go") |`,
    `| request held → registered (the gateway's count) | ${ms(pct(st.held, 50))} | ${
      ms(pct(spare.steps.held, 50))
    } |`,
    `| registered → the first response read by the client (handover, import, first handler run) | ${
      ms(pct(fresh.excluded, 50) - pct(st.held, 50))
    } | ${ms(pct(spare.excluded, 50) - pct(spare.steps.held, 50))} |`,
    "",
  ];
}

async function loadStep(): Promise<string[]> {
  const sys = await launch([
    "--function",
    "primes=examples/primes.ts",
    "--scale",
    "primes=0..4",
    "--scale-idle",
    "5",
  ]);
  const CLIENTS = 50, SECONDS = 20;
  let running = true, requests = 0, failed = 0, handshakes = 0;
  let first = 0;
  const sizes: [number, number][] = [];
  const t0 = performance.now();
  const lines: string[] = [];
  const workers = async () =>
    (await sys.functions()).find((f) => f.name === "primes")?.workers ?? 0;
  try {
    const conns: Deno.TlsConn[] = [];
    const client = async () => {
      const { conn } = await connect(sys.port);
      conns.push(conn);
      handshakes++;
      while (running) {
        try {
          const r = await get(conn, "/primes?n=100000");
          if (r.status !== 200) failed++;
          else if (!first) first = performance.now() - t0;
          requests++;
        } catch {
          failed++;
          break;
        }
      }
    };
    const clients = Array.from({ length: CLIENTS }, client);
    let lastGrowth = 0, size = 0, most = 0;
    const track = async () => {
      const n = await workers();
      if (n > size) lastGrowth = performance.now() - t0;
      if (n !== size) sizes.push([Math.round(performance.now() - t0), n]);
      size = n;
      most = Math.max(most, n);
    };
    while (performance.now() - t0 < SECONDS * 1000) {
      await sleep(250);
      await track();
    }
    running = false;
    await Promise.all(clients);
    // Idle, connections open: the workers stop after the idle time, the
    // ones above one handing their connections to the others, the last one
    // leaving its idle connections parked in the gateway.
    const idleFrom = performance.now();
    const until = Date.now() + 90_000;
    let oneMs = 0;
    for (;;) {
      const n = await workers();
      if (n <= 1 && !oneMs) oneMs = performance.now() - idleFrom;
      if (n === 0) break;
      if (Date.now() > until) throw new Error("the pool did not go back to zero");
      await sleep(100);
      await track();
    }
    await track();
    const zeroMs = performance.now() - idleFrom;
    const handedOver = await sys.metric("hotpotato_connections_handed_over_total");
    const parked = (await sys.functions()).find((f) => f.name === "primes") as
      | { parked?: number }
      | undefined;
    // Every client asks once more on its parked connection: a cold start.
    const t1 = performance.now();
    const again = await Promise.all(conns.map(async (c) => {
      try {
        return (await get(c, "/primes?n=1000")).status;
      } catch {
        return 0;
      }
    }));
    const againMs = performance.now() - t1;
    const againOk = again.filter((x) => x === 200).length;
    for (const c of conns) c.close();
    const serverHandshakes = await sys.metric("hotpotato_tls_handshakes_total");
    lines.push(
      `## Load step (${CLIENTS} keep-alive clients on primes scaled 0..4, busy ${SECONDS} s, ` +
        "then idle with their connections open, then one request more each; idle 5 s)",
      "",
      `- first answer after ${ms(first)} ms (a cold start with ${CLIENTS} requests held)`,
      `- the pool's size over time (ms: workers): ${
        sizes.map(([t, n]) => `${t}: ${n}`).join(", ")
      }; largest ${most}, last growth at ${ms(lastGrowth)} ms`,
      `- ${requests} requests (${Math.round(requests / SECONDS)} req/s), ${failed} failed; ` +
        `${handshakes} client handshakes, ${serverHandshakes} on the gateway ` +
        `(${serverHandshakes - CLIENTS} extra)`,
      `- idle, connections open: one worker left ${ms(oneMs / 1000)} s and none ` +
        `${ms(zeroMs / 1000)} s after the clients stopped; ${handedOver} connection(s) handed ` +
        `over by the stopped workers, ${parked?.parked ?? "?"} parked in the gateway`,
      `- then one more request on each parked connection: ${againOk} of ${CLIENTS} answered ` +
        `(a cold start), the last after ${ms(againMs)} ms; ` +
        `${serverHandshakes - CLIENTS} extra handshakes in all`,
      "",
    );
  } finally {
    running = false;
    await sys.stop();
  }
  return lines;
}

const out = [
  `# Functions on demand (${new Date().toISOString().slice(0, 10)}, ${Deno.build.os}, ` +
  `${navigator.hardwareConcurrency} CPUs)`,
  "",
];
if (!Deno.args.includes("--load-only")) out.push(...await coldStarts());
if (Deno.args.includes("--load") || Deno.args.includes("--load-only")) {
  out.push(...await loadStep());
}
const text = out.join("\n");
console.log(text);
await Deno.writeTextFile(`${root}/bench/results/cold_start.md`, text + "\n");
