/**
 * Streamed responses and `Expect: 100-continue`, end to end with real
 * clients (curl, Deno's EventSource): bodies sent as they are produced,
 * backpressure, cancellation when the client goes away, truncation that a
 * client can see, and no 1 s wait for curl's uploads. (The streams whose
 * connection then changes function are in stream_moves_test.ts.)
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { CA_CERT, run, System } from "./support/system.ts";
import { sleep, waitUntil } from "./support/wait.ts";

const dec = new TextDecoder();

const WORKERS = [
  { name: "sum", file: "workers/sum.ts" },
  { name: "streams", file: "tests/fixtures/streams.ts" },
  { name: "clock", file: "examples/clock.ts" },
];

/** The bytes of tests/fixtures/streams.ts `/streams/bytes?size=N`, hashed. */
function expectedDigest(size: number): string {
  const block = new Uint8Array(16384);
  let x = 1;
  for (let i = 0; i < block.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    block[i] = x & 0xff;
  }
  const hash = createHash("sha256");
  for (let sent = 0, index = 0; sent < size; index++) {
    const b = block.slice(0, Math.min(block.length, size - sent));
    if (b.length >= 8) new DataView(b.buffer).setBigUint64(0, BigInt(index), true);
    hash.update(b);
    sent += b.length;
  }
  return hash.digest("hex");
}

/** curl's arguments: the paths of this test's functions become URLs. */
function curl(sys: System, ...args: string[]) {
  const path = /^\/(streams|clock|sum|nowhere)\b/;
  return ["-s", "--cacert", CA_CERT, ...args].map((a) =>
    path.test(a) ? `https://localhost:${sys.port}${a}` : a
  );
}

async function rss(sys: System, name: string): Promise<number> {
  const s = await sys.worker(name).stats();
  return s.memory.rss;
}

Deno.test("SSE: curl -N gets each event as it is produced", async () => {
  const sys = await System.start({ workers: WORKERS });
  try {
    const child = new Deno.Command("curl", {
      args: curl(sys, "-N", "/clock?every=1500&count=2"),
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.getReader();
    const first = dec.decode((await reader.read()).value);
    // Sent as produced: the first event is here, the second (1.5 s later) not yet.
    assert.match(first, /^id: 1\nevent: tick\ndata: \{"n":1,/);
    assert.doesNotMatch(first, /id: 2/);
    let rest = "";
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      rest += dec.decode(r.value);
    }
    assert.match(rest, /id: 2\nevent: tick\ndata: \{"n":2,/);
    const status = await child.status;
    assert.equal(status.code, 0, "a complete chunked body");
    await child.stderr.cancel();
  } finally {
    await sys.stop();
  }
});

Deno.test("SSE: Deno's EventSource receives 5 events", async () => {
  const sys = await System.start({ workers: WORKERS });
  try {
    const script = `
      const es = new EventSource("https://localhost:${sys.port}/clock?every=50");
      let n = 0, done;
      const finished = new Promise((ok) => done = ok);
      es.addEventListener("tick", (e) => {
        console.log(JSON.parse(e.data).n);
        if (++n === 5) { es.close(); done(); }
      });
      // (A closed EventSource fires no error event: the fifth tick ends it.)
      es.addEventListener("error", () => done());
      const timer = setTimeout(() => { console.log("timeout"); Deno.exit(1); }, 10000);
      await finished;
      clearTimeout(timer);
    `;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--cert", CA_CERT, script],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const lines = dec.decode(out.stdout).trim().split("\n");
    assert.deepEqual(lines, ["1", "2", "3", "4", "5"], dec.decode(out.stderr));
    assert.equal(out.code, 0, dec.decode(out.stderr));
  } finally {
    await sys.stop();
  }
});

Deno.test("1 GiB streamed to a fast reader: right digest, the worker's memory bounded", async () => {
  const sys = await System.start({ workers: WORKERS });
  try {
    const size = 1 << 30;
    const before = await rss(sys, "streams");
    const out = await run("sh", [
      "-c",
      `curl ${curl(sys, `/streams/bytes?size=${size}`).join(" ")} | sha256sum`,
    ]);
    assert.equal(out.stdout.split(" ")[0], expectedDigest(size));
    const grown = (await rss(sys, "streams")) - before;
    assert.ok(grown < 64 * 2 ** 20, `the worker grew by ${grown} bytes for a 1 GiB body`);
  } finally {
    await sys.stop();
  }
});

Deno.test("a slow reader pauses the producer; a client that leaves cancels the stream", async () => {
  const sys = await System.start({ workers: WORKERS });
  try {
    const pid = sys.worker("streams").child.pid;
    // (ls: Deno reads /proc/PID/fd only with --allow-all)
    const fds = async () => Number((await run("sh", ["-c", `ls /proc/${pid}/fd | wc -l`])).stdout);
    const before = await rss(sys, "streams");
    const fdsBefore = await fds();
    // 24 MiB read at 6 MB/s (about 4 s): the worker's memory stays flat
    // meanwhile (sampled every 200 ms while it lasts), and every byte arrives.
    const size = 24 * 2 ** 20;
    let reading = true;
    const slow = run("sh", [
      "-c",
      `curl ${
        curl(sys, "--limit-rate", "6M", `/streams/bytes?size=${size}`).join(" ")
      } | sha256sum`,
    ]).finally(() => reading = false);
    let most = before, samples = 0;
    while (reading) {
      most = Math.max(most, await rss(sys, "streams"));
      samples++;
      await sleep(200);
    }
    assert.ok(samples >= 5, `${samples} samples of the worker's memory during the transfer`);
    const grown = most - before;
    assert.ok(grown < 48 * 2 ** 20, `the worker grew by ${grown} bytes for a slow reader`);
    assert.equal((await slow).stdout.split(" ")[0], expectedDigest(size));
    // The client is gone: the next write fails, the stream is cancelled.
    const forever = new Deno.Command("curl", {
      args: curl(sys, "-N", "/streams/forever"),
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const r = forever.stdout.getReader();
    assert.match(dec.decode((await r.read()).value), /tick/);
    forever.kill("SIGKILL");
    await forever.status;
    await sys.worker("streams").waitFor(/stream cancelled/, 10_000);
    await sys.worker("streams").waitFor(/signal aborted/, 10_000);
    // Nothing left behind: the worker's open fds are back where they were.
    let after = await fds();
    await waitUntil(async () => (after = await fds()) <= fdsBefore, {
      what: () => `the worker's open fds back to ${fdsBefore} (${after} now)`,
      timeoutMs: 5000,
    });
    assert.equal(after, fdsBefore, "open fds of the worker");
    // The worker goes on serving.
    const ok = await run(
      "curl",
      curl(sys, "/streams/bytes?size=100&length=1", "-o", "/dev/null", "-w", "%{http_code}"),
    );
    assert.equal(ok.stdout, "200");
  } finally {
    await sys.stop();
  }
});

Deno.test("Expect: 100-continue: 100 when the request is taken, the final status at once otherwise", async () => {
  const sys = await System.start({ workers: WORKERS });
  const dir = await Deno.makeTempDir();
  try {
    const body = crypto.getRandomValues(new Uint8Array(65536));
    const digest = createHash("sha256").update(body).digest("hex");
    await Deno.writeFile(`${dir}/body`, body);
    const post = (path: string) =>
      run(
        "curl",
        curl(
          sys,
          "-v",
          "-H",
          "Expect: 100-continue",
          "--data-binary",
          `@${dir}/body`,
          "-w",
          "\\n%{http_code} %{size_upload}",
          path,
        ),
      );
    const taken = await post("/streams/digest");
    assert.match(taken.stderr, /< HTTP\/1\.1 100 Continue/);
    const lines = taken.stdout.split("\n");
    assert.equal(JSON.parse(lines[0]).sha256, digest);
    assert.equal(lines.at(-1), "200 65536");
    // Refused before the body: 405 (sum takes GET), 404 (no such route),
    // 413 (over --max-body): no 100, and curl sends nothing.
    for (const [path, status] of [["/sum", 405], ["/nowhere", 404]] as const) {
      const r = await post(path);
      assert.doesNotMatch(r.stderr, /100 Continue/, path);
      assert.equal(r.stdout.trim().split("\n").at(-1), `${status} 0`, path);
    }
    const big = await run(
      "curl",
      curl(
        sys,
        "-H",
        "Expect: 100-continue",
        "-H",
        "content-type: x",
        "-X",
        "POST",
        "-H",
        "content-length: 2000000",
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        "/streams/digest",
      ),
    );
    assert.equal(big.stdout, "413");
  } finally {
    await sys.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a 100 MB upload is streamed to the handler: right digest, bounded memory", async () => {
  const limit = ["--max-body", String(200 * 2 ** 20)];
  const sys = await System.start({ workers: WORKERS, gatewayArgs: limit, workerArgs: limit });
  const dir = await Deno.makeTempDir();
  try {
    const size = 100 * 2 ** 20;
    const hash = createHash("sha256");
    const file = await Deno.open(`${dir}/upload`, { write: true, create: true });
    const piece = new Uint8Array(1 << 20);
    for (let i = 0; i < size / piece.length; i++) {
      piece.fill(i & 0xff);
      piece[0] = i >> 8;
      hash.update(piece);
      await file.write(piece);
    }
    file.close();
    const digest = hash.digest("hex");
    const before = await rss(sys, "streams");
    for (const chunked of [false, true]) {
      const r = await run("curl", [
        ...curl(sys, "--data-binary", `@${dir}/upload`, "/streams/digest"),
        ...(chunked ? ["-H", "transfer-encoding: chunked"] : []),
      ]);
      assert.deepEqual(JSON.parse(r.stdout), { bytes: size, sha256: digest });
    }
    const grown = (await rss(sys, "streams")) - before;
    assert.ok(grown < 64 * 2 ** 20, `the worker grew by ${grown} bytes for 2 x 100 MB uploads`);
  } finally {
    await sys.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--max-body as a body streams: 413 once past it, and the connection closed", async () => {
  const sys = await System.start({ workers: WORKERS });
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/big`, new Uint8Array(3 * 2 ** 20));
    // Chunked: no length to refuse at the head; refused once past 1 MiB.
    const r = await run(
      "curl",
      curl(sys, "-H", "transfer-encoding: chunked", "--data-binary", `@${dir}/big`, ...[
        "-D",
        "-",
        "-w",
        "\\n%{http_code}",
        "/streams/digest",
      ]),
    );
    assert.equal(r.stdout.trim().split("\n").at(-1), "413", r.stdout);
    assert.match(r.stdout, /"status":413/);
    // The answer says the connection closes (it does: the body is not read).
    assert.match(r.stdout, /^connection: close\r$/m);
    // A body the handler does not read: answered, then dropped or closed.
    await Deno.writeFile(`${dir}/small`, new Uint8Array(100_000));
    const unread = await run(
      "curl",
      curl(sys, "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\\n", ...[
        "--data-binary",
        `@${dir}/small`,
        "/streams/info",
        "/streams/info",
      ]),
    );
    assert.deepEqual(unread.stdout.trim().split("\n"), ["200 1", "200 1"]);
  } finally {
    await sys.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
