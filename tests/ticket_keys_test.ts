/**
 * Session-ticket keys that cannot make a ring (issue 18): a TICKETS body with
 * no key, a length that is not whole 48-byte entries, or text that is not
 * base64 is refused where it is received (TicketKeys.use, what a satellite
 * and a successor call), and an empty key list is refused where the ring is
 * set (the shim's hp_ticket_ring_set); the keys in use stay, and handshakes
 * go on issuing and resuming tickets. This test process is the TLS server
 * (real wolfSSL, the real shim ring); the clients are real OpenSSL ones.
 * And the key file's permission rule (shim hp_read_private_file): owned by
 * this user (or root), no permission bit for others; group read is allowed.
 */

import assert from "node:assert/strict";
import { projectRoot, wolfsslPath } from "../ffi/paths.ts";
import { accept, closeFd, localPort, tcpListen, TicketRing } from "../ffi/shim.ts";
import { TlsContext, TlsSession } from "../ffi/wolfssl.ts";
import { EventLoop } from "../src/connection/event_loop.ts";
import { TlsConnection } from "../src/connection/tls_connection.ts";
import { fromBase64, toBase64 } from "../src/handoff/bytes.ts";
import { TicketKeys } from "../src/gateway/ticket_keys.ts";
import { connect } from "./support/s_client.ts";

const BODY = '{"op":"sum","result":"3"}\n';
const ANSWER = new TextEncoder().encode(
  `HTTP/1.1 200 OK\r\ncontent-length: ${BODY.length}\r\nconnection: close\r\n\r\n${BODY}`,
);
const VERSIONS = ["1.3", "1.2"] as const;

function serverContext(): TlsContext {
  return TlsContext.server({
    certFile: `${projectRoot}/.local/certs/cert.pem`,
    keyFile: `${projectRoot}/.local/certs/key.pem`,
  });
}

/** A TLS server in this process on `context`: each connection gets one
 * answer after its handshake, then is closed. */
function serve(context: TlsContext): { port: number; close(): void } {
  const loop = EventLoop.instance();
  const fd = tcpListen("127.0.0.1", 0);
  let id = 0;
  loop.add(fd, () => {
    for (let c = accept(fd); c; c = accept(fd)) {
      const conn = new TlsConnection(c.fd, TlsSession.accept(context, c.fd), {
        connId: ++id,
        gatewayId: 1,
        handoffs: 0,
        peer: c.peer,
        sni: "",
        alpn: "",
      });
      (async () => {
        try {
          if (await conn.handshake(Date.now() + 5000)) await conn.write(ANSWER, Date.now() + 5000);
        } catch {
          // a failed handshake: the client reports it
        }
        conn.close();
      })();
    }
  });
  return {
    port: localPort(fd),
    close() {
      loop.remove(fd);
      closeFd(fd);
    },
  };
}

/** A full handshake that must issue a ticket (saved to `sess`). */
async function fresh(port: number, version: "1.2" | "1.3", sess: string): Promise<void> {
  const o = await connect(port, { version, sessOut: sess }, []);
  assert.equal(o.code, 0, o.stderr);
  assert.equal(o.reused, false);
  assert.deepEqual(o.bodies, [{ op: "sum", result: "3" }], o.stdout);
  assert.match(o.stdout, /TLS session ticket:/, `TLS ${version}: no ticket issued`);
}

/** Whether the session in `sess` resumes (the connection answers either way). */
async function resumes(port: number, version: "1.2" | "1.3", sess: string): Promise<boolean> {
  const o = await connect(port, { version, sessIn: sess }, []);
  assert.equal(o.code, 0, o.stderr);
  assert.equal(o.protocol, `TLSv${version}`);
  assert.deepEqual(o.bodies, [{ op: "sum", result: "3" }], o.stdout);
  return o.reused;
}

/** What the tests feed in as TICKETS bodies that cannot make a ring. */
const MALFORMED = [
  { why: "no key", keys: "" },
  { why: "no key, as padding only", keys: "====" },
  { why: "47 bytes", keys: toBase64(new Uint8Array(47)) },
  { why: "one key and a byte", keys: toBase64(new Uint8Array(49)) },
  { why: "five keys (the ring holds 4)", keys: toBase64(new Uint8Array(5 * 48)) },
  { why: "not base64", keys: "not base64!" },
];

Deno.test({
  name: "TicketKeys.use refuses keys that cannot make a ring; tickets still issue and resume",
  sanitizeOps: false, // the connections' shared deadline sweeper
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-ticket-keys-" });
    const context = serverContext();
    const keys = new TicketKeys({ kind: "memory", rotationMs: 3600_000 });
    await keys.start();
    keys.attach(context);
    const server = serve(context);
    try {
      for (const v of VERSIONS) await fresh(server.port, v, `${dir}/before-${v}`);
      const inUse = keys.message().keys;
      // An empty key list (it used to empty the ring: every handshake that
      // issues a ticket failed).
      const taken = keys.use({ keys: "" }, "a test");
      for (const v of VERSIONS) await fresh(server.port, v, `${dir}/empty-${v}`);
      assert.equal(taken, false);
      assert.equal(keys.message().keys, inUse);
      for (const { why, keys: bad } of MALFORMED) {
        assert.equal(keys.use({ keys: bad }, "a test"), false, `${why}: taken`);
        assert.equal(keys.message().keys, inUse, `${why}: the keys in use changed`);
      }
      for (const v of VERSIONS) {
        // Tickets issued before still resume; new handshakes issue tickets
        // that resume.
        assert.equal(await resumes(server.port, v, `${dir}/before-${v}`), true, `TLS ${v}`);
        assert.equal(await resumes(server.port, v, `${dir}/empty-${v}`), true, `TLS ${v}`);
        await fresh(server.port, v, `${dir}/after-${v}`);
        assert.equal(await resumes(server.port, v, `${dir}/after-${v}`), true, `TLS ${v}`);
      }
      // Good keys are taken, into the ring itself: the earlier tickets no
      // longer resume (what the checks above would see of an emptied ring).
      const other = toBase64(crypto.getRandomValues(new Uint8Array(48)));
      assert.equal(keys.use({ keys: other }, "a test"), true);
      assert.equal(keys.message().keys, other);
      for (const v of VERSIONS) {
        assert.equal(await resumes(server.port, v, `${dir}/after-${v}`), false, `TLS ${v}`);
      }
    } finally {
      server.close();
      keys.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "the shim's ticket ring refuses an empty or partial key list and keeps its keys",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-ticket-ring-" });
    const context = serverContext();
    const ring = new TicketRing(wolfsslPath);
    ring.set(crypto.getRandomValues(new Uint8Array(96))); // two keys
    context.useTicketRing(ring);
    const server = serve(context);
    try {
      for (const v of VERSIONS) await fresh(server.port, v, `${dir}/before-${v}`);
      // hp_ticket_ring_set itself refuses a count of 0 (EINVAL).
      assert.throws(() => ring.set(new Uint8Array(0)), /ticket keys: EINVAL/);
      assert.throws(() => ring.set(new Uint8Array(47)), /bad ticket keys/);
      assert.throws(() => ring.set(new Uint8Array(5 * 48)), /bad ticket keys/);
      for (const v of VERSIONS) {
        assert.equal(await resumes(server.port, v, `${dir}/before-${v}`), true, `TLS ${v}`);
        await fresh(server.port, v, `${dir}/after-${v}`);
        assert.equal(await resumes(server.port, v, `${dir}/after-${v}`), true, `TLS ${v}`);
      }
    } finally {
      server.close();
      // The context keeps a pointer to the ring: it lives until the process ends.
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("a ticket key file others may read (0604, 0606, 0644) is refused; 0600, 0400, 0640, 0440 are used", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-ticket-file-" });
  const path = `${dir}/ticket.key`;
  await Deno.writeFile(path, crypto.getRandomValues(new Uint8Array(32)), { mode: 0o600 });
  const from = () => new TicketKeys({ kind: "file", path, rotationMs: 3600_000 });
  try {
    for (const mode of [0o600, 0o400, 0o640, 0o440]) {
      await Deno.chmod(path, mode);
      const keys = from();
      try {
        await keys.start();
        // The ring of the period, the one before and the one after.
        assert.equal(fromBase64(keys.message().keys).length, 3 * 48, mode.toString(8));
      } finally {
        keys.stop();
      }
    }
    for (const mode of [0o604, 0o606, 0o644]) {
      await Deno.chmod(path, mode);
      const keys = from();
      try {
        await assert.rejects(keys.start(), /ticket\.key: EPERM/, mode.toString(8));
      } finally {
        keys.stop();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
