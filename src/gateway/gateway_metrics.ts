/**
 * The gateway's metric families, declared once in the process's one
 * registry, and `/metrics`: the gateway's own families, plus what workers
 * report over the control channel (STATS: their registry's snapshot), each
 * worker's series with a `function` label, summed per function, and the
 * totals of workers that have left, so that counters never go down. A worker
 * family the gateway also declares (requests, open connections, handoff
 * latency) adds into the gateway's; any other is shown as the worker
 * declared it, with `function` in front of its labels.
 *
 * The counters the tests and the benchmark read (SIGUSR2, `hotpotato-stats`)
 * are computed from the same registry: {@linkcode GatewayMetrics.stats}.
 *
 * @module
 */

import {
  type Counter,
  type Gauge,
  type Histogram,
  mergeSnapshots,
  Registry,
  renderText,
  type Snapshot,
  total,
} from "../operations/metrics.ts";
import { HANDOFF_LATENCY_BUCKETS } from "../handoff/protocol.ts";

/** Counters the gateway keeps (the tests and the benchmark read them, in
 * the `hotpotato-stats` line).
 *
 * @example
 * ```ts
 * import { GatewayMetrics, type GatewayStats } from "./gateway_metrics.ts";
 * const stats: GatewayStats = new GatewayMetrics().stats();
 * console.log(stats.handshakes - stats.resumed); // full handshakes
 * ```
 */
export interface GatewayStats {
  /** TCP connections accepted. */
  accepted: number;
  /** TLS handshakes completed. */
  handshakes: number;
  /** Of those, resumed sessions (abbreviated handshakes). */
  resumed: number;
  /** Connections handed to a worker: by the gateway (first handoffs and
   * forwards) and directly between workers, as told in MOVED (the sum of
   * `hotpotato_handoffs_total`). */
  handoffs: number;
  /** Connections that left a worker for another function (handed back or moved). */
  returned: number;
  /** Requests the gateway answered itself. */
  answered: number;
  /** Handshakes that failed or timed out. */
  handshakeFailures: number;
  /** Connections workers moved straight to another worker (told in MOVED). */
  moved: number;
}

/** What the gateway knows at scrape time besides its counters.
 *
 * @example
 * ```ts
 * import type { GatewayState } from "./gateway_metrics.ts";
 * const state: GatewayState = {
 *   held: 2,
 *   draining: false,
 *   functions: [{ name: "sum", workers: 1 }],
 *   workers: [{ name: "sum", metrics: { families: [] } }],
 * };
 * ```
 */
export interface GatewayState {
  /** Connections the gateway holds now. */
  held: number;
  /** True while draining. */
  draining: boolean;
  /** Functions with their worker counts. */
  functions: { name: string; workers: number }[];
  /** Live workers' latest snapshots (STATS), by function name; a satellite
   * gateway's are added in without a function label. */
  workers: { name: string; metrics: Snapshot; satellite?: boolean }[];
  /** Registered workers by function, generation and state. */
  versions?: { name: string; generation: string; state: string; count: number }[];
}

/** Upper bounds (seconds) of the cold-start histogram's buckets. */
const COLD_START_BUCKETS: readonly number[] = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * The gateway's registry and its families. Call sites keep the children they
 * count with, or find them by label values (`requests.labels("gateway", "",
 * 404).inc()`): no strings are built to count.
 *
 * @example
 * ```ts
 * import { GatewayMetrics } from "./gateway_metrics.ts";
 * const m = new GatewayMetrics();
 * m.accepted.inc();
 * m.handshakes.labels(false, "TLSv1.3").inc();
 * console.log(m.stats().handshakes); // 1
 * console.log(m.render({ held: 1, draining: false, functions: [], workers: [] }));
 * ```
 */
export class GatewayMetrics {
  /** The process's registry. */
  readonly registry: Registry = new Registry();
  /** TCP connections accepted. */
  readonly accepted: Counter = this.registry
    .counter("hotpotato_connections_accepted_total", "TCP connections accepted")
    .labels();
  /** Client connections open, by holder ("gateway", or a function). */
  readonly open = this.registry.gauge(
    "hotpotato_connections_open",
    "Client connections open, by holder",
    ["holder"],
  );
  #held: Gauge = this.open.labels("gateway");
  /** Completed handshakes, by resumed ("true"/"false") and TLS version. */
  readonly handshakes = this.registry.counter(
    "hotpotato_tls_handshakes_total",
    "Completed TLS handshakes",
    ["resumed", "version"],
  );
  /** Handshakes that failed or timed out. */
  readonly handshakeFailures: Counter = this.registry
    .counter("hotpotato_tls_handshake_failures_total", "Failed or timed-out TLS handshakes")
    .labels();
  /** Connections closed before TLS by `--proxy-protocol on`, by reason. */
  readonly proxyRefused = this.registry.counter(
    "hotpotato_proxy_refused_total",
    "Connections closed for the PROXY protocol: untrusted peer, malformed header or timeout",
    ["reason"],
  );
  /** Control-socket connections and messages refused for the sender's role. */
  readonly controlRefused = this.registry.counter(
    "hotpotato_control_refused_total",
    "Control-socket connections and messages refused for the sender's role (SO_PEERCRED), by reason",
    ["reason"],
  );
  /** Connections handed to a worker, by function and route. */
  readonly handoffs = this.registry.counter(
    "hotpotato_handoffs_total",
    "Connections handed to a worker, by function and route",
    ["function", "route"],
  );
  /** Connections that left a worker of a function for another route. */
  readonly returned = this.registry.counter(
    "hotpotato_connections_returned_total",
    "Connections workers handed back for another route",
    ["function"],
  );
  /** Of those, the ones moved straight to another worker (MOVED). */
  readonly moved = this.registry.counter(
    "hotpotato_connections_moved_total",
    "Connections workers moved straight to another worker (--handoff direct), by the function they left",
    ["function"],
  );
  /** Export-to-import time of connections the gateway imported. */
  readonly handoffLatency: Histogram = this.registry
    .histogram(
      "hotpotato_handoff_latency_seconds",
      "Time from export in one process to import in the next",
      HANDOFF_LATENCY_BUCKETS,
    )
    .labels();
  /** Requests answered, by function ("gateway" for its own), route and status. */
  readonly requests = this.registry.counter(
    "hotpotato_requests_total",
    "Requests answered, by function, route and status",
    ["function", "route", "status"],
  );
  /** Registered workers, by function (filled at each scrape). */
  readonly workers = this.registry.gauge(
    "hotpotato_workers",
    "Registered workers, by function",
    ["function"],
  );
  /** This gateway's role restarted by the launcher, by the cause of the
   * exit before each restart ("signal SIGKILL", "code 1"): the launcher's
   * count, told to each new gateway (GatewayConfig.gatewayExits). */
  readonly gatewayRestarts = this.registry.counter(
    "hotpotato_gateway_restarts_total",
    "Gateway restarts by the launcher, by the cause of the exit before each (since it started)",
    ["cause"],
  );
  /** Workers that registered after the launcher restarted them. */
  readonly restarts = this.registry.counter(
    "hotpotato_worker_restarts_total",
    "Workers that registered after the launcher restarted them, by function",
    ["function"],
  );
  /** Versions switched to (a reload's promotion, or a `--replace on` worker). */
  readonly switches = this.registry.counter(
    "hotpotato_version_switches_total",
    "New versions of a function that took over from the running one, by function",
    ["function"],
  );
  /** Connections old versions handed back to be passed to the new one. */
  readonly handedOver = this.registry.counter(
    "hotpotato_connections_handed_over_total",
    "Connections a replaced worker handed over to its function's new version, by function",
    ["function"],
  );
  /** Reloads the launcher reported, by function and result ("ok" or "failed"). */
  readonly reloads = this.registry.counter(
    "hotpotato_reloads_total",
    "Reloads the launcher reported, by function and result",
    ["function", "result"],
  );
  /** How long the last reload of a function took (start to the last old worker gone). */
  readonly reloadSeconds = this.registry.gauge(
    "hotpotato_reload_seconds",
    "Duration of the last reload of a function: from its start to the last old worker gone",
    ["function"],
  );
  /** Registered workers by function, version label and state (filled at each scrape). */
  readonly versions = this.registry.gauge(
    "hotpotato_worker_versions",
    "Registered workers by function, version (generation) and state",
    ["function", "generation", "state"],
  );
  /** Functions started on demand while requests waited, by function. */
  readonly coldStarts = this.registry.counter(
    "hotpotato_cold_starts_total",
    "Functions that got a worker while requests waited for one (started on demand), by function",
    ["function"],
  );
  /** From a cold function's first held request to its first worker. */
  readonly coldStartSeconds = this.registry.histogram(
    "hotpotato_cold_start_seconds",
    "Time from the first request held for a function at zero workers to its first worker registered",
    COLD_START_BUCKETS,
    ["function"],
  );
  /** Connections held now while their function starts (kept live). */
  readonly coldHeld = this.registry.gauge(
    "hotpotato_cold_held_connections",
    "Connections held while their function starts on demand, by function",
    ["function"],
  );
  /** Idle connections parked for a function at zero workers (unopened). */
  readonly parked = this.registry.gauge(
    "hotpotato_parked_connections",
    "Idle keep-alive connections parked in the gateway while their function has no worker, by function",
    ["function"],
  );
  /** Requests a cold function could not take: "full" (--cold-hold-max
   * held already) or "timeout" (no worker within --cold-start-timeout). */
  readonly coldRefused = this.registry.counter(
    "hotpotato_cold_refused_total",
    "Requests answered 503 while their function started on demand, by function and reason",
    ["function", "reason"],
  );
  /** The launcher's scale events, by function, direction and reason. */
  readonly scaleEvents = this.registry.counter(
    "hotpotato_scale_events_total",
    "Workers the launcher started (up), stopped (down) or could not start (failed), by function, direction and reason",
    ["function", "direction", "reason"],
  );
  #draining: Gauge = this.registry
    .gauge("hotpotato_draining", "1 while the gateway drains")
    .labels();
  /** What departed workers counted (counters and histograms), with their
   * function label. */
  #departed: Snapshot = { families: [] };
  /** What departed satellite gateways counted, by pid. */
  #departedSatellites = new Map<number, Snapshot>();

  /** Keep a departing worker's last counters in the totals (its gauges go
   * with it).
   *
   * @example
   * ```ts
   * import { GatewayMetrics } from "./gateway_metrics.ts";
   * import { Registry } from "../operations/metrics.ts";
   * const worker = new Registry();
   * worker.counter("hotpotato_requests_total", "Requests", ["route", "status"])
   *   .labels("/sum", 200).inc();
   * new GatewayMetrics().workerLeft("sum", worker.snapshot());
   * ```
   */
  workerLeft(fn: string, metrics: Snapshot, labelled = true): void {
    this.#departed = mergeSnapshots([
      { snapshot: this.#departed },
      labelled ? { snapshot: metrics, labels: { function: fn } } : { snapshot: metrics },
    ], { gauges: false });
  }

  /** Keep a departing satellite gateway's last counters (by pid: if the
   * same process joins again, its reports carry them again, so they are
   * dropped then: {@linkcode GatewayMetrics.satelliteBack}).
   *
   * @example
   * ```ts
   * import { GatewayMetrics } from "./gateway_metrics.ts";
   * new GatewayMetrics().satelliteLeft(4242, { families: [] });
   * ```
   */
  satelliteLeft(pid: number, metrics: Snapshot): void {
    this.#departedSatellites.set(pid, metrics);
  }

  /** A satellite gateway joined (again): see {@linkcode GatewayMetrics.satelliteLeft}.
   *
   * @example
   * ```ts
   * import { GatewayMetrics } from "./gateway_metrics.ts";
   * new GatewayMetrics().satelliteBack(4242);
   * ```
   */
  satelliteBack(pid: number): void {
    this.#departedSatellites.delete(pid);
  }

  /** The Prometheus text for `/metrics`.
   *
   * @example
   * ```ts
   * import { GatewayMetrics } from "./gateway_metrics.ts";
   * new GatewayMetrics().render({ held: 0, draining: false, functions: [], workers: [] });
   * ```
   */
  render(state: GatewayState): string {
    this.#held.set(state.held);
    this.#draining.set(state.draining ? 1 : 0);
    this.workers.reset();
    for (const f of state.functions) this.workers.labels(f.name).set(f.workers);
    this.versions.reset();
    for (const v of state.versions ?? []) {
      this.versions.labels(v.name, v.generation, v.state).set(v.count);
    }
    return renderText(mergeSnapshots([
      { snapshot: this.registry.snapshot() },
      { snapshot: this.#departed },
      ...(this.#departedSatellites.size > 0
        ? [{
          snapshot: mergeSnapshots(
            [...this.#departedSatellites.values()].map((snapshot) => ({ snapshot })),
            { gauges: false },
          ),
        }]
        : []),
      ...state.workers.map((w) =>
        w.satellite
          ? { snapshot: w.metrics }
          : { snapshot: w.metrics, labels: { function: w.name } }
      ),
    ]));
  }

  /** The counters of the `hotpotato-stats` line, from the registry.
   *
   * @example
   * ```ts
   * import { GatewayMetrics } from "./gateway_metrics.ts";
   * console.log(new GatewayMetrics().stats());
   * ```
   */
  stats(): GatewayStats {
    return {
      accepted: this.accepted.value,
      handshakes: total(this.handshakes),
      resumed: total(this.handshakes, { resumed: "true" }),
      handoffs: total(this.handoffs),
      returned: total(this.returned),
      answered: total(this.requests, { function: "gateway" }),
      handshakeFailures: this.handshakeFailures.value,
      moved: total(this.moved),
    };
  }
}
