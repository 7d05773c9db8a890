/**
 * A worker's metric families, declared once in the process's one registry.
 * The worker sends the registry's snapshot to the gateway in its STATS
 * report every second; the gateway adds the `function` label and shows it on
 * `/metrics`, so a family declared here needs no change in the gateway.
 *
 * @module
 */

import {
  type Counter,
  type Family,
  type Gauge,
  type Histogram,
  parseSnapshot,
  Registry,
} from "../operations/metrics.ts";
import {
  encodeJson,
  HANDOFF_LATENCY_BUCKETS,
  MessageType,
  type Stats,
  STATS_LIMITS,
} from "../handoff/protocol.ts";
import { logger } from "../operations/log.ts";
import process from "node:process";
import { openWebSockets } from "../connection/websocket.ts";

const log = logger("worker");

/**
 * The worker's registry and its families.
 *
 * @example
 * ```ts
 * import { WorkerMetrics } from "./worker_metrics.ts";
 * const m = new WorkerMetrics("sum");
 * m.requests.labels("/sum", 200).inc();
 * m.handoffLatency.observe(0.00004);
 * console.log(m.stats(3).metrics?.families.length); // 4
 * ```
 */
export class WorkerMetrics {
  /** The process's registry. */
  readonly registry: Registry = new Registry();
  #open: Gauge;
  #websockets: Gauge;
  /** Requests answered, by route ("-" when none of ours) and status. */
  readonly requests: Family<readonly ["route", "status"], Counter>;
  /** Export-to-import time of connections this worker took. */
  readonly handoffLatency: Histogram;
  #tooLarge = false;
  /** Requests answered since the last STATS message. */
  #served = 0;
  /** The process's CPU time at the last STATS message, µs. */
  #cpuAt = cpuMicros();

  /** The families of worker `name` (the holder label of its open connections).
   *
   * @example
   * ```ts
   * import { WorkerMetrics } from "./worker_metrics.ts";
   * new WorkerMetrics("sum");
   * ```
   */
  constructor(name: string) {
    const r = this.registry;
    this.#open = r.gauge("hotpotato_connections_open", "Client connections open, by holder", [
      "holder",
    ]).labels(name);
    this.#websockets = r.gauge("hotpotato_websockets_open", "WebSocket connections open").labels();
    this.requests = r.counter(
      "hotpotato_requests_total",
      "Requests answered, by route and status",
      ["route", "status"],
    );
    this.handoffLatency = r.histogram(
      "hotpotato_handoff_latency_seconds",
      "Time from export in one process to import in this one",
      HANDOFF_LATENCY_BUCKETS,
    ).labels();
  }

  /** The STATS body: `held`, and the registry's snapshot (with `held` as
   * the open-connections gauge, and the open WebSockets).
   *
   * @example
   * ```ts
   * import { WorkerMetrics } from "./worker_metrics.ts";
   * console.log(new WorkerMetrics("sum").stats(0));
   * ```
   */
  stats(held: number): Stats {
    this.#open.set(held);
    this.#websockets.set(openWebSockets());
    return { held, metrics: this.registry.snapshot() };
  }

  /** The STATS message to send (`busy`: requests in progress; the open
   * WebSockets are added). When the snapshot would not fit the STATS
   * limits (the gateway would refuse the report, and with it the heartbeat),
   * it goes without its metrics: the gateway keeps the last ones it got
   * (one warning).
   *
   * @example
   * ```ts
   * import { WorkerMetrics } from "./worker_metrics.ts";
   * const bytes = new WorkerMetrics("sum").statsMessage(0);
   * ```
   */
  statsMessage(held: number, busy = 0): Uint8Array {
    const cpu = cpuMicros();
    const load = {
      cpuMs: Math.round((cpu - this.#cpuAt) / 1000),
      served: this.#served,
      busy: busy + openWebSockets(),
    };
    this.#cpuAt = cpu;
    this.#served = 0;
    const body = { ...this.stats(held), ...load };
    try {
      parseSnapshot(body.metrics, STATS_LIMITS);
      return encodeJson(MessageType.STATS, body);
    } catch (e) {
      if (!this.#tooLarge) {
        this.#tooLarge = true;
        log.warning("metrics too large to report ({error}); the gateway keeps the last ones", {
          error: (e as Error).message,
        });
      }
      return encodeJson(MessageType.STATS, { held, ...load });
    }
  }

  /** Count a request answered (the load reported in the next STATS).
   *
   * @example
   * ```ts
   * import { WorkerMetrics } from "./worker_metrics.ts";
   * const m = new WorkerMetrics("sum");
   * m.answered();
   * console.log(new TextDecoder().decode(m.statsMessage(0)).includes('"served":1')); // true
   * ```
   */
  answered(): void {
    this.#served++;
  }
}

/** The process's CPU time (user and system), µs. */
function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}
