// handoff-mode: both
/**
 * Functions on demand (issue 21), end to end: a function at zero workers is
 * started by its first request (a new connection's, or a route change
 * into it) and answers on the same connection, with no second handshake;
 * a pool rescaled by the function file and SIGHUP stops a worker, which
 * hands its idle and busy connections over; an idle pool goes back to zero;
 * an invalid function file keeps the running set. Real launcher, gateway,
 * workers and TLS clients; handshakes and cold starts counted by /metrics.
 */

import assert from "node:assert/strict";
import { Launched } from "./support/launched.ts";
import { Client } from "./support/system.ts";
import { waitUntil } from "./support/wait.ts";
import { processUid } from "../ffi/shim.ts";

const HANDSHAKES = "hotpotato_tls_handshakes_total";

Deno.test("a function at zero workers starts on its first request and on a route change into it: same connection, one handshake each", async () => {
  const sys = await Launched.start("start", [
    "--function",
    "hello=examples/hello.ts",
    "--scale",
    "hello=0..2",
    "--scale-idle",
    "1",
  ], ["sum", "product"]);
  const clients: Client[] = [];
  try {
    assert.equal((await sys.functionState("hello"))?.state, "idle");
    // A new connection's first request: held while hello starts.
    const c1 = await Client.connect(sys.port);
    clients.push(c1);
    const cold = await c1.get("/hello?name=cold");
    assert.equal(cold.status, 200, cold.body);
    assert.equal(JSON.parse(cold.body).hello, "cold");
    const worker = cold.headers.get("x-hotpotato-worker")!;
    assert.match(worker, /^hello\/\d+$/);
    assert.equal((await c1.get("/sum?a=1&b=2")).status, 200);
    const again = await c1.get("/hello?name=warm");
    assert.equal(again.status, 200);
    assert.equal(again.headers.get("x-hotpotato-worker"), worker, "the same worker, warm now");
    assert.equal(await sys.metric("hotpotato_cold_starts_total", 'function="hello"'), 1);
    assert.equal(await sys.metric(HANDSHAKES), 1);

    // Idle for the idle time, and no connection: back to zero.
    c1.close();
    clients.length = 0;
    await sys.waitLine(/^launcher\s+\| hello\.1 stopped in \d+ ms \(idle \d+ s\)/);
    await waitUntil(async () => (await sys.functionState("hello"))?.state === "idle", {
      what: "hello back at zero workers",
    });

    // A route change into the cold function: the sum worker hands the
    // connection on (to the gateway, which holds it unopened while hello
    // starts); hello answers it.
    const c2 = await Client.connect(sys.port);
    clients.push(c2);
    assert.equal((await c2.get("/sum?a=2&b=3")).status, 200);
    const moved = await c2.get("/hello?name=moved");
    assert.equal(moved.status, 200, moved.body);
    assert.equal(JSON.parse(moved.body).hello, "moved");
    assert.equal((await c2.get("/product?a=2&b=3")).status, 200);
    assert.equal((await c2.get("/hello")).status, 200);
    assert.equal(await sys.metric("hotpotato_cold_starts_total", 'function="hello"'), 2);
    assert.equal(await sys.metric("hotpotato_cold_start_seconds_count", 'function="hello"'), 2);
    assert.equal(await sys.metric(HANDSHAKES), 2, "one handshake per connection");
    assert.equal(await sys.metric("hotpotato_scale_events_total", 'direction="up"'), 2);
    assert.ok(await sys.metric("hotpotato_scale_events_total", 'direction="down"') >= 1);
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});

Deno.test("a pool rescaled by the function file (SIGHUP) stops a worker: its idle and busy connections are handed over, no handshake; an invalid file keeps the running set", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-functions-" });
  await Deno.chmod(dir, 0o755);
  const file = `${dir}/hotpotato.jsonc`;
  const write = (hello: string) =>
    Deno.writeTextFile(
      file,
      `{
  // sum and product as usual; hello as the test says
  "functions": {
    "sum": { "file": "workers/sum.ts" },
    "product": { "file": "workers/product.ts" },
    "hello": { "file": "examples/hello.ts", ${hello} },
  },
}
`,
    );
  await write(`"workers": 2`);
  const sys = await Launched.start("start", ["--functions-file", file], ["sum", "product"]);
  const clients: Client[] = [];
  let looping = true;
  try {
    await sys.waitLine(/worker hello\/\d+ registered/);
    await waitUntil(async () => (await sys.functionState("hello"))?.workers === 2, {
      what: "two hello workers",
    });
    // Six idle connections spread over both workers, and one busy client.
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const c = await Client.connect(sys.port);
      clients.push(c);
      const r = await c.get(`/hello?name=${i}`);
      assert.equal(r.status, 200);
      seen.add(r.headers.get("x-hotpotato-worker")!);
    }
    assert.equal(seen.size, 2, `both workers hold connections: ${[...seen]}`);
    const busy = await Client.connect(sys.port);
    clients.push(busy);
    let answered = 0;
    const loop = (async () => {
      for (let i = 0; looping; i++) {
        const r = await busy.get(i % 3 === 2 ? "/sum?a=1&b=1" : `/hello?name=busy${i}`);
        assert.equal(r.status, 200, r.body);
        answered++;
      }
    })();
    loop.catch(() => {}); // awaited below: a failure is reported there
    await waitUntil(() => answered > 0, { what: "the busy client's first answer" });
    const handshakes = await sys.metric(HANDSHAKES);
    assert.equal(handshakes, 7);

    // One worker at most: the second stops and hands everything over.
    await write(`"min": 0, "max": 1, "idle": 1`);
    const mark = await sys.reload();
    assert.ok(
      mark.some((l) => /hello\.2 \(pid \d+\) stops: max lowered to 1/.test(l)),
      mark.join("\n"),
    );
    await sys.waitLine(/^launcher\s+\| hello\.2 stopped in \d+ ms/);
    const left = new Set<string>();
    for (const [i, c] of clients.slice(0, 6).entries()) {
      const r = await c.get(`/hello?name=after${i}`);
      assert.equal(r.status, 200, r.body);
      left.add(r.headers.get("x-hotpotato-worker")!);
    }
    assert.equal(left.size, 1, `one worker serves them all: ${[...left]}`);
    const before = answered;
    await waitUntil(() => answered > before + 5, { what: "the busy client going on" });
    assert.equal(await sys.metric(HANDSHAKES), handshakes, "no connection had to handshake again");
    assert.ok(await sys.metric("hotpotato_connections_handed_over_total", 'function="hello"') >= 1);

    // A file that cannot be used: refused with its line, nothing changes.
    await Deno.writeTextFile(
      file,
      `{\n  "functions": {\n    "hello": { "file": "x.ts", "max": 0 },\n  },\n}\n`,
    );
    const at = sys.lines.length;
    Deno.kill(await sys.launcherPid(), "SIGHUP");
    const refused = await sys.waitLine(/^launcher\s+\| reload refused: (.*)$/, at);
    assert.match(refused[1], /hotpotato\.jsonc:3: hello: max must be at least 1/);
    assert.equal((await sys.functionState("hello"))?.workers, 1);
    assert.equal((await sys.functionState("sum"))?.workers, 1);

    // A function added by an edit and a reload, on demand, as a user of its own.
    await write(`"min": 0, "max": 1, "idle": 1 },
    "whoami": { "file": "tests/fixtures/whoami.ts", "min": 0, "max": 1, "user": "hotpotato-fn-custom"`);
    const added = await sys.reload();
    assert.ok(added.some((l) => /launcher\s+\| whoami: added/.test(l)), added.join("\n"));
    const extra = await Client.connect(sys.port);
    clients.push(extra);
    const who = await extra.get("/whoami");
    assert.equal(who.status, 200, who.body);
    const pid = who.headers.get("x-hotpotato-worker")!.split("/")[1];
    const out = async (cmd: string, args: string[]) =>
      new TextDecoder().decode(
        (await new Deno.Command(cmd, { args, stdout: "piped" }).output())
          .stdout,
      ).trim();
    const uid = await out("ps", ["-o", "uid=", "-p", pid]);
    const expected = processUid() === 0
      ? await out("id", ["-u", "hotpotato-fn-custom"])
      : String(processUid()); // one user: the file's user is not used
    assert.equal(uid, expected);

    // Every client gone: the last worker stops after the idle time.
    looping = false;
    await loop;
    for (const c of clients) c.close();
    clients.length = 0;
    await sys.waitLine(/^launcher\s+\| hello\.1 stopped in \d+ ms \(idle \d+ s\)/);
    assert.equal((await sys.functionState("hello"))?.state, "idle");
  } finally {
    looping = false;
    for (const c of clients) c.close();
    await sys.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scaled to zero with idle keep-alive connections: they are parked in the gateway, unopened, and their next request starts the function again on the same connection", async () => {
  const sys = await Launched.start("start", [
    "--function",
    "hello=examples/hello.ts",
    "--scale",
    "hello=0..1",
    "--scale-idle",
    "1",
  ], ["sum", "product"]);
  const clients: Client[] = [];
  try {
    const a = await Client.connect(sys.port);
    const b = await Client.connect(sys.port);
    clients.push(a, b);
    assert.equal((await a.get("/hello?name=a")).status, 200);
    assert.equal((await b.get("/hello?name=b")).status, 200);
    // Idle for the idle time: the last worker stops though it holds two
    // connections; the gateway parks them.
    await sys.waitLine(/^launcher\s+\| hello stopped in \d+ ms \(idle \d+ s\)/);
    await waitUntil(async () => (await sys.functionState("hello"))?.parked === 2, {
      what: "two parked connections",
    });
    assert.equal((await sys.functionState("hello"))?.state, "idle");
    // Their clients speak again: a cold start, each answered on its own
    // connection; one asks another function first (it moves on from hello).
    const again = await a.get("/hello?name=again");
    assert.equal(again.status, 200, again.body);
    assert.equal(JSON.parse(again.body).hello, "again");
    const other = await b.get("/sum?a=4&b=5");
    assert.equal(other.status, 200, other.body);
    assert.equal(JSON.parse(other.body).result, "9");
    assert.equal(await sys.metric(HANDSHAKES), 2, "no connection had to handshake again");
    assert.equal(await sys.metric("hotpotato_cold_starts_total", 'function="hello"'), 2);
    assert.equal((await sys.functionState("hello"))?.parked, 0);
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});
