/**
 * The README's commands, run the way a user runs them from a shell in the
 * project root: `make start ARGS=...`, `./hp ...` and the README's curl lines,
 * as real processes (make, bash, deno task, the launcher and its children,
 * curl). Each command runs in its own session (setsid), so that the test can
 * press Ctrl-C on it as a terminal does (SIGINT to the whole process group)
 * and always kill the whole tree at the end. The environment is a user's:
 * PATH and HOME, no XDG_RUNTIME_DIR; the gateway gets a free port (0) and a
 * control socket in a temporary directory, so a running gateway is never
 * touched. Each test first checks that the README (or, for what moved there,
 * a page of docs/) still shows the command it runs.
 */

import assert from "node:assert/strict";
import { projectRoot } from "../ffi/paths.ts";
import { forEachLine } from "../src/operations/lines.ts";
import { CA_CERT } from "./support/system.ts";

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));
const readme = await Deno.readTextFile(`${projectRoot}/README.md`);
/** The README and every page of docs/: what the documentation shows. */
const docs = [readme];
for (const entry of Deno.readDirSync(`${projectRoot}/docs`)) {
  if (entry.isFile && entry.name.endsWith(".md")) {
    docs.push(await Deno.readTextFile(`${projectRoot}/docs/${entry.name}`));
  }
}
/** Assert that the README or a page of docs/ shows `text`. */
function assertShown(text: string): void {
  assert.ok(docs.some((page) => page.includes(text)), `the README or docs/ show ${text}`);
}

/** The environment of a user's shell, plus `env`. */
function userEnv(env: Record<string, string>): Record<string, string> {
  const keep: Record<string, string> = {};
  for (const name of ["PATH", "HOME", "LANG", "TMPDIR", "HOTPOTATO_DENO"]) {
    const v = Deno.env.get(name);
    if (v !== undefined) keep[name] = v;
  }
  return { ...keep, ...env };
}

/** A command started in its own session (process group = its pid). */
class Session {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  readonly #reading: Promise<unknown>;

  constructor(name: string, cmd: string, args: string[], env: Record<string, string> = {}) {
    this.name = name;
    this.child = new Deno.Command("setsid", {
      args: [cmd, ...args],
      cwd: projectRoot,
      clearEnv: true,
      env: userEnv(env),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const add = (line: string) => {
      this.lines.push(line);
      if (Deno.env.get("HOTPOTATO_TEST_VERBOSE")) console.error(`[${this.name}] ${line}`);
    };
    this.#reading = Promise.all([
      forEachLine(this.child.stdout, add),
      forEachLine(this.child.stderr, add),
    ]);
  }

  /** The first line matching re, waiting up to timeoutMs for it. */
  async waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const line of this.lines) {
        const m = line.match(re);
        if (m) return m;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `${this.name}: no line matching ${re} within ${timeoutMs} ms:\n` +
            this.lines.slice(-30).join("\n"),
        );
      }
      await sleep(50);
    }
  }

  /** Every line matching re, once `count` of them have been seen (within timeoutMs). */
  async waitForCount(re: RegExp, count: number, timeoutMs: number): Promise<RegExpMatchArray[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.map((l) => l.match(re)).filter((m) => m !== null);
      if (found.length >= count) return found;
      if (Date.now() > deadline) {
        throw new Error(
          `${this.name}: ${found.length} of ${count} lines matching ${re} within ${timeoutMs} ms:\n` +
            this.lines.slice(-30).join("\n"),
        );
      }
      await sleep(50);
    }
  }

  /** Send a signal to every process of the session, as a terminal's Ctrl-C does. */
  signalGroup(signal: Deno.Signal): void {
    Deno.kill(-this.child.pid, signal);
  }

  /** True while any process of the session is alive. */
  groupAlive(): boolean {
    try {
      Deno.kill(-this.child.pid, "SIGCONT");
      return true;
    } catch {
      return false;
    }
  }

  /** The command's exit status, within timeoutMs; its output is read to the end. */
  async exit(timeoutMs: number): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `${this.name}: still running after ${timeoutMs} ms:\n` +
                this.lines.slice(-30).join("\n"),
            ),
          ),
        timeoutMs,
      );
    });
    try {
      const status = await Promise.race([this.child.status, late]);
      await Promise.race([this.#reading, late]);
      return status;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kill every process of the session and wait for the command (always safe to call). */
  async kill(): Promise<void> {
    try {
      this.signalGroup("SIGKILL");
    } catch {
      // the group is gone
    }
    await this.child.status;
    await this.#reading.catch(() => {});
  }
}

/** Wait until the session's process group is empty (every process it started has exited). */
async function groupGone(s: Session, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (s.groupAlive()) {
    if (Date.now() > deadline) throw new Error(`${s.name}: processes left after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Run a command to completion in its own session, killed after timeoutMs. */
async function runUser(
  cmd: string,
  args: string[],
  timeoutMs = 30_000,
  env: Record<string, string> = {},
): Promise<{ status: Deno.CommandStatus; output: string[] }> {
  const s = new Session(cmd, cmd, args, env);
  try {
    return { status: await s.exit(timeoutMs), output: s.lines };
  } finally {
    await s.kill();
  }
}

/** A shell command line's words (double- or single-quoted, or bare). */
function shellWords(command: string): string[] {
  return [...command.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
}

/** The README's first curl example: its arguments (shell words) and the answers it shows. */
function readmeCurl(): { args: string[]; answers: string[] } {
  const block = readme.match(/```console\n\$ (curl [^]*?)\n```/);
  assert.ok(block, "the README shows a curl session in a console block");
  const [command, ...output] = block[1].replace(/\\\n\s*/g, "").split("\n");
  const words = shellWords(command);
  assert.equal(words.shift(), "curl");
  return { args: words, answers: output };
}

/** The arguments of the README's `curl ...` for `path` (an inline `curl -k "https://...path..."`). */
function readmeInlineCurl(path: string): string[] {
  const found = readme.match(new RegExp(`\`curl ([^\`]*https://localhost:8443${path}[^\`]*)\``));
  assert.ok(found, `the README shows a curl for ${path}`);
  return shellWords(found[1]);
}

/** args with curl's `-k` replaced by a check against the development CA, as the README says. */
function withCaCert(args: string[]): string[] {
  return args.flatMap((a) => a === "-k" ? ["--cacert", ".local/certs/ca.pem"] : [a]);
}

/** Run curl with args (URLs on localhost:8443 moved to `port`), plus one
 * `num_connects` line after each answer. */
async function curl(args: string[], port: number): Promise<string[]> {
  const out = await new Deno.Command("curl", {
    args: [
      "-sS",
      "--max-time",
      "10",
      "-w",
      "\\n%{num_connects}\\n",
      ...args.map((a) => a.replace("https://localhost:8443/", `https://localhost:${port}/`)),
    ],
    cwd: projectRoot,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return text.split("\n").filter((l) => l !== "");
}

const START_ARGS = "--workers sum=2 --function hello=examples/hello.ts";

Deno.test("make start ARGS=... from the README, its curl line, then Ctrl-C stops everything", async () => {
  assert.ok(
    readme.includes(`make start ARGS="${START_ARGS}"`),
    "the README documents this make start line",
  );
  const { args, answers } = readmeCurl();
  assert.ok(args.includes("-k"), args.join(" "));
  assert.ok(readme.includes("`--cacert .local/certs/ca.pem`"), "the README names the CA check");
  assert.equal(answers.length, 3, "three answers");
  const helloArgs = readmeInlineCurl("/hello");
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-readme-" });
  await Deno.chmod(dir, 0o755); // the roles' users (launcher as root) reach the control socket
  const start = new Session("make start", "make", ["start", `ARGS=${START_ARGS}`], {
    HOTPOTATO_PORT: "0",
    HOTPOTATO_ADMIN_PORT: "off",
    HOTPOTATO_CONTROL: `${dir}/run/gateway.sock`,
  });
  try {
    // make setup may have something to install first: a generous deadline.
    const listening = await start.waitFor(
      /^gateway\s+\| .*listening on https:\/\/127\.0\.0\.1:(\d+)/,
      120_000,
    );
    const port = Number(listening[1]);
    const registered = await start.waitForCount(
      /^gateway\s+\| .*worker (\w+)\/(\d+) registered/,
      4,
      30_000,
    );
    const pids = (name: string) => registered.filter((m) => m[1] === name).map((m) => m[2]);
    assert.equal(new Set(pids("sum")).size, 2, "--workers sum=2: two sum workers");
    assert.equal(pids("product").length, 1);
    assert.equal(pids("hello").length, 1, "--function hello=examples/hello.ts");
    // The pool's logs are sum.1 and sum.2 (a worker's own lines may come a
    // little after the gateway's).
    await start.waitFor(/^sum\.1\s+\| /, 10_000);
    await start.waitFor(/^sum\.2\s+\| /, 10_000);

    // The README's curl line: one connection (1, 0, 0), the three answers it shows.
    assert.deepEqual(await curl(args, port), [answers[0], "1", answers[1], "0", answers[2], "0"]);
    // ... and the gateway's log lines the README mentions (the gateway writes them, prefixed,
    // to the launcher's stdout, which it inherits).
    await start.waitForCount(/^gateway\s+\| .*connection (returned|moved)/, 2, 10_000);
    assert.equal(start.lines.filter((l) => /TLS handshake complete/.test(l)).length, 1);
    // The same line checking the certificate against the development CA (the README's
    // alternative to -k), and the README's curl for /hello.
    const checked = await curl(withCaCert(args), port);
    assert.deepEqual(checked, [answers[0], "1", answers[1], "0", answers[2], "0"]);
    const helloQuery = new URL(helloArgs.find((a) => a.startsWith("https://"))!).searchParams;
    const hello = await curl(helloArgs, port);
    assert.equal(JSON.parse(hello[0]).hello, helloQuery.get("name"));

    // Ctrl-C: SIGINT to make and everything under it.
    start.signalGroup("SIGINT");
    const status = await start.exit(30_000);
    // make ends by the SIGINT it got (exit status 130 in a shell) once its
    // recipe is done, as GNU make does; the recipe itself (deno task, the
    // launcher) exited 0, or make would have said "make: *** ...".
    assert.equal(status.signal, "SIGINT", JSON.stringify(status));
    assert.deepEqual(start.lines.filter((l) => l.startsWith("make: ")), []);
    await groupGone(start, 10_000);
    await start.waitFor(/^launcher\s+\| SIGINT: stopping all/, 1);
    await start.waitFor(/^gateway\s+\| .*drained \(0 connection\(s\) cut/, 1);
    assert.equal(start.lines.filter((l) => /^launcher\s+\| .* exited \(/.test(l)).length, 0);
  } finally {
    await start.kill();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("make start with bad ARGS stops at once with the launcher's one-line error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-readme-" });
  await Deno.chmod(dir, 0o755); // the roles' users (launcher as root) reach the control socket
  try {
    const cases: [string, string][] = [
      ["--workers sum=x", "launcher: --workers: sum=x: the count must be 0 to 64"],
      ["--port 9443", "launcher: Unknown option '--port'"],
      [
        "--workers nope=1",
        "launcher: --workers: no file for function nope (add --function nope=FILE)",
      ],
    ];
    for (const [args, error] of cases) {
      const { status, output } = await runUser("make", ["start", `ARGS=${args}`], 30_000, {
        HOTPOTATO_PORT: "0",
        HOTPOTATO_ADMIN_PORT: "off",
        HOTPOTATO_CONTROL: `${dir}/run/gateway.sock`,
      });
      assert.notEqual(status.code, 0, args);
      assert.deepEqual(output.filter((l) => l.startsWith("launcher")), [error], args);
      assert.ok(!output.some((l) => l.startsWith("gateway")), "nothing was started");
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("./hp: --help lists every deno task, an unknown task is a one-line error", async () => {
  assertShown("`./hp --help`");
  const tasks = Object.keys(
    JSON.parse(await Deno.readTextFile(`${projectRoot}/deno.json`)).tasks,
  ).sort();

  const help = await runUser("./hp", ["--help"]);
  assert.equal(help.status.code, 0);
  for (const task of tasks) {
    assert.ok(help.output.some((l) => l.includes(`./hp ${task}`)), `--help shows ./hp ${task}`);
  }

  const unknown = await runUser("./hp", ["strat"]);
  assert.equal(unknown.status.code, 2);
  assert.equal(unknown.output.length, 1, unknown.output.join("\n"));
  const m = unknown.output[0].match(/^hp: unknown task "strat"; the tasks are: ([a-z ]+) \(/);
  assert.ok(m, unknown.output[0]);
  assert.deepEqual(m[1].split(" ").sort(), tasks, "./hp knows exactly deno.json's tasks");

  const none = await runUser("./hp", []);
  assert.equal(none.status.code, 2, "no task: usage, and a failure");
  assert.match(none.output[0], /^Usage: \.\/hp TASK/);
});

Deno.test("./hp gateway and ./hp worker examples/hello.ts, each as in its own terminal", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-readme-" });
  await Deno.chmod(dir, 0o755); // the roles' users (launcher as root) reach the control socket
  const control = `${dir}/run/gateway.sock`;
  assertShown("./hp gateway");
  assertShown("./hp worker examples/hello.ts");
  const gateway = new Session("./hp gateway", "./hp", [
    "gateway",
    "--port",
    "0",
    "--admin-port",
    "off",
    "--control",
    control,
  ]);
  let worker: Session | undefined;
  try {
    const port = Number(
      (await gateway.waitFor(/listening on https:\/\/127\.0\.0\.1:(\d+)/, 60_000))[1],
    );
    worker = new Session("./hp worker", "./hp", [
      "worker",
      "examples/hello.ts",
      "--control",
      control,
    ]);
    await gateway.waitFor(/worker hello\/\d+ registered/, 30_000);
    const hello = await curl(
      ["--cacert", CA_CERT, `https://localhost:8443/hello?name=terminal`],
      port,
    );
    assert.equal(JSON.parse(hello[0]).hello, "terminal");
    assert.equal(hello[1], "1");

    // Ctrl-C in each terminal: deno task passes it on, each drains and exits 0.
    for (const s of [worker, gateway]) {
      s.signalGroup("SIGINT");
      const status = await s.exit(30_000);
      assert.equal(status.code, 0, `${s.name}: ${JSON.stringify(status)}`);
      await groupGone(s, 10_000);
    }
    await worker.waitFor(/hello drained/, 1);
    await gateway.waitFor(/drained \(0 connection\(s\) cut/, 1);
  } finally {
    await worker?.kill();
    await gateway.kill();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
