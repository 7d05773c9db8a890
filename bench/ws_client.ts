/**
 * The WebSocket echo benchmark's client (bench/ws_echo.ts): N connections,
 * each sending a 64-byte text message and the next one when the echo comes
 * back, for S seconds; prints `ws-json {...}` with the echoes counted.
 *
 *   deno run --allow-net --cert .local/certs/ca.pem bench/ws_client.ts wss://localhost:8443/echo 100 8
 *
 * @module
 */

const [url, n = "100", s = "8"] = Deno.args;
const connections = Number(n), seconds = Number(s);
const message = "x".repeat(64);
let echoes = 0, wrong = 0, failed = 0;
let measuring = false;
const sockets: WebSocket[] = [];
await Promise.all(Array.from({ length: connections }, () =>
  new Promise<void>((ok) => {
    const ws = new WebSocket(url);
    sockets.push(ws);
    ws.onopen = () => ok();
    ws.onerror = () => {
      failed++;
      ok();
    };
    ws.onmessage = (e) => {
      if (e.data !== message) wrong++;
      if (measuring) echoes++;
      ws.send(message);
    };
  })));
for (const ws of sockets) if (ws.readyState === WebSocket.OPEN) ws.send(message);
await new Promise((ok) => setTimeout(ok, 1000)); // warm-up
measuring = true;
const t0 = performance.now();
await new Promise((ok) => setTimeout(ok, seconds * 1000));
measuring = false;
const elapsed = (performance.now() - t0) / 1000;
for (const ws of sockets) ws.close();
console.log(`ws-json ${JSON.stringify({ connections, seconds: elapsed, echoes, wrong, failed })}`);
Deno.exit(0);
