/**
 * Faults: a worker killed under load, the launcher bringing it back, the
 * gateway restarted while workers hold connections. Only what the failed
 * process held is affected; everyone else keeps being served.
 */

import { forEachLine } from "../src/operations/lines.ts";
import assert from "node:assert/strict";
import { projectRoot } from "../ffi/paths.ts";
import { Client, HANDOFF_MODE, type HttpResponse, Proc, System } from "./support/system.ts";

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

interface Tally {
  ok: number;
  unavailable: number;
  retryAfter: boolean;
  dropped: number;
  wrong: string[];
}

/** Keep requesting `ops` in turn until `until()`, reconnecting when dropped. */
async function loadClient(port: number, ops: string[], until: () => boolean): Promise<Tally> {
  const t: Tally = { ok: 0, unavailable: 0, retryAfter: false, dropped: 0, wrong: [] };
  let client: Client | undefined;
  for (let i = 0; !until(); i++) {
    const op = ops[i % ops.length];
    let res: HttpResponse;
    try {
      client ??= await Client.connect(port);
      res = await client.get(`/${op}?a=${i}&b=2`);
    } catch {
      t.dropped++;
      client?.close();
      client = undefined;
      await sleep(20);
      continue;
    }
    if (res.status === 503) {
      t.unavailable++;
      t.retryAfter ||= res.headers.get("retry-after") === "1";
      await sleep(20);
    } else if (res.status === 200) {
      const want = op === "sum" ? i + 2 : i * 2;
      if (JSON.parse(res.body).result === String(want)) t.ok++;
      else t.wrong.push(res.body);
    } else {
      t.wrong.push(`${res.status} ${res.body}`);
    }
  }
  client?.close();
  return t;
}

Deno.test("a worker killed under load: its route answers 503 until it is back, others unaffected", async () => {
  const sys = await System.start();
  let stop = false;
  try {
    const sumOnly = Array.from({ length: 8 }, () => loadClient(sys.port, ["sum"], () => stop));
    const mixed = Array.from(
      { length: 12 },
      () => loadClient(sys.port, ["sum", "product"], () => stop),
    );
    await sleep(500);
    const product = sys.worker("product");
    await product.stop("SIGKILL");
    sys.workers = sys.workers.filter((w) => w !== product);
    await sleep(700); // the route is vacant now: 503 with Retry-After
    await sys.addWorker("product", "workers/product.ts"); // what the launcher does
    await sleep(700);
    stop = true;
    const steady = await Promise.all(sumOnly);
    const moving = await Promise.all(mixed);
    for (const t of steady) {
      assert.deepEqual(t.wrong, []);
      assert.equal(t.dropped, 0, "connections held by sum are never dropped");
      assert.equal(t.unavailable, 0);
      assert.ok(t.ok > 10);
    }
    for (const t of moving) assert.deepEqual(t.wrong, []);
    assert.ok(moving.some((t) => t.unavailable > 0 && t.retryAfter), "503 + Retry-After seen");
    assert.ok(moving.every((t) => t.ok > 10));
    // After the restart every route works again on a new connection.
    const client = await Client.connect(sys.port);
    assert.equal((await client.get("/product?a=4&b=5")).status, 200);
    client.close();
    assert.equal(sys.gateway.exited, false);
  } finally {
    stop = true;
    await sys.stop();
  }
});

Deno.test("the gateway restarted: workers keep serving, move directly or answer 503, re-register", async () => {
  const sys = await System.start();
  const held = await Client.connect(sys.port);
  try {
    assert.equal((await held.get("/sum?a=1&b=1")).status, 200); // now held by sum
    await sys.gateway.stop();
    // The worker keeps serving what it holds.
    assert.equal(JSON.parse((await held.get("/sum?a=2&b=2")).body).result, "4");
    const moved = await held.get("/product?a=1&b=1");
    if (HANDOFF_MODE === "direct") {
      // Workers hand it to each other without the gateway.
      assert.equal(moved.status, 200, moved.body);
      assert.equal(JSON.parse(moved.body).result, "1");
    } else {
      // It cannot pass the connection on: a 503, and the connection stays usable.
      assert.equal(moved.status, 503);
      assert.equal(moved.headers.get("retry-after"), "1");
      assert.notEqual(moved.headers.get("connection"), "close");
    }
    assert.equal(JSON.parse((await held.get("/sum?a=3&b=3")).body).result, "6");
    // A new gateway on the same port and socket: the workers come back by themselves.
    sys.gateway = new Proc("gateway", "gateway.ts", [
      "--admin-port",
      "0",
      "--port",
      String(sys.port),
      "--control",
      sys.control,
    ]);
    await sys.gateway.waitFor(/registered for \/sum/);
    await sys.gateway.waitFor(/registered for \/product/);
    // The connection held all along moves again.
    const again = await held.get("/product?a=2&b=5");
    assert.equal(again.status, 200, again.body);
    assert.equal(JSON.parse(again.body).result, "10");
    const client = await Client.connect(sys.port);
    for (let i = 0; i < 6; i++) {
      const op = i % 2 ? "product" : "sum";
      assert.equal((await client.get(`/${op}?a=${i}&b=3`)).status, 200);
    }
    client.close();
  } finally {
    held.close();
    await sys.stop();
  }
});

Deno.test("the launcher restarts a killed worker and stops everything on SIGINT", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-launcher-" });
  await Deno.chmod(dir, 0o755); // the roles' users (launcher as root) reach the control socket
  const launcher = new Deno.Command(Deno.execPath(), {
    args: ["task", "start"],
    cwd: projectRoot,
    env: {
      HOTPOTATO_PORT: "0",
      HOTPOTATO_ADMIN_PORT: "0",
      HOTPOTATO_CONTROL: `${dir}/run/gateway.sock`,
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const reading = forEachLine(launcher.stdout, (line) => lines.push(line));
  const waitLine = async (re: RegExp, after = 0): Promise<RegExpMatchArray> => {
    for (let i = 0; i < 300; i++) {
      for (const l of lines.slice(after)) {
        const m = l.match(re);
        if (m) return m;
      }
      await sleep(50);
    }
    throw new Error(`no line ${re}:\n${lines.join("\n")}`);
  };
  try {
    const port = Number((await waitLine(/^gateway\s+\|.*listening on https:\/\/[^:]+:(\d+)/))[1]);
    const pid = Number((await waitLine(/worker sum\/(\d+) registered/))[1]);
    await waitLine(/worker product\/\d+ registered/);
    const mark = lines.length;
    Deno.kill(pid, "SIGKILL");
    await waitLine(/^launcher\s+\| restarting sum in \d+ ms/, mark);
    const again = Number((await waitLine(/worker sum\/(\d+) registered/, mark))[1]);
    assert.notEqual(again, pid);
    const client = await Client.connect(port);
    assert.equal((await client.get("/sum?a=20&b=22")).status, 200);
    client.close();
    launcher.kill("SIGINT");
    const status = await launcher.status;
    assert.equal(status.code, 0);
    for (const child of [again]) {
      let alive = true;
      try {
        Deno.kill(child, "SIGCONT");
      } catch {
        alive = false;
      }
      assert.equal(alive, false, "children are gone after the launcher stops");
    }
  } finally {
    try {
      launcher.kill("SIGKILL");
    } catch { /* exited */ }
    await launcher.status;
    await reading;
    await launcher.stderr.cancel();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a worker whose event loop is stuck gets no new connections until it answers again", async () => {
  const sys = await System.start({
    workers: [{ name: "misbehave", file: "tests/fixtures/misbehave.ts" }],
    gatewayArgs: ["--worker-timeout", "1.5"],
  });
  const stuck = await Client.connect(sys.port);
  try {
    await stuck.write(Client.request("/block?ms=4500")); // its worker stops answering anything
    await sys.gateway.waitFor(/worker misbehave\/\d+ silent for \d+ ms/, 6000);
    // A new client is told at once, instead of being handed to a process that cannot answer.
    const other = await Client.connect(sys.port);
    const t0 = Date.now();
    const res = await other.get("/slow?ms=1");
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("retry-after"), "1");
    assert.ok(Date.now() - t0 < 1000);
    other.close();
    // When the loop comes back, the blocked request is answered and the worker serves again.
    assert.equal(JSON.parse((await stuck.read(10_000)).body).blocked, true);
    await sys.gateway.waitFor(/worker misbehave\/\d+ answers again/, 5000);
    const later = await Client.connect(sys.port);
    assert.equal((await later.get("/slow?ms=1")).status, 200);
    later.close();
  } finally {
    stuck.close();
    await sys.stop();
  }
});
