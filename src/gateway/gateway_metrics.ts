/**
 * The gateway's counters and their Prometheus rendering for `/metrics`:
 * what the gateway saw itself (handshakes, handoffs, returns, its own
 * answers, adopted connections' handoff latency), what workers report over
 * the control channel (STATS), and the totals of workers that have left, so
 * that counters never go down.
 *
 * @module
 */

import { Histogram, Registry } from "../operations/metrics.ts";
import { HANDOFF_LATENCY_BUCKETS, type Stats } from "../handoff/protocol.ts";

/** What the gateway knows at scrape time besides the counters. */
export interface GatewaySnapshot {
  /** TCP connections accepted. */
  accepted: number;
  /** Handshakes that failed or timed out. */
  handshakeFailures: number;
  /** Connections the gateway holds now. */
  held: number;
  /** True while draining. */
  draining: boolean;
  /** Functions with their worker counts. */
  functions: { name: string; workers: number }[];
  /** Live workers' latest reports. */
  workers: { name: string; stats: Stats }[];
}

function bump<K>(map: Map<K, number>, key: K, n = 1): void {
  map.set(key, (map.get(key) ?? 0) + n);
}

/**
 * Counters behind `/metrics`.
 *
 * @example
 * ```ts
 * import { GatewayMetrics } from "./gateway_metrics.ts";
 * const m = new GatewayMetrics();
 * m.handshake("TLSv1.3", false);
 * console.log(m.render({
 *   accepted: 1, handshakeFailures: 0, held: 1, draining: false, functions: [], workers: [],
 * }));
 * ```
 */
export class GatewayMetrics {
  #handshakes = new Map<string, number>(); // "TLSv1.3 false"
  #handoffs = new Map<string, number>(); // "function route"
  #returned = new Map<string, number>(); // function
  #answered = new Map<number, number>(); // status
  #restarts = new Map<string, number>(); // function
  #adoptLatency = new Histogram("", "", HANDOFF_LATENCY_BUCKETS);
  #departedRequests = new Map<string, number>(); // "function route status"
  #departedLatency = new Histogram("", "", HANDOFF_LATENCY_BUCKETS);

  /** A completed handshake. */
  handshake(version: string, resumed: boolean): void {
    bump(this.#handshakes, `${version} ${resumed}`);
  }

  /** A connection handed to a worker of `fn` for `route`. */
  handoff(fn: string, route: string): void {
    bump(this.#handoffs, `${fn} ${route}`);
  }

  /** A connection a worker of `fn` handed back. */
  returned(fn: string): void {
    bump(this.#returned, fn);
  }

  /** A request the gateway answered itself. */
  answered(status: number): void {
    bump(this.#answered, status);
  }

  /** A worker of `fn` registered after the launcher restarted it. */
  restarted(fn: string): void {
    bump(this.#restarts, fn);
  }

  /** A returned connection the gateway imported, `seconds` after export. */
  adopted(seconds: number): void {
    this.#adoptLatency.observe(seconds);
  }

  /** Keep a departing worker's last counters in the totals. */
  workerLeft(fn: string, stats: Stats): void {
    for (const [k, n] of Object.entries(stats.requests)) {
      bump(this.#departedRequests, `${fn} ${k}`, n);
    }
    this.#departedLatency.merge(stats.handoffLatency);
  }

  /** The Prometheus text exposition.
   *
   * @example
   * ```ts
   * import { GatewayMetrics } from "./gateway_metrics.ts";
   * new GatewayMetrics().render({
   *   accepted: 0, handshakeFailures: 0, held: 0, draining: false, functions: [], workers: [],
   * });
   * ```
   */
  render(g: GatewaySnapshot): string {
    const r = new Registry();
    r.counter("hotpotato_connections_accepted_total", "TCP connections accepted")
      .inc({}, g.accepted);
    const open = r.gauge("hotpotato_connections_open", "Client connections open, by holder");
    open.set({ holder: "gateway" }, g.held);
    const hs = r.counter("hotpotato_tls_handshakes_total", "Completed TLS handshakes");
    for (const [k, n] of this.#handshakes) {
      const [version, resumed] = k.split(" ");
      hs.inc({ version, resumed }, n);
    }
    r.counter("hotpotato_tls_handshake_failures_total", "Failed or timed-out TLS handshakes")
      .inc({}, g.handshakeFailures);
    const handoffs = r.counter(
      "hotpotato_handoffs_total",
      "Connections handed to a worker, by function and route",
    );
    for (const [k, n] of this.#handoffs) {
      const [fn, route] = k.split(" ");
      handoffs.inc({ function: fn, route }, n);
    }
    const returned = r.counter(
      "hotpotato_connections_returned_total",
      "Connections workers handed back for another route",
    );
    for (const [fn, n] of this.#returned) returned.inc({ function: fn }, n);
    const latency = r.histogram(
      "hotpotato_handoff_latency_seconds",
      "Time from export in one process to import in the next",
      HANDOFF_LATENCY_BUCKETS,
    );
    latency.merge(this.#adoptLatency.snapshot());
    latency.merge(this.#departedLatency.snapshot());
    const requests = r.counter(
      "hotpotato_requests_total",
      "Requests answered, by function, route and status",
    );
    for (const [k, n] of this.#departedRequests) {
      const [fn, route, status] = k.split(" ");
      requests.inc({ function: fn, route, status }, n);
    }
    for (const [status, n] of this.#answered) {
      requests.inc({ function: "gateway", route: "", status: String(status) }, n);
    }
    for (const w of g.workers) {
      open.inc({ holder: w.name }, w.stats.held);
      latency.merge(w.stats.handoffLatency);
      for (const [k, n] of Object.entries(w.stats.requests)) {
        const [route, status] = k.split(" ");
        requests.inc({ function: w.name, route, status }, n);
      }
    }
    const workers = r.gauge("hotpotato_workers", "Registered workers, by function");
    for (const f of g.functions) workers.set({ function: f.name }, f.workers);
    const restarts = r.counter(
      "hotpotato_worker_restarts_total",
      "Workers that registered after the launcher restarted them, by function",
    );
    for (const [fn, n] of this.#restarts) restarts.inc({ function: fn }, n);
    r.gauge("hotpotato_draining", "1 while the gateway drains").set({}, g.draining ? 1 : 0);
    return r.render();
  }
}
