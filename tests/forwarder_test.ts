/**
 * The gateway's forwarder (src/gateway/forwarder.ts) and its refusal paths
 * over real parts, without processes: the real registry (Workers) and
 * router, real SOCK_SEQPACKET control channels to "workers" that are this
 * test's own ControlChannels answering each HANDOFF (adopt or refuse), real
 * fds passed with SCM_RIGHTS. A connection a worker hands back is confirmed
 * to it and forwarded unopened to the route's worker (one handoff more); one
 * that worker refuses goes to another worker of the route, else back to the
 * worker it came from; one for a route nobody serves is refused to its
 * sender. A fresh gateway connection whose workers all refuse is answered
 * here (503): tests/placement_test.ts covers a parcel nobody takes being
 * adopted again, tests/handoff_faults_test.ts the 503 end to end.
 */

import assert from "node:assert/strict";
import { closeFd, processUid, tcpListen } from "../ffi/shim.ts";
import { TlsContext } from "../ffi/wolfssl.ts";
import { EventLoop } from "../src/connection/event_loop.ts";
import { ControlChannel } from "../src/handoff/control_channel.ts";
import { encodeUnsealedHandoff, MessageType } from "../src/handoff/protocol.ts";
import { Sealer } from "../src/handoff/seal.ts";
import { configureTrust } from "../src/handoff/trust.ts";
import { Forwarder } from "../src/gateway/forwarder.ts";
import { GatewayMetrics } from "../src/gateway/gateway_metrics.ts";
import { type Worker, Workers } from "../src/gateway/workers.ts";
import { gatewayConfig } from "../src/operations/config.ts";
import { waitUntil } from "./support/wait.ts";
import { seqpacketPair } from "./support/sockets.ts";

/** A worker as the gateway sees it: this test's end of its control channel,
 * adopting or refusing what it is handed. */
class FakeWorker {
  readonly pid: number;
  readonly channel: ControlChannel;
  /** What it was handed: the connection id and handoff count of each. */
  readonly handed: { conn: number; handoffs: number; ok: boolean }[] = [];
  adopts: boolean;
  worker?: Worker;
  constructor(pid: number, fd: number, adopts: boolean) {
    this.pid = pid;
    this.adopts = adopts;
    this.channel = new ControlChannel(fd, {
      onMessage: (msg, passed) => {
        if (msg.type !== MessageType.HANDOFF) return;
        if (passed >= 0) closeFd(passed);
        this.handed.push({
          conn: msg.body.info.connId,
          handoffs: msg.body.info.handoffs,
          ok: this.adopts,
        });
        this.channel.confirm(msg.body.transfer ?? 0, this.adopts);
      },
      onClose() {},
    });
  }

  /** Hand the gateway a connection whose next request is for `path`; resolves
   * with how it ended: "confirmed", or the reason it came back. */
  handBack(conn: number, path: string): Promise<string> {
    const message = encodeUnsealedHandoff({
      info: { connId: conn, gatewayId: 1, handoffs: 2, peer: "127.0.0.1:1", sni: "", alpn: "" },
      tlsVersion: 4,
      sentAt: 0,
      unread: new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`),
      readAhead: new Uint8Array(0),
    }, 16);
    const done = Promise.withResolvers<string>();
    const fd = tcpListen("127.0.0.1", 0); // stands for the connection's socket
    const sent = this.channel.transfer(message, fd, (back, _m, reason) => {
      closeFd(back);
      done.resolve(reason);
    }, () => done.resolve("confirmed"));
    if (!sent) done.resolve("not sent");
    return done.promise;
  }
}

/** A gateway's registry and forwarder, and workers on real channels. */
async function gateway(dir: string, specs: { name: string; adopts: boolean }[]) {
  configureTrust({ socketGroup: "", gatewayUser: "" });
  const metrics = new GatewayMetrics();
  const answered: { conn: number; unplaced: boolean }[] = [];
  const late: { forwarder?: Forwarder } = {};
  const workers = new Workers(
    gatewayConfig(["--handoff", "gateway"]).config,
    Sealer.newKey(),
    metrics,
    {
      returned: (from, h, fd, raw) => late.forwarder!.returned(from, h, fd, raw),
      moved: () => {},
    },
  );
  const forwarder = late.forwarder = new Forwarder({
    workers,
    sealer: new Sealer(Sealer.newKey()),
    importContext: TlsContext.forImport(),
    maxBody: 1 << 20,
    metrics,
    serve: (conn, unplaced) => {
      answered.push({ conn: conn.info.connId, unplaced });
      conn.close(false);
    },
  });
  const fakes: FakeWorker[] = [];
  for (const [i, spec] of specs.entries()) {
    const [ours, theirs] = await seqpacketPair(dir);
    const pid = 900_000 + i;
    const fake = new FakeWorker(pid, theirs, spec.adopts);
    workers.register(new ControlChannel(ours, { onMessage() {}, onClose() {} }), {
      pid,
      uid: processUid(),
    }, { name: spec.name, routes: [`/${spec.name}`], pid });
    fakes.push(fake);
  }
  await waitUntil(() => workers.registered() === specs.length, { what: "the workers to register" });
  return { workers, forwarder, fakes, answered, metrics };
}

Deno.test({
  name: "forwarder: a hand-back is confirmed and forwarded unopened, one handoff more",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-forwarder-" });
    const g = await gateway(dir, [{ name: "a", adopts: true }, { name: "b", adopts: true }]);
    try {
      const [a, b] = g.fakes;
      assert.equal(await a.handBack(11, "/b?x=1"), "confirmed");
      await waitUntil(() => b.handed.length === 1, { what: "b to be handed it" });
      assert.deepEqual(b.handed[0], { conn: 11, handoffs: 3, ok: true });
      assert.equal(a.handed.length, 0);
    } finally {
      g.workers.close();
      for (const f of g.fakes) f.channel.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "forwarder: refused by the route's worker, it goes to its other worker, else back to the worker it came from",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-forwarder-" });
    const g = await gateway(dir, [
      { name: "a", adopts: true },
      { name: "b", adopts: false },
      { name: "b", adopts: true },
    ]);
    try {
      const [a, b1, b2] = g.fakes;
      // Two hand-backs: whichever b worker is picked first, the one that
      // refuses passes it on to the other.
      assert.equal(await a.handBack(21, "/b"), "confirmed");
      assert.equal(await a.handBack(22, "/b"), "confirmed");
      await waitUntil(() => b2.handed.filter((h) => h.ok).length === 2, {
        what: `b2 to take both: ${JSON.stringify([a.handed, b1.handed, b2.handed])}`,
      });
      assert.ok(b1.handed.length >= 1, "b1 was offered at least one and refused");
      assert.ok(b1.handed.every((h) => !h.ok));
      // Now every b worker refuses: it goes back to a, which answers it.
      b2.adopts = false;
      assert.equal(await a.handBack(23, "/b"), "confirmed");
      await waitUntil(() => a.handed.some((h) => h.conn === 23), { what: "a to get it back" });
      assert.equal(a.handed.find((h) => h.conn === 23)!.ok, true);
    } finally {
      g.workers.close();
      for (const f of g.fakes) f.channel.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "forwarder: a hand-back for a route nobody serves is refused to its sender",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-forwarder-" });
    const g = await gateway(dir, [{ name: "a", adopts: true }]);
    try {
      const [a] = g.fakes;
      assert.equal(await a.handBack(31, "/nobody"), "refused by the receiver");
      assert.equal(a.handed.length, 0, "nothing comes back as a new handoff");
    } finally {
      g.workers.close();
      for (const f of g.fakes) f.channel.close();
      await EventLoop.instance().close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
