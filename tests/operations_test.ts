/**
 * Running it like production: worker pools, functions that come and go
 * while the gateway runs, graceful drain on SIGTERM, the control socket.
 * (Metrics and health on the admin port and request logs as JSON lines, for
 * a connection that changes function: operations_moves_test.ts.)
 */

import assert from "node:assert/strict";
import { closeFd, fileIdentity, unixListen } from "../ffi/shim.ts";
import { Client, Proc, System } from "./support/system.ts";
import { sleep, waitUntil } from "./support/wait.ts";

const MISBEHAVE = { name: "misbehave", file: "tests/fixtures/misbehave.ts" };

Deno.test("a pool spreads connections over a function's workers and keeps each on its worker", async () => {
  const sys = await System.start({
    workers: [
      { name: "sum", file: "workers/sum.ts" },
      { name: "sum", file: "workers/sum.ts" },
      { name: "product", file: "workers/product.ts" },
    ],
  });
  const clients: Client[] = [];
  try {
    const byWorker = new Map<string, number>();
    for (let i = 0; i < 30; i++) {
      const c = await Client.connect(sys.port);
      clients.push(c);
      const w = (await c.get(`/sum?a=${i}&b=1`)).headers.get("x-hotpotato-worker")!;
      byWorker.set(w, (byWorker.get(w) ?? 0) + 1);
    }
    assert.equal(byWorker.size, 2, "both sum workers took connections");
    for (const n of byWorker.values()) assert.ok(n >= 10, `spread: ${[...byWorker.values()]}`);
    // While the route stays the same, a connection stays on its worker.
    for (const c of clients.slice(0, 5)) {
      const first = (await c.get("/sum?a=1&b=1")).headers.get("x-hotpotato-worker");
      for (let k = 0; k < 4; k++) {
        assert.equal((await c.get("/sum?a=2&b=2")).headers.get("x-hotpotato-worker"), first);
      }
    }
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});

Deno.test("a function started later is served at once; when it leaves: 503, then 404", async () => {
  const sys = await System.start({ gatewayArgs: ["--vacant-grace", "1"] });
  const client = await Client.connect(sys.port);
  try {
    assert.equal((await client.get("/hello?name=Ada")).status, 404);
    const hello = await sys.addWorker("hello", "examples/hello.ts");
    const res = await client.get("/hello?name=Ada");
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).hello, "Ada");
    await hello.stop(); // SIGTERM: drains (closing the connection it held), then exits
    sys.workers = sys.workers.filter((w) => w !== hello);
    assert.equal(await client.closedByServer(), true);
    const again = await Client.connect(sys.port);
    const gone = await again.get("/hello?name=Ada");
    const left = Date.now();
    assert.equal(gone.status, 503);
    assert.equal(gone.headers.get("retry-after"), "1");
    // 503 until the grace (1 s) is over, then 404.
    let status = 503;
    await waitUntil(async () => (status = (await again.get("/hello?name=Ada")).status) !== 503, {
      what: "the vacant route's grace to end",
      timeoutMs: 5000,
      everyMs: 100,
    });
    assert.equal(status, 404);
    assert.ok(Date.now() - left >= 500, `404 ${Date.now() - left} ms after the first 503`);
    assert.equal((await again.get("/sum?a=1&b=1")).status, 200);
    again.close();
  } finally {
    client.close();
    await sys.stop();
  }
});

Deno.test("a function claiming another's route is refused with a clear error", async () => {
  const sys = await System.start();
  try {
    const imposter = new Proc("imposter", "tests/fixtures/imposter.ts", ["--control", sys.control]);
    const status = await imposter.child.status;
    await imposter.done;
    assert.equal(status.code, 1);
    assert.match(
      imposter.lines.join("\n"),
      /refused registration: route \/sum belongs to function sum/,
    );
    await sys.gateway.waitFor(/refused worker imposter\/\d+: route \/sum belongs to function sum/);
    const client = await Client.connect(sys.port);
    assert.equal(JSON.parse((await client.get("/sum?a=1&b=1")).body).result, "2");
    client.close();
  } finally {
    await sys.stop();
  }
});

Deno.test("graceful drain: a request in flight gets its full answer, idle connections a clean close", async () => {
  const sys = await System.start({ workers: [MISBEHAVE] });
  const busy = await Client.connect(sys.port);
  const idleAtGateway = await Client.connect(sys.port);
  const idleAtWorker = await Client.connect(sys.port);
  try {
    assert.equal((await idleAtWorker.get("/slow?ms=1")).status, 200);
    await busy.write(Client.request("/slow?ms=800"));
    // The request is now at the worker (which answers it at once: into the handler).
    const worker = sys.workers[0];
    await waitUntil(async () => (await worker.stats()).held === 2, {
      what: "the busy connection to reach the worker",
    });
    const started = Date.now();
    // What the launcher does on Ctrl-C: SIGTERM to every process.
    sys.gateway.child.kill("SIGTERM");
    for (const w of sys.workers) w.child.kill("SIGTERM");
    const res = await busy.read();
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).slept, 800);
    assert.equal(res.headers.get("connection"), "close");
    assert.equal(await busy.closedByServer(), true);
    assert.equal(await idleAtGateway.closedByServer(), true);
    assert.equal(await idleAtWorker.closedByServer(), true);
    const codes = await Promise.all([sys.gateway, ...sys.workers].map((p) => p.child.status));
    assert.deepEqual(codes.map((c) => c.code), [0, 0]);
    assert.ok(Date.now() - started < 5000);
    // New connections are refused once the gateway has stopped listening.
    await assert.rejects(Client.connect(sys.port));
  } finally {
    busy.close();
    idleAtGateway.close();
    idleAtWorker.close();
    await sys.stop();
  }
});

/** The exit code of `p` once it has exited, or null (and p killed) if it
 * is still running after `ms`. */
async function exitCode(p: Proc, ms = 10_000): Promise<number | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<null>((ok) => timer = setTimeout(() => ok(null), ms));
  const status = await Promise.race([p.child.status, late]);
  clearTimeout(timer);
  if (status === null) await p.stop("SIGKILL");
  await p.done;
  return status === null ? null : status.code;
}

Deno.test("a second gateway on a live control socket refuses to start and leaves the first one reachable", async () => {
  const sys = await System.start({ workers: [] });
  const controlBefore = (await Deno.lstat(sys.control)).ino;
  try {
    // Another port, and A's admin port (what an operator's second start
    // looks like), then any free admin port: each must stop at once.
    for (const admin of [String(sys.adminPort), "0"]) {
      const b = new Proc("gateway-b", "gateway.ts", [
        "--port",
        "0",
        "--admin-port",
        admin,
        "--control",
        sys.control,
      ]);
      const code = await exitCode(b);
      assert.ok(code !== null && code !== 0, `gateway B exited with ${code}`);
      const out = b.lines.join("\n");
      assert.match(out, /control socket .*gateway\.sock is in use: another gateway answers there/);
      assert.doesNotMatch(out, /listening on/);
    }
    // A's socket file is the one A bound, and a worker started now reaches A.
    assert.equal((await Deno.lstat(sys.control)).ino, controlBefore);
    await sys.addWorker("sum", "workers/sum.ts");
    await sys.gateway.waitFor(/worker sum\/\d+ registered for \/sum/, 5000);
    const client = await Client.connect(sys.port);
    assert.equal(JSON.parse((await client.get("/sum?a=2&b=3")).body).result, "5");
    client.close();
    assert.equal((await fetch(`http://127.0.0.1:${sys.adminPort}/healthz`)).status, 200);
  } finally {
    await sys.stop();
  }
});

Deno.test("a stale control socket (its gateway was killed) is replaced; a file that is not a socket is left alone", async () => {
  const sys = await System.start();
  try {
    await sys.gateway.stop("SIGKILL"); // leaves its socket file behind
    assert.ok((await Deno.lstat(sys.control)).isSocket);
    sys.gateway = new Proc("gateway", "gateway.ts", [
      "--port",
      "0",
      "--admin-port",
      "0",
      "--control",
      sys.control,
    ]);
    const port = Number((await sys.gateway.waitFor(/listening on https:\/\/[^:]+:(\d+)/))[1]);
    await sys.gateway.waitFor(/registered for \/sum/);
    const client = await Client.connect(port);
    assert.equal((await client.get("/sum?a=1&b=1")).status, 200);
    client.close();

    const file = `${sys.dir}/not-a-socket`;
    await Deno.writeTextFile(file, "keep me\n");
    const c = new Proc("gateway-c", "gateway.ts", ["--port", "0", "--control", file]);
    const code = await exitCode(c);
    assert.ok(code !== null && code !== 0, `exited with ${code}`);
    assert.match(c.lines.join("\n"), /control socket .*not-a-socket: ENOTSOCK/);
    assert.equal(await Deno.readTextFile(file), "keep me\n");
  } finally {
    await sys.stop();
  }
});

Deno.test("/healthz answers 503 once the control socket file is deleted or replaced", async () => {
  const sys = await System.start({ workers: [] });
  const health = async () => {
    const res = await fetch(`http://127.0.0.1:${sys.adminPort}/healthz`);
    return { status: res.status, body: await res.json() };
  };
  try {
    assert.equal((await health()).status, 200);
    await Deno.remove(sys.control);
    const gone = await health();
    assert.equal(gone.status, 503);
    assert.equal(gone.body.status, "control socket lost");
    assert.match(gone.body.error, /gateway\.sock was removed: workers cannot register/);
    await sys.gateway.waitFor(/\[ERR\].*control socket .* was removed/, 3000);
    // Another socket at the same path is not ours either, and stopping the
    // gateway leaves it alone.
    const other = unixListen(sys.control);
    try {
      const replaced = await health();
      assert.equal(replaced.status, 503);
      assert.match(replaced.body.error, /now names another file/);
      const id = fileIdentity(sys.control);
      await sys.gateway.stop();
      assert.equal(fileIdentity(sys.control), id);
    } finally {
      closeFd(other);
    }
  } finally {
    await sys.stop();
  }
});

Deno.test("a worker with no gateway warns (the path and the error, not at every attempt) and registers once one starts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-test-" });
  const control = `${dir}/run/gateway.sock`;
  const worker = new Proc("sum", "workers/sum.ts", ["--control", control]);
  let gateway: Proc | undefined;
  try {
    await worker.waitFor(
      /\[WRN\].*cannot reach the gateway at \S+\/run\/gateway\.sock: ENOENT/,
      5000,
    );
    // Retries at 50, 100, 200, ... ms, then every 2 s: more attempts (failing
    // quietly) for this long, the time under test.
    await sleep(2500);
    assert.equal(worker.count(/\[WRN\]/), 1, worker.lines.join("\n"));
    gateway = new Proc("gateway", "gateway.ts", [
      "--port",
      "0",
      "--admin-port",
      "0",
      "--control",
      control,
    ]);
    const port = Number((await gateway.waitFor(/listening on https:\/\/[^:]+:(\d+)/))[1]);
    await worker.waitFor(
      /\[INF\].*reached the gateway at \S+gateway\.sock after \d+ failed attempt/,
      5000,
    );
    await worker.waitFor(/registered sum for \/sum/);
    const client = await Client.connect(port);
    assert.equal((await client.get("/sum?a=1&b=1")).status, 200);
    client.close();
  } finally {
    await Promise.all([worker.stop(), gateway?.stop()]);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
