/**
 * A metrics registry that lives as long as its process: counter, gauge and
 * histogram families are declared once (name, help, label names), and each
 * family keeps one child per tuple of label values, created on first use and
 * found again through nested maps, one level per label (no label string is
 * ever joined or split). A call site keeps the child it counts with, or asks
 * its family for it (`family.labels("/sum", 200).inc()`): neither builds a
 * string nor allocates once the child exists.
 *
 * {@linkcode Registry.snapshot} gives the registry's state as plain JSON
 * data (a {@linkcode Snapshot}): workers send theirs to the gateway (STATS),
 * which adds a `function` label and sums them with its own
 * ({@linkcode mergeSnapshots}), and {@linkcode renderText} writes the
 * Prometheus text format (0.0.4) for `/metrics`. {@linkcode parseSnapshot}
 * checks a snapshot that arrived from another process against limits.
 *
 * @example
 * ```ts
 * import { Registry } from "./metrics.ts";
 * const registry = new Registry();
 * const requests = registry.counter("requests_total", "Requests", ["route", "status"]);
 * requests.labels("/sum", 200).inc();
 * console.log(registry.render());
 * ```
 *
 * @module
 */

/** A label value as a call site gives it; numbers and booleans are the same
 * child as their `String()` (200 and "200" count together).
 *
 * @example
 * ```ts
 * import { type LabelValue, Registry } from "./metrics.ts";
 * const status: LabelValue = 200;
 * new Registry().counter("answers_total", "Answers", ["status"]).labels(status).inc();
 * ```
 */
export type LabelValue = string | number | boolean;

/** One value for each label name of `L`, in order.
 *
 * @example
 * ```ts
 * import type { LabelValues } from "./metrics.ts";
 * const values: LabelValues<["route", "status"]> = ["/sum", 200];
 * ```
 */
export type LabelValues<L extends readonly string[]> = { -readonly [K in keyof L]: LabelValue };

/** The kinds of family.
 *
 * @example
 * ```ts
 * import { type MetricType, Registry } from "./metrics.ts";
 * const r = new Registry();
 * r.gauge("open", "Open connections");
 * const types: MetricType[] = r.snapshot().families.map((f) => f.type); // ["gauge"]
 * ```
 */
export type MetricType = "counter" | "gauge" | "histogram";

/** A counter's or gauge's series in a {@linkcode Snapshot}.
 *
 * @example
 * ```ts
 * import type { ValueSeries } from "./metrics.ts";
 * const series: ValueSeries = { values: ["/sum", "200"], value: 3 };
 * ```
 */
export interface ValueSeries {
  /** The label values, in the order of the family's label names. */
  values: string[];
  /** The value. */
  value: number;
}

/** A histogram's series in a {@linkcode Snapshot}.
 *
 * @example
 * ```ts
 * import type { HistogramSeries } from "./metrics.ts";
 * // bounds [0.001, 0.01]: one observation at most 1 ms, one above 10 ms
 * const series: HistogramSeries = { values: [], buckets: [1, 0, 1], sum: 0.0205, count: 2 };
 * ```
 */
export interface HistogramSeries {
  /** The label values, in the order of the family's label names. */
  values: string[];
  /** Observations per bucket (not cumulative): one per bound, then +Inf. */
  buckets: number[];
  /** Sum of the observations. */
  sum: number;
  /** Number of observations. */
  count: number;
}

/** A family in a {@linkcode Snapshot}.
 *
 * @example
 * ```ts
 * import type { FamilySnapshot } from "./metrics.ts";
 * const family: FamilySnapshot = {
 *   name: "workers",
 *   help: "Registered workers",
 *   type: "gauge",
 *   labels: ["function"],
 *   series: [{ values: ["sum"], value: 2 }],
 * };
 * ```
 */
export type FamilySnapshot =
  | {
    name: string;
    help: string;
    type: "counter" | "gauge";
    /** Label names. */
    labels: string[];
    series: ValueSeries[];
  }
  | {
    name: string;
    help: string;
    type: "histogram";
    /** Label names. */
    labels: string[];
    /** Bucket upper bounds, increasing (+Inf is implied). */
    bounds: number[];
    series: HistogramSeries[];
  };

/**
 * A registry's state as plain JSON data: what a worker sends the gateway,
 * and what {@linkcode renderText} renders.
 *
 * @example
 * ```ts
 * import type { Snapshot } from "./metrics.ts";
 * const snapshot: Snapshot = {
 *   families: [{
 *     name: "requests_total",
 *     help: "Requests",
 *     type: "counter",
 *     labels: ["route"],
 *     series: [{ values: ["/sum"], value: 3 }],
 *   }],
 * };
 * ```
 */
export interface Snapshot {
  /** In declaration order. */
  families: FamilySnapshot[];
}

/** Most label names a declared family has ({@linkcode Family.labels} takes
 * the values one by one, so that looking a child up allocates nothing).
 *
 * @example
 * ```ts
 * import { MAX_LABELS, Registry } from "./metrics.ts";
 * const names = ["a", "b", "c", "d"].slice(0, MAX_LABELS);
 * new Registry().counter("x_total", "X", names);
 * ```
 */
export const MAX_LABELS = 4;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function checkLabelNames(labels: readonly string[], histogram: boolean): string | undefined {
  const seen = new Set<string>();
  for (const l of labels) {
    if (typeof l !== "string" || !LABEL_NAME.test(l) || l.startsWith("__")) {
      return `bad label name ${JSON.stringify(l)?.slice(0, 80)}`;
    }
    if (histogram && l === "le") return `label "le" is the histogram's own`;
    if (seen.has(l)) return `label ${l} twice`;
    seen.add(l);
  }
  return undefined;
}

function checkBounds(bounds: readonly number[]): string | undefined {
  for (let i = 0; i < bounds.length; i++) {
    if (typeof bounds[i] !== "number" || !Number.isFinite(bounds[i])) {
      return "bucket bounds must be finite numbers";
    }
    if (i > 0 && !(bounds[i] > bounds[i - 1])) return "bucket bounds must increase";
  }
  return undefined;
}

/** A counter: one label-value tuple's value, which only goes up. */
export class Counter {
  /** Its label values. */
  readonly values: readonly string[];
  #value = 0;

  /** A counter at 0 (a family creates them: {@linkcode Family.labels}).
   *
   * @example
   * ```ts
   * import { Counter } from "./metrics.ts";
   * new Counter(["/sum"]).inc();
   * ```
   */
  constructor(values: readonly string[]) {
    this.values = values;
  }

  /** The value. */
  get value(): number {
    return this.#value;
  }

  /** Add `n` (default 1); a negative or non-finite `n` throws.
   *
   * @example
   * ```ts
   * import { Counter } from "./metrics.ts";
   * const c = new Counter([]);
   * c.inc();
   * c.inc(2);
   * console.log(c.value); // 3
   * ```
   */
  inc(n = 1): void {
    if (!(n >= 0 && n !== Infinity)) throw new RangeError(`a counter cannot add ${n}`);
    this.#value += n;
  }
}

/** A gauge: one label-value tuple's value, which goes up and down. */
export class Gauge {
  /** Its label values. */
  readonly values: readonly string[];
  #value = 0;

  /** A gauge at 0 (a family creates them: {@linkcode Family.labels}).
   *
   * @example
   * ```ts
   * import { Gauge } from "./metrics.ts";
   * new Gauge(["gateway"]).set(3);
   * ```
   */
  constructor(values: readonly string[]) {
    this.values = values;
  }

  /** The value. */
  get value(): number {
    return this.#value;
  }

  /** Set the value; a non-finite one throws.
   *
   * @example
   * ```ts
   * import { Gauge } from "./metrics.ts";
   * new Gauge([]).set(42);
   * ```
   */
  set(v: number): void {
    if (!Number.isFinite(v)) throw new RangeError(`a gauge cannot be ${v}`);
    this.#value = v;
  }

  /** Add `n` (default 1; negative to subtract).
   *
   * @example
   * ```ts
   * import { Gauge } from "./metrics.ts";
   * const g = new Gauge([]);
   * g.inc();
   * g.inc(-1);
   * ```
   */
  inc(n = 1): void {
    this.set(this.#value + n);
  }
}

/** A histogram: one label-value tuple's observations, in buckets. */
export class Histogram {
  /** Its label values. */
  readonly values: readonly string[];
  /** The family's bucket upper bounds. */
  readonly bounds: readonly number[];
  #counts: number[];
  #sum = 0;
  #count = 0;

  /** An empty histogram (a family creates them: {@linkcode Family.labels}).
   *
   * @example
   * ```ts
   * import { Histogram } from "./metrics.ts";
   * new Histogram([], [0.001, 0.01]).observe(0.002);
   * ```
   */
  constructor(values: readonly string[], bounds: readonly number[]) {
    this.values = values;
    this.bounds = bounds;
    this.#counts = new Array(bounds.length + 1).fill(0);
  }

  /** Number of observations. */
  get count(): number {
    return this.#count;
  }

  /** Sum of the observations. */
  get sum(): number {
    return this.#sum;
  }

  /** Observations per bucket (not cumulative), the last one for +Inf.
   *
   * @example
   * ```ts
   * import { Histogram } from "./metrics.ts";
   * const h = new Histogram([], [1]);
   * h.observe(0.5);
   * console.log(h.buckets()); // [1, 0]
   * ```
   */
  buckets(): number[] {
    return [...this.#counts];
  }

  /** Record one value (a NaN or infinite one is ignored: it would make the
   * sum useless forever).
   *
   * @example
   * ```ts
   * import { Histogram } from "./metrics.ts";
   * new Histogram([], [1]).observe(0.5);
   * ```
   */
  observe(v: number): void {
    if (!Number.isFinite(v)) return;
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && v > bounds[i]) i++;
    this.#counts[i]++;
    this.#sum += v;
    this.#count++;
  }
}

type Level = Map<LabelValue, unknown>;

/**
 * A family: name, help, label names, and a child (a {@linkcode Counter},
 * {@linkcode Gauge} or {@linkcode Histogram}) per tuple of label values.
 * Declare one with {@linkcode Registry.counter}, `gauge` or `histogram`.
 *
 * @example
 * ```ts
 * import { Registry } from "./metrics.ts";
 * const handoffs = new Registry().counter("handoffs_total", "Handoffs", ["function", "route"]);
 * const sum = handoffs.labels("sum", "/sum"); // keep it where it counts
 * sum.inc();
 * ```
 */
export class Family<L extends readonly string[], C extends Counter | Gauge | Histogram> {
  /** The metric name. */
  readonly name: string;
  /** Its help text. */
  readonly help: string;
  /** The kind. */
  readonly type: MetricType;
  /** The label names, in the order {@linkcode Family.labels} takes values. */
  readonly labelNames: L;
  /** A histogram's bucket upper bounds (empty otherwise). */
  readonly bounds: readonly number[];
  #make: (values: readonly string[]) => C;
  /** Nested maps, one level per label: value → next level, the last → child. */
  #root: Level = new Map();
  /** Every child, in creation order (for snapshots). */
  #children: C[] = [];
  /** The one child of a family without labels. */
  #only: C | undefined;

  /** A family (use {@linkcode Registry.counter}, `gauge` or `histogram`,
   * which check the names).
   *
   * @example
   * ```ts
   * import { Counter, Family } from "./metrics.ts";
   * new Family("x_total", "Things", "counter", ["kind"], [], (v) => new Counter(v));
   * ```
   */
  constructor(
    name: string,
    help: string,
    type: MetricType,
    labelNames: L,
    bounds: readonly number[],
    make: (values: readonly string[]) => C,
  ) {
    if (labelNames.length > MAX_LABELS) {
      throw new RangeError(`${name}: more than ${MAX_LABELS} labels`);
    }
    this.name = name;
    this.help = help;
    this.type = type;
    this.labelNames = labelNames;
    this.bounds = bounds;
    this.#make = make;
    this.reset();
  }

  /** The child for these label values (one per label name, in order),
   * created at first use. Once it exists, finding it again builds no string
   * and allocates nothing.
   *
   * @example
   * ```ts
   * import { Registry } from "./metrics.ts";
   * const requests = new Registry().counter("requests_total", "Requests", ["route", "status"]);
   * requests.labels("/sum", 200).inc();
   * console.log(requests.labels("/sum", "200").value); // 1: the same child
   * ```
   */
  // @ts-expect-error: the implementation takes the values one by one (no rest array to allocate)
  labels(...values: LabelValues<L>): C;
  labels(v0?: LabelValue, v1?: LabelValue, v2?: LabelValue, v3?: LabelValue): C {
    let found: unknown;
    switch (this.labelNames.length) {
      case 0:
        return this.#only!;
      case 1:
        found = this.#root.get(v0!);
        break;
      case 2:
        found = (this.#root.get(v0!) as Level | undefined)?.get(v1!);
        break;
      case 3:
        found = ((this.#root.get(v0!) as Level | undefined)?.get(v1!) as Level | undefined)
          ?.get(v2!);
        break;
      default:
        found = (((this.#root.get(v0!) as Level | undefined)?.get(v1!) as Level | undefined)
          ?.get(v2!) as Level | undefined)?.get(v3!);
    }
    return (found as C | undefined) ?? this.#create([v0, v1, v2, v3]);
  }

  /** The slow path of {@linkcode Family.labels}: check the values, create
   * what is missing. Each level is keyed by the value's string; a number or
   * boolean is an alias of it. */
  #create(given: (LabelValue | undefined)[]): C {
    const n = this.labelNames.length;
    given.length = n;
    if (given.some((v) => v === undefined || v === null)) {
      throw new RangeError(`${this.name}: ${n} label value(s) expected (${this.labelNames})`);
    }
    const values = given.map(String);
    let level = this.#root;
    let child: C | undefined;
    for (let i = 0; i < n; i++) {
      const key = values[i];
      let next = level.get(key);
      if (next === undefined) {
        if (i < n - 1) next = new Map();
        else {
          child = this.#make(values);
          this.#children.push(child);
          next = child;
        }
        level.set(key, next);
      }
      if (given[i] !== key) level.set(given[i]!, next);
      if (i < n - 1) level = next as Level;
      else child = next as C;
    }
    return child!;
  }

  /** Forget every child: for a gauge refilled at each collection (the
   * children a call site kept are no longer part of the family). A family
   * without labels gets a new child at 0.
   *
   * @example
   * ```ts
   * import { Registry } from "./metrics.ts";
   * const workers = new Registry().gauge("workers", "Workers", ["function"]);
   * workers.reset();
   * workers.labels("sum").set(2);
   * ```
   */
  reset(): void {
    this.#root = new Map();
    this.#children = [];
    this.#only = undefined;
    if (this.labelNames.length === 0) {
      this.#only = this.#make([]);
      this.#children.push(this.#only);
    }
  }

  /** Every child, in creation order.
   *
   * @example
   * ```ts
   * import { Registry } from "./metrics.ts";
   * const f = new Registry().counter("x_total", "Things", ["kind"]);
   * f.labels("a").inc();
   * for (const c of f.children()) console.log(c.values, c.value);
   * ```
   */
  children(): readonly C[] {
    return this.#children;
  }

  /** The family's state as plain data.
   *
   * @example
   * ```ts
   * import { Registry } from "./metrics.ts";
   * console.log(new Registry().counter("x_total", "Things").snapshot());
   * ```
   */
  snapshot(): FamilySnapshot {
    const base = { name: this.name, help: this.help, labels: [...this.labelNames] };
    if (this.type === "histogram") {
      return {
        ...base,
        type: "histogram",
        bounds: [...this.bounds],
        series: (this.#children as Histogram[]).map((h) => ({
          values: [...h.values],
          buckets: h.buckets(),
          sum: h.sum,
          count: h.count,
        })),
      };
    }
    return {
      ...base,
      type: this.type,
      series: (this.#children as (Counter | Gauge)[]).map((c) => ({
        values: [...c.values],
        value: c.value,
      })),
    };
  }
}

/** Sum of a counter or gauge family's children whose labels have the given
 * values (all of them with no `match`).
 *
 * @example
 * ```ts
 * import { Registry, total } from "./metrics.ts";
 * const hs = new Registry().counter("handshakes_total", "Handshakes", ["resumed", "version"]);
 * hs.labels(true, "TLSv1.3").inc();
 * hs.labels(false, "TLSv1.2").inc();
 * console.log(total(hs), total(hs, { resumed: "true" })); // 2 1
 * ```
 */
export function total<L extends readonly string[]>(
  family: Family<L, Counter | Gauge>,
  match: { [K in L[number]]?: string } = {},
): number {
  const wanted: [number, string][] = [];
  for (const [name, value] of Object.entries(match) as [string, string | undefined][]) {
    if (value === undefined) continue;
    const i = family.labelNames.indexOf(name);
    if (i < 0) return 0;
    wanted.push([i, value]);
  }
  let n = 0;
  for (const c of family.children()) {
    if (wanted.every(([i, v]) => c.values[i] === v)) n += c.value;
  }
  return n;
}

/**
 * The metric families of one process, declared once and kept for its life.
 *
 * @example
 * ```ts
 * import { Registry } from "./metrics.ts";
 * const r = new Registry();
 * const accepted = r.counter("accepted_total", "Connections accepted").labels();
 * accepted.inc();
 * console.log(r.render());
 * ```
 */
export class Registry {
  #families: Family<readonly string[], Counter | Gauge | Histogram>[] = [];
  #names = new Set<string>();

  /** Declare a counter family.
   *
   * @example
   * ```ts
   * import { Registry } from "./metrics.ts";
   * const returned = new Registry().counter("returned_total", "Returned", ["function"]);
   * returned.labels("sum").inc();
   * ```
   */
  counter<const L extends readonly string[] = []>(
    name: string,
    help: string,
    labels?: L,
  ): Family<L, Counter> {
    return this.#declare(name, help, "counter", labels, [], (v) => new Counter(v));
  }

  /** Declare a gauge family.
   *
   * @example
   * ```ts
   * import { Registry } from "./metrics.ts";
   * new Registry().gauge("open", "Connections open", ["holder"]).labels("gateway").set(3);
   * ```
   */
  gauge<const L extends readonly string[] = []>(
    name: string,
    help: string,
    labels?: L,
  ): Family<L, Gauge> {
    return this.#declare(name, help, "gauge", labels, [], (v) => new Gauge(v));
  }

  /** Declare a histogram family with these bucket upper bounds (+Inf is
   * implied).
   *
   * @example
   * ```ts
   * import { Registry } from "./metrics.ts";
   * new Registry().histogram("latency_seconds", "Latency", [0.001, 0.01]).labels().observe(0.002);
   * ```
   */
  histogram<const L extends readonly string[] = []>(
    name: string,
    help: string,
    bounds: readonly number[],
    labels?: L,
  ): Family<L, Histogram> {
    const b = [...bounds];
    const bad = checkBounds(b);
    if (bad) throw new RangeError(`${name}: ${bad}`);
    return this.#declare(name, help, "histogram", labels, b, (v) => new Histogram(v, b));
  }

  #declare<L extends readonly string[], C extends Counter | Gauge | Histogram>(
    name: string,
    help: string,
    type: MetricType,
    labels: L | undefined,
    bounds: readonly number[],
    make: (values: readonly string[]) => C,
  ): Family<L, C> {
    if (!METRIC_NAME.test(name)) throw new RangeError(`bad metric name ${JSON.stringify(name)}`);
    if (this.#names.has(name)) throw new RangeError(`${name} is declared already`);
    const names = Object.freeze([...(labels ?? [])]) as unknown as L;
    const bad = checkLabelNames(names, type === "histogram");
    if (bad) throw new RangeError(`${name}: ${bad}`);
    const family = new Family(name, help, type, names, bounds, make);
    this.#names.add(name);
    this.#families.push(family);
    return family;
  }

  /** Every family's state as plain JSON data, in declaration order.
   *
   * @example
   * ```ts
   * import { Registry } from "./metrics.ts";
   * const r = new Registry();
   * r.counter("x_total", "Things").labels().inc();
   * console.log(JSON.stringify(r.snapshot()));
   * ```
   */
  snapshot(): Snapshot {
    return { families: this.#families.map((f) => f.snapshot()) };
  }

  /** The Prometheus text exposition (0.0.4) of every family.
   *
   * @example
   * ```ts
   * import { Registry } from "./metrics.ts";
   * const r = new Registry();
   * r.gauge("draining", "1 while draining").labels().set(0);
   * console.log(r.render());
   * ```
   */
  render(): string {
    return renderText(this.snapshot());
  }
}

function escapeLabel(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"');
}

function escapeHelp(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

function formatNumber(v: number): string {
  if (Number.isFinite(v)) return String(v);
  return v > 0 ? "+Inf" : v < 0 ? "-Inf" : "NaN";
}

function labelText(names: readonly string[], values: readonly string[], le?: string): string {
  const parts = names.map((n, i) => `${n}="${escapeLabel(values[i])}"`);
  if (le !== undefined) parts.push(`le="${le}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

/** The Prometheus text exposition (format 0.0.4) of a snapshot: `# HELP`
 * and `# TYPE` for every family (series or not), label values escaped,
 * histograms as cumulative `_bucket{le=...}`, `_sum` and `_count`.
 *
 * @example
 * ```ts
 * import { renderText } from "./metrics.ts";
 * const text = renderText({
 *   families: [{
 *     name: "open",
 *     help: "Open connections",
 *     type: "gauge",
 *     labels: ["holder"],
 *     series: [{ values: ["gateway"], value: 2 }],
 *   }],
 * });
 * console.log(text); // ... open{holder="gateway"} 2
 * ```
 */
export function renderText(snapshot: Snapshot): string {
  const out: string[] = [];
  for (const f of snapshot.families) {
    out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    if (f.type !== "histogram") {
      for (const s of f.series) {
        out.push(`${f.name}${labelText(f.labels, s.values)} ${formatNumber(s.value)}`);
      }
      continue;
    }
    for (const s of f.series) {
      let cumulative = 0;
      for (let i = 0; i <= f.bounds.length; i++) {
        cumulative += s.buckets[i] ?? 0;
        const le = i < f.bounds.length ? formatNumber(f.bounds[i]) : "+Inf";
        out.push(`${f.name}_bucket${labelText(f.labels, s.values, le)} ${cumulative}`);
      }
      const labels = labelText(f.labels, s.values);
      out.push(
        `${f.name}_sum${labels} ${formatNumber(s.sum)}`,
        `${f.name}_count${labels} ${s.count}`,
      );
    }
  }
  return out.join("\n") + "\n";
}

/** One input of {@linkcode mergeSnapshots}.
 *
 * @example
 * ```ts
 * import { type MergePart, Registry } from "./metrics.ts";
 * const part: MergePart = { snapshot: new Registry().snapshot(), labels: { function: "sum" } };
 * ```
 */
export interface MergePart {
  /** What to add. */
  snapshot: Snapshot;
  /** Labels to add to every series (e.g. `{ function: "sum" }`); they win
   * over the snapshot's own labels of the same name. */
  labels?: Record<string, string>;
}

/** Nested maps keyed by label values, one level per label. */
class SeriesIndex<T> {
  #root = new Map<string, unknown>();
  #depth: number;

  constructor(depth: number) {
    this.#depth = depth;
  }

  get(values: readonly string[]): T | undefined {
    let level: unknown = this.#root;
    for (let i = 0; i < this.#depth && level !== undefined; i++) {
      level = (level as Map<string, unknown>).get(values[i]);
    }
    return level === this.#root ? undefined : level as T | undefined;
  }

  set(values: readonly string[], t: T): void {
    let level = this.#root;
    for (let i = 0; i < this.#depth - 1; i++) {
      let next = level.get(values[i]) as Map<string, unknown> | undefined;
      if (!next) level.set(values[i], next = new Map());
      level = next;
    }
    level.set(values[this.#depth - 1], t);
  }
}

interface Merged {
  family: FamilySnapshot;
  index: SeriesIndex<ValueSeries | HistogramSeries>;
  only?: ValueSeries | HistogramSeries;
}

function sameBounds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Add snapshots together. A family is shaped by its first appearance (name,
 * help, type, label names, bounds); a later part's series are added into it:
 * each of the family's labels takes its value from the part's `labels`, else
 * from the series' label of that name, else ""; the series' other labels are
 * summed away. A family first seen in a part with `labels` gets those label
 * names in front of its own. Series with the same label values are summed.
 * A later family whose type (or histogram bounds) differs from the first is
 * left out. With `{ gauges: false }`, gauges are left out (what a departed
 * worker leaves behind: its counts, not its current state). The inputs are
 * not changed.
 *
 * @example
 * ```ts
 * import { mergeSnapshots, Registry, renderText } from "./metrics.ts";
 * const gateway = new Registry();
 * gateway.counter("requests_total", "Requests", ["function", "route"]).labels("gateway", "").inc();
 * const worker = new Registry();
 * worker.counter("requests_total", "Requests", ["route"]).labels("/sum").inc(3);
 * const merged = mergeSnapshots([
 *   { snapshot: gateway.snapshot() },
 *   { snapshot: worker.snapshot(), labels: { function: "sum" } },
 * ]);
 * console.log(renderText(merged)); // requests_total{function="sum",route="/sum"} 3, and the gateway's
 * ```
 */
export function mergeSnapshots(
  parts: readonly MergePart[],
  options: { gauges?: boolean } = {},
): Snapshot {
  const gauges = options.gauges ?? true;
  const byName = new Map<string, Merged>();
  const families: FamilySnapshot[] = [];
  for (const { snapshot, labels: extra = {} } of parts) {
    const extraNames = Object.keys(extra);
    for (const f of snapshot.families) {
      if (f.type === "gauge" && !gauges) continue;
      let m = byName.get(f.name);
      if (!m) {
        const labels = [...extraNames.filter((n) => !f.labels.includes(n)), ...f.labels];
        const family: FamilySnapshot = f.type === "histogram"
          ? { ...f, labels, bounds: [...f.bounds], series: [] }
          : { ...f, labels, series: [] };
        m = { family, index: new SeriesIndex(labels.length) };
        byName.set(f.name, m);
        families.push(family);
      }
      const into = m.family;
      if (into.type !== f.type) continue;
      if (into.type === "histogram" && !sameBounds(into.bounds, (f as typeof into).bounds)) {
        continue;
      }
      // Where each of the target's labels comes from: a part label, or the
      // series' label at that index, or nothing ("").
      const from: (string | number)[] = into.labels.map((name) =>
        Object.hasOwn(extra, name) ? extra[name] : f.labels.indexOf(name)
      );
      for (const s of f.series as (ValueSeries | HistogramSeries)[]) {
        const values = from.map((w) => typeof w === "string" ? w : w >= 0 ? s.values[w] ?? "" : "");
        let t = values.length === 0 ? m.only : m.index.get(values);
        if (t === undefined) {
          t = "buckets" in s
            ? { values, buckets: new Array<number>(s.buckets.length).fill(0), sum: 0, count: 0 }
            : { values, value: 0 };
          if (values.length === 0) m.only = t;
          else m.index.set(values, t);
          (into.series as (ValueSeries | HistogramSeries)[]).push(t);
        }
        if ("buckets" in t && "buckets" in s) {
          for (let i = 0; i < t.buckets.length; i++) t.buckets[i] += s.buckets[i] ?? 0;
          t.sum += s.sum;
          t.count += s.count;
        } else if ("value" in t && "value" in s) {
          t.value += s.value;
        }
      }
    }
  }
  return { families };
}

/** Bounds on a snapshot that comes from another process
 * ({@linkcode parseSnapshot}).
 *
 * @example
 * ```ts
 * import type { SnapshotLimits } from "./metrics.ts";
 * const limits: SnapshotLimits = {
 *   families: 32, series: 2048, labels: 8, nameLength: 128, helpLength: 256, valueLength: 256,
 *   buckets: 32,
 * };
 * ```
 */
export interface SnapshotLimits {
  /** Most families. */
  families: number;
  /** Most series in all families together. */
  series: number;
  /** Most label names in a family. */
  labels: number;
  /** Longest metric or label name. */
  nameLength: number;
  /** Longest help text. */
  helpLength: number;
  /** Longest label value. */
  valueLength: number;
  /** Most bucket bounds in a histogram. */
  buckets: number;
}

const isObject = (o: unknown): o is Record<string, unknown> =>
  typeof o === "object" && o !== null && !Array.isArray(o);
const finite = (n: unknown): n is number => typeof n === "number" && Number.isFinite(n);
const count = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;

/**
 * Check a snapshot that came from elsewhere (parsed JSON) and return a clean
 * copy of it: names valid and within `limits`, each series with one value
 * per label name, every number finite, counters and counts not negative,
 * histogram buckets matching the bounds. Throws a `TypeError` naming the
 * first problem.
 *
 * @example
 * ```ts
 * import { parseSnapshot } from "./metrics.ts";
 * const limits = {
 *   families: 64, series: 2048, labels: 8, nameLength: 128, helpLength: 512, valueLength: 512,
 *   buckets: 64,
 * };
 * const snapshot = parseSnapshot(JSON.parse('{"families":[]}'), limits);
 * ```
 */
export function parseSnapshot(o: unknown, limits: SnapshotLimits): Snapshot {
  const fail = (why: string): never => {
    throw new TypeError(why);
  };
  if (!isObject(o) || !Array.isArray(o.families)) return fail("metrics: not a snapshot");
  if (o.families.length > limits.families) fail(`more than ${limits.families} families`);
  const names = new Set<string>();
  let series = 0;
  const families: FamilySnapshot[] = [];
  for (const f of o.families as unknown[]) {
    if (!isObject(f)) return fail("a family is not an object");
    const { name, help, type, labels } = f;
    if (
      typeof name !== "string" || name.length > limits.nameLength || !METRIC_NAME.test(name)
    ) return fail(`bad metric name ${JSON.stringify(name)?.slice(0, 80)}`);
    if (names.has(name)) fail(`${name} twice`);
    names.add(name);
    if (typeof help !== "string" || help.length > limits.helpLength) {
      return fail(`${name}: help must be a string of at most ${limits.helpLength}`);
    }
    if (type !== "counter" && type !== "gauge" && type !== "histogram") {
      return fail(`${name}: bad type`);
    }
    if (!Array.isArray(labels) || labels.length > limits.labels) {
      return fail(`${name}: labels must be a list of at most ${limits.labels}`);
    }
    const badLabel = checkLabelNames(labels, type === "histogram") ??
      (labels.some((l: string) => l.length > limits.nameLength) ? "label name too long" : "");
    if (badLabel) fail(`${name}: ${badLabel}`);
    let bounds: number[] = [];
    if (type === "histogram") {
      if (!Array.isArray(f.bounds) || f.bounds.length > limits.buckets) {
        return fail(`${name}: bounds must be a list of at most ${limits.buckets}`);
      }
      bounds = [...f.bounds];
      const bad = checkBounds(bounds);
      if (bad) fail(`${name}: ${bad}`);
    }
    if (!Array.isArray(f.series)) return fail(`${name}: series must be a list`);
    series += f.series.length;
    if (series > limits.series) fail(`more than ${limits.series} series`);
    const parsed: (ValueSeries | HistogramSeries)[] = [];
    for (const s of f.series as unknown[]) {
      if (!isObject(s) || !Array.isArray(s.values) || s.values.length !== labels.length) {
        return fail(`${name}: a series needs one value per label`);
      }
      const values = s.values as unknown[];
      if (!values.every((v) => typeof v === "string" && v.length <= limits.valueLength)) {
        return fail(`${name}: label values must be strings of at most ${limits.valueLength}`);
      }
      if (type === "histogram") {
        const { buckets, sum, count: n } = s;
        if (
          !Array.isArray(buckets) || buckets.length !== bounds.length + 1 ||
          !buckets.every(count) || !finite(sum) || !count(n)
        ) return fail(`${name}: bad histogram series`);
        parsed.push({ values: values as string[], buckets: [...buckets], sum, count: n });
      } else {
        const { value } = s;
        if (!finite(value) || (type === "counter" && value < 0)) {
          return fail(`${name}: bad ${type} value`);
        }
        parsed.push({ values: values as string[], value });
      }
    }
    const labelNames = [...labels] as string[];
    families.push(
      type === "histogram"
        ? { name, help, type, labels: labelNames, bounds, series: parsed as HistogramSeries[] }
        : { name, help, type, labels: labelNames, series: parsed as ValueSeries[] },
    );
  }
  return { families };
}
