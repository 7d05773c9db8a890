/**
 * System (6), the bound: ONE process with hot potato's own TLS stack and
 * event loop (wolfSSL through FFI, the shim's epoll thread, TlsConnection,
 * readRequest, serializeResponse) that computes both functions itself, so no
 * connection ever moves. It accepts and handshakes with the gateway's
 * Handshaker and holds connections with the holder every hot potato process
 * uses (src/connection/holder.ts; the same src/connection/responder.ts, the same
 * filtered info log): its per-request cost is hot potato's without the
 * multi-process part, the upper bound for (1).
 *
 *   deno run --allow-ffi --allow-env bench/servers/bound.ts --port 18744 \
 *     [--cert .local/certs/cert.pem --key .local/certs/key.pem] [--tls-resumption on|off]
 *
 * SIGUSR2 prints `hotpotato-stats {...}` (accepted, handshakes, resumed,
 * requests, held, memory), like the gateway.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { projectRoot } from "../../ffi/paths.ts";
import { localPort, raiseFileLimit, tcpListen } from "../../ffi/shim.ts";
import { TlsContext } from "../../ffi/wolfssl.ts";
import { hold, type HoldOptions, requestLogLine, routed } from "../../src/connection/holder.ts";
import { Listener } from "../../src/connection/listener.ts";
import type { TlsConnection } from "../../src/connection/tls_connection.ts";
import { GatewayMetrics } from "../../src/gateway/gateway_metrics.ts";
import { Handshaker } from "../../src/gateway/handshaker.ts";
import { errorResponse } from "../../src/http/http.ts";
import { Responder } from "../../src/connection/responder.ts";
import { onShutdown, printStatsOnSignal } from "../../src/operations/lifecycle.ts";
import { logger, setupLogging } from "../../src/operations/log.ts";
import { product, sum } from "./functions.ts";
import { RouteTable } from "../../src/routing/route_table.ts";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "18744" },
    cert: { type: "string", default: `${projectRoot}/.local/certs/cert.pem` },
    key: { type: "string", default: `${projectRoot}/.local/certs/key.pem` },
    "tls-resumption": { type: "string", default: "on" },
    "log-level": { type: "string", default: "warning" },
    "idle-timeout": { type: "string", default: "30" },
  },
});

setupLogging({ format: "text", level: values["log-level"] as "warning" });
const log = logger("worker");
const label = `bound/${Deno.pid}`;
// The defaults of src/operations/config.ts.
const options: HoldOptions = {
  idleTimeoutMs: Number(values["idle-timeout"]) * 1000,
  headerTimeoutMs: 10_000,
  bodyTimeoutMs: 60_000,
  writeTimeoutMs: 30_000,
  maxBody: 1024 * 1024,
  requestLog: requestLogLine(log),
  label,
};
const METHODS = ["GET", "HEAD"]; // sum and product take GET (HEAD added, as FunctionServer does)
const metrics = new GatewayMetrics();
let requests = 0;
let held = 0;

// src/worker/function_server.ts answers with a Responder per function, and
// routes with the route table every hot potato process uses: the same here.
const routes = new RouteTable(
  ([["/sum", sum], ["/product", product]] as const).map(([route, handler]) => [
    route,
    new Responder(handler, {
      name: route.slice(1),
      label,
      handlerTimeoutMs: 30_000,
      keepAlive: (head) => head.keepAlive,
    }),
  ]),
);

/** The holder every hot potato process uses, with a policy that never
 * moves a connection: both functions answer here. */
async function serve(conn: TlsConnection): Promise<void> {
  held++;
  try {
    await hold(conn, options, {
      answersHere: () => true,
      move: () => false,
      answer: (conn, head, body) => {
        const hit = routes.match(head.path);
        if (hit === undefined) {
          // The gateway's 404.
          const bytes = errorResponse(404, `no function serves ${head.path.slice(0, 200)}`, {
            keepAlive: false,
            extraHeaders: [["x-hotpotato-worker", label]],
          });
          return { route: "-", status: 404, bytes, keepAlive: false };
        }
        const { route, value: responder } = hit;
        const answer = !METHODS.includes(head.method)
          ? responder.fail(conn, head, 405, `method ${head.method} not allowed`, [
            ["allow", METHODS.join(", ")],
          ])
          : responder.respond(conn, head, body);
        return routed(answer, route);
      },
      count: () => requests++,
      draining: () => false,
    });
  } catch (e) {
    log.error("conn {conn}: {error}", { conn: conn.info.connId, error: String(e) });
    conn.close(false);
  } finally {
    held--;
  }
}

raiseFileLimit();
const handshaker = new Handshaker({
  context: TlsContext.server({
    certFile: values.cert!,
    keyFile: values.key!,
    resumption: values["tls-resumption"] !== "off",
  }),
  gatewayId: 0,
  handshakeTimeoutMs: 10_000,
  metrics,
  ready: serve,
});
const listenFd = tcpListen(values.host!, Number(values.port));
new Listener(listenFd, "clients", (c) => handshaker.accept(c));
console.log(`bound listening on https://${values.host}:${localPort(listenFd)}`);
printStatsOnSignal(() => {
  const { accepted, handshakes, resumed } = metrics.stats();
  return { accepted, handshakes, resumed, requests, held };
});
onShutdown(() => Deno.exit(0));
