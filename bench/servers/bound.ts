/**
 * System (6), the bound: ONE process with hot potato's own TLS stack and
 * event loop (wolfSSL through FFI, the shim's epoll thread, TlsConnection,
 * readRequest, serializeResponse) that computes both functions itself, so no
 * connection ever moves. It accepts and handshakes as src/gateway/gateway_server.ts
 * does and serves each request as src/worker/function_server.ts does (the same
 * src/http/responder.ts, the same filtered info log): its per-request cost is hot
 * potato's without the multi-process part, the upper bound for (1).
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
import { accept, closeFd, localPort, raiseFileLimit, tcpListen } from "../../ffi/shim.ts";
import { TlsContext, TlsError, TlsSession } from "../../ffi/wolfssl.ts";
import { EventLoop } from "../../src/connection/event_loop.ts";
import { errorResponse, type RequestHead } from "../../src/http/http.ts";
import { onShutdown, printStatsOnSignal } from "../../src/operations/lifecycle.ts";
import { logger, setupLogging } from "../../src/operations/log.ts";
import { readRequest } from "../../src/connection/request_reader.ts";
import { type ConnectionInfo, TlsConnection } from "../../src/connection/tls_connection.ts";
import { handlerFor, product, sum } from "./functions.ts";
import { Responder } from "../../src/http/responder.ts";

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

// The defaults of src/operations/config.ts.
const cfg = {
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: Number(values["idle-timeout"]) * 1000,
  headerTimeoutMs: 10_000,
  writeTimeoutMs: 30_000,
  handlerTimeoutMs: 30_000,
  maxBody: 1024 * 1024,
};
const METHODS = ["GET", "HEAD"]; // sum and product take GET (HEAD added, as FunctionServer does)
const TLS_HANDSHAKE_RECORD = 0x16;

setupLogging({ format: "text", level: values["log-level"] as "warning" });
const log = logger("worker");
const label = `bound/${Deno.pid}`;
const stats = { accepted: 0, handshakes: 0, resumed: 0, requests: 0, held: 0 };

raiseFileLimit();
const serverCtx = TlsContext.server({
  certFile: values.cert!,
  keyFile: values.key!,
  resumption: values["tls-resumption"] !== "off",
});
const listenFd = tcpListen(values.host!, Number(values.port));
let nextConnId = 1;

function acceptClients(): void {
  for (;;) {
    let c;
    try {
      c = accept(listenFd);
    } catch {
      return;
    }
    if (!c) return;
    stats.accepted++;
    const info: ConnectionInfo = {
      connId: nextConnId++ >>> 0,
      gatewayId: 0,
      handoffs: 0,
      peer: c.peer,
      sni: "",
      alpn: "",
    };
    let tls: TlsSession;
    try {
      tls = TlsSession.accept(serverCtx, c.fd);
    } catch {
      closeFd(c.fd);
      continue;
    }
    const conn = new TlsConnection(c.fd, tls, info);
    stats.held++;
    handshake(conn)
      .catch((e) => {
        log.error("conn {conn}: {error}", { conn: info.connId, error: String(e) });
        conn.close(false);
      })
      .finally(() => stats.held--);
  }
}

/** src/gateway/gateway_server.ts #handshake, then serve here instead of handing off. */
async function handshake(conn: TlsConnection): Promise<void> {
  const deadline = Date.now() + cfg.handshakeTimeoutMs;
  const first = await conn.peekStart(deadline);
  if (!first || first[0] !== TLS_HANDSHAKE_RECORD) {
    conn.close(false);
    return;
  }
  let ok = false;
  try {
    ok = await conn.handshake(deadline);
  } catch (e) {
    log.debug("handshake failed: {error}", { error: e instanceof TlsError ? e.message : e });
  }
  if (!ok) {
    conn.close(false);
    return;
  }
  stats.handshakes++;
  if (conn.session.resumed) stats.resumed++;
  conn.info.sni = conn.session.serverName;
  conn.info.alpn = conn.session.alpn;
  log.info("TLS handshake complete: conn {conn} from {peer}, {protocol} {cipher}", {
    conn: conn.info.connId,
    peer: conn.info.peer,
    protocol: conn.protocol,
    cipher: conn.cipher,
  });
  await serve(conn);
}

/** src/worker/function_server.ts #serve, with both functions in this process. */
async function serve(conn: TlsConnection): Promise<void> {
  const limits = { maxHeadBytes: 16384, maxBodyBytes: cfg.maxBody };
  const wantBody = (head: RequestHead) => handlerFor(head.path) !== undefined;
  for (;;) {
    const r = await readRequest(conn, {
      limits,
      idleTimeoutMs: cfg.idleTimeoutMs,
      headerTimeoutMs: cfg.headerTimeoutMs,
      wantBody,
    });
    if (r.kind === "closed") {
      conn.close();
      return;
    }
    if (r.kind === "timeout" || r.kind === "error") {
      const bytes = r.kind === "timeout"
        ? errorResponse(408, "request not received in time", { keepAlive: false })
        : errorResponse(r.status, r.message, { keepAlive: false });
      await conn.write(bytes, Date.now() + cfg.writeTimeoutMs);
      conn.close();
      return;
    }
    if (r.kind === "head") {
      // Only for a path no function serves: the gateway's 404.
      const bytes = errorResponse(404, `no function serves ${r.head.path.slice(0, 200)}`, {
        keepAlive: false,
        extraHeaders: [["x-hotpotato-worker", label]],
      });
      await conn.write(bytes, Date.now() + cfg.writeTimeoutMs);
      conn.close();
      return;
    }
    const responder = responderFor(r.head.path)!;
    const started = performance.now();
    const answer = !METHODS.includes(r.head.method)
      ? responder.fail(conn, r.head, 405, `method ${r.head.method} not allowed`, [
        ["allow", METHODS.join(", ")],
      ])
      : responder.respond(conn, r.head, r.body);
    const { bytes, keepAlive } = answer instanceof Promise ? await answer : answer;
    conn.consume(r.length);
    stats.requests++;
    const written = conn.write(bytes, Date.now() + cfg.writeTimeoutMs);
    const ok = typeof written === "boolean" ? written : await written;
    log.info("{method} {path} conn {conn} handoffs {handoffs} {ms}ms", {
      method: r.head.method,
      path: r.head.path,
      conn: conn.info.connId,
      handoffs: conn.info.handoffs,
      ms: Math.round((performance.now() - started) * 100) / 100,
    });
    if (!ok) {
      conn.close(false);
      return;
    }
    if (!keepAlive) {
      conn.close();
      return;
    }
  }
}

// src/worker/function_server.ts answers with a Responder per function: the same here.
const responders = new Map(
  (["sum", "product"] as const).map((name) => [
    name,
    new Responder(name === "sum" ? sum : product, {
      name,
      label,
      handlerTimeoutMs: cfg.handlerTimeoutMs,
      keepAlive: (head) => head.keepAlive,
    }),
  ]),
);

function responderFor(path: string): Responder | undefined {
  const h = handlerFor(path);
  return h === sum ? responders.get("sum") : h === product ? responders.get("product") : undefined;
}

EventLoop.instance().add(listenFd, () => acceptClients());
console.log(`bound listening on https://${values.host}:${localPort(listenFd)}`);
printStatsOnSignal(() => ({ ...stats }));
onShutdown(() => Deno.exit(0));
