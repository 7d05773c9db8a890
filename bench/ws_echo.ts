/**
 * WebSocket echo rate (issue 11): messages per second at 100 connections,
 * hot potato's `examples/echo.ts` behind the gateway against one Deno.serve
 * process with `Deno.upgradeWebSocket` (bench/servers/ws_echo_serve.ts), in
 * one run; the client is bench/ws_client.ts (Deno's WebSocket), which shares
 * the 2 cores with the servers.
 *
 *   deno run -A bench/ws_echo.ts        (bash bench/run.sh --ws runs it too)
 *
 * Writes bench/results/ws_echo.md. BENCH_SECONDS (8), BENCH_WS_CONNECTIONS (100).
 *
 * @module
 */

import { certSet, cpuSeconds, deno, root, sleep, startHotPotato } from "./lib.ts";

const seconds = Number(Deno.env.get("BENCH_SECONDS") ?? "8");
const connections = Number(Deno.env.get("BENCH_WS_CONNECTIONS") ?? "100");
const port = Number(Deno.env.get("BENCH_PORT_BASE") ?? "18740") + 40;
const certs = certSet("ecdsa");

async function client(
  url: string,
): Promise<{ echoes: number; seconds: number; wrong: number; failed: number }> {
  const out = await new Deno.Command(deno, {
    args: [
      "run",
      "--no-prompt",
      "--allow-net",
      "--cert",
      certs.ca,
      "bench/ws_client.ts",
      url,
      String(connections),
      String(seconds),
    ],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const m = new TextDecoder().decode(out.stdout).match(/^ws-json (\{.*\})$/m);
  if (!m) throw new Error(`ws_client failed: ${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(m[1]);
}

const rows: {
  system: string;
  rate: number;
  cpuUsPerMessage: number;
  wrong: number;
  failed: number;
}[] = [];

/** Run the client against `url` and add a row: the echo rate and the
 * server CPU (of `pids`) per echo. */
async function measure(system: string, url: string, pids: number[]): Promise<void> {
  const cpuNow = () => pids.reduce((t, p) => t + cpuSeconds(p), 0);
  const c0 = cpuNow();
  const r = await client(url);
  const cpu = cpuNow() - c0;
  rows.push({
    system,
    rate: r.echoes / r.seconds,
    cpuUsPerMessage: cpu / r.echoes * 1e6,
    wrong: r.wrong,
    failed: r.failed,
  });
}

const hp = await startHotPotato({
  port,
  certs,
  resumption: true,
  workerFiles: ["examples/echo.ts", "workers/product.ts"],
  ready: (out) => out.includes('"result":"12"'),
});
try {
  await measure("hot potato (examples/echo.ts)", `wss://localhost:${port}/echo`, hp.pids());
} finally {
  await hp.stop();
}
await sleep(500);

const serve = new Deno.Command(deno, {
  args: [
    "run",
    "--no-prompt",
    "--allow-net=127.0.0.1",
    `--allow-read=${root}`,
    "bench/servers/ws_echo_serve.ts",
    "--port",
    String(port + 1),
    "--cert",
    certs.cert,
    "--key",
    certs.key,
  ],
  cwd: root,
  stdout: "piped",
  stderr: "null",
}).spawn();
try {
  const reader = serve.stdout.pipeThrough(new TextDecoderStream()).getReader();
  for (let seen = ""; !seen.includes("listening");) seen += (await reader.read()).value ?? "";
  reader.releaseLock();
  serve.stdout.cancel().catch(() => {});
  await measure("Deno.serve + Deno.upgradeWebSocket", `wss://localhost:${port + 1}/`, [serve.pid]);
} finally {
  serve.kill("SIGTERM");
  await serve.status;
}

let md = `# WebSocket echo (bench/ws_echo.ts)\n\nRun ${
  new Date().toISOString()
}, ${connections} connections, ${seconds} s, 64-byte text messages, one in flight per connection, ECDSA, TLS 1.3; the client (Deno's WebSocket) shares the 2 cores.\n\n| server | echoes/s | server CPU µs / echo | wrong | failed connections |\n|---|--:|--:|--:|--:|\n`;
for (const r of rows) {
  md += `| ${r.system} | ${r.rate.toFixed(0)} | ${
    r.cpuUsPerMessage.toFixed(1)
  } | ${r.wrong} | ${r.failed} |\n`;
}
await Deno.mkdir(`${root}/bench/results`, { recursive: true });
await Deno.writeTextFile(`${root}/bench/results/ws_echo.md`, md);
console.log(md);
