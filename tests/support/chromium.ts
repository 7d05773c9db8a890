/**
 * Test support: headless Chromium (Debian's `chromium`, which
 * `scripts/setup-tools.sh` installs) driven by the Chrome DevTools Protocol
 * over its own WebSocket, with Deno's WebSocket client. The browser trusts
 * the test CA only: `--ignore-certificate-errors-spki-list` with the CA's
 * public key hash, so a certificate not signed by it is still refused.
 *
 * @module
 */

import { CA_CERT, run } from "./system.ts";

const dec = new TextDecoder();

/** The base64 SHA-256 of the certificate's SubjectPublicKeyInfo (what
 * Chromium's `--ignore-certificate-errors-spki-list` takes). */
async function spkiHash(pemFile: string): Promise<string> {
  const pem = await Deno.readTextFile(pemFile);
  const b64 = pem.match(/-----BEGIN CERTIFICATE-----([^-]+)-----END CERTIFICATE-----/)?.[1];
  if (!b64) throw new Error(`${pemFile}: no certificate`);
  const der = Uint8Array.from(atob(b64.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  const out = await run("openssl", ["x509", "-inform", "der", "-pubkey", "-noout"], der);
  if (out.code !== 0) throw new Error(`openssl x509: ${out.stderr}`);
  const key = out.stdout.match(/-----BEGIN PUBLIC KEY-----([^-]+)-----END PUBLIC KEY-----/)?.[1];
  if (!key) throw new Error("openssl x509 -pubkey: no public key");
  const spki = Uint8Array.from(atob(key.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", spki));
  return btoa(String.fromCharCode(...digest));
}

/** Where Chromium is, or an error that says how to get it. Never a skip:
 * a machine without it fails the test that needs it. */
export async function chromiumPath(): Promise<string> {
  for (const name of ["chromium", "chromium-browser"]) {
    const out = await run("sh", ["-c", `command -v ${name}`]).catch(() => null);
    if (out?.code === 0 && out.stdout.trim()) return out.stdout.trim();
  }
  throw new Error(
    "chromium is not installed: `make test` installs it (scripts/setup-tools.sh, " +
      "apt-get install chromium); install it by hand with `apt-get install chromium`",
  );
}

/** A running headless Chromium and a DevTools connection to it. */
export class Chromium {
  readonly child: Deno.ChildProcess;
  readonly #dir: string;
  readonly #ws: WebSocket;
  readonly #stderr: string[];
  #nextId = 1;
  #calls = new Map<number, { ok: (r: unknown) => void; fail: (e: Error) => void }>();

  private constructor(child: Deno.ChildProcess, dir: string, ws: WebSocket, stderr: string[]) {
    this.child = child;
    this.#dir = dir;
    this.#ws = ws;
    this.#stderr = stderr;
    ws.onmessage = (e) => {
      const msg = JSON.parse(e.data as string);
      const call = this.#calls.get(msg.id);
      if (!call) return; // an event
      this.#calls.delete(msg.id);
      if (msg.error) call.fail(new Error(`CDP: ${JSON.stringify(msg.error)}`));
      else call.ok(msg.result);
    };
    ws.onclose = () => {
      for (const call of this.#calls.values()) call.fail(new Error("CDP connection closed"));
      this.#calls.clear();
    };
  }

  /** Start Chromium (headless, its own profile in a temporary directory)
   * and connect to its DevTools WebSocket; fails within `timeoutMs`. */
  static async launch(timeoutMs = 30_000): Promise<Chromium> {
    const bin = await chromiumPath();
    const spki = await spkiHash(CA_CERT);
    // Chromium's sandbox refuses to run as root (CI containers).
    const root = (await run("id", ["-u"])).stdout.trim() === "0";
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-chromium-" });
    const args = [
      "--headless=new",
      "--remote-debugging-address=127.0.0.1",
      "--remote-debugging-port=0",
      `--user-data-dir=${dir}`,
      `--ignore-certificate-errors-spki-list=${spki}`,
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-extensions",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--metrics-recording-only",
      "--mute-audio",
      "about:blank",
    ];
    if (root) args.unshift("--no-sandbox");
    const child = new Deno.Command(bin, {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { HOME: dir },
    }).spawn();
    const stderr: string[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const url = await new Promise<string>((ok, fail) => {
        timer = setTimeout(
          () => fail(new Error(`chromium: no DevTools URL within ${timeoutMs} ms`)),
          timeoutMs,
        );
        child.status.then((s) => fail(new Error(`chromium exited (${s.code})`)));
        (async () => {
          let partial = "";
          for await (const chunk of child.stderr) {
            partial += dec.decode(chunk, { stream: true });
            const lines = partial.split("\n");
            partial = lines.pop()!;
            for (const line of lines) {
              stderr.push(line);
              const m = line.match(/DevTools listening on (ws:\/\/\S+)/);
              if (m) ok(m[1]);
            }
          }
        })().catch(() => {});
      });
      const ws = new WebSocket(url);
      await new Promise((ok, fail) => {
        ws.onopen = ok;
        ws.onerror = () => fail(new Error(`chromium: cannot connect to ${url}`));
      });
      return new Chromium(child, dir, ws, stderr);
    } catch (e) {
      try {
        child.kill("SIGKILL");
      } catch {
        // exited
      }
      await child.status;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw new Error(`${(e as Error).message}\n${stderr.slice(-20).join("\n")}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Call a DevTools method (on a page's session when `sessionId` is given). */
  call<T = Record<string, unknown>>(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
    timeoutMs = 60_000,
  ): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((ok, fail) => {
      const timer = setTimeout(() => {
        this.#calls.delete(id);
        fail(new Error(`CDP ${method}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#calls.set(id, {
        ok: (r) => {
          clearTimeout(timer);
          ok(r as T);
        },
        fail: (e) => {
          clearTimeout(timer);
          fail(e);
        },
      });
      this.#ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    });
  }

  /** Open a new blank page and return its DevTools session. */
  async newPage(): Promise<string> {
    const { targetId } = await this.call<{ targetId: string }>("Target.createTarget", {
      url: "about:blank",
    });
    const { sessionId } = await this.call<{ sessionId: string }>("Target.attachToTarget", {
      targetId,
      flatten: true,
    });
    return sessionId;
  }

  /** Evaluate `expression` (an async function's body, awaited) in the page
   * and return its value, which must be JSON-serializable. */
  async evaluate<T>(sessionId: string, body: string, timeoutMs = 60_000): Promise<T> {
    const r = await this.call<{
      result: { value?: unknown };
      exceptionDetails?: { text: string; exception?: { description?: string } };
    }>(
      "Runtime.evaluate",
      {
        expression: `(async () => { ${body} })()`,
        awaitPromise: true,
        returnByValue: true,
        timeout: timeoutMs,
      },
      sessionId,
      timeoutMs + 5_000,
    );
    if (r.exceptionDetails) {
      const d = r.exceptionDetails;
      throw new Error(`in the page: ${d.exception?.description ?? d.text}`);
    }
    return r.result.value as T;
  }

  /** The browser's stderr lines so far. */
  get stderr(): string[] {
    return this.#stderr;
  }

  /** Close the browser (politely, then SIGKILL after 5 s) and remove its profile. */
  async close(): Promise<void> {
    await this.call("Browser.close", {}, undefined, 5_000).catch(() => {});
    try {
      this.#ws.close();
    } catch {
      // closed
    }
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // exited
      }
    }, 5_000);
    await this.child.status;
    clearTimeout(timer);
    await this.child.stderr.cancel().catch(() => {});
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
