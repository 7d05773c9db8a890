/**
 * `deno bench`: a worker's JavaScript work for one request, without the
 * network: parse the request bytes, build the web Request, run workers/sum.ts's
 * handler, serialize the Response (src/http/http.ts, src/connection/responder.ts). This is
 * the part of the same-route path that is ours to make cheaper; the rest is
 * the TLS read and write and the event loop.
 *
 *   deno bench --allow-env bench/request_path_bench.ts
 *
 * @module
 */

import { parseRequest } from "../src/http/http.ts";
import { type Peer, Responder } from "../src/connection/responder.ts";
import { sum } from "./servers/functions.ts";

const raw = new TextEncoder().encode(
  "GET /sum?a=12&b=30 HTTP/1.1\r\nHost: 127.0.0.1:18741\r\nUser-Agent: wrk\r\n\r\n",
);
const peer: Peer = {
  info: { connId: 1, gatewayId: 1, handoffs: 1, peer: "127.0.0.1:40000", sni: "", alpn: "" },
  protocol: "TLSv1.3",
};
const responder = new Responder(sum, {
  name: "sum",
  label: "sum/1",
  handlerTimeoutMs: 30_000,
  keepAlive: (h) => h.keepAlive,
});
const EMPTY = new Uint8Array(0);

Deno.bench("parse request", () => {
  parseRequest(raw);
});

Deno.bench("parse + respond (Request, handler, serialize)", () => {
  const r = parseRequest(raw);
  if (r.kind !== "request") throw new Error(r.kind);
  const answer = responder.respond(peer, r.head, EMPTY);
  if (answer instanceof Promise) throw new Error("expected the synchronous path");
});

Deno.bench("web Request only", () => {
  new Request("https://127.0.0.1:18741/sum?a=12&b=30", {
    headers: [["host", "127.0.0.1:18741"], ["user-agent", "wrk"]],
  });
});

Deno.bench("handler only (sum)", () => {
  sum(new Request("https://127.0.0.1:18741/sum?a=12&b=30"));
});
