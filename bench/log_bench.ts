/**
 * `deno bench`: what one request log line costs a process, as shipped
 * (info level), before and after the cheap request log (src/operations/log.ts). Each
 * iteration logs 1,000 worker request lines (the line src/connection/holder.ts
 * writes), written to /dev/null, so divide by 1,000 for one
 * line:
 *
 * - before, in the worker: `log.info(template, () => props)` through
 *   LogTape's console sink and text formatter (one synchronous write per line);
 * - before, in the launcher: its relay of those lines (src/operations/launcher.ts before:
 *   read the pipe, split lines, prefix, one synchronous write per line);
 * - now: the same line as a `LogLine` through the line sink (our text
 *   formatter, prefixed as under the launcher, buffered, written in 4 KiB
 *   asynchronous writes, awaited at the end of the iteration);
 * - now, `log.info` instead of `LogLine` (what any other line costs);
 * - below the level (warning), for both.
 *
 *   ./hp deno bench --allow-write=/dev/null bench/log_bench.ts
 *
 * @module
 */

import {
  configureSync,
  type ConsoleSinkOptions,
  getConsoleSink,
  getLogger,
  type Logger,
} from "@logtape/logtape";
import { forEachLine } from "../src/operations/lines.ts";
import {
  type LineOutput,
  lineSink,
  LineWriter,
  logFormatter,
  LogLine,
  referenceTextFormatter,
} from "../src/operations/log.ts";

const LINES = 1000;
const PREFIX = "sum      | ";

// /dev/null stands for the terminal or pipe: what is measured is our side of
// the write, the system call included. (Not fd 1 itself: the bench's own
// report goes there.) Deno's console.info ends in the same synchronous write.
const devNull = Deno.openSync("/dev/null", { write: true });
const nullConsole = {
  info: (msg: string) => void devNull.writeSync(new TextEncoder().encode(`${msg}\n`)),
} as unknown as ConsoleSinkOptions["console"];
const nullOutput: LineOutput = {
  write: (_stream, bytes) => devNull.write(bytes),
  writeSync: (_stream, bytes) => devNull.writeSync(bytes),
};

const formatter = logFormatter("text");
const shipped = referenceTextFormatter(); // LogTape's, as setupLogging used before
const writer = new LineWriter({ prefix: PREFIX, output: nullOutput });
configureSync({
  reset: true,
  sinks: {
    console: getConsoleSink({ formatter: shipped, console: nullConsole }),
    line: lineSink(writer, formatter),
  },
  loggers: [
    { category: ["before"], lowestLevel: "info", sinks: ["console"] },
    { category: ["now"], lowestLevel: "info", sinks: ["line"] },
    { category: ["quiet"], lowestLevel: "warning", sinks: ["line"] },
    { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["console"] },
  ],
});

const head = { method: "GET", path: "/sum?a=12&b=30" };
const conn = { info: { connId: 4242, handoffs: 3 } };

const TEMPLATE = "{method} {path} {status} {ms}ms worker {worker} conn {conn} handoffs {handoffs}";

/** The worker's request log line, as src/worker/function_server.ts made it before. */
function requestInfo(log: Logger, started: number): void {
  log.info(TEMPLATE, () => ({
    method: head.method,
    path: head.path,
    route: "/sum",
    status: 200,
    ms: Math.round((performance.now() - started) * 100) / 100,
    worker: "sum/12345",
    conn: conn.info.connId,
    handoffs: conn.info.handoffs,
  }));
}

/** The worker's request log line, as src/connection/holder.ts makes it now. */
function requestLine(line: LogLine, started: number): void {
  line.log(() => ({
    method: head.method,
    path: head.path,
    route: "/sum",
    status: 200,
    ms: Math.round((performance.now() - started) * 100) / 100,
    worker: "sum/12345",
    conn: conn.info.connId,
    handoffs: conn.info.handoffs,
  }));
}

const before = getLogger(["before", "worker"]);
const now = getLogger(["now", "worker"]);
const nowLine = new LogLine(now, "info", TEMPLATE);
const below = getLogger(["quiet", "worker"]);
const belowLine = new LogLine(below, "info", TEMPLATE);

const props = {
  method: "GET",
  path: "/sum?a=12&b=30",
  route: "/sum",
  status: 200,
  ms: 0.05,
  worker: "sum/12345",
  conn: 4242,
  handoffs: 3,
};
// A record as LogTape makes it (its message template parsed with the properties).
const record = {
  category: ["hotpotato", "worker"],
  level: "info" as const,
  get message() {
    return ["", "GET", " ", "/sum?a=12&b=30", " ", 200, " ", 0.05, "ms worker ", "sum/12345"]
      .concat([" conn ", 4242, " handoffs ", 3, ""]);
  },
  rawMessage: TEMPLATE,
  timestamp: Date.now(),
  properties: props,
};

// The bytes the launcher read per line before: one formatted line.
const sample = shipped(record);
const relayInput = new TextEncoder().encode(sample.repeat(LINES));
const enc = new TextEncoder();

Deno.bench(`before, in the worker: log.info, console sink, ${LINES} lines`, {
  group: "line",
  baseline: true,
}, (b) => {
  b.start();
  const t = performance.now();
  for (let i = 0; i < LINES; i++) requestInfo(before, t);
  b.end();
});

Deno.bench(`before, in the launcher: relay of ${LINES} lines`, { group: "line" }, async (b) => {
  b.start();
  // As src/operations/launcher.ts pipeLines did: lines from the pipe, prefixed, one writeSync each.
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      for (let off = 0; off < relayInput.length; off += 65536) {
        c.enqueue(relayInput.subarray(off, off + 65536));
      }
      c.close();
    },
  });
  await forEachLine(stream, (line) => devNull.writeSync(enc.encode(`${PREFIX}${line}\n`)));
  b.end();
});

Deno.bench(`now: LogLine, line sink, ${LINES} lines, written`, { group: "line" }, async (b) => {
  b.start();
  const t = performance.now();
  for (let i = 0; i < LINES; i++) requestLine(nowLine, t);
  await writer.flush();
  b.end();
});

Deno.bench(`now: log.info, line sink, ${LINES} lines, written`, { group: "line" }, async (b) => {
  b.start();
  const t = performance.now();
  for (let i = 0; i < LINES; i++) requestInfo(now, t);
  await writer.flush();
  b.end();
});

Deno.bench(`below the level (warning): ${LINES} LogLine calls`, { group: "line" }, (b) => {
  b.start();
  const t = performance.now();
  for (let i = 0; i < LINES; i++) requestLine(belowLine, t);
  b.end();
});

Deno.bench(`below the level (warning): ${LINES} log.info calls`, { group: "line" }, (b) => {
  b.start();
  const t = performance.now();
  for (let i = 0; i < LINES; i++) requestInfo(below, t);
  b.end();
});

Deno.bench(`LogTape's text formatter alone: ${LINES} lines`, { group: "parts" }, (b) => {
  b.start();
  for (let i = 0; i < LINES; i++) shipped(record);
  b.end();
});

Deno.bench(`our text formatter alone: ${LINES} lines`, { group: "parts" }, (b) => {
  b.start();
  for (let i = 0; i < LINES; i++) formatter(record);
  b.end();
});

Deno.bench(`LineWriter.write alone: ${LINES} formatted lines, written`, {
  group: "parts",
}, async (b) => {
  b.start();
  for (let i = 0; i < LINES; i++) writer.write(1, sample);
  await writer.flush();
  b.end();
});
