// handoff-mode: both
/**
 * End to end: TLS 1.3 KeyUpdate on a connection that moves between processes.
 *
 * A real `openssl s_client -tls1_3` (interactive: a line "k" sends a
 * KeyUpdate, "K" one with update_requested, which makes the server update
 * its own sending keys too) talks to the real gateway and workers. The
 * KeyUpdates reach a worker that imported the session, and the connection
 * then keeps moving, so every process after them must carry the new traffic
 * secrets. Needs wolfSSL with shim/patches/0001-export-tls13-traffic-secrets.patch.
 */

import { forEachLine } from "../src/operations/lines.ts";
import assert from "node:assert/strict";
import { CA_CERT, Client, type HttpResponse, parseResponse, System } from "./support/system.ts";

const enc = new TextEncoder();

/** `openssl s_client` without -quiet, so its command letters work; responses
 * are found in stdout among its session printouts. Its protocol trace (-msg)
 * goes to a file, to count the KeyUpdate messages each way. */
class InteractiveOpenssl {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #out = new Uint8Array(0);
  #errLines: string[] = [];
  #errWaiters: { re: RegExp; count: number; resolve: () => void }[] = [];
  #stderrDone: Promise<void>;
  readonly msgFile: string;
  exited = false;
  readonly status: Promise<Deno.CommandStatus>;

  constructor(port: number, msgFile: string) {
    this.msgFile = msgFile;
    this.#child = new Deno.Command("openssl", {
      args: [
        "s_client",
        "-tls1_3",
        "-connect",
        `127.0.0.1:${port}`,
        "-servername",
        "localhost",
        "-CAfile",
        CA_CERT,
        "-msg",
        "-msgfile",
        msgFile,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#reader = this.#child.stdout.getReader();
    this.#stderrDone = this.#collectStderr();
    this.status = this.#child.status.then((s) => {
      this.exited = true;
      return s;
    });
  }

  async #collectStderr(): Promise<void> {
    await forEachLine(this.#child.stderr, (line) => {
      this.#errLines.push(line);
      this.#wake();
    });
    this.#wake();
  }

  #wake(): void {
    this.#errWaiters = this.#errWaiters.filter((w) => {
      const done = this.stderrCount(w.re) >= w.count;
      if (done) w.resolve();
      return !done;
    });
  }

  /** Lines of stderr so far matching re. */
  stderrCount(re: RegExp): number {
    return this.#errLines.filter((l) => re.test(l)).length;
  }

  get stderrText(): string {
    return this.#errLines.join("\n");
  }

  /** Wait until stderr has `count` lines matching re. */
  waitStderr(re: RegExp, count: number, timeoutMs = 10_000): Promise<void> {
    if (this.stderrCount(re) >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`openssl: no ${count}x ${re} on stderr:\n${this.stderrText}`)),
        timeoutMs,
      );
      this.#errWaiters.push({
        re,
        count,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  /** Send a command letter on a line of its own; resolves once s_client has
   * acted on it (it prints KEYUPDATE), so it is not merged with later input. */
  async keyUpdate(letter: "k" | "K"): Promise<void> {
    const before = this.stderrCount(/^KEYUPDATE$/);
    await this.#writer.write(enc.encode(`${letter}\n`));
    await this.waitStderr(/^KEYUPDATE$/, before + 1);
  }

  async get(path: string, timeoutMs = 10_000): Promise<HttpResponse> {
    await this.#writer.write(Client.request(path));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // Skip s_client's own printouts (session tickets, etc.) before the response.
      const at = indexOf(this.#out, enc.encode("HTTP/1.1 "));
      if (at > 0) this.#out = this.#out.slice(at);
      const r = at >= 0 ? parseResponse(this.#out) : null;
      if (r) {
        this.#out = this.#out.slice(r.length);
        return r.res;
      }
      if (Date.now() > deadline) throw new Error("response timed out");
      const { value, done } = await this.#reader.read();
      if (done) throw new Error("openssl: connection closed");
      const next = new Uint8Array(this.#out.length + value.length);
      next.set(this.#out);
      next.set(value, this.#out.length);
      this.#out = next;
    }
  }

  /** End of input: s_client sends close_notify and exits (killed if it has
   * not within timeoutMs). Returns its exit code and its protocol trace. */
  async close(timeoutMs = 5_000): Promise<{ code: number; trace: string }> {
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // already exited
      }
    }, timeoutMs);
    try {
      await this.#writer.close().catch(() => {});
      // Drain stdout (rather than cancel it) so s_client exits normally and
      // flushes its trace file.
      while (!(await this.#reader.read()).done) {
        // printouts after the last response
      }
      const { code } = await this.status;
      await this.#stderrDone;
      return { code, trace: await Deno.readTextFile(this.msgFile).catch(() => "") };
    } finally {
      clearTimeout(timer);
    }
  }
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function expectAnswer(res: HttpResponse, op: string, a: number, b: number): string {
  assert.equal(res.status, 200, res.body);
  assert.deepEqual(JSON.parse(res.body), {
    op,
    a: String(a),
    b: String(b),
    result: String(op === "sum" ? a + b : a * b),
  });
  const worker = res.headers.get("x-hotpotato-worker") ?? "";
  assert.match(worker, new RegExp(`^${op}/\\d+$`));
  return worker;
}

Deno.test("TLS 1.3 KeyUpdate (k and K) on a migrated connection, which keeps moving", async () => {
  const sys = await System.start();
  const msgFile = await Deno.makeTempFile({ prefix: "hotpotato-keyupdate-" });
  const client = new InteractiveOpenssl(sys.port, msgFile);
  let closing = false;
  try {
    // The first request moves the connection from the gateway to a worker;
    // from then on it lives on imported sessions: every KeyUpdate below is
    // read by a worker that imported it, and the next request (for the other
    // function) moves it on, through the gateway, with the updated keys.
    const steps: ("k" | "K" | null)[] = [null, "k", "K", "k", "K", "K", "k", null];
    const workers = new Map<string, string>();
    for (const [i, letter] of steps.entries()) {
      const op = i % 2 === 0 ? "sum" : "product";
      let res: HttpResponse;
      try {
        if (letter) await client.keyUpdate(letter);
        res = await client.get(`/${op}?a=${i + 10}&b=${i + 3}`);
      } catch (e) {
        throw new Error(
          `step ${i} (${letter ?? "no KeyUpdate"}, then /${op}): ${e}\n${client.stderrText}`,
        );
      }
      const worker = expectAnswer(res, op, i + 10, i + 3);
      // Each request went to the other function: one more move every time.
      assert.equal(res.headers.get("x-hotpotato-handoffs"), String(i + 1));
      if (!workers.has(op)) workers.set(op, worker);
      assert.equal(worker, workers.get(op), "the same worker process serves each function");
      assert.equal(client.exited, false, "openssl is still connected");
    }
    assert.equal(client.stderrCount(/^KEYUPDATE$/), steps.filter((s) => s).length);
    // One TLS 1.3 handshake, nothing closed, no alert and no TLS error anywhere.
    await sys.settle();
    assert.equal(await sys.handshakes(), 1);
    assert.equal(sys.gateway.count(/handshake complete.*TLSv1\.3/), 1);
    assert.equal(await sys.routeChanges(steps.length - 1), steps.length - 1);
    assert.doesNotMatch(client.stderrText, /alert|error|closed|errno/i);
    for (const p of [sys.gateway, ...sys.workers]) {
      assert.equal(p.count(/wolfSSL|TLS (read|write) failed|dropped/), 0, p.lines.join("\n"));
    }
    assert.equal(client.exited, false, "openssl is still connected");

    // A clean end, and the trace shows every KeyUpdate went out and each "K"
    // got the server's own KeyUpdate back (its new sending keys then worked).
    closing = true;
    const { code, trace } = await client.close();
    assert.equal(code, 0, client.stderrText);
    const sent = trace.match(/^>>> TLS 1\.3, Handshake \[length 0005\], KeyUpdate$/gm) ?? [];
    const received = trace.match(/^<<< TLS 1\.3, Handshake \[length 0005\], KeyUpdate$/gm) ?? [];
    assert.equal(sent.length, steps.filter((s) => s).length, trace);
    assert.equal(received.length, steps.filter((s) => s === "K").length, trace);
  } finally {
    if (!closing) await client.close().catch(() => {});
    await sys.stop();
    await Deno.remove(msgFile).catch(() => {});
  }
});
