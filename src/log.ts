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
