/**
 * A WebSocket echo server: every message comes back as it was sent (text as
 * text, binary as binary). `GET /echo` with an upgrade opens one; any other
 * request to /echo is answered 400 (426 for another WebSocket version).
 * Try it with Deno's client:
 *
 *   deno eval --cert .local/certs/ca.pem \
 *     'const ws = new WebSocket("wss://localhost:8443/echo");
 *      ws.onopen = () => ws.send("hello");
 *      ws.onmessage = (e) => { console.log(e.data); ws.close(); };'
 *
 * The connection stays on this worker until the WebSocket closes. Options:
 * `?idle=S` sets the keep-alive (`idleTimeout`, seconds), `?max=N` the
 * largest message in bytes (`maxMessageSize`), `?protocol=P` answers with
 * that subprotocol. Two text messages are commands: "close CODE REASON"
 * makes the server close with that code, and "flood N" sends N binary
 * messages of 1 MiB at once (a client that does not read them is given up
 * once 16 MiB are queued: close 1008). Each close is logged as
 * `echo close CODE "REASON" WASCLEAN`. Start it with
 * `./hp worker examples/echo.ts`.
 *
 * @module
 */

import { serveFunction, upgradeWebSocket } from "../mod.ts";

serveFunction({ name: "echo", routes: ["/echo"], methods: ["GET"] }, (req) => {
  const params = new URL(req.url).searchParams;
  const number = (name: string) => {
    const v = params.get(name);
    return v === null || !/^[0-9]{1,10}(\.[0-9]+)?$/.test(v) ? undefined : Number(v);
  };
  const { socket, response } = upgradeWebSocket(req, {
    idleTimeout: number("idle"),
    maxMessageSize: number("max"),
    protocol: params.get("protocol") ?? undefined,
  });
  socket.onmessage = (e) => {
    const text = typeof e.data === "string" ? e.data : "";
    const close = /^close (\d{4})(?: (.*))?$/s.exec(text);
    const flood = /^flood (\d{1,3})$/.exec(text);
    if (close) socket.close(Number(close[1]), close[2] ?? "");
    else if (flood) {
      for (let i = 0; i < Number(flood[1]) && socket.readyState === WebSocket.OPEN; i++) {
        socket.send(new Uint8Array(1 << 20).fill(i));
      }
    } else socket.send(e.data);
  };
  socket.onclose = (e) =>
    console.log(`echo close ${e.code} ${JSON.stringify(e.reason)} ${e.wasClean}`);
  return response;
});
