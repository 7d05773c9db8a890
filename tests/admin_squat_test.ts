/**
 * Another local process takes the admin port before the gateway: the
 * gateway serves on and tries the port again every 5 s (no restart loop),
 * the launcher sends the squatter no token or secret (only signatures it
 * cannot use) and refuses its forged answers, and once the port is free the
 * gateway takes it and reloads work. The admin port takes 32 connections at
 * once; more are closed as they come.
 */

import assert from "node:assert/strict";
import { projectRoot } from "../ffi/paths.ts";
import { forEachLine } from "../src/operations/lines.ts";
import { MAX_ADMIN_CONNECTIONS } from "../src/gateway/admin_server.ts";
import { Client } from "./support/system.ts";
import { sleep, waitUntil } from "./support/wait.ts";

Deno.test("a squatter on the admin port learns nothing and fakes no reload; the gateway takes the port back", async () => {
  // The squatter: answers every request 200 {"ok":true,...}, as a fake gateway would.
  const squatter = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (squatter.addr as Deno.NetAddr).port;
  const seen: string[] = [];
  const serving = (async () => {
    for await (const conn of squatter) {
      (async () => {
        const buf = new Uint8Array(16384);
        const n = await conn.read(buf).catch(() => null);
        if (n) seen.push(new TextDecoder().decode(buf.subarray(0, n)));
        const body = '[{"name":"sum","pid":1,"generation":"2","state":"standby","held":0}]';
        await conn.write(
          new TextEncoder().encode(
            `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n` +
              `x-hotpotato-proof: ${"0".repeat(64)}\r\nconnection: close\r\n\r\n${body}`,
          ),
        ).catch(() => {});
        conn.close();
      })();
    }
  })().catch(() => {});
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-squat-" });
  await Deno.chmod(dir, 0o755);
  const launcher = new Deno.Command(Deno.execPath(), {
    args: ["task", "start"],
    cwd: projectRoot,
    env: {
      HOTPOTATO_PORT: "0",
      HOTPOTATO_ADMIN_PORT: String(port),
      HOTPOTATO_CONTROL: `${dir}/run/gateway.sock`,
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const reading = Promise.all([
    forEachLine(launcher.stdout, (l) => lines.push(l)),
    forEachLine(launcher.stderr, (l) => lines.push(l)),
  ]);
  const waitLine = async (re: RegExp, after = 0, ms = 30_000): Promise<RegExpMatchArray> => {
    const until = Date.now() + ms;
    for (;;) {
      for (const l of lines.slice(after)) {
        const m = l.match(re);
        if (m) return m;
      }
      if (Date.now() > until) throw new Error(`no line ${re} in:\n${lines.join("\n")}`);
      await sleep(25);
    }
  };
  try {
    const https = Number((await waitLine(/^gateway\s+\|.*listening on https:\/\/[^:]+:(\d+)/))[1]);
    await waitLine(new RegExp(`admin port 127\\.0\\.0\\.1:${port}: .*trying again in 5 s`));
    await waitLine(/worker product\/\d+ registered/);
    await waitLine(/worker sum\/\d+ registered/);
    // The gateway serves on meanwhile.
    const client = await Client.connect(https);
    assert.equal((await client.get("/sum?a=1&b=2")).status, 200);
    const launcherPid = Number((await waitLine(/^launcher\s+\| pid (\d+): kill -HUP/))[1]);
    let mark = lines.length;
    Deno.kill(launcherPid, "SIGHUP");
    const failed = await waitLine(/reload 2: (\w+) NOT switched: (.*)/, mark);
    assert.match(failed[2], /did not prove it is this launcher's gateway/);
    await waitLine(/reload 2: 2 of 2 failed/, mark);
    // What the squatter saw: signed requests, nothing it can use.
    assert.ok(seen.length > 0, "the launcher did ask");
    for (const request of seen) {
      assert.match(request, /x-hotpotato-signature: v1 \d+\.[0-9a-f]{32}\.[0-9a-f]{64}/i);
      assert.doesNotMatch(request, /authorization|bearer|token/i, request);
    }
    assert.equal((await client.get("/product?a=2&b=3")).status, 200, "the old version serves");
    // The port comes free: the gateway takes it within 5 s, and reloads work.
    squatter.close();
    await serving;
    await waitLine(new RegExp(`admin on http://127\\.0\\.0\\.1:${port}`), 0, 15_000);
    mark = lines.length;
    Deno.kill(launcherPid, "SIGHUP");
    await waitLine(/reload 3: done in \d+ ms/, mark);
    assert.equal((await client.get("/sum?a=2&b=2")).status, 200);
    client.close();
    // At most MAX_ADMIN_CONNECTIONS admin connections at once; the rest are closed at once.
    const idle: Deno.TcpConn[] = [];
    for (let i = 0; i < MAX_ADMIN_CONNECTIONS + 8; i++) {
      idle.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    }
    // Over the cap: closed as accepted. The others stay open until the 5 s
    // deadline: still open after 2 s (the time under test).
    const open = sleep(2000).then(() => "open");
    const closed = await Promise.all(idle.map(async (c) => {
      const got = await Promise.race([c.read(new Uint8Array(1)), open]);
      return got === null;
    }));
    assert.equal(closed.filter(Boolean).length, 8, "the connections over the cap are closed");
    for (const c of idle) c.close();
    // Once the gateway has seen them go, the admin port answers again.
    let health: Response | undefined;
    await waitUntil(async () => {
      health = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
      return health !== undefined;
    }, { what: "the admin port to answer once the idle connections are closed" });
    assert.equal(health!.status, 200);
    await health!.body?.cancel();
  } finally {
    try {
      squatter.close();
    } catch { /* closed */ }
    launcher.kill("SIGINT");
    await launcher.status;
    await reading;
    await Deno.remove(dir, { recursive: true });
  }
});
