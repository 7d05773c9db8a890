/**
 * A small metrics registry that renders the Prometheus text format (0.0.4):
 * counters, gauges and histograms with labels. The gateway serves it on its
 * admin port; workers' counters reach it over the control channel.
 *
 * @module
 */

type Labels = Record<string, string>;

function escape(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"');
}

function labelText(labels: Labels, extra = ""): string {
  const parts = Object.keys(labels).sort().map((k) => `${k}="${escape(labels[k])}"`);
  if (extra) parts.push(extra);
  return parts.length ? `{${parts.join(",")}}` : "";
}

function key(labels: Labels): string {
  return JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));
}

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  lines(): string[];
}

/** A counter or gauge: one number per label set. */
export class Series implements Family {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge";
  #values = new Map<string, { labels: Labels; value: number }>();

  /** Create a series (use {@linkcode Registry.counter} / `gauge`).
   *
   * @example
   * ```ts
   * import { Series } from "./metrics.ts";
   * const s = new Series("x_total", "things", "counter");
   * s.inc({ kind: "a" });
   * ```
   */
  constructor(name: string, help: string, type: "counter" | "gauge") {
    this.name = name;
    this.help = help;
    this.type = type;
  }

  /** Add n (default 1).
   *
   * @example
   * ```ts
   * import { Series } from "./metrics.ts";
   * new Series("x_total", "things", "counter").inc({ route: "/sum" }, 2);
   * ```
   */
  inc(labels: Labels = {}, n = 1): void {
    const k = key(labels);
    const cur = this.#values.get(k);
    if (cur) cur.value += n;
    else this.#values.set(k, { labels, value: n });
  }

  /** Set the value (gauges).
   *
   * @example
   * ```ts
   * import { Series } from "./metrics.ts";
   * new Series("open", "open things", "gauge").set({}, 3);
   * ```
   */
  set(labels: Labels, value: number): void {
    this.#values.set(key(labels), { labels, value });
  }

  /** Drop every value (before a gauge is refilled).
   *
   * @example
   * ```ts
   * import { Series } from "./metrics.ts";
   * new Series("open", "open things", "gauge").clear();
   * ```
   */
  clear(): void {
    this.#values.clear();
  }

  /** The value for a label set (0 if none).
   *
   * @example
   * ```ts
   * import { Series } from "./metrics.ts";
   * new Series("x_total", "things", "counter").get({});
   * ```
   */
  get(labels: Labels = {}): number {
    return this.#values.get(key(labels))?.value ?? 0;
  }

  /** Text lines for this series. */
  lines(): string[] {
    return [...this.#values.values()].map((v) => `${this.name}${labelText(v.labels)} ${v.value}`);
  }
}

/** A histogram with fixed bucket upper bounds (seconds or any unit). */
export class Histogram implements Family {
  readonly name: string;
  readonly help: string;
  readonly type = "histogram" as const;
  readonly bounds: readonly number[];
  /** Per-bucket counts (not cumulative), the last one for +Inf. */
  readonly counts: number[];
  sum = 0;
  count = 0;

  /** Create a histogram.
   *
   * @example
   * ```ts
   * import { Histogram } from "./metrics.ts";
   * const h = new Histogram("latency_seconds", "latency", [0.001, 0.01]);
   * h.observe(0.002);
   * ```
   */
  constructor(name: string, help: string, bounds: readonly number[]) {
    this.name = name;
    this.help = help;
    this.bounds = bounds;
    this.counts = new Array(bounds.length + 1).fill(0);
  }

  /** Record one value.
   *
   * @example
   * ```ts
   * import { Histogram } from "./metrics.ts";
   * new Histogram("h", "h", [1]).observe(0.5);
   * ```
   */
  observe(v: number): void {
    let i = 0;
    while (i < this.bounds.length && v > this.bounds[i]) i++;
    this.counts[i]++;
    this.sum += v;
    this.count++;
  }

  /** Add another histogram's counts (same bounds).
   *
   * @example
   * ```ts
   * import { Histogram } from "./metrics.ts";
   * const h = new Histogram("h", "h", [1]);
   * h.merge({ buckets: [1, 0], sum: 0.5, count: 1 });
   * ```
   */
  merge(o: { buckets: number[]; sum: number; count: number }): void {
    for (let i = 0; i < this.counts.length; i++) this.counts[i] += o.buckets[i] ?? 0;
    this.sum += o.sum;
    this.count += o.count;
  }

  /** The state as plain data (to send or merge).
   *
   * @example
   * ```ts
   * import { Histogram } from "./metrics.ts";
   * new Histogram("h", "h", [1]).snapshot();
   * ```
   */
  snapshot(): { buckets: number[]; sum: number; count: number } {
    return { buckets: [...this.counts], sum: this.sum, count: this.count };
  }

  /** Text lines for this histogram. */
  lines(): string[] {
    const out: string[] = [];
    let cumulative = 0;
    for (let i = 0; i < this.counts.length; i++) {
      cumulative += this.counts[i];
      const le = i < this.bounds.length ? String(this.bounds[i]) : "+Inf";
      out.push(`${this.name}_bucket${labelText({}, `le="${le}"`)} ${cumulative}`);
    }
    out.push(`${this.name}_sum ${this.sum}`, `${this.name}_count ${this.count}`);
    return out;
  }
}

/**
 * A set of metric families rendered together.
 *
 * @example
 * ```ts
 * import { Registry } from "./metrics.ts";
 * const r = new Registry();
 * r.counter("requests_total", "requests").inc({ status: "200" });
 * console.log(r.render());
 * ```
 */
export class Registry {
  #families: Family[] = [];

  /** A new counter.
   *
   * @example
   * ```ts
   * import { Registry } from "./metrics.ts";
   * new Registry().counter("x_total", "things").inc();
   * ```
   */
  counter(name: string, help: string): Series {
    return this.#add(new Series(name, help, "counter"));
  }

  /** A new gauge.
   *
   * @example
   * ```ts
   * import { Registry } from "./metrics.ts";
   * new Registry().gauge("open", "open things").set({}, 1);
   * ```
   */
  gauge(name: string, help: string): Series {
    return this.#add(new Series(name, help, "gauge"));
  }

  /** A new histogram.
   *
   * @example
   * ```ts
   * import { Registry } from "./metrics.ts";
   * new Registry().histogram("latency_seconds", "latency", [0.001]).observe(0.0005);
   * ```
   */
  histogram(name: string, help: string, bounds: readonly number[]): Histogram {
    return this.#add(new Histogram(name, help, bounds));
  }

  #add<F extends Family>(f: F): F {
    this.#families.push(f);
    return f;
  }

  /** The Prometheus text exposition of every family.
   *
   * @example
   * ```ts
   * import { Registry } from "./metrics.ts";
   * const text = new Registry().render();
   * ```
   */
  render(): string {
    const out: string[] = [];
    for (const f of this.#families) {
      out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`, ...f.lines());
    }
    return out.join("\n") + "\n";
  }
}
