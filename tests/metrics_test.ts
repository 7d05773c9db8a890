/**
 * The metrics registry (src/operations/metrics.ts): families declared once,
 * children per label values, Prometheus text, snapshots and their merge; the
 * gateway's view of its workers (src/gateway/gateway_metrics.ts): counters
 * that never go down when a worker leaves; and the bounds on a STATS report.
 */

import assert from "node:assert/strict";
import {
  MAX_LABELS,
  mergeSnapshots,
  parseSnapshot,
  Registry,
  renderText,
  type Snapshot,
  total,
} from "../src/operations/metrics.ts";
import { GatewayMetrics, type GatewayState } from "../src/gateway/gateway_metrics.ts";
import { WorkerMetrics } from "../src/worker/worker_metrics.ts";
import {
  decodeMessage,
  encodeJson,
  Limits,
  MessageType,
  ProtocolError,
  STATS_LIMITS,
} from "../src/handoff/protocol.ts";

const enc = new TextEncoder();

/** A STATS message with any body text, valid or not. */
function rawStats(json: string): Uint8Array {
  const header = encodeJson(MessageType.DRAIN, {}).subarray(0, 8);
  header[5] = MessageType.STATS;
  const body = enc.encode(json);
  const bytes = new Uint8Array(8 + body.length);
  bytes.set(header);
  bytes.set(body, 8);
  return bytes;
}

/** The value of one exact series in Prometheus text. */
function value(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

Deno.test("registry: Prometheus text for counters, gauges and histograms", () => {
  const r = new Registry();
  r.counter("a_total", "Things\\counted\nhere").labels().inc(2);
  const g = r.gauge("open", "Open", ["holder"]);
  g.labels("gateway").set(3);
  g.labels("sum").inc();
  const h = r.histogram("lat_seconds", "Latency", [0.001, 0.01], ["route"]);
  h.labels("/x").observe(0.0005);
  h.labels("/x").observe(0.005);
  h.labels("/x").observe(1);
  r.counter("empty_total", "Nothing yet", ["kind"]);
  assert.equal(
    r.render(),
    [
      "# HELP a_total Things\\\\counted\\nhere",
      "# TYPE a_total counter",
      "a_total 2",
      "# HELP open Open",
      "# TYPE open gauge",
      'open{holder="gateway"} 3',
      'open{holder="sum"} 1',
      "# HELP lat_seconds Latency",
      "# TYPE lat_seconds histogram",
      'lat_seconds_bucket{route="/x",le="0.001"} 1',
      'lat_seconds_bucket{route="/x",le="0.01"} 2',
      'lat_seconds_bucket{route="/x",le="+Inf"} 3',
      'lat_seconds_sum{route="/x"} 1.0055',
      'lat_seconds_count{route="/x"} 3',
      "# HELP empty_total Nothing yet",
      "# TYPE empty_total counter",
      "",
    ].join("\n"),
  );
});

Deno.test("registry: label values are escaped", () => {
  const r = new Registry();
  r.counter("x_total", "X", ["path"]).labels('a"b\\c\nd').inc();
  assert.match(r.render(), /^x_total\{path="a\\"b\\\\c\\nd"\} 1$/m);
});

Deno.test("registry: one child per label values; numbers and booleans are their strings", () => {
  const r = new Registry();
  const requests = r.counter("requests_total", "Requests", ["route", "status"]);
  const child = requests.labels("/sum", 200);
  child.inc();
  assert.equal(requests.labels("/sum", 200), child);
  assert.equal(requests.labels("/sum", "200"), child);
  requests.labels("/sum", "404").inc();
  assert.equal(requests.labels("/sum", 404).value, 1);
  assert.equal(requests.children().length, 2);
  const hs = r.counter("hs_total", "Handshakes", ["resumed", "version"]);
  hs.labels(true, "TLSv1.3").inc();
  hs.labels("true", "TLSv1.3").inc();
  hs.labels(false, "TLSv1.2").inc();
  assert.equal(total(hs), 3);
  assert.equal(total(hs, { resumed: "true" }), 2);
  assert.equal(total(hs, { resumed: "true", version: "TLSv1.2" }), 0);
  // Four labels, the most a declared family takes.
  const four = r.gauge("four", "Four", ["a", "b", "c", "d"]);
  four.labels("1", "2", "3", "4").set(7);
  assert.equal(four.labels(1, 2, 3, 4).value, 7);
  assert.match(r.render(), /^four\{a="1",b="2",c="3",d="4"\} 7$/m);
});

Deno.test("registry: what is refused", () => {
  const r = new Registry();
  r.counter("x_total", "X", ["a"]);
  assert.throws(() => r.counter("x_total", "again"), /declared already/);
  assert.throws(() => r.counter("bad-name", "X"), /bad metric name/);
  assert.throws(() => r.counter("y_total", "X", ["a", "a"]), /twice/);
  assert.throws(() => r.counter("z_total", "X", ["__x"]), /bad label name/);
  assert.throws(() => r.histogram("h", "X", [1], ["le"]), /histogram's own/);
  assert.throws(() => r.histogram("h2", "X", [1, 1]), /increase/);
  assert.throws(
    () => r.counter("many_total", "X", ["a", "b", "c", "d", "e"]),
    new RegExp(`more than ${MAX_LABELS} labels`),
  );
  const two = r.counter("two_total", "X", ["a", "b"]);
  // @ts-expect-error: one value for two labels
  assert.throws(() => two.labels("only"), /2 label value\(s\) expected/);
  const c = r.counter("c_total", "X").labels();
  assert.throws(() => c.inc(-1), RangeError);
  assert.throws(() => c.inc(NaN), RangeError);
  assert.throws(() => c.inc(Infinity), RangeError);
  assert.throws(() => r.gauge("g", "X").labels().set(NaN), RangeError);
  const h = r.histogram("h3", "X", [1]).labels();
  h.observe(NaN);
  h.observe(Infinity);
  assert.equal(h.count, 0); // ignored: the sum stays usable
});

Deno.test("registry: a gauge family refilled after reset", () => {
  const r = new Registry();
  const workers = r.gauge("workers", "Workers", ["function"]);
  workers.labels("sum").set(2);
  workers.labels("gone").set(0);
  workers.reset();
  workers.labels("sum").set(1);
  assert.doesNotMatch(r.render(), /gone/);
  assert.match(r.render(), /^workers\{function="sum"\} 1$/m);
});

Deno.test("snapshot: plain JSON that parses back to itself", () => {
  const r = new Registry();
  r.counter("requests_total", "Requests", ["route", "status"]).labels("/sum", 200).inc(5);
  r.gauge("open", "Open").labels().set(-1);
  r.histogram("lat", "Latency", [0.5]).labels().observe(0.25);
  const snapshot = r.snapshot();
  assert.deepEqual(snapshot, {
    families: [
      {
        name: "requests_total",
        help: "Requests",
        type: "counter",
        labels: ["route", "status"],
        series: [{ values: ["/sum", "200"], value: 5 }],
      },
      {
        name: "open",
        help: "Open",
        type: "gauge",
        labels: [],
        series: [{ values: [], value: -1 }],
      },
      {
        name: "lat",
        help: "Latency",
        type: "histogram",
        labels: [],
        bounds: [0.5],
        series: [{ values: [], buckets: [1, 0], sum: 0.25, count: 1 }],
      },
    ],
  });
  const back = parseSnapshot(JSON.parse(JSON.stringify(snapshot)), STATS_LIMITS);
  assert.deepEqual(back, snapshot);
  assert.equal(renderText(back), r.render());
});

Deno.test("merge: a function label in front, summed across workers and with the gateway's", () => {
  const gateway = new Registry();
  gateway.counter("requests_total", "Requests", ["function", "route", "status"])
    .labels("gateway", "", 404).inc();
  gateway.histogram("lat", "Latency", [0.1]).labels().observe(0.05);
  const worker = () => {
    const w = new Registry();
    w.counter("requests_total", "Worker help", ["route", "status"]).labels("/sum", 200).inc(2);
    w.histogram("lat", "Latency", [0.1]).labels().observe(1);
    w.counter("custom_total", "Something new", ["kind"]).labels("x").inc();
    return w.snapshot();
  };
  const merged = mergeSnapshots([
    { snapshot: gateway.snapshot() },
    { snapshot: worker(), labels: { function: "sum" } },
    { snapshot: worker(), labels: { function: "sum" } },
    { snapshot: worker(), labels: { function: "product" } },
  ]);
  const text = renderText(merged);
  assert.equal(value(text, 'requests_total{function="gateway",route="",status="404"}'), 1);
  assert.equal(value(text, 'requests_total{function="sum",route="/sum",status="200"}'), 4);
  assert.equal(value(text, 'requests_total{function="product",route="/sum",status="200"}'), 2);
  assert.match(text, /^# HELP requests_total Requests$/m); // the first declaration's
  // The gateway's histogram has no labels: every worker's adds into it.
  assert.equal(value(text, "lat_count"), 4);
  assert.equal(value(text, 'lat_bucket{le="0.1"}'), 1);
  assert.equal(value(text, 'lat_bucket{le="+Inf"}'), 4);
  // A family only workers have: shown with the function label in front.
  assert.equal(value(text, 'custom_total{function="sum",kind="x"}'), 2);
  assert.equal(value(text, 'custom_total{function="product",kind="x"}'), 1);
});

Deno.test("merge: part labels win, mismatched families are left out, gauges can be", () => {
  const a = new Registry();
  a.counter("c_total", "C", ["function"]);
  a.histogram("h", "H", [1]);
  const b = new Registry();
  b.counter("c_total", "C", ["function"]).labels("claims-another").inc();
  b.histogram("h", "H", [2]).labels().observe(1); // other bounds
  b.gauge("g", "G").labels().set(3);
  const parts = [{ snapshot: a.snapshot() }, { snapshot: b.snapshot(), labels: { function: "f" } }];
  const text = renderText(mergeSnapshots(parts));
  assert.equal(value(text, 'c_total{function="f"}'), 1);
  assert.equal(value(text, "h_count"), 0); // a's own (empty) series, without b's
  assert.equal(value(text, 'g{function="f"}'), 3);
  assert.equal(
    value(renderText(mergeSnapshots(parts, { gauges: false })), 'g{function="f"}'),
    undefined,
  );
  // The inputs are not changed.
  assert.equal(b.snapshot().families[0].series[0].values[0], "claims-another");
});

/** A worker that answered `n` requests on /sum, holding `held` connections. */
function sumWorker(n: number, held: number): Snapshot {
  const w = new WorkerMetrics("sum");
  for (let i = 0; i < n; i++) w.requests.labels("/sum", 200).inc();
  w.handoffLatency.observe(0.0001);
  return w.stats(held).metrics!;
}

function state(workers: GatewayState["workers"]): GatewayState {
  return {
    held: 0,
    draining: false,
    functions: [{ name: "sum", workers: workers.length }],
    workers,
  };
}

Deno.test("gateway: counters never go down when a worker leaves", () => {
  const m = new GatewayMetrics();
  const requests = 'hotpotato_requests_total{function="sum",route="/sum",status="200"}';
  const open = 'hotpotato_connections_open{holder="sum"}';
  const first = sumWorker(3, 2);
  const second = sumWorker(4, 1);
  let text = m.render(state([{ name: "sum", metrics: first }, { name: "sum", metrics: second }]));
  assert.equal(value(text, requests), 7);
  assert.equal(value(text, open), 3);
  assert.equal(value(text, "hotpotato_handoff_latency_seconds_count"), 2);
  // The first one leaves: its counts stay, its connections do not.
  m.workerLeft("sum", first);
  text = m.render(state([{ name: "sum", metrics: second }]));
  assert.equal(value(text, requests), 7);
  assert.equal(value(text, open), 1);
  assert.equal(value(text, "hotpotato_handoff_latency_seconds_count"), 2);
  // A restarted one starts from zero; the totals go on from where they were.
  const third = sumWorker(1, 0);
  text = m.render(state([{ name: "sum", metrics: second }, { name: "sum", metrics: third }]));
  assert.equal(value(text, requests), 8);
  m.workerLeft("sum", second);
  m.workerLeft("sum", third);
  text = m.render(state([]));
  assert.equal(value(text, requests), 8);
  assert.equal(value(text, open), undefined);
  assert.equal(value(text, "hotpotato_handoff_latency_seconds_count"), 3);
});

Deno.test("gateway: the series /metrics has always shown, and the stats line from the registry", () => {
  const m = new GatewayMetrics();
  m.accepted.inc();
  m.handshakes.labels(false, "TLSv1.3").inc();
  m.handshakes.labels(true, "TLSv1.3").inc();
  m.handoffs.labels("sum", "/sum").inc();
  // A direct move from sum to product.
  m.moved.labels("sum").inc();
  m.returned.labels("sum").inc();
  m.handoffs.labels("product", "/product").inc();
  m.requests.labels("gateway", "", 404).inc();
  m.handoffLatency.observe(0.00003);
  m.restarts.labels("sum").inc();
  const text = m.render({
    held: 2,
    draining: true,
    functions: [{ name: "sum", workers: 1 }],
    workers: [{ name: "sum", metrics: sumWorker(3, 1) }],
  });
  const expected: [string, number][] = [
    ["hotpotato_connections_accepted_total", 1],
    ['hotpotato_connections_open{holder="gateway"}', 2],
    ['hotpotato_connections_open{holder="sum"}', 1],
    ['hotpotato_tls_handshakes_total{resumed="false",version="TLSv1.3"}', 1],
    ["hotpotato_tls_handshake_failures_total", 0],
    ['hotpotato_handoffs_total{function="sum",route="/sum"}', 1],
    ['hotpotato_handoffs_total{function="product",route="/product"}', 1],
    ['hotpotato_connections_returned_total{function="sum"}', 1],
    ['hotpotato_connections_moved_total{function="sum"}', 1],
    ['hotpotato_handoff_latency_seconds_bucket{le="0.000025"}', 0],
    ['hotpotato_handoff_latency_seconds_bucket{le="0.00005"}', 1],
    ['hotpotato_handoff_latency_seconds_bucket{le="+Inf"}', 2],
    ["hotpotato_handoff_latency_seconds_count", 2],
    ['hotpotato_requests_total{function="sum",route="/sum",status="200"}', 3],
    ['hotpotato_requests_total{function="gateway",route="",status="404"}', 1],
    ['hotpotato_workers{function="sum"}', 1],
    ['hotpotato_worker_restarts_total{function="sum"}', 1],
    ["hotpotato_draining", 1],
  ];
  for (const [series, n] of expected) assert.equal(value(text, series), n, series);
  assert.deepEqual(m.stats(), {
    accepted: 1,
    handshakes: 2,
    resumed: 1,
    handoffs: 2, // the gateway's, and the move
    returned: 1,
    answered: 1,
    handshakeFailures: 0,
    moved: 1,
  });
});

Deno.test("STATS: a worker's report decodes to its snapshot", () => {
  const w = new WorkerMetrics("sum");
  w.requests.labels("/sum", 200).inc();
  const msg = decodeMessage(w.statsMessage(4));
  assert.equal(msg.type, MessageType.STATS);
  assert.ok(msg.type === MessageType.STATS);
  assert.equal(msg.body.held, 4);
  assert.deepEqual(msg.body.metrics, w.stats(4).metrics);
  // Without metrics (they did not fit): held alone.
  const bare = decodeMessage(encodeJson(MessageType.STATS, { held: 1 }));
  assert.ok(bare.type === MessageType.STATS);
  assert.deepEqual(bare.body, { held: 1 });
});

Deno.test("STATS: malformed or unbounded reports are refused", () => {
  const family = (over: Record<string, unknown> = {}) => ({
    name: "x_total",
    help: "X",
    type: "counter",
    labels: ["route"],
    series: [{ values: ["/a"], value: 1 }],
    ...over,
  });
  const stats = (families: unknown[], held: unknown = 0) =>
    JSON.stringify({ held, metrics: { families } });
  const bad: [string, string, RegExp][] = [
    ["not JSON held", JSON.stringify({ held: -1 }), /held/],
    ["no families", JSON.stringify({ held: 0, metrics: {} }), /not a snapshot/],
    ["bad name", stats([family({ name: "x-y" })]), /bad metric name/],
    ["same name twice", stats([family(), family()]), /twice/],
    ["bad type", stats([family({ type: "summary" })]), /bad type/],
    ["bad label name", stats([family({ labels: ["a b"] })]), /bad label name/],
    ["too many labels", stats([family({ labels: [..."abcdefghi"], series: [] })]), /labels/],
    [
      "values do not match labels",
      stats([family({ series: [{ values: [], value: 1 }] })]),
      /one value per label/,
    ],
    ["non-string value", stats([family({ series: [{ values: [7], value: 1 }] })]), /strings/],
    [
      "label value too long",
      stats([
        family({ series: [{ values: ["x".repeat(STATS_LIMITS.valueLength + 1)], value: 1 }] }),
      ]),
      /strings of at most/,
    ],
    [
      "negative counter",
      stats([family({ series: [{ values: ["/a"], value: -1 }] })]),
      /bad counter value/,
    ],
    // JSON has no Infinity, but 1e999 parses to it.
    [
      "infinite value",
      `{"held":0,"metrics":{"families":[{"name":"g","help":"","type":"gauge","labels":[],"series":[{"values":[],"value":1e999}]}]}}`,
      /bad gauge value/,
    ],
    ["help too long", stats([family({ help: "h".repeat(STATS_LIMITS.helpLength + 1) })]), /help/],
    [
      "too many families",
      stats(
        Array.from(
          { length: STATS_LIMITS.families + 1 },
          (_, i) => family({ name: `f${i}`, series: [] }),
        ),
      ),
      /families/,
    ],
    [
      "too many series",
      stats([
        family({
          labels: [],
          series: Array.from({ length: STATS_LIMITS.series + 1 }, () => ({ values: [], value: 0 })),
        }),
      ]),
      /series/,
    ],
    [
      "histogram buckets that do not match its bounds",
      stats([{
        name: "h",
        help: "",
        type: "histogram",
        labels: [],
        bounds: [1],
        series: [{ values: [], buckets: [1], sum: 1, count: 1 }],
      }]),
      /bad histogram series/,
    ],
    [
      "histogram bounds that do not increase",
      stats([{ name: "h", help: "", type: "histogram", labels: [], bounds: [2, 1], series: [] }]),
      /increase/,
    ],
    [
      "too many histogram bounds",
      stats([{
        name: "h",
        help: "",
        type: "histogram",
        labels: [],
        bounds: Array.from({ length: STATS_LIMITS.buckets + 1 }, (_, i) => i),
        series: [],
      }]),
      /bounds/,
    ],
  ];
  for (const [what, json, why] of bad) {
    assert.ok(json.length <= Limits.maxJson, `${what}: the test message must fit the JSON limit`);
    assert.throws(() => decodeMessage(rawStats(json)), (e: unknown) => {
      assert.ok(e instanceof ProtocolError, what);
      assert.match(e.message, /^STATS: /, what);
      assert.match(e.message, why, what);
      return true;
    });
  }
});

Deno.test("STATS: a worker whose metrics outgrow the limits still reports (without them)", () => {
  const w = new WorkerMetrics("sum");
  for (let i = 0; i <= STATS_LIMITS.series; i++) w.requests.labels(`/r${i}`, 200).inc();
  const msg = decodeMessage(w.statsMessage(2));
  assert.ok(msg.type === MessageType.STATS);
  // The heartbeat (and the load) goes on; the gateway keeps the last metrics.
  assert.equal(msg.body.held, 2);
  assert.equal(msg.body.metrics, undefined);
  assert.equal(msg.body.served, 0);
  assert.ok(Number.isInteger(msg.body.cpuMs) && msg.body.cpuMs! >= 0);
});
