/**
 * Reloads under load (issue 13): the shipped launcher (`deno task start`,
 * default settings) with 50 keep-alive clients alternating sum and product,
 * reloaded by SIGHUP three times, once per mode in the same run:
 * - handover (the default): old workers hand their connections to the new
 *   version at a request boundary;
 * - close (`--reload-mode close`, what nginx, HAProxy, Envoy and Caddy do):
 *   old workers stop getting connections and drain, closing theirs; the
 *   clients connect again (a new TLS handshake) and retry the request, as
 *   browsers and HTTP libraries do on a closed keep-alive connection.
 *
 * Per mode: the time from SIGHUP to the last old worker gone (the
 * launcher's own line), connections handed over, the clients' extra
 * handshakes, failed requests (after one retry), and request latency p50 and
 * p99 in steady state and during the reloads (from SIGHUP to 200 ms after
 * the reload is done).
 *
 *   deno run -A bench/reload.ts          (bash bench/run.sh --reload)
 *
 * Writes bench/results/reload.md. BENCH_RELOADS (3), BENCH_CONNECTIONS_RELOAD (50).
 *
 * @module
 */

import { forEachLine } from "../src/operations/lines.ts";
import { certSet, deno, root, sleep } from "./lib.ts";

const reloads = Number(Deno.env.get("BENCH_RELOADS") ?? "3");
const connections = Number(Deno.env.get("BENCH_CONNECTIONS_RELOAD") ?? "50");
const port = Number(Deno.env.get("BENCH_PORT_BASE") ?? "18740") + 50;
const certs = certSet("ecdsa");
const enc = new TextEncoder();
const dec = new TextDecoder();

interface Sample {
  start: number;
  ms: number;
}

/** One keep-alive client: alternates sum and product; on a closed
 * connection it connects again and retries the request once. */
async function client(
  id: number,
  ca: string,
  running: () => boolean,
  out: { samples: Sample[]; handshakes: number; failed: number },
): Promise<void> {
  let conn: Deno.TlsConn | undefined;
  const buf = new Uint8Array(16384);
  const connect = async () => {
    conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [ca] });
    await conn.handshake();
    out.handshakes++;
  };
  /** One exchange on the current connection; false on EOF or error. */
  const exchange = async (req: Uint8Array): Promise<boolean> => {
    try {
      await conn!.write(req);
      let have = "";
      for (;;) {
        const n = await conn!.read(buf);
        if (n === null) return false;
        have += dec.decode(buf.subarray(0, n));
        const end = have.indexOf("\r\n\r\n");
        if (end < 0) continue;
        const m = have.slice(0, end).match(/content-length: *(\d+)/i);
        if (have.length - end - 4 < Number(m?.[1] ?? 0)) continue;
        if (!have.startsWith("HTTP/1.1 200")) return false;
        if (/\r\nconnection: *close/i.test(have.slice(0, end))) conn!.close(), conn = undefined;
        return true;
      }
    } catch {
      return false;
    }
  };
  for (let i = 0; running(); i++) {
    const op = (i + id) % 2 ? "product" : "sum";
    const req = enc.encode(`GET /${op}?a=${i}&b=2 HTTP/1.1\r\nhost: localhost\r\n\r\n`);
    const start = performance.now();
    let ok = false;
    for (let attempt = 0; attempt < 2 && !ok; attempt++) {
      try {
        if (!conn) await connect();
      } catch {
        await sleep(10);
        continue;
      }
      ok = await exchange(req);
      if (!ok) {
        try {
          conn?.close();
        } catch { /* closed */ }
        conn = undefined;
      }
    }
    if (ok) out.samples.push({ start, ms: performance.now() - start });
    else out.failed++;
  }
  try {
    conn?.close();
  } catch { /* closed */ }
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

interface ModeResult {
  mode: string;
  reloadMs: number[];
  switchMs: number[];
  goneMs: number[];
  handedOver: number;
  extraHandshakes: number;
  failed: number;
  requests: number;
  steady: { p50: number; p99: number };
  during: { p50: number; p99: number; n: number };
}

async function measure(mode: "handover" | "close"): Promise<ModeResult> {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-bench-reload-" });
  await Deno.chmod(dir, 0o755); // as root the launcher runs each role as a user of its own
  const launcher = new Deno.Command(deno, {
    args: ["task", "start", "--reload-mode", mode],
    cwd: root,
    env: {
      HOTPOTATO_PORT: String(port),
      HOTPOTATO_ADMIN_PORT: "0",
      HOTPOTATO_CONTROL: `${dir}/run/gateway.sock`,
      HOTPOTATO_CERT: certs.cert,
      HOTPOTATO_KEY: certs.key,
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const reading = Promise.all([
    forEachLine(launcher.stdout, (l) => lines.push(l)),
    forEachLine(launcher.stderr, (l) => lines.push(l)),
  ]);
  const waitLine = async (re: RegExp, after: number, ms = 60_000) => {
    const until = Date.now() + ms;
    for (;;) {
      for (let i = after; i < lines.length; i++) {
        const m = lines[i].match(re);
        if (m) return m;
      }
      if (Date.now() > until) throw new Error(`no ${re}:\n${lines.slice(-30).join("\n")}`);
      await sleep(20);
    }
  };
  try {
    await waitLine(/worker sum\/\d+ registered/, 0);
    await waitLine(/worker product\/\d+ registered/, 0);
    const pid = Number((await waitLine(/^launcher\s+\| pid (\d+):/, 0))[1]);
    const ca = await Deno.readTextFile(certs.ca);
    const out = { samples: [] as Sample[], handshakes: 0, failed: 0 };
    let running = true;
    const clients = Array.from(
      { length: connections },
      (_, i) => client(i, ca, () => running, out),
    );
    await sleep(3000);
    const windows: [number, number][] = [];
    const reloadMs: number[] = [];
    const goneMs: number[] = [];
    const switchMs: number[] = [];
    let handedOver = 0;
    const handshakesBefore = out.handshakes;
    for (let r = 0; r < reloads; r++) {
      const mark = lines.length;
      const t0 = performance.now();
      Deno.kill(pid, "SIGHUP");
      const done = await waitLine(
        /^launcher\s+\| reload \d+: (done|\d+ of \d+ failed) in (\d+) ms/,
        mark,
      );
      if (done[1] !== "done") throw new Error(lines.slice(mark).join("\n"));
      reloadMs.push(Number(done[2]));
      windows.push([t0, performance.now() + 200]);
      for (const l of lines.slice(mark)) {
        const m = l.match(
          /switched in (\d+) ms, .* gone in (\d+) ms, (\d+) connection\(s\) handed over/,
        );
        if (m) {
          switchMs.push(Number(m[1]));
          goneMs.push(Number(m[2]));
          handedOver += Number(m[3]);
        }
      }
      await sleep(3000);
    }
    running = false;
    await Promise.all(clients);
    const inWindow = (s: Sample) => windows.some(([a, b]) => s.start >= a && s.start <= b);
    const during = out.samples.filter(inWindow).map((s) => s.ms);
    const steady = out.samples.filter((s) => !inWindow(s)).map((s) => s.ms);
    return {
      mode,
      reloadMs,
      switchMs,
      goneMs,
      handedOver,
      extraHandshakes: out.handshakes - handshakesBefore,
      failed: out.failed,
      requests: out.samples.length,
      steady: { p50: percentile(steady, 0.5), p99: percentile(steady, 0.99) },
      during: { p50: percentile(during, 0.5), p99: percentile(during, 0.99), n: during.length },
    };
  } finally {
    launcher.kill("SIGINT");
    await launcher.status;
    await reading;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

const median = (xs: number[]) => percentile(xs, 0.5);
const results: ModeResult[] = [];
for (const mode of ["handover", "close"] as const) {
  console.log(`reload bench: ${mode} mode, ${connections} connections, ${reloads} reloads`);
  results.push(await measure(mode));
}
const f = (x: number) => (Number.isNaN(x) ? "-" : x.toFixed(1));
const table = [
  `Reloads under load: \`deno task start\` (shipped defaults: one worker per function, request log on), ` +
  `${connections} keep-alive clients alternating sum and product, ${reloads} SIGHUP reloads per mode, ` +
  `one run (${new Date().toISOString().slice(0, 16)}Z). \`deno run -A bench/reload.ts\`.`,
  "",
  "| reload mode | SIGHUP to last old worker gone, median ms | of which to the switch (new workers up and registered), median ms | connections handed over | extra handshakes | failed requests | requests | p50 / p99 ms, steady | p50 / p99 ms, during reloads |",
  "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
  ...results.map((r) =>
    `| ${r.mode} | ${median(r.reloadMs)} (${r.reloadMs.join(", ")}) | ${
      median(r.switchMs)
    } | ${r.handedOver} | ${r.extraHandshakes} | ${r.failed} | ${r.requests} | ${
      f(r.steady.p50)
    } / ${f(r.steady.p99)} | ${f(r.during.p50)} / ${f(r.during.p99)} (${r.during.n} requests) |`
  ),
].join("\n");
console.log(table);
await Deno.mkdir(`${root}/bench/results`, { recursive: true });
await Deno.writeTextFile(`${root}/bench/results/reload.md`, table + "\n");
