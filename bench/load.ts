/**
 * Load check: N concurrent keep-alive TLS connections (Deno's rustls client),
 * each making M requests that alternate between /sum and /product, every
 * answer checked. Prints one JSON line with the totals.
 *
 *   deno run --allow-net=127.0.0.1 --allow-read bench/load.ts \
 *     --port 8443 --connections 1000 --requests 50 --ca .local/certs/ca.pem
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "8443" },
    connections: { type: "string", default: "1000" },
    requests: { type: "string", default: "50" },
    ca: { type: "string", default: ".local/certs/ca.pem" },
  },
});
const port = Number(values.port);
const connections = Number(values.connections);
const requests = Number(values.requests);
const caCerts = [await Deno.readTextFile(values.ca!)];
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Read one response with a content-length body; returns [status, body]. */
async function readResponse(
  conn: Deno.TlsConn,
  state: { buf: Uint8Array },
): Promise<[number, string]> {
  for (;;) {
    const text = dec.decode(state.buf);
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) {
      const len = Number(/content-length: (\d+)/i.exec(text.slice(0, end))?.[1] ?? "0");
      if (state.buf.length >= end + 4 + len) {
        const status = Number(text.slice(9, 12));
        const body = dec.decode(state.buf.subarray(end + 4, end + 4 + len));
        state.buf = state.buf.slice(end + 4 + len);
        return [status, body];
      }
    }
    const chunk = new Uint8Array(16384);
    const n = await conn.read(chunk);
    if (n === null) throw new Error("closed");
    const next = new Uint8Array(state.buf.length + n);
    next.set(state.buf);
    next.set(chunk.subarray(0, n), state.buf.length);
    state.buf = next;
  }
}

let ok = 0, wrong = 0, failedConnections = 0;
const latencies: number[] = [];
const started = performance.now();
await Promise.all(Array.from({ length: connections }, async (_, c) => {
  let conn: Deno.TlsConn | undefined;
  try {
    conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts });
    const state = { buf: new Uint8Array(0) };
    for (let i = 0; i < requests; i++) {
      const op = (i + c) % 2 === 0 ? "sum" : "product";
      const t0 = performance.now();
      await conn.write(enc.encode(`GET /${op}?a=${c}&b=${i} HTTP/1.1\r\nhost: localhost\r\n\r\n`));
      const [status, body] = await readResponse(conn, state);
      latencies.push(performance.now() - t0);
      const want = op === "sum" ? c + i : c * i;
      if (status === 200 && JSON.parse(body).result === String(want)) ok++;
      else wrong++;
    }
  } catch {
    failedConnections++;
  } finally {
    conn?.close();
  }
}));
const seconds = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
console.log(JSON.stringify({
  connections,
  requestsPerConnection: requests,
  ok,
  wrong,
  failedConnections,
  seconds: Math.round(seconds * 100) / 100,
  requestsPerSecond: Math.round(ok / seconds),
  p50ms: Math.round(pct(0.5) * 100) / 100,
  p99ms: Math.round(pct(0.99) * 100) / 100,
}));
if (wrong || failedConnections || ok !== connections * requests) Deno.exit(1);
