// handoff-mode: both
/**
 * Many hosts behind HAProxy (issue 12), on this machine: two hosts in
 * network namespaces (a veth pair each into a bridge on a private /24,
 * made by the test and removed after), each running `deno task start` with
 * `--proxy-protocol on` and one shared session-ticket key file; HAProxy in
 * TCP mode on loopback with `send-proxy-v2` and health checks of /healthz.
 * Clients (openssl s_client, resuming their TLS session on every new
 * connection) alternate sum and product through HAProxy; one host is killed:
 * its clients go to the other host and resume their sessions there; the host
 * comes back and takes connections again; no answer is ever wrong. Needs root
 * (network namespaces); CI runs as root.
 */

import assert from "node:assert/strict";
import { processUid } from "../ffi/shim.ts";
import { Cluster } from "../scripts/cluster.ts";
import { connect } from "./support/s_client.ts";
import { waitUntil } from "./support/wait.ts";

const root = processUid() === 0;
if (!root) {
  console.log("cluster_test: not root: the cluster test is ignored (it needs network namespaces)");
}

interface Tally {
  connections: number;
  reused: number;
  /** Connections cut before every answer came (a host killed); the client connects again. */
  cut: number;
  wrong: string[];
}

/** A client: one connection after another through HAProxy, each resuming
 * the session of the one before, four alternating requests each. */
function client(id: number, port: number, dir: string, since: () => number) {
  let running = true;
  const tally: Tally = { connections: 0, reused: 0, cut: 0, wrong: [] };
  const log: { at: number; reused: boolean }[] = [];
  const sess = `${dir}/client-${id}.sess`;
  const done = (async () => {
    let first = true;
    for (let n = 0; running; n++) {
      const paths = [0, 1, 2, 3].map((k) =>
        k % 2 ? `/product?a=${id}&b=${n + k}` : `/sum?a=${id}&b=${n + k}`
      );
      const out = await connect(port, {
        version: "1.3",
        ...(first ? { sessOut: sess } : { sessIn: sess, sessOut: sess }),
      }, paths);
      first = false;
      tally.connections++;
      if (out.reused) tally.reused++;
      log.push({ at: since(), reused: out.reused });
      out.bodies.forEach((b, k) => {
        const want = k % 2 ? id * (n + k) : id + n + k;
        if (b.result !== String(want)) tally.wrong.push(`${paths[k]} -> ${b.result}`);
      });
      if (out.bodies.length < paths.length) tally.cut++;
    }
  })();
  return {
    tally,
    log,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

Deno.test({
  name: "cluster: HAProxy in front of two hosts; a host dies, its clients resume on the other",
  ignore: !root,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const port = 19000 + (Deno.pid % 1000);
    const cluster = await Cluster.up({ hosts: 2, port });
    const [h1, h2] = cluster.hosts;
    const t0 = Date.now();
    const since = () => Date.now() - t0;
    const clients = Array.from({ length: 4 }, (_, i) => client(i + 1, port, cluster.dir, since));
    try {
      let before1 = 0, before2 = 0;
      await waitUntil(async () => {
        before1 = await cluster.metric(h1, "hotpotato_tls_handshakes_total");
        before2 = await cluster.metric(h2, "hotpotato_tls_handshakes_total");
        return before1 > 0 && before2 > 0;
      }, { what: () => `both hosts to serve (${before1} / ${before2} handshakes)`, everyMs: 100 });
      // Host 1 dies: gateway and workers at once.
      const resumed2 = await cluster.metric(h2, "hotpotato_tls_handshakes_total", 'resumed="true"');
      const killedAt = since();
      await cluster.killHost(h1);
      // Connections from 1.5 s after the kill on (HAProxy has seen host 1 go).
      const afterKill = () => clients.flatMap((c) => c.log.filter((e) => e.at > killedAt + 1500));
      await waitUntil(() => afterKill().length >= 4, {
        what: () => `4 connections after the kill (${afterKill().length})`,
        timeoutMs: 15_000,
      });
      const resumedAfter = await cluster.metric(
        h2,
        "hotpotato_tls_handshakes_total",
        'resumed="true"',
      );
      // Every connection after the switch resumed its session on host 2.
      const after = afterKill();
      assert.ok(after.length >= 4, `connections after the kill: ${after.length}`);
      assert.ok(after.every((e) => e.reused), JSON.stringify(after));
      assert.ok(
        resumedAfter - resumed2 >= after.length,
        `resumed on host 2: ${resumedAfter - resumed2}, connections: ${after.length}`,
      );
      // Host 1 comes back and takes new connections again.
      await cluster.startHost(h1);
      await waitUntil(async () => await cluster.metric(h1, "hotpotato_tls_handshakes_total") > 0, {
        what: "host 1 to take connections again",
        everyMs: 250,
      });
    } finally {
      await Promise.all(clients.map((c) => c.stop()));
      await cluster.down();
    }
    const total = clients.reduce(
      (t, c) => ({
        connections: t.connections + c.tally.connections,
        reused: t.reused + c.tally.reused,
        cut: t.cut + c.tally.cut,
        wrong: [...t.wrong, ...c.tally.wrong],
      }),
      { connections: 0, reused: 0, cut: 0, wrong: [] as string[] },
    );
    console.log(
      `  ${total.connections} connections, ${total.reused} resumed, ${total.cut} cut by the kill (their client connected again)`,
    );
    assert.deepEqual(total.wrong, [], "no wrong answer");
    assert.ok(total.cut <= 4, `at most one connection per client cut: ${total.cut}`);
  },
});
