/**
 * Logging setup for every role, on LogTape: human-readable lines by default,
 * JSON lines for log shippers. Loggers live under the "hotpotato" category.
 * Nothing here ever receives key material: callers log ids and sizes only.
 *
 * @module
 */

import {
  configureSync,
  getConsoleSink,
  getJsonLinesFormatter,
  getLogger,
  getTextFormatter,
  type Logger,
  type LogLevel,
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

/** Configure logging once per process.
 *
 * @example
 * ```ts
 * import { setupLogging } from "./log.ts";
 * setupLogging({ format: "text", level: "info" });
 * ```
 */
export function setupLogging(opts: { format: LogFormat; level: LogLevel }): void {
  const formatter = opts.format === "json"
    ? getJsonLinesFormatter({ properties: "flatten" })
    : getTextFormatter({
      timestamp: "time",
      category: ".",
      value: (v) =>
        typeof v === "string" ? v : typeof v === "object" ? JSON.stringify(v) : String(v),
    });
  configureSync({
    reset: true,
    sinks: { console: getConsoleSink({ formatter }) },
    loggers: [
      { category: ["hotpotato"], lowestLevel: opts.level, sinks: ["console"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["console"] },
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
