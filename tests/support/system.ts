/**
 * Test support: starts the real gateway and workers as separate processes
 * (with the same permissions the tasks use) on a free port and a private
 * control socket, and offers real TLS clients: Deno's (rustls), openssl
 * s_client and curl.
 *
 * @module
 */

import { projectRoot } from "../../ffi/paths.ts";
import { forEachLine } from "../../src/operations/lines.ts";
import { SERVER_FLAGS } from "../../src/operations/roles.ts";

export const CA_CERT = `${projectRoot}/.local/certs/ca.pem`;

/** The handoff mode the gateways under test run in: the default (direct), or
 * the one HOTPOTATO_HANDOFF names. `scripts/test.sh` runs every test file
 * with `--handoff direct`, then again with `--handoff gateway` only the
 * files whose behaviour depends on the mode, which say so in a line of their
 * own, `// handoff-mode: both`, above their module comment. A file depends on
 * it when a request on a connection a worker holds is for another function's
 * route (a route change: a direct move, or a hand-back through the gateway),
 * or when it reads this constant (test.sh fails a file that reads it without
 * the line). Everything else (a connection's first placement, hand-backs of
 * unknown routes, handovers to a new version, satellites) is the same in
 * both modes. */
export const HANDOFF_MODE: "direct" | "gateway" = Deno.env.get("HOTPOTATO_HANDOFF") === "gateway"
  ? "gateway"
  : "direct";
const enc = new TextEncoder();
const dec = new TextDecoder();

/** A running process with its output collected line by line. */
export class Proc {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  #waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  readonly done: Promise<void>;
  /** True once the process has exited. */
  exited = false;

  /** `wrapper` runs the process through a command that execs it, e.g.
   * `["prlimit", "--nofile=64:64"]` (the pid stays that of deno); `flags`
   * are the role's permissions (default the server's). */
  constructor(
    name: string,
    file: string,
    args: string[],
    env: Record<string, string> = {},
    denoFlags: string[] = [],
    wrapper: string[] = [],
    flags: readonly string[] = SERVER_FLAGS,
  ) {
    this.name = name;
    const command = [...wrapper, Deno.execPath()];
    this.child = new Deno.Command(command[0], {
      args: [...command.slice(1), "run", ...flags, ...denoFlags, file, ...args],
      cwd: projectRoot,
      env: { HOTPOTATO_SUPERVISED: "1", ...env },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.done = Promise.all([this.#collect(this.child.stdout), this.#collect(this.child.stderr)])
      .then(() => {});
    this.child.status.then(() => this.exited = true);
  }

  #collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    return forEachLine(stream, (line) => this.#line(line));
  }

  #line(line: string): void {
    this.lines.push(line);
    if (Deno.env.get("HOTPOTATO_TEST_VERBOSE")) console.error(`[${this.name}] ${line}`);
    this.#waiters = this.#waiters.filter((w) => {
      const m = line.match(w.re);
      if (m) w.resolve(m);
      return !m;
    });
  }

  /** Resolve with the first line (already seen or future) matching re. */
  waitFor(re: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    for (const line of this.lines) {
      const m = line.match(re);
      if (m) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(
            `${this.name}: no line matching ${re} within ${timeoutMs} ms:\n` +
              this.lines.slice(-20).join("\n"),
          ),
        );
      }, timeoutMs);
      this.#waiters.push({
        re,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }

  /** Ask for the process's counters and memory (SIGUSR2) and return them. */
  async stats(): Promise<Record<string, unknown> & { memory: Record<string, number> }> {
    const before = this.count(/^hotpotato-stats /);
    this.child.kill("SIGUSR2");
    for (let i = 0; i < 200 && this.count(/^hotpotato-stats /) === before; i++) {
      await new Promise((ok) => setTimeout(ok, 10));
    }
    const line = this.lines.filter((l) => l.startsWith("hotpotato-stats ")).at(-1);
    if (!line || this.count(/^hotpotato-stats /) === before) {
      throw new Error(`${this.name}: no stats`);
    }
    return JSON.parse(line.slice("hotpotato-stats ".length));
  }

  /** Wait until every line the process logged before this call is in
   * `lines`. Log lines are buffered (up to 50 ms), so count them after this.
   * The stats line (SIGUSR2) is written after them, in order; stderr lines
   * written before it are read a moment later from their own pipe. */
  async settle(): Promise<void> {
    await this.stats();
    await new Promise((ok) => setTimeout(ok, 20));
  }

  count(re: RegExp): number {
    return this.lines.filter((l) => re.test(l)).length;
  }

  async stop(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    try {
      this.child.kill(signal);
    } catch {
      // already exited
    }
    await this.child.status;
    await this.done;
    try {
      await this.child.stdin.close();
    } catch {
      // closed
    }
  }
}

export interface SystemOptions {
  /** Worker files to start (default: sum and product). */
  workers?: { name: string; file: string }[];
  /** Extra gateway flags. */
  gatewayArgs?: string[];
  /** Extra worker flags. */
  workerArgs?: string[];
  /** Extra deno flags for every process (e.g. --v8-flags=--expose-gc). */
  denoFlags?: string[];
}

/** A metric's value from the /metrics of the admin port `adminPort`: the
 * sum of the series of `name` whose labels contain `labels` (0 if none). */
export async function metricOf(adminPort: number, name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{") && !line.startsWith(name + " ")) continue;
    if (labels && !line.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

/** The gateway and workers, started for one test. */
export class System {
  readonly dir: string;
  readonly control: string;
  gateway!: Proc;
  workers: Proc[] = [];
  port = 0;
  adminPort = 0;
  denoFlags: string[] = [];

  private constructor(dir: string) {
    this.dir = dir;
    this.control = `${dir}/gateway.sock`;
  }

  static async start(opts: SystemOptions = {}): Promise<System> {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-test-" });
    const sys = new System(`${dir}/run`);
    sys.denoFlags = opts.denoFlags ?? [];
    sys.gateway = new Proc(
      "gateway",
      "gateway.ts",
      [
        "--port",
        "0",
        "--admin-port",
        "0",
        "--control",
        sys.control,
        ...(opts.gatewayArgs ?? []),
      ],
      {},
      sys.denoFlags,
    );
    const m = await sys.gateway.waitFor(/listening on https:\/\/[^:]+:(\d+)/);
    sys.port = Number(m[1]);
    const admin = await sys.gateway.waitFor(/admin on http:\/\/[^:]+:(\d+)/);
    sys.adminPort = Number(admin[1]);
    const workers = opts.workers ?? [
      { name: "sum", file: "workers/sum.ts" },
      { name: "product", file: "workers/product.ts" },
    ];
    for (const w of workers) await sys.addWorker(w.name, w.file, opts.workerArgs ?? []);
    return sys;
  }

  async addWorker(
    name: string,
    file: string,
    args: string[] = [],
    env: Record<string, string> = {},
  ): Promise<Proc> {
    const p = new Proc(name, file, ["--control", this.control, ...args], env, this.denoFlags);
    this.workers.push(p);
    await p.waitFor(new RegExp(`registered\\W{0,3}${name}\\W{0,3} for`));
    return p;
  }

  worker(name: string): Proc {
    return this.workers.find((w) => w.name === name)!;
  }

  /** Handshakes the gateway logged so far (after {@linkcode Proc.settle}). */
  async handshakes(): Promise<number> {
    await this.gateway.settle();
    return this.gateway.count(/TLS handshake complete/);
  }

  /** The route changes the gateway has logged ("connection returned" through
   * it, "connection moved" when told of a direct move, which may come a
   * little after the move), once at least `n` are there or after 5 s. */
  async routeChanges(n: number): Promise<number> {
    const re = /connection (returned|moved):/;
    for (let i = 0; i < 250 && this.gateway.count(re) < n; i++) {
      await new Promise((ok) => setTimeout(ok, 20));
    }
    return this.gateway.count(re);
  }

  /** A metric from the gateway's /metrics (see {@linkcode metricOf}); the
   * workers' counts are in it once they report them (every second). */
  metric(name: string, labels = ""): Promise<number> {
    return metricOf(this.adminPort, name, labels);
  }

  /** Wait for every process's log lines so far (see {@linkcode Proc.settle}). */
  async settle(): Promise<void> {
    await Promise.all([this.gateway, ...this.workers].map((p) => p.settle()));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.workers, this.gateway].map((p) => p.stop()));
    await Deno.remove(this.dir.replace(/\/run$/, ""), { recursive: true }).catch(() => {});
  }
}

/** A parsed HTTP response. */
export interface HttpResponse {
  status: number;
  headers: Map<string, string>;
  body: string;
}

function findHeadEnd(buf: Uint8Array): number {
  for (let i = 0; i + 3 < buf.length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

/** Parse one response from the start of buf; null if incomplete. With
 * `headOnly`, the body is not expected (a response to HEAD). */
export function parseResponse(
  buf: Uint8Array,
  headOnly = false,
): { res: HttpResponse; length: number } | null {
  const end = findHeadEnd(buf);
  if (end < 0) return null;
  const lines = dec.decode(buf.subarray(0, end)).split("\r\n");
  const status = Number(lines[0].split(" ")[1]);
  const headers = new Map<string, string>();
  for (const l of lines.slice(1)) {
    const i = l.indexOf(":");
    headers.set(l.slice(0, i).toLowerCase(), l.slice(i + 1).trim());
  }
  if (!headOnly && headers.get("transfer-encoding") === "chunked") {
    // A chunked body (no trailers): the chunks' data, once the last is here.
    let p = end + 4, body = "";
    for (;;) {
      const lf = buf.indexOf(10, p);
      if (lf < 0) return null;
      const size = parseInt(dec.decode(buf.subarray(p, lf - 1)), 16);
      if (size === 0) {
        if (buf.length < lf + 3) return null;
        return { res: { status, headers, body }, length: lf + 3 };
      }
      if (buf.length < lf + 1 + size + 2) return null;
      body += dec.decode(buf.subarray(lf + 1, lf + 1 + size));
      p = lf + 1 + size + 2;
    }
  }
  const len = headOnly ? 0 : Number(headers.get("content-length") ?? "0");
  if (buf.length < end + 4 + len) return null;
  return {
    res: { status, headers, body: dec.decode(buf.subarray(end + 4, end + 4 + len)) },
    length: end + 4 + len,
  };
}

/** Reads HTTP responses from a byte stream; subclasses say where bytes come from. */
abstract class ResponseReader {
  #buf = new Uint8Array(0);

  /** The next bytes from the server, or null at EOF. */
  protected abstract more(): Promise<Uint8Array | null>;

  async #fill(deadline: number): Promise<void> {
    if (Date.now() > deadline) throw new Error("response timed out");
    const bytes = await this.more();
    if (bytes === null) throw new Error("connection closed");
    const next = new Uint8Array(this.#buf.length + bytes.length);
    next.set(this.#buf);
    next.set(bytes, this.#buf.length);
    this.#buf = next;
  }

  /** Read one response (throws on EOF). */
  async read(timeoutMs = 10_000): Promise<HttpResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = parseResponse(this.#buf);
      if (r) {
        this.#buf = this.#buf.slice(r.length);
        return r.res;
      }
      await this.#fill(deadline);
    }
  }

  /** Read a response head only (the answer to HEAD, which has no body). */
  async readHead(timeoutMs = 10_000): Promise<HttpResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const end = findHeadEnd(this.#buf);
      if (end >= 0) {
        const res = parseResponse(this.#buf.subarray(0, end + 4), true)!.res;
        this.#buf = this.#buf.slice(end + 4);
        return res;
      }
      await this.#fill(deadline);
    }
  }

  abstract write(bytes: Uint8Array): Promise<void>;

  /** Send a GET and read its response. */
  async get(path: string, extra = ""): Promise<HttpResponse> {
    await this.write(Client.request(path, extra));
    return await this.read();
  }
}

/** A keep-alive HTTPS client on one Deno TLS (rustls) connection. */
export class Client extends ResponseReader {
  #conn: Deno.TlsConn;

  private constructor(conn: Deno.TlsConn) {
    super();
    this.#conn = conn;
  }

  protected async more(): Promise<Uint8Array | null> {
    const chunk = new Uint8Array(65536);
    const n = await this.#conn.read(chunk);
    return n === null ? null : chunk.subarray(0, n);
  }

  static async connect(port: number): Promise<Client> {
    const caCerts = [await Deno.readTextFile(CA_CERT)];
    const conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts });
    await conn.handshake();
    return new Client(conn);
  }

  static request(path: string, extra = ""): Uint8Array {
    return enc.encode(`GET ${path} HTTP/1.1\r\nhost: localhost\r\n${extra}\r\n`);
  }

  async write(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
  }

  /** True once the server has closed (EOF) within timeoutMs. */
  async closedByServer(timeoutMs = 5_000): Promise<boolean> {
    const timer = setTimeout(() => this.#conn.close(), timeoutMs);
    try {
      const n = await this.#conn.read(new Uint8Array(1024));
      return n === null;
    } catch {
      return true;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/** Run a command to completion; returns stdout text and exit code. */
export async function run(
  cmd: string,
  args: string[],
  stdin?: Uint8Array,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const w = child.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const out = await child.output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A keep-alive HTTPS client driving `openssl s_client` (a real OpenSSL
 * client, with the TLS version pinned). */
export class OpensslClient extends ResponseReader {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly stderr: Promise<string>;

  constructor(port: number, version: "1.2" | "1.3") {
    super();
    this.#child = new Deno.Command("openssl", {
      args: [
        "s_client",
        "-quiet",
        "-no_ign_eof",
        version === "1.2" ? "-tls1_2" : "-tls1_3",
        "-connect",
        `127.0.0.1:${port}`,
        "-servername",
        "localhost",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#reader = this.#child.stdout.getReader();
    this.stderr = new Response(this.#child.stderr).text();
  }

  async write(bytes: Uint8Array): Promise<void> {
    await this.#writer.write(bytes);
  }

  protected async more(): Promise<Uint8Array | null> {
    const { value, done } = await this.#reader.read();
    return done ? null : value;
  }

  async close(): Promise<string> {
    try {
      await this.#writer.close();
    } catch {
      // already closed
    }
    this.#reader.releaseLock();
    await this.#child.stdout.cancel().catch(() => {});
    await this.#child.status;
    return await this.stderr;
  }
}
