/**
 * The WebSocket echo benchmark's comparison: one Deno.serve process with
 * Deno's TLS and `Deno.upgradeWebSocket`, echoing every message
 * (bench/ws_echo.ts).
 *
 *   deno run --allow-net=127.0.0.1 --allow-read bench/servers/ws_echo_serve.ts \
 *     --port 18790 --cert .local/certs/cert.pem --key .local/certs/key.pem
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "18790" },
    cert: { type: "string", default: ".local/certs/cert.pem" },
    key: { type: "string", default: ".local/certs/key.pem" },
  },
});

Deno.serve({
  hostname: "127.0.0.1",
  port: Number(values.port),
  cert: Deno.readTextFileSync(values.cert!),
  key: Deno.readTextFileSync(values.key!),
  onListen: ({ port }) => console.log(`ws-echo listening on https://127.0.0.1:${port}`),
}, (req) => {
  const { socket, response } = Deno.upgradeWebSocket(req);
  socket.onmessage = (e) => socket.send(e.data);
  return response;
});
