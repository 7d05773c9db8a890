// handoff-mode: both
/**
 * A new gateway takes over from a running one (issue 13, gateway upgrade):
 * it gets the listening sockets over the control socket (SCM_RIGHTS), the
 * workers register with it, and the old one finishes and exits. No
 * connection attempt is refused or reset during the switch, connections held
 * by workers are not disturbed, and one the old gateway held idle moves on.
 * TLS session tickets the old gateway issued resume on the new one.
 */

import assert from "node:assert/strict";
import { Client, HANDOFF_MODE, Proc, System } from "./support/system.ts";
import { keyForTheGateways, Launched } from "./support/launched.ts";
import { connect } from "./support/s_client.ts";
import { waitUntil } from "./support/wait.ts";
import { projectRoot } from "../ffi/paths.ts";

/** Open connections as fast as `parallel` loops can (handshake, one
 * request, close) until stopped; every failure is kept. */
function opener(port: number, parallel: number) {
  let running = true;
  let opened = 0;
  const errors: string[] = [];
  const loops = Array.from({ length: parallel }, async (_, k) => {
    for (let i = 0; running; i++) {
      try {
        const c = await Client.connect(port);
        const res = await c.get(`/sum?a=${k}&b=${i}`);
        c.close();
        if (res.status !== 200 || JSON.parse(res.body).result !== String(k + i)) {
          errors.push(`status ${res.status}: ${res.body}`);
        }
        opened++;
      } catch (e) {
        errors.push(String(e));
      }
    }
  });
  return {
    get opened() {
      return opened;
    },
    /** Resolves once `n` more connections have been opened (or, with
     * `tried`, attempted: answered or failed) from now on. */
    more: (n: number, tried = false) => {
      const count = () => opened + (tried ? errors.length : 0);
      const target = count() + n;
      return waitUntil(() => count() >= target, {
        what: () =>
          `${n} more connections of the storm (${opened} opened, ${errors.length} failed)`,
        timeoutMs: 15_000,
      });
    },
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return errors;
    },
  };
}

Deno.test(`a new gateway takes over twice under a connection storm: nothing refused (${HANDOFF_MODE} mode)`, async () => {
  const sys = await System.start();
  const clients: Client[] = [];
  const gateways: Proc[] = [sys.gateway];
  try {
    // Connections held by the workers, and one held idle by the gateway
    // (handshake done, no request yet).
    const holders: string[] = [];
    for (let i = 0; i < 6; i++) {
      const c = await Client.connect(sys.port);
      clients.push(c);
      const res = await c.get(i % 2 ? "/product?a=1&b=2" : "/sum?a=1&b=2");
      holders.push(res.headers.get("x-hotpotato-worker")!);
    }
    const idle = await Client.connect(sys.port);
    const storm = opener(sys.port, 4);
    for (let round = 0; round < 2; round++) {
      await storm.more(10); // the storm is on before the takeover
      const old = gateways[gateways.length - 1];
      const heir = new Proc("gateway", "gateway.ts", [
        "--port",
        "0",
        "--admin-port",
        "0",
        "--control",
        sys.control,
        "--takeover",
        "on",
      ]);
      gateways.push(heir);
      sys.gateway = heir; // stopped by sys.stop()
      await heir.waitFor(/accepting; 2 of 2 worker\(s\) registered/);
      const status = await old.child.status; // the old one retires and exits
      assert.equal(status.code, 0, old.lines.join("\n"));
      assert.match(old.lines.join("\n"), /retired in \d+ ms \(0 connection\(s\) cut/);
    }
    await storm.more(10); // and goes on after it
    const errors = await storm.stop();
    assert.deepEqual(errors, [], `${errors.length} of ${storm.opened + errors.length} failed`);
    assert.ok(storm.opened > 20, `only ${storm.opened} connections opened`);
    // Held connections kept their workers and their one handshake.
    for (const [i, c] of clients.entries()) {
      const res = await c.get(i % 2 ? "/product?a=2&b=3" : "/sum?a=2&b=3");
      assert.equal(res.status, 200, res.body);
      assert.equal(res.headers.get("x-hotpotato-worker"), holders[i]);
    }
    // The connection the first gateway held idle moved on with it.
    const late = await idle.get("/sum?a=40&b=2");
    assert.equal(late.status, 200, late.body);
    assert.equal(JSON.parse(late.body).result, "42");
    idle.close();
    // Routes still change worker on held connections.
    assert.equal((await clients[0].get("/product?a=6&b=7")).status, 200);
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
    await Promise.all(gateways.map((g) => g.stop()));
  }
});

Deno.test("the launcher upgrades its gateway on SIGUSR1; a failing one leaves the old serving", async () => {
  // The gateways read a copy of the certificate, which the test breaks later.
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-upgrade-" });
  const certs = `${projectRoot}/.local/certs`;
  await Deno.copyFile(`${certs}/cert.pem`, `${dir}/cert.pem`);
  await Deno.copyFile(`${certs}/key.pem`, `${dir}/key.pem`);
  await keyForTheGateways(`${dir}/key.pem`);
  const sys = await Launched.start("start", [], ["sum", "product"], {
    HOTPOTATO_CERT: `${dir}/cert.pem`,
    HOTPOTATO_KEY: `${dir}/key.pem`,
  });
  const client = await Client.connect(sys.port);
  try {
    assert.equal((await client.get("/sum?a=1&b=2")).status, 200);
    const storm = opener(sys.port, 2);
    let mark = sys.lines.length;
    Deno.kill(await sys.launcherPid(), "SIGUSR1");
    await sys.waitLine(/gateway upgrade: done in \d+ ms; pid (\d+) serves/, mark, 30_000);
    await storm.more(10); // connections to the new gateway
    assert.deepEqual(await storm.stop(), []);
    const res = await client.get("/product?a=6&b=7");
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).result, "42");
    // Reloads still work through the new gateway's admin port (same port, same token).
    assert.match((await sys.reload()).join("\n"), /reload 2: done/);
    assert.equal((await client.get("/sum?a=1&b=1")).status, 200);
    // A new gateway that cannot start (a broken certificate) changes nothing.
    await Deno.writeTextFile(`${dir}/cert.pem`, "not a certificate\n");
    mark = sys.lines.length;
    Deno.kill(await sys.launcherPid(), "SIGUSR1");
    await sys.waitLine(
      /gateway upgrade failed: pid \d+ exited with code 1; pid \d+ keeps serving/,
      mark,
    );
    assert.equal((await client.get("/sum?a=2&b=2")).status, 200);
    const fresh = await Client.connect(sys.port);
    assert.equal((await fresh.get("/product?a=2&b=2")).status, 200);
    fresh.close();
  } finally {
    client.close();
    await sys.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(`a successor killed during the takeover: the old gateway serves on (${HANDOFF_MODE} mode)`, async () => {
  const sys = await System.start();
  const gateways: Proc[] = [sys.gateway];
  const held = await Client.connect(sys.port);
  try {
    assert.equal((await held.get("/sum?a=1&b=2")).status, 200);
    const storm = opener(sys.port, 2);
    const heir = new Proc("gateway", "gateway.ts", [
      "--port",
      "0",
      "--admin-port",
      "off",
      "--control",
      sys.control,
      "--takeover",
      "on",
    ]);
    gateways.push(heir);
    await heir.waitFor(/taking over from gateway pid/); // it holds the control path now
    heir.child.kill("SIGKILL");
    await heir.child.status;
    await sys.gateway.waitFor(/went away before taking everything over; this gateway serves on/);
    await storm.more(10, true); // the storm goes on against the old gateway
    const errors = await storm.stop();
    // Connections the successor had accepted die with it (the kill); none other fails.
    // The workers had moved to it: they register with the old gateway again, and
    // until they have, a new connection is answered 503 "no worker ... right now"
    // with Retry-After (a clean answer on a connection that stays open; how many
    // depends on the machine's load, so only their kind is checked).
    const answered = errors.filter((e) => /^status 503: .*no worker for \/sum right now/.test(e));
    const lost = errors.filter((e) => !answered.includes(e));
    assert.ok(lost.length <= 4, lost.join("\n"));
    // The old gateway still serves, new connections and held ones alike.
    const c = await Client.connect(sys.port);
    assert.equal((await c.get("/product?a=6&b=7")).status, 200);
    c.close();
    assert.equal((await held.get("/product?a=2&b=3")).status, 200);
    // It holds the control path again: a new worker registers with it.
    const hello = await sys.addWorker("hello", "examples/hello.ts");
    assert.ok(hello);
    const h = await Client.connect(sys.port);
    assert.equal((await h.get("/hello?name=x")).status, 200);
    h.close();
  } finally {
    held.close();
    await sys.stop();
    await Promise.all(gateways.map((g) => g.stop()));
  }
});

/** A gateway taking over from the one running on `sys`'s control socket
 * (stopped by `sys.stop()` from now on). */
function successor(sys: System, args: string[] = []): Proc {
  const heir = new Proc("gateway", "gateway.ts", [
    "--port",
    "0",
    "--admin-port",
    "off",
    "--control",
    sys.control,
    "--takeover",
    "on",
    ...args,
  ]);
  sys.gateway = heir;
  return heir;
}

const ROUTES = ["/sum?a=1&b=2", "/product?a=3&b=4"];

Deno.test(`tickets the old gateway issued resume on the gateway that took over (${HANDOFF_MODE} mode)`, async () => {
  const sys = await System.start();
  const old = sys.gateway;
  try {
    for (const version of ["1.3", "1.2"] as const) {
      const first = await connect(sys.port, { version, sessOut: `${sys.dir}/${version}` }, ROUTES);
      assert.equal(first.code, 0, first.stderr);
      assert.equal(first.reused, false);
    }
    const heir = successor(sys);
    await heir.waitFor(/accepting; 2 of 2 worker\(s\) registered/);
    assert.equal((await old.child.status).code, 0, old.lines.join("\n"));
    for (const version of ["1.3", "1.2"] as const) {
      const again = await connect(sys.port, { version, sessIn: `${sys.dir}/${version}` }, ROUTES);
      assert.equal(
        again.reused,
        true,
        `TLS ${version} not resumed:\n${again.stdout.slice(0, 600)}`,
      );
      assert.equal(again.protocol, `TLSv${version}`);
      assert.deepEqual(again.bodies.map((b) => b.result), ["3", "12"]);
    }
    await heir.settle();
    assert.equal(heir.count(/unexpected message type/), 0, heir.lines.join("\n"));
  } finally {
    await sys.stop();
    await old.stop();
  }
});

Deno.test(`a ticket key the old gateway rotates to while it finishes is the successor's too (${HANDOFF_MODE} mode)`, async () => {
  // The old gateway rotates every 2 s and finishes a handshake in progress
  // (a connection it accepted before the takeover, silent until then) after
  // a rotation that came once the successor accepted.
  const sys = await System.start({
    gatewayArgs: ["--ticket-key-rotation", "2", "--handshake-timeout", "30"],
  });
  const old = sys.gateway;
  const stalled = await Deno.connect({ hostname: "127.0.0.1", port: sys.port });
  const relay = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const sess = `${sys.dir}/late`;
  try {
    // The old gateway accepts it (a handshake in progress there).
    await waitUntil(async () => (await old.stats()).accepted === 1, {
      what: "the old gateway to accept the stalled connection",
    });
    const heir = successor(sys);
    await heir.waitFor(/accepting; 2 of 2 worker\(s\) registered/);
    await old.settle();
    const rotated = old.count(/session-ticket key rotated/);
    await waitUntil(() => old.count(/session-ticket key rotated/) > rotated, {
      what: "a key rotation while the old gateway finishes (every 2 s)",
      timeoutMs: 5000,
    });
    assert.equal(old.exited, false, "the old gateway waits for the handshake in progress");
    // An OpenSSL client finishes that handshake (through a relay) and gets
    // a ticket sealed with the old gateway's new key.
    const piped = relay.accept().then((client) =>
      Promise.all([
        client.readable.pipeTo(stalled.writable),
        stalled.readable.pipeTo(client.writable),
      ]).catch(() => {})
    );
    const late = await connect((relay.addr as Deno.NetAddr).port, {
      version: "1.3",
      sessOut: sess,
    }, ROUTES);
    assert.equal(late.code, 0, late.stderr);
    assert.deepEqual(late.bodies.map((b) => b.result), ["3", "12"]);
    await piped;
    assert.equal((await old.child.status).code, 0, old.lines.join("\n"));
    const again = await connect(sys.port, { version: "1.3", sessIn: sess }, ROUTES);
    assert.equal(again.reused, true, `not resumed:\n${again.stdout.slice(0, 600)}`);
    assert.deepEqual(again.bodies.map((b) => b.result), ["3", "12"]);
  } finally {
    relay.close();
    try {
      stalled.close();
    } catch {
      // closed by the relay
    }
    await sys.stop();
    await old.stop();
  }
});
