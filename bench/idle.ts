/**
 * Idle-connection client for the benchmark: opens N TLS keep-alive
 * connections (Deno's rustls client), makes one request on each (half /sum,
 * half /product, so that a worker holds every connection), checks the answer,
 * prints `idle-holding {"ok":N,"failed":M,"rssMiB":R}` and keeps them all open
 * until its stdin closes.
 *
 *   deno run --allow-net=127.0.0.1 --allow-read bench/idle.ts \
 *     --port 18756 --connections 10000 --ca .local/certs/ca.pem
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "8443" },
    connections: { type: "string", default: "10000" },
    concurrency: { type: "string", default: "64" },
    ca: { type: "string", default: ".local/certs/ca.pem" },
  },
});
const port = Number(values.port);
const total = Number(values.connections);
const concurrency = Number(values.concurrency);
const caCerts = [await Deno.readTextFile(values.ca!)];
const enc = new TextEncoder();
const dec = new TextDecoder();

const held: Deno.TlsConn[] = [];
let ok = 0, failed = 0, next = 0;

async function one(i: number): Promise<void> {
  let conn: Deno.TlsConn | undefined;
  try {
    conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts });
    const op = i % 2 === 0 ? "sum" : "product";
    await conn.write(enc.encode(`GET /${op}?a=${i}&b=2 HTTP/1.1\r\nhost: localhost\r\n\r\n`));
    let text = "";
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) throw new Error("closed");
      text += dec.decode(buf.subarray(0, n));
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) continue;
      const len = Number(/content-length: (\d+)/i.exec(text.slice(0, end))?.[1] ?? "0");
      if (text.length >= end + 4 + len) break;
    }
    const want = op === "sum" ? i + 2 : i * 2;
    if (!text.startsWith("HTTP/1.1 200") || !text.includes(`"result":"${want}"`)) {
      throw new Error(`bad answer: ${text.slice(0, 200)}`);
    }
    held.push(conn);
    ok++;
  } catch {
    failed++;
    try {
      conn?.close();
    } catch { /* gone */ }
  }
}

await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < total) await one(next++);
}));
const rss = Deno.memoryUsage().rss;
console.log(`idle-holding ${JSON.stringify({ ok, failed, rssMiB: Math.round(rss / 1048576) })}`);

// Hold until stdin closes.
const b = new Uint8Array(64);
try {
  while ((await Deno.stdin.read(b)) !== null) { /* wait */ }
} catch { /* gone */ }
for (const c of held) {
  try {
    c.close();
  } catch { /* gone */ }
}
