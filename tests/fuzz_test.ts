/**
 * Fuzzing a worker's control channel. This test process plays the gateway:
 * it owns the control socket, registers a real worker process, runs real TLS
 * handshakes with a real client and hands the connections over. Between two
 * valid handoffs it sends thousands of truncated, oversized, bit-flipped and
 * garbage messages, some with a socket attached. Every one must be rejected
 * (one warning each), every passed fd closed, and the worker must go on
 * serving.
 */

import assert from "node:assert/strict";
import { projectRoot } from "../ffi/paths.ts";
import { accept, closeFd, localPort, tcpListen, unixListen } from "../ffi/shim.ts";
import { TlsContext, TlsSession } from "../ffi/wolfssl.ts";
import { ControlChannel } from "../src/handoff/control_channel.ts";
import { EventLoop } from "../src/connection/event_loop.ts";
import { releaseForHandoff } from "../src/handoff/handoff.ts";
import { DEFAULT_LIMITS } from "../src/http/http.ts";
import {
  encodeJson,
  HANDOFF_LAYOUT,
  type HandoffField,
  Limits,
  type Message,
  MessageType,
} from "../src/handoff/protocol.ts";
import { readRequest } from "../src/connection/request_reader.ts";
import { Sealer } from "../src/handoff/seal.ts";
import { TlsConnection } from "../src/connection/tls_connection.ts";
import { Client, Proc, run } from "./support/system.ts";
import { prng } from "./support/prng.ts";

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

const WIDTH = { u8: 1, u16: 2, u32: 4 } as const;
const layout: readonly HandoffField[] = HANDOFF_LAYOUT;
/** Bytes rewritten in transit (transfer id, handoff count): a message that
 * differs only there is still valid. */
const patched = new Set(
  layout.filter((f) => f.seal === "patched").flatMap((f) =>
    Array.from({ length: WIDTH[f.kind as keyof typeof WIDTH] }, (_, k) => f.at + k)
  ),
);
/** The length fields of the variable parts. */
const lengths = layout.filter((f) => f.length !== undefined);

/** Mutate a valid HANDOFF message one way; never only its patched fields. */
function mutate(valid: Uint8Array, rnd: () => number, i: number): Uint8Array {
  const int = (n: number) => Math.floor(rnd() * n);
  switch (i % 6) {
    case 0: // truncated
      return valid.slice(0, int(valid.length));
    case 1: { // 1-4 flipped bits anywhere but the patched fields (not sealed)
      const m = valid.slice();
      for (let k = 1 + int(4); k > 0; k--) {
        let at = int(m.length);
        while (patched.has(at)) at = int(m.length);
        m[at] ^= 1 << int(8);
      }
      return m;
    }
    case 2: { // extra bytes after a valid message
      const m = new Uint8Array(valid.length + 1 + int(1000));
      m.set(valid);
      crypto.getRandomValues(m.subarray(valid.length));
      return m;
    }
    case 3: { // a length field that lies
      const m = valid.slice();
      const v = new DataView(m.buffer);
      const field = lengths[int(lengths.length)];
      if (field.length === "u32") v.setUint32(field.at, int(2 ** 32), true);
      else if (field.length === "u16") v.setUint16(field.at, int(65536), true);
      else m[field.at] = int(256);
      if (m.every((b, k) => b === valid[k])) m[field.at] ^= 1;
      return m;
    }
    case 4: { // garbage, sometimes larger than any message may be
      const size = rnd() < 0.1 ? Limits.maxMessage + 1 + int(8000) : 1 + int(3000);
      const m = new Uint8Array(size);
      for (let k = 0; k < size; k += 65536) crypto.getRandomValues(m.subarray(k, k + 65536));
      if (rnd() < 0.5) m.set([0x48, 0x50, 0x4f, 0x54, 1, 3]); // our magic and type
      return m;
    }
    default: // well-formed messages of the wrong kind or with wrong JSON
      return rnd() < 0.5
        ? encodeJson(MessageType.REGISTER, { name: "x", routes: ["/x"], pid: 1 })
        : new Uint8Array([0x48, 0x50, 0x4f, 0x54, 1, 2, 0, 0, ...new TextEncoder().encode("{]")]);
  }
}

Deno.test({
  name: "a worker rejects thousands of bad handoff messages and keeps serving",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-fuzz-" });
    const control = `${dir}/gateway.sock`;
    const loop = EventLoop.instance();
    const serverCtx = TlsContext.server({
      certFile: `${projectRoot}/.local/certs/cert.pem`,
      keyFile: `${projectRoot}/.local/certs/key.pem`,
    });
    const key = Sealer.newKey();
    const sealer = new Sealer(key);
    const controlFd = unixListen(control);
    const tcpFd = tcpListen("127.0.0.1", 0);
    const port = localPort(tcpFd);
    let channel: ControlChannel | undefined;
    const registered = Promise.withResolvers<void>();
    loop.add(controlFd, () => {
      for (let c = accept(controlFd); c; c = accept(controlFd)) {
        channel = new ControlChannel(c.fd, {
          onMessage(msg: Message) {
            if (msg.type !== MessageType.REGISTER) return;
            channel!.send(encodeJson(MessageType.REGISTERED, {
              ok: true,
              gatewayPid: Deno.pid,
              key: btoa(String.fromCharCode(...key)),
            }));
            registered.resolve();
          },
          onClose() {},
        });
      }
    });
    // Clients connect to us; we run the handshake and read the first request.
    const accepted: ((conn: TlsConnection) => void)[] = [];
    let nextId = 1;
    loop.add(tcpFd, () => {
      for (let c = accept(tcpFd); c; c = accept(tcpFd)) {
        const conn = new TlsConnection(c.fd, TlsSession.accept(serverCtx, c.fd), {
          connId: nextId++,
          gatewayId: 7,
          handoffs: 0,
          peer: c.peer,
          sni: "",
          alpn: "",
        });
        conn.handshake(Date.now() + 5000).then(() => accepted.shift()?.(conn));
      }
    });
    /** Connect a client, send a request, and hold the connection here. */
    const connection = async (path: string) => {
      const got = new Promise<TlsConnection>((ok) => accepted.push(ok));
      const client = await Client.connect(port);
      await client.write(Client.request(path));
      const conn = await got;
      const r = await readRequest(conn, {
        limits: DEFAULT_LIMITS,
        idleTimeoutMs: 5000,
        headerTimeoutMs: 5000,
        wantBody: () => false,
      });
      assert.equal(r.kind, "request");
      return { client, conn };
    };

    const worker = new Proc("sum", "workers/sum.ts", ["--control", control]);
    try {
      await registered.promise;
      await worker.waitFor(/registered sum for/);

      // A valid handoff works.
      const first = await connection("/sum?a=1&b=2");
      channel!.send(releaseForHandoff(first.conn, sealer, 1), first.conn.fd);
      assert.equal(JSON.parse((await first.client.read()).body).result, "3");

      // A valid message to mutate (its connection is never handed over).
      const template = await connection("/sum?a=5&b=5");
      const valid = releaseForHandoff(template.conn, sealer, 1);
      closeFd(template.conn.fd);
      template.client.close();

      const fds = async () =>
        (await run("ls", ["-1", `/proc/${worker.child.pid}/fd`])).stdout.trim().split("\n")
          .length;
      const fdsBefore = await fds();
      const warningsBefore = worker.count(/\[WRN\]/);
      const rnd = prng(0x5eed);
      const COUNT = 3000;
      for (let i = 0; i < COUNT; i++) {
        const fd = rnd() < 0.35 ? tcpListen("127.0.0.1", 0) : -1;
        assert.ok(channel!.send(mutate(valid, rnd, i), fd), "queued");
        if (i % 200 === 199) await sleep(5); // let the socket drain
      }
      for (let i = 0; i < 400 && worker.count(/\[WRN\]/) - warningsBefore < COUNT; i++) {
        await sleep(25);
      }
      assert.equal(worker.count(/\[WRN\]/) - warningsBefore, COUNT, "one rejection each");
      assert.equal(worker.count(/\] hotpotato\.worker: GET/), 1, "nothing else was served");
      assert.equal(await fds(), fdsBefore, "every passed fd was closed");
      assert.equal(worker.exited, false);

      // And the worker still takes a valid connection.
      const last = await connection("/sum?a=40&b=2");
      channel!.send(releaseForHandoff(last.conn, sealer, 1), last.conn.fd);
      assert.equal(JSON.parse((await last.client.read()).body).result, "42");
      first.client.close();
      last.client.close();
    } finally {
      await worker.stop();
      channel?.close();
      loop.remove(controlFd);
      loop.remove(tcpFd);
      closeFd(controlFd);
      closeFd(tcpFd);
      await loop.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
