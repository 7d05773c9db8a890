// handoff-mode: both
/**
 * The request log as shipped (info level), with real processes: under the
 * launcher every child writes its own prefixed lines to the shared stdout,
 * whole and exactly once each, under a burst; lines logged just before a
 * SIGTERM drain or an uncaught error are written before the process exits;
 * and a process whose stdout nobody reads keeps answering, holds a bounded
 * buffer, counts what it drops and says so, and still exits when told to.
 */

import assert from "node:assert/strict";
import { projectRoot } from "../ffi/paths.ts";
import { forEachLine } from "../src/operations/lines.ts";
import { LAUNCHER_FLAGS, SERVER_FLAGS } from "../src/operations/roles.ts";
import { Client, Proc, System } from "./support/system.ts";

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));
const dec = new TextDecoder();
const enc = new TextEncoder();

/** `count` GETs in one write, then their answers (keep-alive, pipelined). */
async function pipelined(client: Client, paths: string[]): Promise<number[]> {
  await client.write(enc.encode(paths.map((p) => `GET ${p} HTTP/1.1\r\nhost: x\r\n\r\n`).join("")));
  const statuses: number[] = [];
  for (let i = 0; i < paths.length; i++) statuses.push((await client.read(10_000)).status);
  return statuses;
}

/** Wait until `pred` holds (checked every 50 ms), or throw with `what`. */
async function until(pred: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(what());
    await sleep(50);
  }
}

const LOG_LINE = /^\d\d:\d\d:\d\d\.\d{3} \[(TRC|DBG|INF|WRN|ERR|FTL)\] hotpotato\.[a-z-]+: ./;

Deno.test("launcher: 2,000 requests on keep-alive connections, each logged once, on whole prefixed lines", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-log-" });
  await Deno.chmod(dir, 0o755); // the roles' users (launcher as root) reach the control socket
  const launcher = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...LAUNCHER_FLAGS,
      "src/operations/launcher.ts",
      "--workers",
      "sum=2",
    ],
    cwd: projectRoot,
    env: {
      HOTPOTATO_PORT: "0",
      HOTPOTATO_ADMIN_PORT: "off",
      HOTPOTATO_CONTROL: `${dir}/run/gateway.sock`,
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out: string[] = [], err: string[] = [];
  const reading = Promise.all([
    forEachLine(launcher.stdout, (l) => out.push(l)),
    forEachLine(launcher.stderr, (l) => err.push(l)),
  ]);
  const find = (re: RegExp) => out.map((l) => l.match(re)).filter((m) => m !== null);
  const clients: Client[] = [];
  try {
    await until(
      () => find(/^gateway {2}\| .*listening on https:\/\/[^:]+:(\d+)/).length > 0,
      60_000,
      () => `the gateway did not start:\n${[...out, ...err].join("\n")}`,
    );
    const port = Number(find(/listening on https:\/\/[^:]+:(\d+)/)[0]![1]);
    await until(
      () => find(/worker (sum|product)\/\d+ registered/).length >= 3,
      30_000,
      () => `workers did not register:\n${out.join("\n")}`,
    );

    // 10 connections × 200 requests, pipelined 20 at a time, sum and product
    // in turns of 10: three workers and the gateway (handshakes, returned
    // connections) write to the one pipe at once.
    const CONNS = 10, PER = 200, BATCH = 20;
    for (let c = 0; c < CONNS; c++) clients.push(await Client.connect(port));
    await Promise.all(clients.map(async (client, c) => {
      for (let i = 0; i < PER; i += BATCH) {
        const paths = Array.from({ length: BATCH }, (_, k) => {
          const n = i + k;
          return `/${Math.floor(n / 10) % 2 ? "product" : "sum"}/${c}-${n}?a=${c}&b=${n}`;
        });
        assert.deepEqual(await pipelined(client, paths), paths.map(() => 200));
      }
    }));

    const served =
      /^(sum\.1|sum\.2|product) +\| \d\d:\d\d:\d\d\.\d{3} \[INF\] hotpotato\.worker: GET \/(sum|product)\/(\d+)-(\d+) 200 \d+(?:\.\d+)?ms worker (sum|product)\/\d+ conn \d+ handoffs \d+$/;
    await until(
      () => out.filter((l) => served.test(l)).length >= CONNS * PER,
      30_000,
      () => `${out.filter((l) => served.test(l)).length} of ${CONNS * PER} request lines`,
    );
    await sleep(300); // anything logged twice would arrive by now

    // Every line: a role's prefix as the launcher wrote it (name padded to 8,
    // " | "), then one whole log line: no line cut into or joined to another.
    const roles = new Set(["launcher", "gateway", "sum.1", "sum.2", "product"]);
    for (const line of [...out, ...err]) {
      assert.equal(line.indexOf(" | "), 8, `prefix: ${line}`);
      const role = line.slice(0, 8).trimEnd();
      assert.ok(roles.has(role), `role: ${line}`);
      if (role === "launcher") continue;
      const rest = line.slice(11);
      assert.match(rest, LOG_LINE);
      assert.equal(rest.match(/\d\d:\d\d:\d\d\.\d{3} \[/g)!.length, 1, `one record: ${line}`);
    }
    // Every request exactly once, from a worker of its function.
    const seen = new Map<string, number>();
    for (const line of out) {
      const m = line.match(served);
      if (!m) continue;
      assert.equal(m[1].replace(/\.\d$/, ""), m[2], line);
      assert.equal(m[5], m[2], line);
      const key = `${m[2]} ${m[3]} ${m[4]}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
    assert.equal(seen.size, CONNS * PER);
    assert.deepEqual([...new Set(seen.values())], [1]);
    assert.ok(
      find(/^sum\.1 {4}\| /).length > 0 && find(/^sum\.2 {4}\| /).length > 0,
      "both sum workers",
    );
    assert.equal(find(/^gateway {2}\| .*TLS handshake complete/).length, CONNS);
    assert.ok(
      find(/^gateway {2}\| .*connection (returned|moved)/).length >= CONNS * (PER / 10 - 1),
    );

    for (const client of clients) client.close();
    launcher.kill("SIGINT");
    assert.equal((await launcher.status).code, 0);
    await reading;
    for (const role of ["gateway", "sum.1", "sum.2", "product"]) {
      assert.ok(
        out.some((l) => l.startsWith(role.padEnd(8)) && / drained \(/.test(l)),
        `${role} drained:\n${out.slice(-20).join("\n")}`,
      );
    }
  } finally {
    for (const client of clients) client.close();
    try {
      launcher.kill("SIGKILL");
    } catch { /* exited */ }
    await launcher.status;
    await reading;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("lines logged just before a SIGTERM drain are all written before the exit", async () => {
  const sys = await System.start();
  try {
    const client = await Client.connect(sys.port);
    const paths = Array.from({ length: 300 }, (_, i) => `/sum/${i}?a=${i}&b=1`);
    assert.deepEqual(await pipelined(client, paths), paths.map(() => 200));
    // At once: most of these lines are still in the worker's buffer.
    const sum = sys.worker("sum");
    sum.child.kill("SIGTERM");
    assert.equal((await sum.child.status).code, 0);
    await sum.done;
    client.close();
    const logged = sum.lines.filter((l) => / hotpotato\.worker: GET \/sum\/\d+ 200 /.test(l));
    assert.equal(logged.length, 300, sum.lines.slice(-5).join("\n"));
    assert.match(sum.lines.at(-1)!, /sum drained \(0 connection\(s\) cut|gateway went away/);
    assert.ok(sum.lines.some((l) => /sum drained \(/.test(l)));
  } finally {
    await sys.stop();
  }
});

Deno.test("an uncaught error: the lines before it are written, then the error, prefixed", async () => {
  const sys = await System.start({ workers: [] });
  const prefix = "misbehave | ";
  const worker = new Proc("misbehave", "tests/fixtures/misbehave.ts", ["--control", sys.control], {
    HOTPOTATO_LOG_PREFIX: prefix,
  });
  try {
    await sys.gateway.waitFor(/worker misbehave\/\d+ registered/);
    const client = await Client.connect(sys.port);
    const paths = [...Array.from({ length: 30 }, (_, i) => `/echo/${i}`), "/crash"];
    await client.write(
      enc.encode(paths.map((p) => `GET ${p} HTTP/1.1\r\nhost: x\r\n\r\n`).join("")),
    );
    const status = await worker.child.status;
    await worker.done;
    client.close();
    assert.equal(status.code, 1);
    for (const line of worker.lines) assert.ok(line.startsWith(prefix), line);
    const echoed = worker.lines.filter((l) => / GET \/echo\/\d+ 200 /.test(l));
    assert.equal(echoed.length, 30, worker.lines.join("\n"));
    const at = worker.lines.findIndex((l) =>
      l === `${prefix}error: Uncaught Error: crash requested`
    );
    assert.ok(at > worker.lines.indexOf(echoed[29]), worker.lines.join("\n"));
    assert.match(worker.lines[at + 1], /^misbehave \| {5}at .*misbehave\.ts/);
  } finally {
    await worker.stop("SIGKILL");
    await sys.stop();
  }
});

/** A gateway (no workers) whose stdout is read only until it says where it listens. */
class UnreadGateway {
  readonly child: Deno.ChildProcess;
  readonly dir: string;
  readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly err: string[] = [];
  readonly errDone: Promise<void>;
  text = "";

  constructor(dir: string) {
    this.dir = dir;
    this.child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...SERVER_FLAGS,
        "gateway.ts",
        "--port",
        "0",
        "--admin-port",
        "off",
        "--control",
        `${dir}/run/gateway.sock`,
      ],
      cwd: projectRoot,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.reader = this.child.stdout.getReader();
    this.errDone = forEachLine(this.child.stderr, (l) => this.err.push(l));
  }

  async port(): Promise<number> {
    for (;;) {
      const m = this.text.match(/listening on https:\/\/[^:]+:(\d+)/);
      if (m) return Number(m[1]);
      const { value, done } = await this.reader.read();
      if (done) throw new Error(`gateway exited:\n${this.text}\n${this.err.join("\n")}`);
      this.text += dec.decode(value, { stream: true });
    }
  }

  /** Read stdout from now on, to its end. */
  async readAll(): Promise<void> {
    for (;;) {
      const { value, done } = await this.reader.read();
      if (done) return;
      this.text += dec.decode(value, { stream: true });
    }
  }
}

/** 404s answered by the gateway itself: one ~300-byte log line each. */
async function notFound(client: Client, from: number, count: number): Promise<void> {
  const pad = "x".repeat(170);
  const paths = Array.from({ length: count }, (_, i) => `/nope/${pad}/${from + i}`);
  const statuses = await pipelined(client, paths);
  assert.deepEqual(statuses, paths.map(() => 404));
}

Deno.test("stdout nobody reads: answers keep coming; past 1 MiB lines are dropped, counted, and said", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-log-" });
  await Deno.chmod(dir, 0o755); // the roles' users (launcher as root) reach the control socket
  const gw = new UnreadGateway(dir);
  const clients: Client[] = [];
  try {
    const port = await gw.port();
    for (let c = 0; c < 4; c++) clients.push(await Client.connect(port));
    // 4 × 1,500 lines of ~300 bytes: 1.8 MB, far past the 64 KiB pipe and the 1 MiB buffer.
    const started = Date.now();
    await Promise.all(clients.map(async (client, c) => {
      for (let i = 0; i < 1500; i += 100) await notFound(client, c * 1500 + i, 100);
    }));
    const took = Date.now() - started;
    // Still answering at once, with its output stuck.
    const t0 = Date.now();
    await notFound(clients[0], 6000, 1);
    assert.ok(
      Date.now() - t0 < 1000,
      `an answer took ${Date.now() - t0} ms (the burst ${took} ms)`,
    );
    assert.ok(!gw.text.includes("GET /nope"), "nothing was read yet");

    // Now someone reads: what was kept arrives, then how many lines were dropped.
    const reading = gw.readAll();
    const dropped = () =>
      [...gw.err, ...gw.text.split("\n")]
        .map((l) => l.match(/\[WRN\] hotpotato\.log: (\d+) log line\(s\) dropped/))
        .filter((m) => m !== null)
        .reduce((n, m) => n + Number(m![1]), 0);
    await until(() => dropped() > 0, 10_000, () => `no drop notice:\n${gw.err.join("\n")}`);
    for (const client of clients) client.close();
    gw.child.kill("SIGTERM");
    assert.equal((await gw.child.status).code, 0);
    await reading;
    await gw.errDone;
    const logged = gw.text.split("\n").filter((l) => / GET \/nope\/x+\/\d+ 404 /.test(l)).length;
    // Each request was either logged or counted as dropped, and the bound held.
    assert.equal(logged + dropped(), 6001, `logged ${logged}, dropped ${dropped()}`);
    assert.ok(logged * 300 < 1.4 * 1024 * 1024, `logged ${logged} lines of ~300 bytes`);
    assert.ok(dropped() > 1000, `dropped ${dropped()}`);
  } finally {
    for (const client of clients) client.close();
    try {
      gw.child.kill("SIGKILL");
    } catch { /* exited */ }
    await gw.child.status;
    await gw.reader.cancel().catch(() => {});
    await gw.errDone;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("stdout nobody reads: SIGTERM still drains and exits (it does not wait for a reader)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-log-" });
  await Deno.chmod(dir, 0o755); // the roles' users (launcher as root) reach the control socket
  const gw = new UnreadGateway(dir);
  try {
    const port = await gw.port();
    const client = await Client.connect(port);
    for (let i = 0; i < 600; i += 100) await notFound(client, i, 100); // ~180 KB: the pipe is full
    client.close();
    const t0 = Date.now();
    gw.child.kill("SIGTERM");
    const status = await gw.child.status;
    assert.equal(status.code, 0);
    assert.ok(Date.now() - t0 < 8000, `exit took ${Date.now() - t0} ms`);
  } finally {
    try {
      gw.child.kill("SIGKILL");
    } catch { /* exited */ }
    await gw.child.status;
    await gw.reader.cancel().catch(() => {});
    await gw.errDone;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
