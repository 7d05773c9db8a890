/**
 * Several gateways on one host (issue 12): the new-connection rate with a
 * full TLS handshake per connection and with a resumed one, and keep-alive
 * alternating requests, with one gateway and with two (a primary and a
 * satellite sharing the port with SO_REUSEPORT), in one run, with the shipped
 * settings (request log on). wrk at 50 connections, `Connection: close` per
 * request for the handshake rates (bench/alternate_close.lua: wrk resumes
 * when the gateway allows it), bench/alternate.lua for keep-alive.
 *
 *   deno run -A bench/gateways.ts        (bash bench/run.sh --gateways)
 *
 * Writes bench/results/gateways.md. BENCH_SECONDS (8).
 *
 * @module
 */

import { certSet, cpuSeconds, root, runWrk, startHotPotato } from "./lib.ts";

const seconds = Number(Deno.env.get("BENCH_SECONDS") ?? "8");
const port = Number(Deno.env.get("BENCH_PORT_BASE") ?? "18740") + 60;
const certs = certSet("ecdsa");
const CONNECTIONS = 50;

interface Row {
  gateways: number;
  scenario: string;
  rps: number;
  cpuMsPer: number;
  /** The gateway processes' CPU alone, ms per request. */
  gatewayMsPer: number;
  /** Share of the machine's CPU the servers and wrk took. */
  serverShare: number;
  wrkShare: number;
  errors: number;
}

const SCENARIOS = [
  { id: "full handshake per connection", resumption: false, script: "alternate_close" },
  { id: "resumed handshake per connection", resumption: true, script: "alternate_close" },
  { id: "keep-alive, alternating routes", resumption: true, script: "alternate" },
];

const rows: Row[] = [];
for (const scenario of SCENARIOS) {
  for (const gateways of [1, 2]) {
    const r = await startHotPotato({
      port,
      certs,
      resumption: scenario.resumption,
      log: "shipped",
      satellites: gateways - 1,
    });
    try {
      await runWrk({
        url: `https://127.0.0.1:${port}`,
        connections: CONNECTIONS,
        seconds: 2,
        script: scenario.script,
        latencyFromConnect: true,
      });
      const pids = r.pids();
      const gatewayPids = r.procs.filter((p) => p.name.startsWith("gateway")).map((p) => p.pid);
      const cpu0 = pids.reduce((t, p) => t + cpuSeconds(p), 0);
      const gw0 = gatewayPids.reduce((t, p) => t + cpuSeconds(p), 0);
      const w = await runWrk({
        url: `https://127.0.0.1:${port}`,
        connections: CONNECTIONS,
        seconds,
        script: scenario.script,
        latencyFromConnect: true,
      });
      const cpu = pids.reduce((t, p) => t + cpuSeconds(p), 0) - cpu0;
      const gw = gatewayPids.reduce((t, p) => t + cpuSeconds(p), 0) - gw0;
      const machine = navigator.hardwareConcurrency * w.durationUs / 1e6;
      const row: Row = {
        gateways,
        scenario: scenario.id,
        rps: w.rps,
        cpuMsPer: cpu / w.requests * 1000,
        gatewayMsPer: gw / w.requests * 1000,
        serverShare: cpu / machine,
        wrkShare: w.clientCpuS / machine,
        errors: Object.values(w.errors).reduce((a, b) => a + b, 0),
      };
      rows.push(row);
      console.log(JSON.stringify(row));
    } finally {
      await r.stop();
    }
  }
}

const f = (x: number, d = 0) => x.toLocaleString("en-US", { maximumFractionDigits: d });
const byScenario = SCENARIOS.map((s) => {
  const one = rows.find((r) => r.scenario === s.id && r.gateways === 1)!;
  const two = rows.find((r) => r.scenario === s.id && r.gateways === 2)!;
  const pct = (x: number) => `${Math.round(x * 100)}%`;
  return `| ${s.id} | ${f(one.rps)} | ${f(two.rps)} | ${(two.rps / one.rps).toFixed(2)}x | ${
    one.cpuMsPer.toFixed(3)
  } / ${two.cpuMsPer.toFixed(3)} | ${one.gatewayMsPer.toFixed(3)} / ${
    two.gatewayMsPer.toFixed(3)
  } | ${pct(one.serverShare)} + ${pct(one.wrkShare)} / ${pct(two.serverShare)} + ${
    pct(two.wrkShare)
  } | ${one.errors + two.errors} |`;
});
const table = [
  `Gateways on one host: 1 against 2 (primary + satellite, SO_REUSEPORT), shipped settings, wrk ` +
  `at ${CONNECTIONS} connections, ECDSA P-256, TLS 1.3, ${seconds} s each, one run ` +
  `(${new Date().toISOString().slice(0, 16)}Z), ${navigator.hardwareConcurrency} cores shared ` +
  `with wrk. \`deno run -A bench/gateways.ts\`.`,
  "",
  "| scenario | 1 gateway, req/s | 2 gateways, req/s | ratio | server CPU ms per request, 1 / 2 | of which the gateways, 1 / 2 | machine CPU: servers + wrk, 1 / 2 | errors |",
  "|---|--:|--:|--:|--:|--:|--:|--:|",
  ...byScenario,
].join("\n");
console.log(table);
await Deno.mkdir(`${root}/bench/results`, { recursive: true });
await Deno.writeTextFile(`${root}/bench/results/gateways.md`, table + "\n");
