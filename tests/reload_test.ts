// handoff-mode: both
/**
 * Deploys without dropping a connection (issue 13): the launcher reloads
 * every function on SIGHUP, starting the new version on standby and
 * switching only once it has registered; the old workers hand their
 * connections over at a request boundary. `deno task dev` does the same on
 * every edit of the function's file. Real launcher, gateway, workers and TLS
 * clients; handshakes are counted by the gateway's /metrics.
 */

import assert from "node:assert/strict";
import { projectRoot } from "../ffi/paths.ts";
import { Launched } from "./support/launched.ts";
import { Client } from "./support/system.ts";
import { waitUntil } from "./support/wait.ts";

const HANDSHAKES = "hotpotato_tls_handshakes_total";

/** A function file in a temp dir that answers its version (a field). */
async function versionedFunction(dir: string, version: string, extra = ""): Promise<string> {
  const file = `${dir}/ver.ts`;
  await Deno.writeTextFile(
    file,
    `import { json, serveFunction } from "${projectRoot}/mod.ts";\n${extra}\n` +
      `serveFunction({ name: "ver", routes: ["/ver"] }, () => json({ version: "${version}" }));\n`,
  );
  return file;
}

/** Alternate sum and product on one connection until `stop()`; every answer
 * is checked. Resolves with the workers seen per route (`seen`, as it grows;
 * `requests`, answered so far). */
function loop(client: Client): {
  stop: () => Promise<Map<string, Set<string>>>;
  seen: Map<string, Set<string>>;
  readonly requests: number;
  /** Throws what stopped the loop, if something did. */
  check: () => true;
} {
  let running = true;
  let requests = 0;
  let failed: unknown;
  const seen = new Map<string, Set<string>>([["sum", new Set()], ["product", new Set()]]);
  const done = (async () => {
    for (let i = 0; running; i++, requests++) {
      const op = i % 2 ? "product" : "sum";
      const res = await client.get(`/${op}?a=${i}&b=3`); // throws on EOF or reset
      assert.equal(res.status, 200, res.body);
      assert.equal(JSON.parse(res.body).result, String(op === "sum" ? i + 3 : i * 3));
      seen.get(op)!.add(res.headers.get("x-hotpotato-worker")!);
    }
    return seen;
  })();
  done.catch((e) => failed = e); // reported by stop() (and check()); a test that fails first closes the client
  return {
    stop: () => {
      running = false;
      return done;
    },
    seen,
    get requests() {
      return requests;
    },
    check: () => {
      if (failed !== undefined) throw failed;
      return true;
    },
  };
}

Deno.test("SIGHUP reloads both functions three times under a tight loop: no error, no new handshake", async () => {
  const sys = await Launched.start("start", [], ["sum", "product"]);
  const clients: Client[] = [];
  try {
    // Idle connections held by each function, and one client in a tight loop.
    for (let i = 0; i < 6; i++) {
      const c = await Client.connect(sys.port);
      clients.push(c);
      assert.equal((await c.get(i % 2 ? "/product?a=1&b=2" : "/sum?a=1&b=2")).status, 200);
    }
    const looper = await Client.connect(sys.port);
    clients.push(looper);
    const busy = loop(looper);
    for (let round = 2; round <= 4; round++) {
      const lines = (await sys.reload(round === 4 ? "script" : "signal")).join("\n");
      for (const fn of ["sum", "product"]) {
        const m = lines.match(
          new RegExp(`reload ${round}: ${fn} is generation ${round} \\(pid (\\d+)\\)`),
        );
        assert.ok(m, lines);
        // Every idle connection's next request is answered by the new version.
        for (const c of clients.slice(0, 6)) {
          const res = await c.get(`/${fn}?a=2&b=5`);
          assert.equal(res.status, 200, res.body);
          assert.equal(res.headers.get("x-hotpotato-worker"), `${fn}/${m[1]}`);
        }
      }
    }
    const seen = await busy.stop();
    assert.ok(seen.get("sum")!.size >= 4, [...seen.get("sum")!].join(" ")); // all 4 versions
    assert.ok(seen.get("product")!.size >= 4, [...seen.get("product")!].join(" "));
    assert.equal(await sys.metric(HANDSHAKES), clients.length, "no client connected again");
    assert.equal(await sys.metric("hotpotato_reloads_total", 'result="ok"'), 6);
    assert.ok(await sys.metric("hotpotato_connections_handed_over_total") >= 6 * 2);
    assert.equal(
      await sys.metric("hotpotato_worker_versions", 'generation="4",state="serving"'),
      2,
    );
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});

Deno.test("a reload under 50 busy connections: no error, no new handshake", async () => {
  const sys = await Launched.start("start", ["--workers", "sum=2,product=2"], ["sum", "product"]);
  const clients: Client[] = [];
  try {
    for (let i = 0; i < 50; i++) clients.push(await Client.connect(sys.port));
    const loops = clients.map(loop);
    // Every connection busy, moving between the functions, before the reload.
    await waitUntil(() => loops.every((l) => l.check() && l.requests >= 4), {
      what: () => `4 requests on each connection (${loops.map((l) => l.requests)})`,
    });
    const lines = (await sys.reload()).join("\n");
    assert.match(lines, /reload 2: done in \d+ ms/);
    const fresh = [...lines.matchAll(/is generation 2 \(pid ([\d ]+)\)/g)]
      .flatMap((m) => m[1].split(" ").map(Number));
    assert.equal(fresh.length, 4, lines);
    const pidsOf = (s: Map<string, Set<string>>) =>
      [...s.get("sum")!, ...s.get("product")!].map((w) => Number(w.split("/")[1]));
    // Every connection goes on, and reaches the new version (checked below).
    await waitUntil(
      () => loops.every((l) => l.check() && pidsOf(l.seen).some((p) => fresh.includes(p))),
      {
        what: "every connection to reach the new version",
      },
    );
    const seen = await Promise.all(loops.map((l) => l.stop())); // rejects on any error
    // Every connection reached the new version afterwards.
    for (const s of seen) {
      const pids = pidsOf(s);
      assert.ok(pids.some((p) => fresh.includes(p)), pids.join(" "));
    }
    assert.equal(await sys.metric(HANDSHAKES), 50);
    for (
      const m of lines.matchAll(/reload 2: (\w+) is generation.*gone in (\d+) ms, (\d+) conn/g)
    ) {
      console.log(
        `  ${m[1]}: old workers gone ${m[2]} ms after SIGHUP, ${m[3]} connections handed over`,
      );
    }
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});

Deno.test("a new version that throws at start is not switched to; the old one keeps serving", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-ver-" });
  await Deno.chmod(dir, 0o755); // the function's user reads its file (launcher as root)
  const file = await versionedFunction(dir, "v1");
  const sys = await Launched.start("start", ["--function", `ver=${file}`], ["sum", "ver"]);
  const client = await Client.connect(sys.port);
  try {
    const first = await client.get("/ver");
    assert.equal(JSON.parse(first.body).version, "v1");
    const busy = loop(await Client.connect(sys.port));
    await versionedFunction(dir, "v2", 'throw new Error("broken at start");');
    const lines = (await sys.reload()).join("\n");
    assert.match(
      lines,
      // As root the launcher first asks the new file what it serves, which fails the same way.
      /reload 2: ver NOT switched: (ver \(pid \d+\) exited with code 1 before it registered|its describe run exited with code 1); generation 1 keeps serving/,
    );
    assert.match(lines, /reload 2: 1 of 3 failed/); // sum and product went on
    const res = await client.get("/ver");
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).version, "v1");
    assert.equal(res.headers.get("x-hotpotato-worker"), first.headers.get("x-hotpotato-worker"));
    assert.equal(await sys.metric("hotpotato_reloads_total", 'function="ver",result="failed"'), 1);
    // Fixed: the next reload switches.
    await versionedFunction(dir, "v3");
    assert.match((await sys.reload()).join("\n"), /reload 3: done/);
    assert.equal(JSON.parse((await client.get("/ver")).body).version, "v3");
    await busy.stop();
    assert.equal(await sys.metric(HANDSHAKES), 2);
  } finally {
    client.close();
    await sys.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task dev: an edit changes the answers on the same connection", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-dev-" });
  await Deno.chmod(dir, 0o755); // the function's user reads its file (launcher as root)
  const file = await versionedFunction(dir, "v1");
  const sys = await Launched.start("dev", [file], ["ver"]);
  const client = await Client.connect(sys.port);
  try {
    await sys.waitLine(/watching \d+ file\(s\)/);
    assert.equal(JSON.parse((await client.get("/ver")).body).version, "v1");
    for (const version of ["v2", "v3"]) {
      const mark = sys.lines.length;
      await versionedFunction(dir, version);
      await sys.waitLine(/reload \d+: ver is generation/, mark);
      assert.equal(JSON.parse((await client.get("/ver")).body).version, version);
    }
    // A broken edit keeps the last good version serving.
    const mark = sys.lines.length;
    await versionedFunction(dir, "v4", "const x: number = ;");
    await sys.waitLine(/reload \d+: ver NOT switched/, mark);
    assert.equal(JSON.parse((await client.get("/ver")).body).version, "v3");
    assert.equal(await sys.metric(HANDSHAKES), 1);
  } finally {
    client.close();
    await sys.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
