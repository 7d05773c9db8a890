/**
 * Running it like production: worker pools, functions that come and go
 * while the gateway runs, metrics and health on the admin port, graceful
 * drain on SIGTERM, request logs as JSON lines.
 */

import assert from "node:assert/strict";
import { closeFd, fileIdentity, unixListen } from "../ffi/shim.ts";
import { Client, Proc, System } from "./support/system.ts";

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));
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
    assert.equal(gone.status, 503);
    assert.equal(gone.headers.get("retry-after"), "1");
    await sleep(1200);
    assert.equal((await again.get("/hello?name=Ada")).status, 404);
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

Deno.test("metrics and health on the admin port", async () => {
  const sys = await System.start();
  try {
    const client = await Client.connect(sys.port);
    for (let i = 0; i < 6; i++) await client.get(i % 2 ? "/product?a=1&b=2" : "/sum?a=1&b=2");
    await client.get("/nowhere");
    client.close();
    await sleep(1300); // workers report their counters every second
    const admin = `http://127.0.0.1:${sys.adminPort}`;
    const res = await fetch(`${admin}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const value = (series: string) => {
      const line = text.split("\n").find((l) => l.startsWith(series + " "));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    assert.equal(value("hotpotato_connections_accepted_total"), 1);
    assert.equal(value('hotpotato_tls_handshakes_total{resumed="false",version="TLSv1.3"}'), 1);
    assert.equal(value('hotpotato_handoffs_total{function="product",route="/product"}'), 3);
    assert.equal(value('hotpotato_handoffs_total{function="sum",route="/sum"}'), 3);
    assert.equal(value('hotpotato_connections_returned_total{function="sum"}'), 3);
    assert.equal(value('hotpotato_requests_total{function="sum",route="/sum",status="200"}'), 3);
    // The 404 comes from product, which held the connection: the gateway
    // refuses a hand-back no worker can take (it never imports a function's
    // TLS state), and the worker answers.
    assert.equal(value('hotpotato_requests_total{function="product",route="-",status="404"}'), 1);
    assert.equal(
      value('hotpotato_requests_total{function="gateway",route="",status="404"}'),
      undefined,
    );
    assert.equal(value('hotpotato_workers{function="product"}'), 1);
    // Six arrivals at workers.
    assert.equal(value("hotpotato_handoff_latency_seconds_count"), 6);
    assert.equal(value('hotpotato_handoff_latency_seconds_bucket{le="+Inf"}'), 6);
    const health = await fetch(`${admin}/healthz`);
    assert.equal(health.status, 200);
    const body = await health.json();
    assert.equal(body.status, "ok");
    assert.deepEqual(body.functions.map((f: { name: string }) => f.name).sort(), [
      "product",
      "sum",
    ]);
    assert.equal((await fetch(`${admin}/nope`)).status, 404);
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
    await sleep(200); // the request is now in the handler
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

Deno.test("request log lines as JSON: route, status, duration, worker, handoffs", async () => {
  const sys = await System.start({ workerArgs: ["--log-format", "json"] });
  try {
    const client = await Client.connect(sys.port);
    await client.get("/sum?a=1&b=2");
    await client.get("/product?a=1&b=2");
    client.close();
    const line = await sys.worker("product").waitFor(/^\{.*"status":200.*\}$/);
    const entry = JSON.parse(line[0]);
    assert.equal(entry.route, "/product");
    assert.equal(entry.status, 200);
    assert.equal(typeof entry.ms, "number");
    assert.match(entry.worker, /^product\/\d+$/);
    assert.equal(entry.handoffs, 2);
  } finally {
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
    await sleep(2500); // retries at 50, 100, 200, ... ms: several more attempts
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
