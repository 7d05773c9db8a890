/**
 * src/operations/log.ts in one process: the text formatter writes what LogTape's did
 * (every template in src/), LogLine records equal logger.info's, and the line
 * writer's promises: prefixed whole lines, writes of at most PIPE_BUF bytes
 * ending at a line's end, order across stdout and stderr, no write started
 * inside the call that logs, the size and time triggers, and a bounded buffer
 * that drops (and says so) when the output takes nothing.
 */

import assert from "node:assert/strict";
import { configureSync, getJsonLinesFormatter, getLogger, type LogRecord } from "@logtape/logtape";
import { projectRoot } from "../ffi/paths.ts";
import {
  type LineOutput,
  LineWriter,
  logFormatter,
  LogLine,
  referenceTextFormatter,
  type Stream,
  WRITE_CHUNK,
} from "../src/operations/log.ts";
import { sleep, waitUntil } from "./support/wait.ts";

/** Back to no logging (and no note from LogTape's meta logger about it). */
function unconfigure(): void {
  configureSync({
    reset: true,
    sinks: {},
    loggers: [{ category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] }],
  });
}

const dec = new TextDecoder();

/** Every message template of src/ (logger calls and LogLines). */
async function sourceTemplates(): Promise<string[]> {
  const found = new Set<string>();
  const files: string[] = [];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isDirectory) await walk(`${dir}/${entry.name}`);
      else if (entry.name.endsWith(".ts")) files.push(`${dir}/${entry.name}`);
    }
  };
  await walk(`${projectRoot}/src`);
  for (const file of files) {
    const text = await Deno.readTextFile(file);
    const calls =
      /(?:log\.(?:trace|debug|info|warning|error|fatal)\(|new LogLine\(\s*\w+,\s*"\w+",)\s*"((?:[^"\\]|\\.)*)"/g;
    for (const m of text.matchAll(calls)) found.add(JSON.parse(`"${m[1]}"`));
  }
  return [...found];
}

/** Sample properties for a template: every kind of value the formatter meets. */
function sampleProps(template: string, i: number): Record<string, unknown> {
  const kinds: unknown[] = [
    "a string with spaces",
    4242,
    0.05,
    ["/sum", "/sum2"],
    { pid: 7 },
    undefined,
    null,
    true,
    "line\nbreak \x1b[31mred",
  ];
  const props: Record<string, unknown> = {};
  let k = i;
  for (const m of template.matchAll(/\{(\w+)\}/g)) props[m[1]] = kinds[k++ % kinds.length];
  return props;
}

Deno.test("the text formatter writes what LogTape's did, for every template in src/", async () => {
  const records: LogRecord[] = [];
  const keep = (r: LogRecord) => void records.push(r);
  configureSync({
    reset: true,
    sinks: { keep },
    loggers: [
      { category: ["hotpotato"], lowestLevel: "trace", sinks: ["keep"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["keep"] },
    ],
  });
  records.length = 0;
  try {
    const templates = [
      ...await sourceTemplates(),
      "no placeholders",
      "{{escaped}} and {real} and }} and {",
      "{nested.path} {*} { spaced }",
      "",
    ];
    assert.ok(templates.length > 40, `found ${templates.length} templates in src/`);
    const log = getLogger(["hotpotato", "worker"]);
    for (let i = 0; i < templates.length; i++) {
      for (const level of ["debug", "info", "warning", "error"] as const) {
        log[level](templates[i], sampleProps(templates[i], i));
        log[level](templates[i], () => sampleProps(templates[i], i + 1)); // lazy properties
      }
    }
    log.info`a tagged ${"template"}`;
    const fast = logFormatter("text");
    const reference = referenceTextFormatter();
    for (const r of records) assert.equal(fast(r), reference(r), r.rawMessage as string);
    // Twice: the second time from the caches (template, category, second of the clock).
    for (const r of records) assert.equal(fast(r), reference(r));
    const midnight = { ...records[0], timestamp: Date.UTC(2026, 0, 1, 0, 0, 0, 7) };
    assert.equal(fast(midnight), reference(midnight));
    assert.match(fast(midnight), /^00:00:00\.007 \[DBG\] hotpotato\.worker: /);
  } finally {
    unconfigure();
  }
});

Deno.test("a LogLine makes the record logger.info makes (text and JSON)", () => {
  const records: LogRecord[] = [];
  configureSync({
    reset: true,
    sinks: { keep: (r) => void records.push(r) },
    loggers: [
      { category: ["hotpotato"], lowestLevel: "info", sinks: ["keep"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  try {
    const log = getLogger(["hotpotato", "worker"]);
    const template = "{method} {path} {status} {ms}ms worker {worker} conn {conn} handoffs {h}";
    const props = {
      method: "GET",
      path: "/sum?a=1&b=2",
      route: "/sum",
      status: 200,
      ms: 0.12,
      worker: "sum/1",
      conn: 3,
      h: 0,
    };
    const line = new LogLine(log, "info", template);
    line.log(() => props);
    line.log(props);
    log.info(template, () => props);
    assert.equal(records.length, 3);
    const at = (r: LogRecord) => ({
      category: r.category,
      level: r.level,
      message: r.message,
      rawMessage: r.rawMessage,
      properties: r.properties,
      timestamp: 1_700_000_000_123,
    });
    const [a, b, c] = records.map(at);
    assert.deepEqual(a, c);
    assert.deepEqual(b, c);
    for (const format of [logFormatter("text"), getJsonLinesFormatter({ properties: "flatten" })]) {
      assert.equal(format(a), format(c));
    }
    assert.equal(
      logFormatter("text")(a),
      "22:13:20.123 [INF] hotpotato.worker: GET /sum?a=1&b=2 200 0.12ms worker sum/1 conn 3 handoffs 0\n",
    );

    // Below the level: the properties are not even made.
    const quiet = new LogLine(log, "debug", "{x}");
    assert.equal(quiet.enabled, false);
    quiet.log(() => {
      throw new Error("called below the level");
    });
    assert.equal(records.length, 3);
    assert.throws(() => new LogLine(log, "info", "{a.b}"), /only \{name\} placeholders/);
  } finally {
    unconfigure();
  }
});

/** An output that records each write, and can be held (a pipe nobody reads). */
class FakeOutput implements LineOutput {
  writes: { stream: Stream; text: string; sync: boolean }[] = [];
  held = false;
  /** Each write takes this long (a slow reader). */
  delayMs = 0;
  #release: (() => void)[] = [];

  write(stream: Stream, bytes: Uint8Array): Promise<number> {
    const text = dec.decode(bytes); // copied now: the writer may reuse its buffer later
    const done = () => {
      this.writes.push({ stream, text, sync: false });
      return bytes.length;
    };
    if (this.delayMs) return new Promise((ok) => setTimeout(() => ok(done()), this.delayMs));
    if (!this.held) return Promise.resolve(done());
    return new Promise((ok) => this.#release.push(() => ok(done())));
  }

  writeSync(stream: Stream, bytes: Uint8Array): number {
    this.writes.push({ stream, text: dec.decode(bytes), sync: true });
    return bytes.length;
  }

  release(): void {
    this.held = false;
    for (const r of this.#release.splice(0)) r();
  }

  text(stream?: Stream): string {
    return this.writes.filter((w) => stream === undefined || w.stream === stream).map((w) => w.text)
      .join("");
  }
}

Deno.test("line writer: every line prefixed, writes of whole lines within PIPE_BUF", async () => {
  const out = new FakeOutput();
  const w = new LineWriter({ prefix: "sum.1    | ", output: out });
  w.write(1, "one\n");
  w.write(1, "two\nthree\n"); // several lines: each gets the prefix
  w.write(1, "no newline");
  assert.equal(out.writes.length, 0, "nothing is written inside the call");
  const lines: string[] = [];
  for (let i = 0; i < 2000; i++) {
    const line = `request ${i} ${"x".repeat(i % 97)}`;
    lines.push(line);
    w.write(1, `${line}\n`);
  }
  w.write(1, `${"L".repeat(10_000)}\n`); // longer than a chunk: written alone, whole
  assert.ok(await w.flush());
  for (const { text } of out.writes) {
    assert.ok(text.endsWith("\n"), "a write ends at a line's end");
    assert.ok(text.length <= WRITE_CHUNK || !text.slice(0, -1).includes("\n"), "within PIPE_BUF");
  }
  assert.equal(out.writes.filter((x) => x.text.length > WRITE_CHUNK).length, 1);
  assert.deepEqual(
    out.text().split("\n").slice(0, -1),
    [
      "sum.1    | one",
      "sum.1    | two",
      "sum.1    | three",
      "sum.1    | no newline",
      ...lines.map((l) => `sum.1    | ${l}`),
      `sum.1    | ${"L".repeat(10_000)}`,
    ],
  );
});

Deno.test("line writer: order kept across stdout and stderr; stderr lines go out at once", async () => {
  const out = new FakeOutput();
  const w = new LineWriter({ output: out, flushMs: 60_000 });
  w.write(1, "info 1\n");
  w.write(1, "info 2\n");
  w.write(2, "warning\n");
  w.write(1, "info 3\n");
  // Far sooner than flushMs (a minute): the warning made them go.
  await waitUntil(() => out.writes.length >= 3, { what: "three writes", timeoutMs: 5000 });
  assert.deepEqual(out.writes.map((x) => [x.stream, x.text]), [
    [1, "info 1\ninfo 2\n"],
    [2, "warning\n"],
    [1, "info 3\n"],
  ]);
});

Deno.test("line writer: a line after a quiet spell goes at once, later ones within FLUSH_MS or at FLUSH_BYTES", async () => {
  const out = new FakeOutput();
  // The writer's clock stands still unless the test moves it: the timer for
  // "second" is then exactly flushMs (real time), and a quiet spell is a jump.
  let now = 1000;
  const w = new LineWriter({ output: out, flushMs: 100, flushBytes: 1000, now: () => now });
  w.write(1, "first\n");
  await sleep(30);
  assert.equal(out.text(), "first\n", "quiet before: written on the next turn");
  w.write(1, "second\n");
  await sleep(30); // (its timer, due at 100 ms, comes after this one)
  assert.equal(out.text(), "first\n", "waits for the timer");
  await waitUntil(() => out.text() === "first\nsecond\n", {
    what: "the second line, at the timer",
    timeoutMs: 5000,
  });
  now += 150; // quiet again: more than flushMs since the last write began
  w.write(1, "third\n");
  await sleep(30);
  assert.equal(out.text(), "first\nsecond\nthird\n", "quiet again");
  for (let i = 0; i < 100; i++) w.write(1, `${"y".repeat(20)}\n`); // 2,100 bytes > flushBytes
  await sleep(30);
  assert.equal(w.buffered, 0, "the size trigger did not wait for the timer");
  assert.equal(out.text().split("\n").length - 1, 103);
});

Deno.test("line writer: an output that takes nothing never blocks; past the bound lines are dropped and counted", async () => {
  const out = new FakeOutput();
  out.held = true;
  const w = new LineWriter({
    output: out,
    maxBytes: 64 * 1024,
    flushBytes: 4096,
    dropNotice: (n) => `${n} dropped\n`,
  });
  const line = `${"z".repeat(99)}\n`; // 100 bytes
  for (let i = 0; i < 2000; i++) w.write(1, line); // 200 KB, far past the bound
  await sleep(20);
  for (let i = 0; i < 10; i++) w.write(1, line);
  assert.ok(w.dropped > 1000, `dropped ${w.dropped}`);
  assert.ok(w.buffered <= 64 * 1024, `holds ${w.buffered} bytes`);
  const dropped = w.dropped;
  // The reader comes back: what was kept arrives, then the notice.
  out.release();
  assert.ok(await w.flush());
  const lines = out.text().split("\n").slice(0, -1);
  assert.equal(lines.filter((l) => l === line.trim()).length, 2010 - dropped);
  assert.deepEqual(out.writes.filter((x) => x.stream === 2).map((x) => x.text), [
    `${dropped} dropped\n`,
  ]);
  assert.ok(
    lines.length <= (64 * 1024 + WRITE_CHUNK) / 100,
    "at most the bound, plus the write under way",
  );
  // And later lines flow as usual.
  w.write(1, "after\n");
  assert.ok(await w.flush());
  assert.ok(out.text().endsWith("after\n"));
});

Deno.test("line writer: flushSync writes everything now, unless a write is stuck", async () => {
  const out = new FakeOutput();
  let now = 1000;
  const w = new LineWriter({ prefix: "gw | ", output: out, now: () => now });
  w.write(1, "a\n");
  w.write(2, "b\n");
  w.write(1, "c\n");
  w.flushSync(); // as at Deno.exit(): no timer has run yet
  assert.deepEqual(out.writes.map((x) => [x.stream, x.text, x.sync]), [
    [1, "gw | a\n", true],
    [2, "gw | b\n", true],
    [1, "gw | c\n", true],
  ]);
  await sleep(10);
  assert.equal(out.writes.length, 3, "nothing written twice");

  // A write that has been pending a while: nobody reads; exit must not hang on it.
  out.held = true;
  w.write(1, "d\n");
  // The pump takes the line and starts its write, which does not complete.
  await waitUntil(() => w.buffered === 0, { what: "the write of d to begin" });
  w.write(1, "e\n");
  now += 150; // pending for longer than a write may take
  w.flushSync();
  assert.equal(out.writes.length, 3, "no synchronous write behind a stuck one");
  assert.equal(await w.flush(50), false, "flush gives up after its timeout");
  out.release();
  assert.ok(await w.flush());
  assert.equal(out.text(1), "gw | a\ngw | c\ngw | d\ngw | e\n");
});

Deno.test("line writer: flush waits for the lines queued before it, not for later ones", async () => {
  const out = new FakeOutput();
  out.delayMs = 3; // lines keep coming while each write is under way
  const w = new LineWriter({ output: out, flushMs: 5, flushBytes: 256 });
  let n = 0;
  const traffic = setInterval(() => {
    for (let i = 0; i < 20; i++) w.write(1, `line ${n++}\n`);
  }, 1);
  try {
    for (let i = 0; i < 20; i++) w.write(1, `line ${n++}\n`);
    const queued = n;
    assert.equal(await w.flush(2000), true, "resolved while lines keep coming");
    const written = out.text().split("\n").slice(0, -1);
    assert.ok(written.length >= queued, `${written.length} of the first ${queued} lines`);
    assert.deepEqual(
      written.slice(0, queued),
      Array.from({ length: queued }, (_, i) => `line ${i}`),
    );
  } finally {
    clearInterval(traffic);
    await w.flush();
  }
});
