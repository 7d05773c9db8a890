/**
 * Logging setup for every role, on LogTape: human-readable lines by default,
 * JSON lines for log shippers. Loggers live under the "hotpotato" category.
 * Nothing here ever receives key material: callers log ids and sizes only.
 *
 * Output is cheap enough to leave the request log on: a record that passes
 * the level is formatted at once and appended to a byte buffer
 * ({@linkcode LineWriter}); the buffer is written with Deno's asynchronous
 * writes (never blocking the event loop) when it holds {@linkcode FLUSH_BYTES}
 * or {@linkcode FLUSH_MS} after its first line, in writes of at most
 * {@linkcode WRITE_CHUNK} bytes of whole lines, so that the lines of
 * processes sharing one pipe never interleave. While the output does not take
 * what it is given (a pipe nobody reads), at most {@linkcode MAX_BUFFERED}
 * bytes wait; later lines are dropped and counted, and a warning says how
 * many. What is buffered is written synchronously on exit (`Deno.exit`, the
 * end of the program, an uncaught error), unless a write has been stuck for
 * a while: then the exit does not wait for a reader that may never come.
 *
 * Under the launcher, `HOTPOTATO_LOG_PREFIX` (e.g. `"sum      | "`) starts
 * every line the process writes here, log records and {@linkcode printLine}
 * alike; the launcher's children write to its stdout and stderr directly.
 *
 * @module
 */

import {
  configureSync,
  getJsonLinesFormatter,
  getLogger,
  getTextFormatter,
  type Logger,
  type LogLevel,
  type LogRecord,
  sanitizeControlSequences,
  type Sink,
  type TextFormatter,
} from "@logtape/logtape";

/** Output format of the logs. */
export type LogFormat = "text" | "json";

/** Levels accepted by `--log-level`. */
export const LOG_LEVELS: readonly LogLevel[] = [
  "trace",
  "debug",
  "info",
  "warning",
  "error",
  "fatal",
];

/** Buffered bytes at which a write starts without waiting for the timer. */
export const FLUSH_BYTES = 64 * 1024;
/** A line waits at most this long, at rest: writes start at most this often,
 * and a line after a quiet period is written at once. */
export const FLUSH_MS = 50;
/** Bytes held while the output does not take them; lines beyond are dropped. */
export const MAX_BUFFERED = 1024 * 1024;
/** Bytes per write() at most: PIPE_BUF, the size Linux writes to a pipe
 * atomically. A chunk ends at a line's end (a longer line goes alone). */
export const WRITE_CHUNK = 4096;
/** At exit, a write pending this long means nobody reads the output. */
const STUCK_MS = 100;
/** Room kept past MAX_BUFFERED for the "lines dropped" warning. */
const NOTICE_ROOM = 1024;

/** A standard stream by its file descriptor: 1 stdout, 2 stderr. */
export type Stream = 1 | 2;

/** Where a {@linkcode LineWriter} writes; `Deno.stdout` and `Deno.stderr` by default. */
export interface LineOutput {
  /** Write some of `bytes` (asynchronously, never blocking the event loop). */
  write(stream: Stream, bytes: Uint8Array): Promise<number>;
  /** Write some of `bytes` now (may block). */
  writeSync(stream: Stream, bytes: Uint8Array): number;
}

/** The process's stdout and stderr. */
export const STDIO: LineOutput = {
  write: (stream, bytes) => (stream === 1 ? Deno.stdout : Deno.stderr).write(bytes),
  writeSync: (stream, bytes) => (stream === 1 ? Deno.stdout : Deno.stderr).writeSync(bytes),
};

/** Options of {@linkcode LineWriter}. */
export interface LineWriterOptions {
  /** Put in front of every line (default ""). */
  prefix?: string;
  /** Where to write (default {@linkcode STDIO}). */
  output?: LineOutput;
  /** The warning written after `count` lines were dropped, one line, without the prefix. */
  dropNotice?: (count: number) => string;
  /** Override {@linkcode FLUSH_BYTES}. */
  flushBytes?: number;
  /** Override {@linkcode FLUSH_MS}. */
  flushMs?: number;
  /** Override {@linkcode MAX_BUFFERED}. */
  maxBytes?: number;
  /** The clock for the quiet spell and a stuck write, in ms (default
   * `performance.now`; tests pass one of their own). */
  now?: () => number;
}

/** Bytes to write, with the stream of each run of them. */
class Batch {
  bytes: Uint8Array;
  len = 0;
  /** Pairs (offset, stream): from offset on, bytes go to stream. */
  marks: number[] = [];

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }

  get stream(): Stream | 0 {
    return this.marks.length ? this.marks[this.marks.length - 1] as Stream : 0;
  }

  clear(): void {
    this.len = 0;
    this.marks.length = 0;
  }

  /** The next write from `pos`: its stream and end (a line's end, at most `chunk` bytes
   * unless one line is longer, never past a change of stream). */
  next(pos: number, chunk: number): [Stream, number] {
    let i = 0;
    while (i + 2 < this.marks.length && this.marks[i + 2] <= pos) i += 2;
    const stream = this.marks[i + 1] as Stream;
    const end = i + 2 < this.marks.length ? this.marks[i + 2] : this.len;
    if (end - pos <= chunk) return [stream, end];
    const nl = this.bytes.lastIndexOf(10, pos + chunk - 1);
    if (nl >= pos) return [stream, nl + 1];
    const after = this.bytes.indexOf(10, pos + chunk);
    return [stream, after < 0 || after >= end ? end : after + 1];
  }
}

const encoder = new TextEncoder();
const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

/**
 * Lines for stdout and stderr, buffered and written without blocking (see
 * the module's description). Lines keep their order across both streams.
 *
 * @example
 * ```ts
 * import { LineWriter } from "./log.ts";
 * const out = new LineWriter({ prefix: "sum      | " });
 * out.write(1, "GET /sum 200\n");
 * await out.flush();
 * ```
 */
export class LineWriter {
  /** Put in front of every line. */
  readonly prefix: string;
  #out: LineOutput;
  #dropNotice: (count: number) => string;
  #flushBytes: number;
  #flushMs: number;
  #maxBytes: number;
  #now: () => number;
  #fill: Batch;
  #spare: Batch | undefined;
  /** The batch the pump is writing, and where its next write starts. */
  #writing: Batch | undefined;
  #pos = 0;
  /** The clock's time when the pending write began; 0 when none is pending. */
  #pendingSince = 0;
  #lastFlush = -Infinity;
  #due = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerNow = false;
  #dropped = 0;
  #broken = new Set<Stream>();
  /** Bytes ever queued, and of those, written (or given up on a broken stream). */
  #queued = 0;
  #handled = 0;
  #waiters: { upTo: number; done: () => void }[] = [];

  /** A writer (nothing is written until lines come).
   *
   * @example
   * ```ts
   * import { LineWriter } from "./log.ts";
   * new LineWriter({ prefix: "gateway  | " });
   * ```
   */
  constructor(opts: LineWriterOptions = {}) {
    this.prefix = opts.prefix ?? "";
    this.#out = opts.output ?? STDIO;
    this.#dropNotice = opts.dropNotice ??
      ((n) => `${n} log line(s) dropped: the output did not take them in time\n`);
    this.#flushBytes = opts.flushBytes ?? FLUSH_BYTES;
    this.#flushMs = opts.flushMs ?? FLUSH_MS;
    this.#maxBytes = opts.maxBytes ?? MAX_BUFFERED;
    this.#now = opts.now ?? (() => performance.now());
    this.#fill = new Batch(Math.min(2 * this.#flushBytes, this.#maxBytes) + NOTICE_ROOM);
  }

  /** Lines dropped so far because the output did not take them. */
  dropped = 0;

  /** Bytes waiting to be written (not counting a write under way). */
  get buffered(): number {
    return this.#fill.len;
  }

  /** Queue `text`: one or more lines (a missing final newline is added); each
   * gets the prefix. Lines to stderr (warnings and errors), and all when
   * `soon`, are written on the next turn of the event loop rather than at the
   * next flush. (No write starts before this call returns: a `Deno.exit()`
   * right after it finds the line still buffered and writes it.)
   *
   * @example
   * ```ts
   * import { LineWriter } from "./log.ts";
   * new LineWriter().write(2, "something is wrong\n");
   * ```
   */
  write(stream: Stream, text: string, soon = false): void {
    if (this.#broken.has(stream)) return;
    const last = text.length - 1;
    if (this.prefix) {
      const nl = text.indexOf("\n");
      text = nl === last
        ? this.prefix + text
        : this.prefix + (text.endsWith("\n") ? text.slice(0, -1) : text).replaceAll(
          "\n",
          "\n" + this.prefix,
        ) + "\n";
    } else if (text.charCodeAt(last) !== 10) {
      text += "\n";
    }
    if (!this.#append(stream, text, this.#maxBytes - this.#backlog())) {
      this.#dropped++;
      this.dropped++;
      return;
    }
    if (stream === 2 || soon) {
      this.#due = true;
      this.#arm(true);
    } else {
      this.#arm(this.#fill.len >= this.#flushBytes);
    }
  }

  /** Write what is buffered now, without waiting for the timer; resolves once
   * all of it is written (lines queued later may still wait), or false after
   * `timeoutMs` if the output does not take it.
   *
   * @example
   * ```ts
   * import { LineWriter } from "./log.ts";
   * const out = new LineWriter();
   * out.write(1, "bye\n");
   * await out.flush(1000);
   * ```
   */
  flush(timeoutMs = 2000): Promise<boolean> {
    this.#addNotice();
    const upTo = this.#queued;
    if (this.#handled >= upTo) return Promise.resolve(true);
    const done = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs); // keeps the loop alive
      this.#waiters.push({
        upTo,
        done: () => {
          clearTimeout(timer);
          resolve(true);
        },
      });
    });
    this.#due = true;
    if (!this.#writing) {
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#timer = undefined;
      void this.#pump(); // the caller waits for it: no need to wait for a timer too
    }
    return done;
  }

  /** Write everything buffered now, synchronously (at exit). Does nothing
   * when a write has been pending for a while: nobody reads the output, and
   * waiting for it would keep the process from exiting.
   *
   * @example
   * ```ts
   * import { LineWriter } from "./log.ts";
   * const out = new LineWriter();
   * out.write(1, "bye\n");
   * out.flushSync();
   * ```
   */
  flushSync(): void {
    if (this.#pendingSince && this.#now() - this.#pendingSince > STUCK_MS) return;
    const writing = this.#writing;
    if (writing) {
      // Past the chunk under way (it lands when its thread gets to it).
      this.#writeSync(writing, this.#pos);
      this.#pos = writing.len;
    }
    this.#addNotice();
    const fill = this.#fill;
    this.#writeSync(fill, 0);
    this.#handled += fill.len;
    fill.clear();
  }

  #append(stream: Stream, text: string, limit: number): boolean {
    let b = this.#fill;
    for (;;) {
      const room = Math.min(b.bytes.length, limit) - b.len;
      // ASCII (the usual) fits when its length does; else ask the encoder.
      if (text.length <= room) {
        const r = encoder.encodeInto(text, b.bytes.subarray(b.len, b.len + room));
        if (r.read === text.length) {
          if (b.stream !== stream) b.marks.push(b.len, stream);
          b.len += r.written;
          this.#queued += r.written;
          return true;
        }
      }
      const need = b.len + encoder.encode(text).length;
      if (need > limit) return false;
      const grown = new Batch(Math.min(Math.max(need, 2 * b.bytes.length), limit) + NOTICE_ROOM);
      grown.bytes.set(b.bytes.subarray(0, b.len));
      grown.len = b.len;
      grown.marks = b.marks;
      this.#fill = b = grown;
    }
  }

  /** Add the "lines dropped" warning after the lines that were kept. */
  #addNotice(): void {
    if (this.#dropped === 0) return;
    const text = this.prefix + this.#dropNotice(this.#dropped);
    this.#dropped = 0;
    this.#append(2, text, this.#maxBytes + NOTICE_ROOM);
  }

  /** Bytes of the batch under way not written yet. */
  #backlog(): number {
    return this.#writing ? this.#writing.len - this.#pos : 0;
  }

  /** Start the pump on a timer: at once (next turn) when `now`, else when
   * FLUSH_MS have passed since the last write began. Never synchronously. */
  #arm(now: boolean): void {
    if (this.#writing) return; // the pump looks again when its write is done
    if (this.#timer !== undefined) {
      if (!now || this.#timerNow) return;
      clearTimeout(this.#timer);
    }
    const delay = now ? 0 : Math.max(0, this.#lastFlush + this.#flushMs - this.#now());
    this.#timerNow = delay === 0;
    const timer = setTimeout(() => {
      this.#timer = undefined;
      this.#due = true;
      void this.#pump();
    }, delay);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  async #pump(): Promise<void> {
    if (this.#writing) return;
    while (
      (this.#fill.len > 0 || this.#dropped > 0) &&
      (this.#due || this.#fill.len >= this.#flushBytes)
    ) {
      this.#due = false;
      this.#addNotice();
      const batch = this.#fill;
      this.#fill = this.#spare && this.#spare.bytes.length >= this.#flushBytes
        ? this.#spare
        : new Batch(Math.min(2 * this.#flushBytes, this.#maxBytes) + NOTICE_ROOM);
      this.#spare = undefined;
      this.#writing = batch;
      this.#pos = 0;
      this.#lastFlush = this.#now();
      while (this.#pos < batch.len) {
        const [stream, end] = batch.next(this.#pos, WRITE_CHUNK);
        const start = this.#pos;
        this.#pos = end;
        await this.#writeAll(stream, batch.bytes.subarray(start, end));
      }
      this.#handled += batch.len;
      this.#settle();
      batch.clear();
      // Keep the smaller buffer: a big one grew while the output was slow.
      if (batch.bytes.length <= 2 * this.#flushBytes + NOTICE_ROOM) this.#spare = batch;
    }
    this.#writing = undefined;
    if (this.#fill.len > 0 || this.#dropped > 0) this.#arm(false);
  }

  /** Resolve the flushes whose lines are all out. */
  #settle(): void {
    if (this.#waiters.length === 0) return;
    const waiting = this.#waiters;
    this.#waiters = [];
    for (const w of waiting) {
      if (w.upTo <= this.#handled) w.done();
      else this.#waiters.push(w);
    }
  }

  async #writeAll(stream: Stream, bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length && !this.#broken.has(stream)) {
      this.#pendingSince = this.#now() || 1;
      try {
        off += await this.#out.write(stream, bytes.subarray(off));
      } catch (e) {
        if (e instanceof Deno.errors.WouldBlock || e instanceof Deno.errors.Interrupted) {
          await sleep(10); // a non-blocking stdout someone else set up: wait for room
        } else {
          this.#broken.add(stream); // the reader is gone: nothing more goes there
        }
      } finally {
        this.#pendingSince = 0;
      }
    }
  }

  #writeSync(batch: Batch, from: number): void {
    let pos = from;
    while (pos < batch.len) {
      const [stream, end] = batch.next(pos, WRITE_CHUNK);
      let off = pos;
      while (off < end && !this.#broken.has(stream)) {
        try {
          off += this.#out.writeSync(stream, batch.bytes.subarray(off, end));
        } catch {
          this.#broken.add(stream);
        }
      }
      pos = end;
    }
  }
}

function envPrefix(): string {
  try {
    return Deno.env.get("HOTPOTATO_LOG_PREFIX") ?? "";
  } catch {
    return "";
  }
}

let shared: LineWriter | undefined;
let format: (level: LogLevel, message: string) => string = (_, message) => `${message}\n`;

/** The process's writer for stdout and stderr (prefixed by HOTPOTATO_LOG_PREFIX),
 * flushed synchronously at exit. */
function output(): LineWriter {
  if (shared) return shared;
  const writer = new LineWriter({
    prefix: envPrefix(),
    dropNotice: (n) =>
      format("warning", `${n} log line(s) dropped: the output did not take them in time`),
  });
  shared = writer;
  globalThis.addEventListener("unload", () => writer.flushSync());
  const fatal = (e: Event, what: string, error: unknown) => {
    writer.flushSync();
    if (!writer.prefix) return; // Deno prints it, as usual
    // Under the launcher: the same text Deno prints, with our prefix on each line.
    e.preventDefault();
    writer.write(2, `error: ${what} ${Deno.inspect(error)}`);
    writer.flushSync();
    Deno.exit(1);
  };
  globalThis.addEventListener("error", (e) => fatal(e, "Uncaught", e.error));
  globalThis.addEventListener(
    "unhandledrejection",
    (e) => fatal(e, "Uncaught (in promise)", e.reason),
  );
  return writer;
}

/** Write one line (or several) to stdout or stderr, with the process's log
 * prefix, in order with the log records; it is written at once, not at the
 * next flush.
 *
 * @example
 * ```ts
 * import { printLine } from "./log.ts";
 * printLine(`hotpotato-stats {"requests":42}`);
 * ```
 */
export function printLine(text: string, stream: "stdout" | "stderr" = "stdout"): void {
  output().write(stream === "stdout" ? 1 : 2, text, true);
}

/** Write out every buffered line; resolves when written, or false after
 * `timeoutMs` if the output does not take them (nobody reads it). For the
 * end of a drain, before `Deno.exit`.
 *
 * @example
 * ```ts
 * import { flushLogs } from "./log.ts";
 * await flushLogs();
 * ```
 */
export function flushLogs(timeoutMs = 2000): Promise<boolean> {
  return shared ? shared.flush(timeoutMs) : Promise.resolve(true);
}

/** Lines dropped since start because the output did not take them.
 *
 * @example
 * ```ts
 * import { droppedLogLines } from "./log.ts";
 * droppedLogLines(); // 0
 * ```
 */
export function droppedLogLines(): number {
  return shared?.dropped ?? 0;
}

const IMMEDIATE = Symbol.for("LogTape.sinkSnapshotPolicy.immediate");

/** A LogTape sink that formats each record at once and queues it on `writer`:
 * warnings and worse to stderr, the rest to stdout.
 *
 * @example
 * ```ts
 * import { getTextFormatter } from "@logtape/logtape";
 * import { LineWriter, lineSink } from "./log.ts";
 * const sink = lineSink(new LineWriter(), getTextFormatter());
 * ```
 */
export function lineSink(writer: LineWriter, formatter: TextFormatter): Sink {
  const sink: Sink = (record: LogRecord) => {
    const level = record.level;
    writer.write(
      level === "warning" || level === "error" || level === "fatal" ? 2 : 1,
      formatter(record),
    );
  };
  // It is done with the record when it returns: LogTape need not copy it first.
  Object.defineProperty(sink, IMMEDIATE, { value: true });
  return sink;
}

/** How `--log-format text` renders a value in a message. */
function renderValue(v: unknown): string {
  return typeof v === "string" ? v : typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** LogTape's text formatter with our options: the reference for {@linkcode logFormatter}. */
function logTapeText(): TextFormatter {
  return getTextFormatter({ timestamp: "time", category: ".", value: renderValue });
}

const LEVEL_TAGS: Record<LogLevel, string> = {
  trace: "[TRC]",
  debug: "[DBG]",
  info: "[INF]",
  warning: "[WRN]",
  error: "[ERR]",
  fatal: "[FTL]",
};

/** A message template split once: the text around each property name, as
 * LogTape's message holds it and sanitized as its text formatter prints it. */
interface Template {
  raw: string[];
  literals: string[];
  keys: string[];
}

const unescapeBraces = (text: string) => text.replaceAll("{{", "{").replaceAll("}}", "}");

/** Split `template` as LogTape's parseMessageTemplate does; null for what it
 * resolves in ways not copied here (`{*}`, nested paths, keys with spaces). */
function compileTemplate(template: string): Template | null {
  if (!template.includes("{")) {
    return { raw: [template], literals: [sanitizeControlSequences(template)], keys: [] };
  }
  const raw: string[] = [], keys: string[] = [];
  let start = 0;
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if (c === "{") {
      if (template[i + 1] === "{") {
        i++;
        continue;
      }
      const close = template.indexOf("}", i + 1);
      if (close === -1) continue;
      const key = template.slice(i + 1, close);
      if (!/^[A-Za-z0-9_$-]+$/.test(key)) return null;
      raw.push(unescapeBraces(template.slice(start, i)));
      keys.push(key);
      i = close;
      start = i + 1;
    } else if (c === "}" && template[i + 1] === "}") {
      i++;
    }
  }
  raw.push(unescapeBraces(template.slice(start)));
  return { raw, literals: raw.map((t) => sanitizeControlSequences(t)), keys };
}

/** A record of a {@linkcode LogLine}: plain own fields (LogTape copies own
 * fields for sinks that keep records). */
class LineRecord implements LogRecord {
  readonly category: readonly string[];
  readonly level: LogLevel;
  readonly message: unknown[];
  readonly rawMessage: string;
  readonly timestamp: number;
  readonly properties: Record<string, unknown>;

  constructor(
    category: readonly string[],
    level: LogLevel,
    rawMessage: string,
    t: Template,
    properties: Record<string, unknown>,
  ) {
    this.category = category;
    this.level = level;
    const message: unknown[] = [t.raw[0]];
    for (let i = 0; i < t.keys.length; i++) message.push(properties[t.keys[i]], t.raw[i + 1]);
    this.message = message;
    this.rawMessage = rawMessage;
    this.timestamp = Date.now();
    this.properties = properties;
  }
}

/**
 * A log line made often (per request, per connection): the same line as
 * `logger.info(template, () => props)`, made cheaper. The template is split
 * once; below the level nothing else happens (`props`, when a function, is
 * not called); else the record goes to LogTape's sinks as a plain object,
 * without the per-call template parsing and lazy getters of `logger.info`.
 * Templates name properties only (`{status}`, not `{req.status}` or `{*}`).
 *
 * @example
 * ```ts
 * import { LogLine, logger } from "./log.ts";
 * const served = new LogLine(logger("worker"), "info", "{method} {path} {status}");
 * served.log(() => ({ method: "GET", path: "/sum?a=1&b=2", status: 200 }));
 * ```
 */
export class LogLine {
  readonly logger: Logger;
  readonly level: LogLevel;
  readonly template: string;
  readonly #compiled: Template;

  /** Prepare the line (throws if the template is not plain `{name}`s).
   *
   * @example
   * ```ts
   * import { LogLine, logger } from "./log.ts";
   * new LogLine(logger("gateway"), "info", "connection returned: conn {conn}");
   * ```
   */
  constructor(logger: Logger, level: LogLevel, template: string) {
    const compiled = compileTemplate(template);
    if (!compiled) throw new TypeError(`LogLine: only {name} placeholders: ${template}`);
    this.logger = logger;
    this.level = level;
    this.template = template;
    this.#compiled = compiled;
  }

  /** Does the line pass the configured level?
   *
   * @example
   * ```ts
   * import { LogLine, logger } from "./log.ts";
   * new LogLine(logger("worker"), "debug", "{x}").enabled; // false at info
   * ```
   */
  get enabled(): boolean {
    return this.logger.isEnabledFor(this.level);
  }

  /** Log the line with these properties (a function is called only when the line passes).
   *
   * @example
   * ```ts
   * import { LogLine, logger } from "./log.ts";
   * new LogLine(logger("worker"), "info", "{n} done").log({ n: 3 });
   * ```
   */
  log(props: Record<string, unknown> | (() => Record<string, unknown>)): void {
    if (!this.logger.isEnabledFor(this.level)) return;
    this.logger.emit(
      new LineRecord(
        this.logger.category,
        this.level,
        this.template,
        this.#compiled,
        typeof props === "function" ? props() : props,
      ),
    );
  }
}

/**
 * The text format, as LogTape's `getTextFormatter({ timestamp: "time",
 * category: "." })` writes it (`12:34:56.789 [INF] hotpotato.worker: GET /sum
 * 200 ...`, UTC), made cheap for the request log: each message template is
 * split once, each logger's category joined once, the time of day formatted
 * once a second. Records it does not handle the same way go to LogTape's
 * formatter (tests/log_test.ts compares the two on every template in src/).
 */
function fastTextFormatter(): TextFormatter {
  const reference = logTapeText();
  const templates = new Map<string, Template | null>();
  const categories = new WeakMap<readonly string[], string>();
  let second = NaN, clock = "";
  return (record) => {
    const raw = record.rawMessage;
    if (typeof raw !== "string") return reference(record);
    let t = templates.get(raw);
    if (t === undefined) {
      t = compileTemplate(raw);
      if (templates.size < 1000) templates.set(raw, t);
    }
    if (t === null) return reference(record);
    const props = record.properties;
    let category = categories.get(record.category);
    if (category === undefined) {
      category = record.category.map((c) => sanitizeControlSequences(c, { sgr: "escape" }))
        .join(".");
      categories.set(record.category, category);
    }
    const ts = record.timestamp;
    const s = Math.floor(ts / 1000);
    if (s !== second) {
      second = s;
      const d = new Date(ts);
      clock = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}.`;
    }
    const ms = ts - s * 1000;
    let line = `${clock}${ms < 10 ? "00" : ms < 100 ? "0" : ""}${ms} ${
      LEVEL_TAGS[record.level]
    } ${category}: ${t.literals[0]}`;
    if (t.keys.length) {
      for (let i = 0; i < t.keys.length; i++) {
        line += renderValue(props[t.keys[i]]) + t.literals[i + 1];
      }
    }
    return line + "\n";
  };
}

const pad2 = (n: number) => n < 10 ? `0${n}` : `${n}`;

/** The formatter of `--log-format`: text (see the module's description), or
 * LogTape's JSON lines with the properties at the top level.
 *
 * @example
 * ```ts
 * import { logFormatter } from "./log.ts";
 * const format = logFormatter("json");
 * ```
 */
export function logFormatter(format: LogFormat): TextFormatter {
  return format === "json" ? getJsonLinesFormatter({ properties: "flatten" }) : fastTextFormatter();
}

/** LogTape's own text formatter with the options of {@linkcode logFormatter},
 * which the fast one must match (for the tests and the micro benchmark).
 *
 * @example
 * ```ts
 * import { referenceTextFormatter } from "./log.ts";
 * const format = referenceTextFormatter();
 * ```
 */
export function referenceTextFormatter(): TextFormatter {
  return logTapeText();
}

/** Configure logging once per process.
 *
 * @example
 * ```ts
 * import { setupLogging } from "./log.ts";
 * setupLogging({ format: "text", level: "info" });
 * ```
 */
export function setupLogging(opts: { format: LogFormat; level: LogLevel }): void {
  const formatter = logFormatter(opts.format);
  format = (level, message) =>
    formatter({
      category: ["hotpotato", "log"],
      level,
      message: [message],
      rawMessage: message,
      timestamp: Date.now(),
      properties: {},
    });
  const sink = lineSink(output(), formatter);
  configureSync({
    reset: true,
    sinks: { out: sink },
    loggers: [
      { category: ["hotpotato"], lowestLevel: opts.level, sinks: ["out"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["out"] },
    ],
  });
}

/** A logger under "hotpotato".
 *
 * @example
 * ```ts
 * import { logger } from "./log.ts";
 * logger("gateway").info("listening on {port}", { port: 8443 });
 * ```
 */
export function logger(...category: string[]): Logger {
  return getLogger(["hotpotato", ...category]);
}

/**
 * A budget for a log line that a client can cause at will (a failed TLS
 * handshake, say): at most `limit` lines per `intervalMs`; what is over is
 * counted, and the next line let through says how many were left out.
 *
 * @example
 * ```ts
 * import { LogBudget, logger } from "./log.ts";
 * const budget = new LogBudget(10, 1000);
 * const skipped = budget.take();
 * if (skipped !== false) {
 *   logger("gateway").info("handshake failed ({skipped} not logged before)", { skipped });
 * }
 * ```
 */
export class LogBudget {
  readonly limit: number;
  readonly intervalMs: number;
  #windowStart = 0;
  #used = 0;
  #skipped = 0;

  /** Allow `limit` lines per `intervalMs`.
   *
   * @example
   * ```ts
   * import { LogBudget } from "./log.ts";
   * new LogBudget(10, 1000);
   * ```
   */
  constructor(limit: number, intervalMs: number) {
    this.limit = limit;
    this.intervalMs = intervalMs;
  }

  /** May a line be logged now? Returns false (and counts it) when the budget
   * is spent, else the number of lines left out since the last one logged.
   *
   * @example
   * ```ts
   * import { LogBudget } from "./log.ts";
   * const budget = new LogBudget(1, 60_000);
   * budget.take(); // 0
   * budget.take(); // false
   * ```
   */
  take(now: number = Date.now()): number | false {
    if (now - this.#windowStart >= this.intervalMs) {
      this.#windowStart = now;
      this.#used = 0;
    }
    if (this.#used >= this.limit) {
      this.#skipped++;
      return false;
    }
    this.#used++;
    const skipped = this.#skipped;
    this.#skipped = 0;
    return skipped;
  }
}
