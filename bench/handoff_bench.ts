/**
 * Micro benchmark of one handoff, part by part, with the project's own
 * modules (`deno bench --allow-ffi --allow-net=127.0.0.1 --allow-read
 * --allow-write=/tmp --allow-env bench/handoff_bench.ts`; bench/bench.ts runs
 * it with --json).
 *
 * A real TLS 1.3 session is needed: this process listens with
 * TlsContext.server, a rustls client (Deno.connectTls) connects, the server
 * side runs TlsConnection.handshake driven by the EventLoop and reads the
 * client's first request (so the session sits at a record boundary with the
 * request buffered, as when a connection is handed off). Then:
 *
 *   export   TlsSession.export (wolfSSL_tls_export + GetVersion)
 *   seal     handoffAad + handoffSealed + Sealer.seal (ChaCha20-Poly1305,
 *            wolfCrypt), into the message (as releaseForHandoff does)
 *   encode   encodeHandoff (with the sealed state copied in)
 *   send     sendMessage: sendmsg with the socket fd (SCM_RIGHTS) over a
 *            SOCK_SEQPACKET pair (unixListen/unixConnect/accept)
 *   receive  receiveMessage: recvmsg, a new fd
 *   decode   decodeMessage
 *   open     handoffAad + Sealer.open
 *   import   TlsSession.import (wolfSSL_new, SetVersion, tls_import, set_fd)
 *            into the same socket fd each time (freed outside the timing)
 *   whole    releaseForHandoff + send + receive + decode + adoptHandoff: one
 *            full move in process, connection to connection (TlsConnection
 *            and its epoll registration included)
 *
 * Only the part named is timed (b.start/b.end); set-up and clean-up of each
 * iteration (copies, closing the received fd, freeing) are not.
 *
 * @module
 */

import { projectRoot } from "../ffi/paths.ts";
import {
  accept,
  closeFd,
  localPort,
  receiveMessage,
  sendMessage,
  tcpListen,
  unixConnect,
  unixListen,
} from "../ffi/shim.ts";
import { type ExportedState, TlsContext, TlsSession } from "../ffi/wolfssl.ts";
import { EventLoop } from "../src/connection/event_loop.ts";
import { adoptHandoff, releaseForHandoff } from "../src/handoff/handoff.ts";
import { DEFAULT_LIMITS } from "../src/http/http.ts";
import {
  decodeMessage,
  encodeHandoff,
  encodeUnsealedHandoff,
  handoffAad,
  type HandoffFields,
  handoffSealed,
  MessageType,
} from "../src/handoff/protocol.ts";
import { readRequest } from "../src/connection/request_reader.ts";
import { type Sealed, Sealer } from "../src/handoff/seal.ts";
import { TlsConnection } from "../src/connection/tls_connection.ts";

const certs = `${projectRoot}/.local/certs`;
const loop = EventLoop.instance();
const serverCtx = TlsContext.server({
  certFile: `${certs}/cert.pem`,
  keyFile: `${certs}/key.pem`,
});
const importCtx = TlsContext.forImport();
const sealer = new Sealer(Sealer.newKey());

// ---- a real TLS 1.3 connection, handshaken here, its first request read
const tcpFd = tcpListen("127.0.0.1", 0);
const port = localPort(tcpFd);
const got = Promise.withResolvers<TlsConnection>();
loop.add(tcpFd, () => {
  for (let c = accept(tcpFd); c; c = accept(tcpFd)) {
    const conn = new TlsConnection(c.fd, TlsSession.accept(serverCtx, c.fd), {
      connId: 1,
      gatewayId: 7,
      handoffs: 0,
      peer: c.peer,
      sni: "",
      alpn: "",
    });
    conn.handshake(Date.now() + 5000).then((ok) =>
      ok ? got.resolve(conn) : got.reject(new Error("handshake failed"))
    );
  }
});
const client = await Deno.connectTls({
  hostname: "127.0.0.1",
  port,
  caCerts: [await Deno.readTextFile(`${certs}/ca.pem`)],
});
await client.write(
  new TextEncoder().encode("GET /sum?a=1&b=2 HTTP/1.1\r\nhost: localhost\r\n\r\n"),
);
let conn = await got.promise;
conn.info.sni = conn.session.serverName;
conn.info.alpn = conn.session.alpn;
const r = await readRequest(conn, {
  limits: DEFAULT_LIMITS,
  idleTimeoutMs: 5000,
  headerTimeoutMs: 5000,
  wantBody: () => true,
});
if (r.kind !== "request") throw new Error(`no request: ${r.kind}`);
const protocol = conn.protocol;
if (protocol !== "TLSv1.3") throw new Error(`expected TLS 1.3, got ${protocol}`);

// ---- a SOCK_SEQPACKET pair, as between gateway and worker
const dir = await Deno.makeTempDir({ prefix: "hotpotato-handoff-bench-" });
const listenFd = unixListen(`${dir}/s.sock`);
const sendFd = unixConnect(`${dir}/s.sock`);
let recvFd = -1;
for (let i = 0; i < 100 && recvFd < 0; i++) {
  const a = accept(listenFd);
  if (a) recvFd = a.fd;
  else await new Promise((ok) => setTimeout(ok, 5));
}
if (recvFd < 0) throw new Error("no unix connection");
const recvBuf = new Uint8Array(131072);

// ---- fixed inputs for the parts
const session = conn.session;
const state: ExportedState = session.export();
const blob = state.blob.slice();
const unread = conn.buffered.slice();
const fields: HandoffFields = {
  info: { ...conn.info, handoffs: 1 },
  tlsVersion: state.version,
  unread,
  readAhead: new Uint8Array(0),
  sentAt: Date.now() * 1000,
};
const message = encodeUnsealedHandoff(fields, blob.length);
const sealed: Sealed = sealer.seal(blob.slice(), handoffAad(message), handoffSealed(message));
const handoff = { ...fields, sealed };
/** Where the seal part writes (a message of the same layout). */
const sealTarget = message.slice();

console.error(
  `handoff bench: ${protocol} ${conn.cipher}, blob ${blob.length} B, message ${message.length} B ` +
    `(unread request ${unread.length} B)`,
);

Deno.bench({ name: "export (wolfSSL_tls_export)", group: "part" }, () => {
  session.export();
});

/** Parts that need untimed set-up or clean-up per operation run BATCH
 * operations per iteration (Deno ignores b.start/b.end under 10 µs):
 * divide by BATCH (bench/bench.ts does, from the "×N" in the name). */
const BATCH = 32;
const plains = Array.from({ length: BATCH }, () => new Uint8Array(blob.length));
const sessions: TlsSession[] = [];

Deno.bench({ name: `seal (aad + ChaCha20-Poly1305) ×${BATCH}`, group: "part" }, (b) => {
  for (const p of plains) p.set(blob);
  b.start();
  for (let i = 0; i < BATCH; i++) {
    sealer.seal(plains[i], handoffAad(sealTarget), handoffSealed(sealTarget));
  }
  b.end();
});

Deno.bench({ name: "encode message", group: "part" }, () => {
  encodeHandoff(handoff);
});

Deno.bench({ name: `send (sendmsg + fd, SEQPACKET) ×${BATCH}`, group: "part" }, (b) => {
  b.start();
  for (let i = 0; i < BATCH; i++) {
    if (sendMessage(sendFd, message, conn.fd) < 0) throw new Error("send");
  }
  b.end();
  for (let i = 0; i < BATCH; i++) {
    const got = receiveMessage(recvFd, recvBuf);
    if (typeof got === "number") throw new Error(`receive: ${got}`);
    closeFd(got.fd);
  }
});

const received: number[] = [];
Deno.bench({ name: `receive (recvmsg + fd) ×${BATCH}`, group: "part" }, (b) => {
  for (let i = 0; i < BATCH; i++) {
    if (sendMessage(sendFd, message, conn.fd) < 0) throw new Error("send");
  }
  b.start();
  for (let i = 0; i < BATCH; i++) {
    const got = receiveMessage(recvFd, recvBuf);
    if (typeof got === "number") throw new Error(`receive: ${got}`);
    received.push(got.fd);
  }
  b.end();
  for (const fd of received) closeFd(fd);
  received.length = 0;
});

Deno.bench({ name: "decode message", group: "part" }, () => {
  decodeMessage(message);
});

Deno.bench({ name: "open (aad + ChaCha20-Poly1305)", group: "part" }, () => {
  const out = sealer.open(sealed, handoffAad(message));
  if (!out) throw new Error("did not open");
});

Deno.bench({ name: `import (wolfSSL_new + tls_import + set_fd) ×${BATCH}`, group: "part" }, (b) => {
  b.start();
  for (let i = 0; i < BATCH; i++) {
    sessions.push(TlsSession.import(importCtx, conn.fd, { version: state.version, blob }));
  }
  b.end();
  for (const t of sessions) t.free();
  sessions.length = 0;
});

Deno.bench({ name: `free session (wolfSSL_free) ×${BATCH}`, group: "part" }, (b) => {
  for (let i = 0; i < BATCH; i++) {
    sessions.push(TlsSession.import(importCtx, conn.fd, { version: state.version, blob }));
  }
  b.start();
  for (const t of sessions) t.free();
  b.end();
  sessions.length = 0;
});

Deno.bench({ name: "whole handoff in process (release..adopt)", group: "whole" }, () => {
  const msg = releaseForHandoff(conn, sealer, conn.info.handoffs + 1);
  const n = sendMessage(sendFd, msg, conn.fd);
  if (n < 0) throw new Error(`send: ${n}`);
  closeFd(conn.fd); // the sender's copy, as ControlChannel.send does
  const got = receiveMessage(recvFd, recvBuf);
  if (typeof got === "number") throw new Error(`receive: ${got}`);
  const m = decodeMessage(recvBuf.subarray(0, got.length));
  if (m.type !== MessageType.HANDOFF) throw new Error("not a handoff");
  const next = adoptHandoff(m.body, got.fd, sealer, importCtx);
  if (typeof next === "string") throw new Error(next);
  conn = next;
});

// Stop the epoll thread before the runtime goes away: an fd event (the
// client's socket closing at exit) would otherwise wake a torn-down isolate
// and crash the process at exit.
globalThis.addEventListener("unload", () => {
  client.close();
  void loop.close();
});
