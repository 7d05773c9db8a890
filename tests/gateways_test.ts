// handoff-mode: both
/**
 * Every core of a host (issue 12): `--gateways N` runs a primary gateway and
 * N-1 satellites sharing the public port (SO_REUSEPORT); a satellite
 * handshakes and hands connections straight to the workers. TLS session
 * tickets issued by any gateway resume on every other (one key ring, from the
 * primary), keys rotate on a schedule with the previous one still accepted,
 * and gateways given the same key file (several hosts) resume each other's
 * tickets. Real launcher, gateways, workers and OpenSSL clients.
 */

import assert from "node:assert/strict";
import { Launched } from "./support/launched.ts";
import { connect } from "./support/s_client.ts";
import { Client, System } from "./support/system.ts";
import { waitUntil } from "./support/wait.ts";

const ROUTES = ["/sum?a=1&b=2", "/product?a=3&b=4", "/sum?a=5&b=6"];
const RESULTS = ["3", "12", "11"];

Deno.test("--gateways 2: both gateways take connections; tickets from either resume on both", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-gateways-" });
  const sys = await Launched.start("start", ["--gateways", "2"], ["sum", "product"]);
  try {
    await sys.waitLine(/^gateway\.2\s+\| .*joined the primary gateway/);
    for (const version of ["1.3", "1.2"] as const) {
      const sess = `${dir}/sess-${version}`;
      const first = await connect(sys.port, { version, sessOut: sess }, ROUTES);
      assert.equal(first.code, 0, first.stderr);
      assert.deepEqual(first.bodies.map((b) => b.result), RESULTS);
      for (let i = 0; i < 12; i++) {
        const again = await connect(sys.port, { version, sessIn: sess }, ROUTES);
        assert.equal(
          again.reused,
          true,
          `TLS ${version} resumption ${i}: ${again.stdout.slice(0, 400)}`,
        );
        assert.deepEqual(again.bodies.map((b) => b.result), RESULTS);
      }
    }
    // Plain keep-alive clients, alternating routes, on whichever gateway.
    for (let i = 0; i < 12; i++) {
      const c = await Client.connect(sys.port);
      for (let k = 0; k < 4; k++) {
        const op = k % 2 ? "product" : "sum";
        const res = await c.get(`/${op}?a=${i}&b=${k}`);
        assert.equal(res.status, 200, res.body);
        assert.equal(JSON.parse(res.body).result, String(op === "sum" ? i + k : i * k));
      }
      c.close();
    }
    // Both gateways did handshakes (the kernel spread 38 connections).
    const by = (name: string) =>
      sys.lines.filter((l) => new RegExp(`^${name}\\s+\\|.*TLS handshake complete`).test(l)).length;
    // The primary's /metrics adds the satellite's counts in (reported every
    // second); log lines are written in batches too.
    await waitUntil(
      async () =>
        by("gateway") + by("gateway\\.2") >= 38 &&
        await sys.metric("hotpotato_tls_handshakes_total") >= 38,
      { what: "38 handshakes in the logs and in /metrics" },
    );
    assert.ok(
      by("gateway") > 0 && by("gateway\\.2") > 0,
      `${by("gateway")} / ${by("gateway\\.2")}`,
    );
    assert.equal(by("gateway") + by("gateway\\.2"), 38);
    // Connection ids are unique across gateways (issue 19): no id in both logs.
    const ids = (name: string) =>
      sys.lines.flatMap((l) =>
        new RegExp(`^${name}\\s+\\|.*TLS handshake complete: conn (\\d+) `).exec(l)?.[1] ?? []
      );
    const primaryIds = new Set(ids("gateway"));
    assert.equal(primaryIds.size + ids("gateway\\.2").length, 38);
    assert.deepEqual(ids("gateway\\.2").filter((id) => primaryIds.has(id)), [], "shared conn ids");
    assert.equal(await sys.metric("hotpotato_tls_handshakes_total"), 38);
    assert.equal(await sys.metric("hotpotato_tls_handshakes_total", 'resumed="true"'), 24);
  } finally {
    await sys.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ticket keys rotate: the previous key is accepted one period more, then not", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-rotation-" });
  const sys = await System.start({ gatewayArgs: ["--ticket-key-rotation", "2"] });
  try {
    const sess = `${dir}/sess`;
    const rotated = /session-ticket key rotated/;
    const rotations = async () => {
      await sys.gateway.settle(); // every line logged so far
      return sys.gateway.count(rotated);
    };
    const before = await rotations();
    const first = await connect(sys.port, { version: "1.3", sessOut: sess }, ROUTES);
    assert.equal(first.code, 0, first.stderr);
    const issued = await rotations(); // rotations counted from here came after the ticket
    // A rotation since (before the ticket at the earliest): its key is the
    // previous one (or still the current one), accepted.
    await waitUntil(() => sys.gateway.count(rotated) > before, {
      what: "a key rotation (every 2 s)",
      timeoutMs: 5000,
    });
    assert.equal((await connect(sys.port, { version: "1.3", sessIn: sess }, ROUTES)).reused, true);
    // Two rotations after the ticket its key is gone: a full handshake, answers as usual.
    await waitUntil(() => sys.gateway.count(rotated) >= issued + 2, {
      what: "two key rotations after the ticket (every 2 s)",
      timeoutMs: 8000,
    });
    const late = await connect(sys.port, { version: "1.3", sessIn: sess }, ROUTES);
    assert.equal(late.reused, false);
    assert.deepEqual(late.bodies.map((b) => b.result), RESULTS);
    await sys.gateway.waitFor(/session-ticket key rotated/);
  } finally {
    await sys.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gateways given the same --ticket-key-file resume each other's tickets (several hosts)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-keyfile-" });
  const keyFile = `${dir}/ticket.key`;
  await Deno.writeFile(keyFile, crypto.getRandomValues(new Uint8Array(32)), { mode: 0o600 });
  const args = ["--ticket-key-file", keyFile];
  // The second host reads it through a symlink, as a Kubernetes secret volume has it.
  await Deno.symlink(keyFile, `${dir}/linked.key`);
  const a = await System.start({ gatewayArgs: args });
  const b = await System.start({ gatewayArgs: ["--ticket-key-file", `${dir}/linked.key`] });
  const other = await System.start(); // keys of its own
  try {
    for (const version of ["1.3", "1.2"] as const) {
      const sess = `${dir}/sess-${version}`;
      assert.equal((await connect(a.port, { version, sessOut: sess }, ROUTES)).code, 0);
      const onB = await connect(b.port, { version, sessIn: sess }, ROUTES);
      assert.equal(onB.reused, true, `TLS ${version} on the second host`);
      assert.deepEqual(onB.bodies.map((x) => x.result), RESULTS);
      const onOther = await connect(other.port, { version, sessIn: sess }, ROUTES);
      assert.equal(onOther.reused, false, "a gateway with other keys does not resume it");
      assert.deepEqual(onOther.bodies.map((x) => x.result), RESULTS);
    }
    // A key file others may read is refused, with the reason.
    await Deno.chmod(keyFile, 0o644);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--allow-ffi",
        "--allow-env",
        "gateway.ts",
        "--port",
        "0",
        "--admin-port",
        "off",
        "--control",
        `${dir}/c.sock`,
        ...args,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 1);
    assert.match(new TextDecoder().decode(out.stderr), /ticket\.key.*(EPERM|not permitted)/);
  } finally {
    await Promise.all([a.stop(), b.stop(), other.stop()]);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--gateways 2: a reload and a gateway upgrade under load; the satellite joins the new primary", async () => {
  const sys = await Launched.start("start", ["--gateways", "2"], ["sum", "product"]);
  let running = true;
  const errors: string[] = [];
  let requests = 0;
  // Four keep-alive clients alternating routes, reconnecting never.
  const loops = Array.from({ length: 4 }, async (_, id) => {
    const c = await Client.connect(sys.port);
    try {
      for (let i = 0; running; i++) {
        const op = i % 2 ? "product" : "sum";
        const res = await c.get(`/${op}?a=${id}&b=${i}`);
        const want = String(op === "sum" ? id + i : id * i);
        if (res.status !== 200 || JSON.parse(res.body).result !== want) {
          errors.push(`${res.status} ${res.body}`);
        }
        requests++;
      }
    } catch (e) {
      errors.push(String(e));
    } finally {
      c.close();
    }
  });
  try {
    await sys.waitLine(/^gateway\.2\s+\| .*joined the primary gateway/);
    const served = (n: number, what: string) =>
      waitUntil(() => errors.length > 0 || requests >= n, {
        what: () => `${what} (${requests} requests)`,
      });
    await served(20, "the loops under way");
    assert.match((await sys.reload()).join("\n"), /reload 2: done/);
    const mark = sys.lines.length;
    Deno.kill(await sys.launcherPid(), "SIGUSR1");
    const up = await sys.waitLine(
      /gateway upgrade: done in \d+ ms; pid (\d+) serves/,
      mark,
      30_000,
    );
    await sys.waitLine(
      new RegExp(`^gateway\\.2\\s+\\| .*joined the primary gateway pid ${up[1]}`),
      mark,
    );
    await served(Math.max(101, requests + 20), "load through the new primary");
    running = false;
    await Promise.all(loops);
    assert.deepEqual(errors, []);
    assert.ok(requests > 100, `${requests} requests`);
    // New connections, on either gateway, still work.
    for (let i = 0; i < 6; i++) {
      const c = await Client.connect(sys.port);
      assert.equal((await c.get(`/product?a=${i}&b=3`)).status, 200);
      c.close();
    }
  } finally {
    running = false;
    await Promise.all(loops);
    await sys.stop();
  }
});
