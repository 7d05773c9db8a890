/**
 * Response bodies of 1 KiB, 64 KiB and 1 MiB (issue 11): hot potato (its
 * defaults but quiet logs, `bench/servers/blob_*.ts`) against nginx proxying
 * to two Deno.serve backends, both serving the same bytes made at start
 * (`bytes()`), the same route on every request and alternating, wrk with 10
 * connections, ECDSA, TLS 1.3. Server CPU per response and the bytes sent per
 * server CPU-second, in one run.
 *
 *   deno run -A bench/sizes.ts        (bash bench/run.sh --sizes runs it too)
 *
 * Writes bench/results/sizes.md and sizes.json. BENCH_SECONDS (8) per cell.
 *
 * @module
 */

import { certSet, cpuSeconds, root, runWrk, sleep, startHotPotato, startNginx } from "./lib.ts";

const seconds = Number(Deno.env.get("BENCH_SECONDS") ?? "8");
const port = Number(Deno.env.get("BENCH_PORT_BASE") ?? "18740") + 30;
const SIZES = [1024, 65536, 1048576];
const CONNECTIONS = 10;
const certs = certSet("ecdsa");

interface Row {
  system: string;
  size: number;
  alternate: boolean;
  rps: number;
  cpuMsPerResponse: number;
  gbPerCpuS: number;
  errors: number;
}

const systems = [
  {
    id: "hot potato",
    start: () =>
      startHotPotato({
        port,
        certs,
        resumption: true,
        workerFiles: ["bench/servers/blob_sum.ts", "bench/servers/blob_product.ts"],
      }),
  },
  {
    id: "nginx",
    start: () =>
      startNginx({ port, certs, backendPorts: [port + 1, port + 2], backendFunction: "blob" }),
  },
];

const rows: Row[] = [];
for (const sys of systems) {
  const r = await sys.start();
  try {
    await runWrk({
      url: `https://127.0.0.1:${port}`,
      connections: CONNECTIONS,
      seconds: 2,
      script: "sized",
      env: { BENCH_SIZE: "65536", BENCH_ALTERNATE: "1" },
    });
    for (const size of SIZES) {
      for (const alternate of [false, true]) {
        const pids = r.pids();
        const cpu0 = pids.reduce((t, p) => t + cpuSeconds(p), 0);
        const w = await runWrk({
          url: `https://127.0.0.1:${port}`,
          connections: CONNECTIONS,
          seconds,
          script: "sized",
          env: { BENCH_SIZE: String(size), BENCH_ALTERNATE: alternate ? "1" : "0" },
        });
        const cpu = pids.reduce((t, p) => t + cpuSeconds(p), 0) - cpu0;
        const row: Row = {
          system: sys.id,
          size,
          alternate,
          rps: w.rps,
          cpuMsPerResponse: cpu / w.requests * 1000,
          gbPerCpuS: size * w.requests / cpu / 1e9,
          errors: Object.values(w.errors).reduce((a, b) => a + b, 0),
        };
        rows.push(row);
        console.log(
          `  ${sys.id.padEnd(10)} ${String(size).padStart(7)} B ${
            alternate ? "alternating" : "same route "
          } ` +
            `${row.rps.toFixed(0).padStart(6)} req/s  ${
              row.cpuMsPerResponse.toFixed(3)
            } ms CPU/response  ` +
            `${row.gbPerCpuS.toFixed(2)} GB/s per CPU-s  errors ${row.errors}`,
        );
        await sleep(300);
      }
    }
  } finally {
    await r.stop();
  }
  await sleep(500);
}

const kib = (n: number) => n >= 1 << 20 ? `${n >> 20} MiB` : `${n >> 10} KiB`;
let md =
  `# Response sizes (bench/sizes.ts)\n\nRun ${new Date().toISOString()}, ${seconds} s per cell, ` +
  `wrk ${CONNECTIONS} connections, ECDSA, TLS 1.3. Server CPU = every server process ` +
  `(gateway + 2 workers; nginx master + 2 workers + 2 backends).\n\n` +
  `| body | workload | hot potato req/s | nginx req/s | hot potato ms CPU / response | nginx ms CPU / response | CPU ratio (hot potato / nginx) | hot potato GB/s per server CPU-s |\n` +
  `|---|---|--:|--:|--:|--:|--:|--:|\n`;
for (const size of SIZES) {
  for (const alternate of [false, true]) {
    const h = rows.find((r) =>
      r.system === "hot potato" && r.size === size && r.alternate === alternate
    )!;
    const n = rows.find((r) =>
      r.system === "nginx" && r.size === size && r.alternate === alternate
    )!;
    md += `| ${kib(size)} | ${alternate ? "alternating" : "same route"} | ${h.rps.toFixed(0)} | ${
      n.rps.toFixed(0)
    } | ${h.cpuMsPerResponse.toFixed(3)} | ${n.cpuMsPerResponse.toFixed(3)} | ${
      (h.cpuMsPerResponse / n.cpuMsPerResponse).toFixed(2)
    }x | ${h.gbPerCpuS.toFixed(2)} |\n`;
  }
}
await Deno.mkdir(`${root}/bench/results`, { recursive: true });
await Deno.writeTextFile(`${root}/bench/results/sizes.md`, md);
await Deno.writeTextFile(`${root}/bench/results/sizes.json`, JSON.stringify(rows, null, 2));
console.log(md);
