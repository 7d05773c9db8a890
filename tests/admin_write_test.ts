// handoff-mode: both
/**
 * The admin port's writes (issue 13, the launcher's reload): token-guarded
 * `POST /admin/promote` and `POST /admin/reloaded`, and `GET /workers`.
 * Real gateway and workers; a worker started with `--standby on` registers
 * but takes no connection until its generation is promoted, then the old
 * worker hands its connections over and exits. Clients keep their
 * connections and their one handshake.
 *
 * `System.start` gives the gateway no environment of its own (Proc takes
 * one, System.start passes `{}`), so the token reaches the gateway through
 * this process's environment, set only while the gateway starts.
 */

import assert from "node:assert/strict";
import { adminAnswer, type AdminSource } from "../src/gateway/admin_routes.ts";
import type { RequestHead } from "../src/http/http.ts";
import { Client, HANDOFF_MODE, type Proc, System } from "./support/system.ts";
import { waitUntil } from "./support/wait.ts";

const TOKEN_VAR = "HOTPOTATO_ADMIN_TOKEN";

/** A gateway (with `token` in its environment, or none) and no workers yet. */
async function startGateway(token: string | undefined): Promise<System> {
  const saved = Deno.env.get(TOKEN_VAR);
  if (token === undefined) Deno.env.delete(TOKEN_VAR);
  else Deno.env.set(TOKEN_VAR, token);
  try {
    return await System.start({ workers: [] });
  } finally {
    if (saved === undefined) Deno.env.delete(TOKEN_VAR);
    else Deno.env.set(TOKEN_VAR, saved);
  }
}

interface Listed {
  name: string;
  pid: number;
  generation: string;
  state: string;
  held: number;
}

/** POST to the admin port; the status and the JSON body. */
async function post(
  sys: System,
  path: string,
  authorization?: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${sys.adminPort}${path}`, {
    method: "POST",
    headers: authorization === undefined ? {} : { authorization },
  });
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  return { status: res.status, body: await res.json() };
}

async function workers(sys: System): Promise<Listed[]> {
  const res = await fetch(`http://127.0.0.1:${sys.adminPort}/workers`);
  assert.equal(res.status, 200);
  const list = (await res.json()) as Listed[];
  return list.sort((a, b) => a.name.localeCompare(b.name) || a.pid - b.pid);
}

async function metric(sys: System, series: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${sys.adminPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const workerOf = (p: Proc) => `${p.name}/${p.child.pid}`;

/** True once `p` exits within `ms`. */
function exitsWithin(p: Proc, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    p.child.status.then(() => true),
    new Promise<false>((ok) => timer = setTimeout(() => ok(false), ms)),
  ]).finally(() => clearTimeout(timer));
}

Deno.test("admin writes are refused (403) by a gateway without a token; GET /workers lists the workers", async () => {
  const sys = await startGateway(undefined);
  try {
    const sum = await sys.addWorker("sum", "workers/sum.ts", ["--generation", "1"]);
    const product = await sys.addWorker("product", "workers/product.ts");
    for (const auth of [undefined, "Bearer ", "Bearer anything"]) {
      const r = await post(sys, "/admin/promote?function=sum&generation=2", auth);
      assert.equal(r.status, 403, JSON.stringify(r.body));
      assert.match(String(r.body.error), /HOTPOTATO_ADMIN_TOKEN/);
      const reloaded = await post(sys, "/admin/reloaded?function=sum&result=ok&seconds=1", auth);
      assert.equal(reloaded.status, 403);
    }
    assert.deepEqual(await workers(sys), [
      { name: "product", pid: product.child.pid, generation: "", state: "serving", held: 0 },
      { name: "sum", pid: sum.child.pid, generation: "1", state: "serving", held: 0 },
    ]);
    // Reads stay GET/HEAD only; a POST elsewhere is not a write.
    const other = await fetch(`http://127.0.0.1:${sys.adminPort}/workers`, { method: "POST" });
    assert.equal(other.status, 405);
    await other.body?.cancel();
  } finally {
    await sys.stop();
  }
});

Deno.test("admin writes with a token: 401 without the right one, 400 on bad input, 404, 409 when nothing is on standby", async () => {
  const token = crypto.randomUUID();
  const auth = `Bearer ${token}`;
  const sys = await startGateway(token);
  const client = await Client.connect(sys.port);
  try {
    const sum = await sys.addWorker("sum", "workers/sum.ts", ["--generation", "1"]);
    await sys.addWorker("product", "workers/product.ts");
    const promote = "/admin/promote?function=sum&generation=2";
    // The token, exactly.
    for (
      const bad of [
        undefined,
        "",
        "Bearer",
        "Bearer ",
        `Bearer ${token}x`,
        `Bearer ${token.slice(0, -1)}`,
        `Bearer ${token.replace(/.$/, (c) => (c === "0" ? "1" : "0"))}`, // same length
        `Basic ${token}`,
        token,
      ]
    ) {
      const r = await post(sys, promote, bad);
      assert.equal(r.status, 401, `${bad}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error, "bad or missing bearer token");
    }
    // Bad input.
    for (
      const [path, error] of [
        ["/admin/promote?generation=2", /^function:/],
        ["/admin/promote?function=&generation=2", /^function:/],
        ["/admin/promote?function=../sum&generation=2", /^function:/],
        ["/admin/promote?function=sum&generation=a%20b", /^generation:/],
        ["/admin/promote?function=sum&generation=x/y", /^generation:/],
        [`/admin/promote?function=sum&generation=${"9".repeat(33)}`, /^generation:/],
        ["/admin/promote?function=sum&generation=2&handover=maybe", /^handover:/],
        ["/admin/reloaded?function=sum&result=maybe&seconds=1", /^result:/],
        ["/admin/reloaded?function=sum&result=ok&seconds=-1", /^seconds:/],
        ["/admin/reloaded?function=sum&result=ok&seconds=abc", /^seconds:/],
        ["/admin/reloaded?function=sum&result=ok&seconds=86401", /^seconds:/],
      ] as const
    ) {
      const r = await post(sys, path, auth);
      assert.equal(r.status, 400, `${path}: ${JSON.stringify(r.body)}`);
      assert.match(String(r.body.error), error, path);
    }
    // Unknown paths under /admin/.
    for (const path of ["/admin/nope?function=sum", "/admin/promote/x?function=sum"]) {
      const r = await post(sys, path, auth);
      assert.equal(r.status, 404, `${path}: ${JSON.stringify(r.body)}`);
    }
    // A generation with no standby worker: 409, and nothing changes.
    const registered = async () =>
      (await workers(sys)).map((w) => [w.name, w.pid, w.generation, w.state]);
    const before = await registered();
    const first = await client.get("/sum?a=1&b=2");
    assert.equal(first.headers.get("x-hotpotato-worker"), workerOf(sum));
    for (
      const path of [
        "/admin/promote?function=sum&generation=2",
        "/admin/promote?function=sum&generation=1", // serving, not on standby
        "/admin/promote?function=sum&generation=", // "" is a label too
        "/admin/promote?function=nosuch&generation=2",
      ]
    ) {
      const r = await post(sys, path, auth);
      assert.equal(r.status, 409, `${path}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.ok, false);
      assert.match(String(r.body.error), /is on standby/);
    }
    assert.deepEqual(await registered(), before);
    const again = await client.get("/sum?a=3&b=4");
    assert.equal(again.status, 200);
    assert.equal(JSON.parse(again.body).result, "7");
    assert.equal(again.headers.get("x-hotpotato-worker"), workerOf(sum));
    assert.equal(await metric(sys, 'hotpotato_version_switches_total{function="sum"}'), undefined);
    // /admin/reloaded records the outcome.
    const ok = await post(sys, "/admin/reloaded?function=sum&result=ok&seconds=0.25", auth);
    assert.deepEqual([ok.status, ok.body], [200, { ok: true }]);
    const failed = await post(sys, "/admin/reloaded?function=sum&result=failed&seconds=3", auth);
    assert.equal(failed.status, 200);
    assert.equal(await metric(sys, 'hotpotato_reloads_total{function="sum",result="ok"}'), 1);
    assert.equal(await metric(sys, 'hotpotato_reloads_total{function="sum",result="failed"}'), 1);
    assert.equal(await metric(sys, 'hotpotato_reload_seconds{function="sum"}'), 0.25);
    // The token never shows in the gateway's output.
    await sys.gateway.settle();
    assert.ok(!sys.gateway.lines.some((l) => l.includes(token)), "the token was logged");
  } finally {
    client.close();
    await sys.stop();
  }
});

Deno.test(`a standby worker takes no connection until promoted; then the old one hands over and exits (${HANDOFF_MODE} mode)`, async () => {
  const token = crypto.randomUUID();
  const auth = `Bearer ${token}`;
  const sys = await startGateway(token);
  const clients: Client[] = [];
  try {
    const old = await sys.addWorker("sum", "workers/sum.ts", ["--generation", "1"]);
    const product = await sys.addWorker("product", "workers/product.ts");
    // Connections held by sum (idle) and by product.
    for (let i = 0; i < 4; i++) {
      const c = await Client.connect(sys.port);
      clients.push(c);
      const res = await c.get(i % 2 ? "/product?a=1&b=2" : "/sum?a=1&b=2");
      assert.equal(res.status, 200);
    }
    const fresh = await sys.addWorker("sum", "workers/sum.ts", [
      "--standby",
      "on",
      "--generation",
      "2",
    ]);
    await sys.gateway.waitFor(
      new RegExp(`worker sum/${fresh.child.pid} registered .*generation 2.*on standby`),
    );
    assert.deepEqual(
      (await workers(sys)).map((w) => [w.name, w.pid, w.generation, w.state]),
      [
        ["product", product.child.pid, "", "serving"],
        ...[[old.child.pid, "1", "serving"], [fresh.child.pid, "2", "standby"]]
          .sort((a, b) => Number(a[0]) - Number(b[0]))
          .map((w) => ["sum", ...w]),
      ],
    );
    // On standby: new connections, idle ones and ones moving from product
    // (by the gateway, or directly by the route table) all reach generation 1.
    const late = await Client.connect(sys.port);
    clients.push(late);
    for (let round = 0; round < 3; round++) {
      for (const c of clients) {
        const res = await c.get(`/sum?a=${round}&b=5`);
        assert.equal(res.status, 200, res.body);
        assert.equal(JSON.parse(res.body).result, String(round + 5));
        assert.equal(res.headers.get("x-hotpotato-worker"), workerOf(old));
        assert.equal((await c.get("/product?a=2&b=3")).status, 200);
      }
    }
    // Every one of them idle on generation 1 at the switch.
    for (const c of clients) {
      assert.equal((await c.get("/sum?a=0&b=0")).headers.get("x-hotpotato-worker"), workerOf(old));
    }
    // A client in a tight loop during the switch.
    let stop = false;
    let looped = 0;
    const looper = await Client.connect(sys.port);
    clients.push(looper);
    const loop = (async () => {
      const seen = new Set<string>();
      for (let i = 0; !stop; i++, looped++) {
        const op = i % 2 ? "product" : "sum";
        const res = await looper.get(`/${op}?a=${i}&b=1`); // throws on EOF or reset
        assert.equal(res.status, 200, res.body);
        assert.equal(JSON.parse(res.body).result, String(op === "sum" ? i + 1 : i));
        if (op === "sum") seen.add(res.headers.get("x-hotpotato-worker")!);
      }
      return seen;
    })();
    let failed: unknown;
    loop.catch((e) => failed = e); // awaited below
    await waitUntil(() => failed !== undefined || looped >= 4, {
      what: () => `the looping client's first requests (${looped})`,
    });
    const r = await post(sys, "/admin/promote?function=sum&generation=2", auth);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, {
      ok: true,
      promoted: [fresh.child.pid],
      replaced: [old.child.pid],
    });
    await fresh.waitFor(/generation 2 promoted; taking connections/);
    assert.ok(await exitsWithin(old, 15_000), "the replaced worker is still running");
    const handing = old.lines.join("\n").match(/handing (\d+) connection\(s\) over/);
    assert.ok(handing && Number(handing[1]) >= 5, old.lines.join("\n"));
    // Every connection still works, and sum answers from generation 2.
    for (const [i, c] of clients.entries()) {
      if (c === looper) continue;
      const res = await c.get(`/sum?a=${i}&b=10`);
      assert.equal(res.status, 200, res.body);
      assert.equal(JSON.parse(res.body).result, String(i + 10));
      assert.equal(res.headers.get("x-hotpotato-worker"), workerOf(fresh));
    }
    stop = true;
    const seen = await loop;
    assert.ok(seen.has(workerOf(fresh)), [...seen].join(" "));
    assert.deepEqual(
      (await workers(sys)).map((w) => [w.name, w.pid, w.generation, w.state]),
      [["product", product.child.pid, "", "serving"], ["sum", fresh.child.pid, "2", "serving"]],
    );
    // Promoted once: the same generation is not on standby any more.
    const twice = await post(sys, "/admin/promote?function=sum&generation=2", auth);
    assert.equal(twice.status, 409);
    // No client connected again: one handshake each.
    assert.equal(await sys.handshakes(), clients.length);
    assert.equal(await metric(sys, 'hotpotato_version_switches_total{function="sum"}'), 1);
    const handedOver = await metric(sys, 'hotpotato_connections_handed_over_total{function="sum"}');
    assert.ok(handedOver !== undefined && handedOver >= 5, String(handedOver));
    assert.match(
      sys.gateway.lines.join("\n"),
      new RegExp(`worker sum/${old.child.pid} \\(replaced\\) left`),
    );
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});

Deno.test(`promote with handover=off: new connections go to the new version, the old one keeps (and serves) its own (${HANDOFF_MODE} mode)`, async () => {
  const token = crypto.randomUUID();
  const sys = await startGateway(token);
  const held = await Client.connect(sys.port);
  const late = await Client.connect(sys.port);
  try {
    const old = await sys.addWorker("sum", "workers/sum.ts", ["--generation", "1"]);
    await sys.addWorker("product", "workers/product.ts");
    assert.equal((await held.get("/sum?a=1&b=1")).headers.get("x-hotpotato-worker"), workerOf(old));
    const fresh = await sys.addWorker("sum", "workers/sum.ts", [
      "--standby",
      "on",
      "--generation",
      "2",
    ]);
    const r = await post(
      sys,
      "/admin/promote?function=sum&generation=2&handover=off",
      `Bearer ${token}`,
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.replaced, [old.child.pid]);
    // A new connection reaches generation 2; the held one is not dropped.
    assert.equal(
      (await late.get("/sum?a=2&b=2")).headers.get("x-hotpotato-worker"),
      workerOf(fresh),
    );
    const res = await held.get("/sum?a=3&b=3");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-hotpotato-worker"), workerOf(old));
    // Once it moves away, its next sum request reaches generation 2.
    assert.equal((await held.get("/product?a=2&b=2")).status, 200);
    assert.equal(
      (await held.get("/sum?a=4&b=4")).headers.get("x-hotpotato-worker"),
      workerOf(fresh),
    );
    assert.equal(old.exited, false, "not told to hand over: the launcher stops it");
    assert.deepEqual(
      (await workers(sys)).filter((w) => w.name === "sum").map((w) => [w.pid, w.state])
        .sort((a, b) => Number(a[0]) - Number(b[0])),
      [[old.child.pid, "draining"], [fresh.child.pid, "serving"]]
        .sort((a, b) => Number(a[0]) - Number(b[0])),
    );
  } finally {
    held.close();
    late.close();
    await sys.stop();
  }
});

Deno.test("adminAnswer in process: the order of the checks, and the token never compared when unset", async () => {
  const head = (method: string, target: string, authorization?: string): RequestHead => {
    const [path, query = ""] = target.split("?");
    return {
      method,
      target,
      path,
      query,
      version: "HTTP/1.1",
      headers: authorization === undefined ? [] : [["authorization", authorization]],
    } as RequestHead;
  };
  const calls: string[] = [];
  const source = (token?: string): AdminSource => ({
    metrics: () => "",
    unhealthy: () => ({ status: "ok" }),
    functions: () => [],
    workers: () => [{ name: "sum", pid: 1, generation: "1", state: "serving", held: 0 }],
    token,
    promote: (name, generation, handover) => {
      calls.push(`promote ${name} ${generation} ${handover}`);
      return { ok: true, promoted: [2], replaced: [1] };
    },
    reloaded: (name, ok, seconds) => void calls.push(`reloaded ${name} ${ok} ${seconds}`),
  } as AdminSource);
  const promote = "/admin/promote?function=sum&generation=2";
  assert.equal((await adminAnswer(head("POST", promote), source())).status, 403);
  assert.equal((await adminAnswer(head("POST", promote, "Bearer "), source(""))).status, 403);
  assert.equal((await adminAnswer(head("POST", promote, "Bearer t"), source("s"))).status, 401);
  assert.deepEqual(calls, []);
  const ok = await adminAnswer(head("POST", promote + "&handover=off", "Bearer s"), source("s"));
  assert.equal(ok.status, 200);
  assert.deepEqual(JSON.parse(ok.body), { ok: true, promoted: [2], replaced: [1] });
  assert.equal(
    (await adminAnswer(
      head("POST", "/admin/reloaded?function=sum&result=ok&seconds=2", "Bearer s"),
      source("s"),
    ))
      .status,
    200,
  );
  assert.deepEqual(calls, ["promote sum 2 false", "reloaded sum true 2"]);
  const list = await adminAnswer(head("GET", "/workers"), source());
  assert.equal(list.status, 200);
  assert.equal(JSON.parse(list.body)[0].state, "serving");
});
