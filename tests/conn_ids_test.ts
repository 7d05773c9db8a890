/**
 * Connection ids are unique across gateways (issue 19): each gateway's
 * handshaker numbers its connections from a random 32-bit base, so two
 * gateways' ids (a primary and a satellite, a gateway and its successor,
 * gateways on two hosts) do not overlap. The scheme itself (ConnIds), and
 * two real handshakers doing real TLS handshakes.
 */

import assert from "node:assert/strict";
import { projectRoot } from "../ffi/paths.ts";
import { localPort, tcpListen } from "../ffi/shim.ts";
import { TlsContext } from "../ffi/wolfssl.ts";
import { EventLoop } from "../src/connection/event_loop.ts";
import { Listener } from "../src/connection/listener.ts";
import { GatewayMetrics } from "../src/gateway/gateway_metrics.ts";
import { ConnIds, Handshaker } from "../src/gateway/handshaker.ts";
import { CA_CERT } from "./support/system.ts";

Deno.test("ConnIds: consecutive from the base, u32, wrapping past 2^32 - 1 to 1 (never 0)", () => {
  const ids = new ConnIds(41);
  assert.deepEqual([ids.next(), ids.next(), ids.next()], [41, 42, 43]);
  const top = new ConnIds(0xfffffffe);
  assert.deepEqual([top.next(), top.next(), top.next(), top.next()], [
    0xfffffffe,
    0xffffffff,
    1,
    2,
  ]);
  assert.equal(new ConnIds(0).next(), 1);
  // A base out of range is taken modulo 2^32, as the HANDOFF's u32 would.
  assert.equal(new ConnIds(2 ** 32 + 5).next(), 5);
});

Deno.test("two gateways' ids do not overlap, over 20,000 connections each", () => {
  // The odds of an overlap here are (20,000 + 20,000) / 2^32, about 1 in
  // 100,000 runs (see ConnIds); anything systematic (a shared base, a
  // counter from 1) fails every time.
  const N = 20_000;
  const a = new ConnIds(), b = new ConnIds();
  const seen = new Set<number>();
  for (let i = 0; i < N; i++) {
    const id = a.next();
    assert.ok(Number.isInteger(id) && id > 0 && id <= 0xffffffff, String(id));
    seen.add(id);
  }
  assert.equal(seen.size, N, "no repeat within one gateway");
  for (let i = 0; i < N; i++) {
    const id = b.next();
    assert.ok(!seen.has(id), `id ${id} given by both gateways`);
  }
  // The bases are drawn afresh for each gateway, over the whole u32 range
  // (8 bases all below 2^24 by chance: 1 in 2^64).
  const bases = Array.from({ length: 8 }, () => new ConnIds().next());
  assert.ok(bases.some((x) => x >= 2 ** 24), bases.join(" "));
});

Deno.test({
  name: "two real handshakers: each numbers its connections in a row, the two sets disjoint",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const ca = await Deno.readTextFile(CA_CERT);
    const context = TlsContext.server({
      certFile: `${projectRoot}/.local/certs/cert.pem`,
      keyFile: `${projectRoot}/.local/certs/key.pem`,
    });
    const gateways = [1, 2].map((gatewayId) => {
      const ids: number[] = [];
      let handshaken = Promise.withResolvers<void>();
      const handshaker = new Handshaker({
        context,
        gatewayId,
        handshakeTimeoutMs: 5000,
        metrics: new GatewayMetrics(),
        ready: (conn) => {
          ids.push(conn.info.connId);
          assert.equal(conn.info.gatewayId, gatewayId);
          conn.close();
          handshaken.resolve();
          return Promise.resolve();
        },
      });
      const listener = new Listener(
        tcpListen("127.0.0.1", 0),
        "clients",
        (c) => handshaker.accept(c),
      );
      const connect = async () => {
        handshaken = Promise.withResolvers<void>();
        const client = await Deno.connectTls({
          hostname: "127.0.0.1",
          port: localPort(listener.fd),
          caCerts: [ca],
        });
        try {
          await client.handshake();
          await handshaken.promise;
        } finally {
          client.close();
        }
      };
      return { ids, listener, connect };
    });
    try {
      for (let i = 0; i < 4; i++) {
        for (const g of gateways) await g.connect();
      }
      const [a, b] = gateways.map((g) => g.ids);
      for (const ids of [a, b]) {
        assert.equal(ids.length, 4);
        const inARow = new ConnIds(ids[0]);
        assert.deepEqual(ids, ids.map(() => inARow.next()), ids.join(" "));
      }
      assert.deepEqual(a.filter((id) => b.includes(id)), [], `${a} / ${b}`);
    } finally {
      for (const g of gateways) g.listener.close();
      context.close();
      await EventLoop.instance().close();
    }
  },
});
