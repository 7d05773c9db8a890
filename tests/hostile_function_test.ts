/**
 * A hostile function, added the way an operator adds one
 * (`--function evil=tests/fixtures/hostile.ts`), tries to take what a
 * function must never have: the gateway's key files, its memory and
 * environment, the launcher's, the public port, the control socket's
 * gateway-only messages (JOIN, TAKEOVER), another function's name (REGISTER,
 * with and without replace) and another function's peer socket (a forged
 * HANDOFF, twice, and garbage). With separate users (the launcher as root, as
 * CI runs it) every attempt fails and every function keeps serving; with one
 * user (the launcher as a normal user) what that mode promises holds (no
 * JOIN, no TAKEOVER, no memory or environment of the gateway or the
 * launcher), and what it does not promise is checked too, so that the
 * README's threat model stays true.
 */

import assert from "node:assert/strict";
import { projectRoot } from "../ffi/paths.ts";
import {
  accept,
  closeFd,
  processUid,
  receiveMessage,
  sendMessage,
  unixListen,
  userId,
} from "../ffi/shim.ts";
import { decodeMessage, encodeJson, type Message, MessageType } from "../src/handoff/protocol.ts";
import { DEFAULT_USERS, RoleUsers } from "../src/operations/users.ts";
import { Launched } from "./support/launched.ts";
import { CA_CERT, Proc } from "./support/system.ts";

const root = processUid() === 0;

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const client = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(CA_CERT)] });
  try {
    const res = await fetch(`https://127.0.0.1:${port}${path}`, { client });
    return { status: res.status, body: await res.text() };
  } finally {
    client.close();
  }
}

/** Every function answers as it should. */
async function serving(sys: Launched): Promise<void> {
  assert.equal(JSON.parse((await get(sys.port, "/sum?a=2&b=3")).body).result, "5");
  assert.equal(JSON.parse((await get(sys.port, "/product?a=2&b=3")).body).result, "6");
  assert.equal((await get(sys.port, "/evil")).body, "evil is nice\n");
}

async function attack(
  sys: Launched,
  extra: Record<string, string>,
): Promise<Record<string, string>> {
  const gateway = (await sys.waitLine(/with gateway pid (\d+)/))[1];
  const victim = (await sys.waitLine(/worker product\/(\d+) registered/))[1];
  const q = new URLSearchParams({
    gateway,
    victim,
    launcher: String(await sys.launcherPid()),
    port: String(sys.port),
    ...extra,
  });
  const res = await get(sys.port, `/evil/attack?${q}`);
  assert.equal(res.status, 200, res.body);
  return JSON.parse(res.body);
}

Deno.test({
  name: "separate users (launcher as root): a hostile function gets nothing it must not have",
  ignore: !root,
  async fn() {
    // The accounts the launcher uses (created on first use, as it does).
    const users = (await RoleUsers.prepare({ ...DEFAULT_USERS, mode: "separate" }, ["evil"]))!;
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-hostile-" });
    await Deno.chmod(dir, 0o755);
    const tickets = `${dir}/ticket.key`;
    await Deno.writeFile(tickets, crypto.getRandomValues(new Uint8Array(32)), { mode: 0o600 });
    await Deno.chown(tickets, users.gateway.uid, users.gateway.gid);
    const sys = await Launched.start(
      "start",
      ["--function", "evil=tests/fixtures/hostile.ts"],
      ["sum", "product", "evil"],
      { HOTPOTATO_TICKET_KEY_FILE: tickets, HOTPOTATO_GATEWAYS: "2" },
    );
    try {
      const say = sys.lines.find((l) => l.includes("separate users:")) ?? "";
      assert.match(say, /gateway hotpotato-gw .*evil hotpotato-fn-evil/);
      await serving(sys);
      const found = await attack(sys, {
        key: `${projectRoot}/.local/gateway/key.pem`,
        tickets,
      });
      const devKey = await attack(sys, { key: `${projectRoot}/.local/certs/key.pem` });
      assert.match(
        devKey["read the TLS private key"],
        /^refused/,
        "the dev key where make wrote it",
      );
      for (const [what, outcome] of Object.entries(found)) {
        assert.match(outcome, /^refused/, `${what}: ${outcome}`);
      }
      assert.equal(Object.keys(found).length, 16, Object.keys(found).join(", "));
      // Refused and said so, by the gateway and by the victim.
      await sys.waitLine(/refused JOIN from pid \d+ \(uid \d+\): not the gateway user/);
      await sys.waitLine(/refused TAKEOVER from pid \d+ \(uid \d+\): not the gateway user/);
      await sys.waitLine(/refused REGISTER of product from pid \d+ .*runs as user/);
      await sys.waitLine(
        /refused REGISTER of evil .*route \/product\/checkout is not one declared/,
      );
      await sys.waitLine(/^product\s+\|.*cannot take it: TLS state did not authenticate/);
      assert.ok(await sys.metric("hotpotato_control_refused_total") >= 4);
      // Nothing changed hands: the functions serve as before, and product
      // still has its own worker.
      await serving(sys);
      const workers = await (await fetch(`http://127.0.0.1:${sys.adminPort}/workers`)).json();
      const product = workers.filter((w: { name: string }) => w.name === "product");
      assert.equal(product.length, 1, JSON.stringify(workers));
      assert.equal(String(product[0].pid), (await sys.waitLine(/worker product\/(\d+)/))[1]);
      assert.notEqual(userId("hotpotato-fn-evil"), users.gateway.uid);
    } finally {
      await sys.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "one user (launcher as a normal user): no JOIN, no TAKEOVER, no memory or environment",
  ignore: !root,
  async fn() {
    // A normal user of our own, with its own certificate copy and Deno cache.
    const users = (await RoleUsers.prepare(
      { ...DEFAULT_USERS, mode: "separate", gatewayUser: "hotpotato-test" },
      [],
    ))!;
    const me = users.gateway;
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-oneuser-" });
    await Deno.chmod(dir, 0o755);
    for (const f of ["cert.pem", "key.pem"]) {
      await Deno.copyFile(`${projectRoot}/.local/certs/${f}`, `${dir}/${f}`);
      await Deno.chown(`${dir}/${f}`, me.uid, me.gid);
    }
    await Deno.mkdir(`${dir}/deno`, { mode: 0o700 });
    await Deno.chown(`${dir}/deno`, me.uid, me.gid);
    await Deno.chown(dir, me.uid, me.gid);
    const sys = await Launched.start(
      "start",
      ["--function", "evil=tests/fixtures/hostile.ts"],
      ["sum", "product", "evil"],
      {
        HOTPOTATO_CERT: `${dir}/cert.pem`,
        HOTPOTATO_KEY: `${dir}/key.pem`,
        DENO_DIR: `${dir}/deno`,
        HOME: dir,
        HOTPOTATO_GATEWAYS: "2",
      },
      me,
    );
    try {
      await serving(sys);
      const found = await attack(sys, { key: `${dir}/key.pem`, register: "off" });
      for (
        const what of [
          "JOIN",
          "TAKEOVER",
          "read the gateway's environ",
          "open the gateway's mem",
          "read the launcher's environ",
          "open the launcher's mem",
          "forged HANDOFF to another function",
          "the same forged HANDOFF again",
          "garbage HANDOFF to another function",
        ]
      ) assert.match(found[what], /^refused/, `${what}: ${found[what]}`);
      // What one user does not keep from a function (README, Threat model):
      // the user's files, signals, and the public port's SO_REUSEPORT group.
      assert.match(found["read the TLS private key"], /^SUCCEEDED/);
      assert.match(found["signal the gateway"], /^SUCCEEDED/);
      assert.match(found["bind the public port"], /^SUCCEEDED/);
      await sys.waitLine(
        /refused JOIN from pid \d+ \(uid \d+\): no proof of the launcher's secret/,
      );
      await sys.waitLine(/refused TAKEOVER from pid \d+ .*no proof of the launcher's secret/);
      await serving(sys);
    } finally {
      await sys.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "separate users: a function whose file claims another's route, or nests under it, is not run",
  ignore: !root,
  async fn() {
    for (
      const [fn, file, problem] of [
        ["imposter", "tests/fixtures/imposter.ts", /imposter and sum both claim \/sum/],
        ["nester", "tests/fixtures/nester.ts", /nester's \/product\/checkout is under product's/],
      ] as const
    ) {
      const dir = await Deno.makeTempDir({ prefix: "hotpotato-claim-" });
      await Deno.chmod(dir, 0o755);
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["task", "start", "--function", `${fn}=${file}`],
        cwd: projectRoot,
        env: {
          HOTPOTATO_PORT: "0",
          HOTPOTATO_ADMIN_PORT: "0",
          HOTPOTATO_CONTROL: `${dir}/run/gateway.sock`,
          NO_COLOR: "1",
        },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const said = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 2, said);
      assert.match(said, problem);
      assert.doesNotMatch(said, /listening on https/, "nothing was started");
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("one user: a satellite takes keys only from a gateway that proves the launcher's secret", async () => {
  // A process of the launcher's user that put its own socket at the control
  // path plays the primary: it answers JOIN with a key of its choosing.
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-fakeprimary-" });
  const control = `${dir}/gateway.sock`;
  const listenFd = unixListen(control);
  const secret = "ab".repeat(32);
  const satellite = new Proc("gateway.2", "gateway.ts", [
    "--port",
    "0",
    "--admin-port",
    "off",
    "--control",
    control,
    "--satellite",
    "on",
  ], { HOTPOTATO_SECRET: "stdin" });
  try {
    const w = satellite.child.stdin.getWriter();
    await w.write(new TextEncoder().encode(secret + "\n"));
    w.releaseLock();
    let fd = -1;
    for (let i = 0; i < 200 && fd < 0; i++) {
      const c = accept(listenFd);
      if (c) fd = c.fd;
      else await new Promise((ok) => setTimeout(ok, 25));
    }
    assert.ok(fd >= 0, "the satellite connected");
    const buf = new Uint8Array(65536);
    let join: Message | undefined;
    for (let i = 0; i < 200 && !join; i++) {
      const r = receiveMessage(fd, buf);
      if (typeof r === "number") await new Promise((ok) => setTimeout(ok, 25));
      else join = decodeMessage(buf.subarray(0, r.length));
    }
    assert.equal(join?.type, MessageType.JOIN);
    assert.match((join!.body as { proof?: string }).proof ?? "", /^[0-9a-f]{64}$/, "it proves");
    // The fake answers without a proof (it does not have the secret).
    sendMessage(
      fd,
      encodeJson(MessageType.REGISTERED, {
        ok: true,
        gatewayPid: Deno.pid,
        key: btoa(String.fromCharCode(...new Uint8Array(32))),
      }),
    );
    await satellite.waitFor(/did not prove the launcher's secret: not joined/);
    assert.equal(satellite.count(/joined the primary gateway/), 0);
    closeFd(fd);
  } finally {
    closeFd(listenFd);
    await satellite.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
