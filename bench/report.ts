/**
 * Turns bench/bench.ts's results into a Markdown report and two SVG charts:
 * chart.svg (grouped bars: requests/s and server CPU-s per 10k requests at 50
 * connections, one bar per certificate type) and sweep.svg (hot potato / nginx
 * against the run length k of the sweep). No external tools.
 *
 * @module
 */

import type { Cell } from "./bench.ts";

// deno-lint-ignore no-explicit-any
type Result = Record<string, any> & { cells: Cell[] };

const SHORT: Record<string, string> = {
  "affinity": "(1) affinity",
  "affinity-shipped": "(1s) affinity shipped",
  "alternating": "(2) alt. direct",
  "alternating-gateway": "(2g) alt. gateway",
  "alternating-shipped": "(2s) alt. shipped",
  "full-handshake": "(3) full handshake",
  "resumption": "(4) resumption",
  "nginx": "(5) nginx",
  "nginx-same": "(5b) nginx same",
  "bound": "(6) bound",
  "deno-serve": "(7) Deno.serve",
};

const int = (n: number) => Math.round(n).toLocaleString("en-US");
function ms(us: number): string {
  const v = us / 1000;
  return v < 10 ? `${v.toFixed(3)} ms` : `${v.toFixed(1)} ms`;
}

const pct = (n: number, of: number) => `${(n / Math.max(1, of) * 100).toFixed(1)}%`;

function proof(c: Cell): string {
  const p = c.proof;
  if ("returned" in p) {
    const parts = [`handshakes ${int(p.handshakes)}`, `resumed ${int(p.resumed)}`];
    // The gateway's "returned" counts every connection that left a function:
    // direct moves (told in MOVED, also counted in "moved") and hand-backs
    // through the gateway. Results from before direct handoffs have no "moved".
    const moved = p.moved ?? 0;
    let changes = `route changes ${int(p.returned)} (${pct(p.returned, c.requests)})`;
    if (p.returned > 0) {
      changes += `: ${int(moved)} direct, ${int(p.returned - moved)} through the gateway`;
    }
    parts.push(changes);
    if ("logLines" in p) {
      parts.push(
        `log lines ${int(p.logLines)}` + (p.logDropped ? ` (${int(p.logDropped)} dropped)` : ""),
      );
    }
    return parts.join(" · ");
  }
  if ("served" in p && "handshakes" in p) {
    return `handshakes ${int(p.handshakes)} · resumed ${int(p.resumed)} · served ${int(p.served)}`;
  }
  if ("sumServed" in p) {
    return `backends: sum ${int(p.sumServed)} · product ${int(p.productServed)}`;
  }
  if ("served" in p) return `served ${int(p.served)}`;
  return "";
}

function table(cells: Cell[]): string {
  const rows = [
    "| system | conns | req/s | p50 | p99 | server CPU-s / 10k req | system calls / req | context switches / req | wrk CPU-s / 10k req | peak RSS (MiB, procs) | requests | errors | other CPU-s | proof (server counters) |",
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
  ];
  for (const c of cells) {
    const errs = Object.values(c.errors).reduce((a, b) => a + b, 0);
    rows.push(
      `| ${c.label} | ${c.connections} | ${int(c.rps)} | ${ms(c.latencyUs.p50)}${
        c.latencyFromConnect ? "†" : ""
      } | ${ms(c.latencyUs.p99)}${c.latencyFromConnect ? "†" : ""} | ${c.cpuPer10k.toFixed(3)} | ${
        c.syscallsPerReq?.toFixed(1) ?? "-"
      } | ${c.contextSwitchesPerReq?.toFixed(2) ?? "-"} | ${c.clientCpuPer10k.toFixed(3)} | ${
        c.peakRssMiB.toFixed(0)
      } (${c.processes}) | ${int(c.requests)} | ${errs} | ${(c.otherCpuS ?? 0).toFixed(1)} | ${
        proof(c)
      } |`,
    );
  }
  return rows.join("\n");
}

/** The sweep systems' names in its table and chart. */
const SWEEP_NAMES: Record<string, string> = {
  "alternating": "hot potato direct",
  "alternating-gateway": "hot potato gateway",
  "nginx": "nginx",
};
const sweepName = (s: string) => SWEEP_NAMES[s] ?? s;

/** The sweep's cells, its systems (nginx last) and its ks, in run order. */
function sweepParts(r: Result): { cells: Cell[]; systems: string[]; ks: number[] } {
  const cells = (r.sweep?.cells ?? []) as Cell[];
  const systems = [...new Set(cells.map((c) => c.system))].sort((a, b) =>
    Number(a === "nginx") - Number(b === "nginx")
  );
  const ks = [...new Set(cells.map((c) => c.runLength!))];
  return { cells, systems, ks };
}

/** The run-length sweep: a table per k, ratios to nginx, the proof. */
function sweepMarkdown(r: Result): string[] {
  const out: string[] = [];
  const { cells, systems, ks } = sweepParts(r);
  const get = (s: string, k: number) => cells.find((c) => c.system === s && c.runLength === k);
  const hp = systems.filter((s) => s !== "nginx");
  const withNginx = systems.includes("nginx");
  out.push(
    `## Run-length sweep (${r.sweep.cert === "rsa" ? "RSA-2048" : "ECDSA P-256"}, ` +
      `${r.sweep.connections} connections)`,
  );
  out.push("");
  out.push(
    "The route changes every k requests of each connection (bench/runs.lua with " +
      "BENCH_RUN_LENGTH=k: k × /sum, k × /product, ...; k = 1 is the alternating workload). " +
      "Hot potato with `--handoff direct` and with `--handoff gateway`, both with " +
      "`--log-level warning`; nginx as (5). Each system is started once, warmed up at the " +
      `first k, then measured ${r.settings?.seconds} s at each k. The ratio columns divide ` +
      "hot potato's req/s by nginx's at the same k; in brackets nginx's server CPU per request " +
      "over hot potato's (above 1: hot potato needs less).",
  );
  out.push("");
  const head = ["k"];
  const align = ["--:"];
  for (const s of systems) {
    head.push(`${sweepName(s)} req/s`, `${sweepName(s)} server CPU-s / 10k`);
    align.push("--:", "--:");
  }
  if (withNginx) {
    for (const s of hp) {
      head.push(`${sweepName(s)} / nginx`);
      align.push("--:");
    }
  }
  out.push(`| ${head.join(" | ")} |`);
  out.push(`|${align.join("|")}|`);
  for (const k of ks) {
    const row = [String(k)];
    for (const s of systems) {
      const c = get(s, k);
      row.push(c ? int(c.rps) : "—", c ? c.cpuPer10k.toFixed(3) : "—");
    }
    if (withNginx) {
      const n = get("nginx", k);
      for (const s of hp) {
        const c = get(s, k);
        row.push(
          c && n
            ? `${(c.rps / n.rps).toFixed(2)}x (CPU ${(n.cpuPer10k / c.cpuPer10k).toFixed(2)}x)`
            : "—",
        );
      }
    }
    out.push(`| ${row.join(" | ")} |`);
  }
  out.push("");
  out.push("<details><summary>Proof (server counters) and errors per cell</summary>");
  out.push("");
  for (const k of ks) {
    for (const s of systems) {
      const c = get(s, k);
      if (!c) continue;
      const errs = Object.values(c.errors).reduce((a, b) => a + b, 0);
      out.push(
        `- k=${k}, ${sweepName(s)}: ${int(c.requests)} requests, errors ${errs}, p50 ${
          ms(c.latencyUs.p50)
        }, p99 ${ms(c.latencyUs.p99)}; ${proof(c)}`,
      );
    }
  }
  out.push("");
  out.push("</details>");
  out.push("");
  return out;
}

/** The Markdown report. */
export function renderMarkdown(r: Result): string {
  const out: string[] = [];
  const m = r.machine, v = r.versions, s = r.settings;
  out.push("# Hot potato: comparative benchmark");
  out.push("");
  out.push(
    `Run ${r.startedAt}, ${r.durationSeconds} s in all. Machine: ${m.nproc} cores, ${m.cpu}, ` +
      `${m.memoryGiB} GiB, Linux ${m.kernel}. Versions: ${v.deno}; wolfSSL ${v.wolfssl}; ` +
      `nginx ${v.nginx}; ${v.wrk}; ${v.openssl}; Deno.serve TLS: ${v.denoTls}.`,
  );
  out.push("");
  out.push(
    `Workload: small GETs of /sum?a=..&b=.. and /product?a=..&b=.. (JSON answers of ~45 bytes), ` +
      `wrk ${s.seconds} s per cell after a ${s.warmupSeconds} s warm-up per system, ` +
      `1 wrk thread for 1 connection, else 2. Client TLS pinned for every system: TLS 1.3, ` +
      `${s.client.WRK_CIPHERSUITES}, ${s.client.WRK_GROUPS}. Every system runs alone ` +
      `(started, warmed up, measured, stopped), but wrk shares the ${m.nproc} cores with it: ` +
      `its CPU is in the "wrk CPU" column. Server CPU = utime+stime of every server process ` +
      `(/proc/PID/stat: gateway + 2 workers; nginx master + 2 workers + 2 backends; one process ` +
      `for bound and Deno.serve). Peak RSS = sum of VmHWM, reset before each cell. The machine ` +
      `is shared with other work: "other CPU-s" is what the rest of the machine used during the ` +
      `cell (busy time from /proc/stat minus server and wrk); load average at start ` +
      `${m.loadAverageAtStart}.`,
  );
  out.push("");
  out.push(
    "(2), (2g), (2s), (3), (4) alternate the route on every request of each connection " +
      "(patched wrk: bench/wrk/connection.patch); (5), (6), (7) run the same alternating " +
      "script; (1), (1s) and (5b) ask /sum only. (2) and (2s) change route with " +
      "`--handoff direct` (the default: the worker hands the connection straight to the next " +
      "function's worker), (2g) with `--handoff gateway` (worker → gateway → worker). Hot " +
      "potato runs with `--log-level warning` (quiet) except (1s) and (2s), the shipped " +
      "configuration: no log flags, the request log on (info, text); the bench reads their " +
      "output and throws it away, as a terminal would take it. (3) and (4) send " +
      "`Connection: close` on every request (every request changes route, so every request " +
      "is a new connection); † their latency counts from connect() (TCP + TLS handshake " +
      "included). Keep-alive cells include opening their connections (500 handshakes at 500 " +
      "connections) in the measured time. Proof: the gateway counts every connection that " +
      "left a function (route changes), direct moves among them; log lines are the lines " +
      "the bench read from the hot potato processes during the cell.",
  );
  out.push("");
  const tlsRows = Object.entries(r.tls ?? {}).map(([k, t]) =>
    `${k}: ${(t as Record<string, string>).protocol} ${(t as Record<string, string>).cipher} ${
      (t as Record<string, string>).group
    } ${(t as Record<string, string>).signature}`
  );
  if (tlsRows.length) {
    out.push("<details><summary>Negotiated TLS per system (openssl s_client probe)</summary>");
    out.push("");
    out.push(tlsRows.map((x) => `- ${x}`).join("\n"));
    out.push("");
    out.push("</details>");
    out.push("");
  }
  for (const cert of ["ecdsa", "rsa"]) {
    const cells = r.cells.filter((c) => c.cert === cert);
    if (!cells.length) continue;
    out.push(`## ${cert === "ecdsa" ? "ECDSA P-256" : "RSA-2048"} certificate`);
    out.push("");
    out.push(table(cells));
    out.push("");
  }
  if (r.ratios?.length) {
    out.push("## Ratios (ECDSA, requests/s; targets are goals, not assertions)");
    out.push("");
    out.push("| ratio | conns | value | target | met | server CPU per request, inverse ratio |");
    out.push("|---|--:|--:|---|---|--:|");
    for (const x of r.ratios) {
      const isLatency = String(x.name).includes("latency");
      out.push(
        `| ${x.name} | ${x.connections} | ${
          isLatency ? `${Math.round(x.value)} µs` : `${x.value.toFixed(2)}x`
        } | ${x.target} | ${
          x.met === undefined || x.target === ">= 0x" ? "—" : x.met ? "yes" : "no"
        } | ${x.cpuRatio !== undefined ? `${x.cpuRatio.toFixed(2)}x` : ""} |`,
      );
    }
    out.push("");
    out.push(
      "The last column divides the second system's server CPU per request by the first's " +
        "(above 1: the first needs less CPU per request). On 2 shared cores it is the steadier " +
        "comparison when wrk is the bottleneck.",
    );
    out.push("");
  }
  if (r.sweep?.cells?.length) out.push(...sweepMarkdown(r));
  if (r.idle) {
    const i = r.idle;
    out.push("## Idle keep-alive connections");
    out.push("");
    out.push(
      `${int(i.opened)} of ${int(i.connections)} TLS connections opened (${i.failed} failed) ` +
        `in ${i.openSeconds} s by bench/idle.ts (Deno's rustls client), each made one request ` +
        `(half /sum, half /product) so that a worker holds it, then stayed idle ` +
        `(--idle-timeout 600). Server RSS (gateway + 2 workers, VmRSS): ` +
        `**${i.serverRssMiB.toFixed(0)} MiB** (${i.serverRssBeforeMiB.toFixed(0)} MiB before; ` +
        `${int(i.bytesPerConnection)} bytes per connection; peak ${
          i.serverPeakMiB.toFixed(0)
        } MiB). ` +
        `Target: within 1 GiB — ${i.serverRssMiB <= 1024 ? "met" : "not met"}. ` +
        `The client's own RSS: ${i.clientRssMiB.toFixed(0)} MiB (not counted).`,
    );
    out.push("");
    out.push("| process | RSS MiB | peak MiB | connections held |");
    out.push("|---|--:|--:|--:|");
    for (
      const [name, p] of Object.entries(i.perProcess as Record<string, Record<string, number>>)
    ) {
      out.push(
        `| ${name} | ${p.rssMiB.toFixed(0)} | ${p.peakMiB.toFixed(0)} | ${p.held ?? "—"} |`,
      );
    }
    out.push("");
  }
  if (r.micro?.length) {
    out.push("## One handoff, part by part (deno bench bench/handoff_bench.ts)");
    out.push("");
    out.push(
      "Per operation; parts marked * ran 32 per timed iteration and are divided by 32 " +
        "(their p75/p99 are of the batch, divided). The machine is shared: trust p75 over avg.",
    );
    out.push("");
    out.push("| part | avg | min | p75 | p99 |");
    out.push("|---|--:|--:|--:|--:|");
    const ns = (x: number) =>
      x === undefined ? "?" : x < 1000 ? `${x.toFixed(0)} ns` : `${(x / 1000).toFixed(2)} µs`;
    for (const b of r.micro) {
      const star = b.opsPerIteration > 1 ? " *" : "";
      out.push(
        `| ${b.name}${star} | ${ns(b.avgNs)} | ${ns(b.minNs)} | ${ns(b.p75Ns)} | ${ns(b.p99Ns)} |`,
      );
    }
    out.push("");
  }
  if (r.wake) {
    const w = r.wake;
    const f = (x: Record<string, number> | undefined) =>
      x ? `p50 ${x.p50}, p90 ${x.p90}, p99 ${x.p99}, mean ${x.mean}` : "not measured";
    out.push("## One hop between two processes (bench/wake_latency.ts)");
    out.push("");
    out.push(
      `A ~480-byte message with an fd (SCM_RIGHTS) over SOCK_SEQPACKET and an answer back, ` +
        `${int(w.rounds)} round trips; µs per one-way hop. A route change costs one such hop ` +
        "with `--handoff direct` (worker → worker) and two with `--handoff gateway` " +
        "(worker → gateway → worker), on top of the work.",
    );
    out.push("");
    out.push("| hop | µs |");
    out.push("|---|---|");
    out.push(
      `| project's event loop (epoll thread → wake pipe → JS), scheduler free | ${
        f(w.eventLoopHopUs)
      } |`,
    );
    out.push(`| project's event loop, both processes on CPU 0 | ${f(w.eventLoopHopOneCpuUs)} |`);
    out.push(
      `| C, blocking sendmsg/recvmsg (bench/wake_floor.c), same CPU | ${
        f(w.kernelFloorHopUs_sameCpu)
      } |`,
    );
    out.push(`| C, blocking, CPU 0 ↔ CPU 1 | ${f(w.kernelFloorHopUs_crossCpu)} |`);
    out.push("");
  }
  if (r.failures?.length) {
    out.push("## Failures");
    out.push("");
    for (const f of r.failures) out.push(`- ${f.split("\n")[0]}`);
    out.push("");
  }
  return out.join("\n");
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Grouped bars at 50 connections (or the middle connection count). */
export function renderChart(r: Result): string {
  const conns = r.cells.some((c) => c.connections === 50) ? 50 : r.cells[0]?.connections ?? 50;
  const systems = [...new Set(r.cells.map((c) => c.system))];
  const certs = ["ecdsa", "rsa"].filter((k) => r.cells.some((c) => c.cert === k));
  const colors: Record<string, string> = { ecdsa: "#3b6fb6", rsa: "#e08a2c" };
  const get = (sys: string, cert: string) =>
    r.cells.find((c) => c.system === sys && c.cert === cert && c.connections === conns);
  const panelW = 560, panelH = 330, top = 60, left = 70, gap = 60;
  const W = left + 2 * panelW + gap + 20, H = top + panelH + 120;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(
    `<text x="${
      W / 2
    }" y="22" text-anchor="middle" font-size="16" font-weight="bold">Hot potato vs alternatives, ${conns} keep-alive connections (new connection per request for 3 and 4), TLS 1.3</text>`,
  );
  parts.push(
    `<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">${
      esc(
        `${r.machine?.nproc} cores (${r.machine?.cpu}), wrk on the same cores; ${r.settings?.seconds} s per bar; ${r.startedAt}`,
      )
    }</text>`,
  );
  const panel = (
    x0: number,
    title: string,
    value: (c: Cell) => number,
    fmt: (v: number) => string,
  ) => {
    const vals = systems.flatMap((s) => certs.map((k) => get(s, k))).filter(Boolean).map((c) =>
      value(c!)
    );
    const max = niceMax(Math.max(0, ...vals));
    const plotH = panelH - 20;
    const y = (v: number) => top + 20 + plotH - v / max * plotH;
    parts.push(
      `<text x="${x0 + panelW / 2}" y="${top + 8}" text-anchor="middle" font-weight="bold">${
        esc(title)
      }</text>`,
    );
    for (let i = 0; i <= 5; i++) {
      const v = max * i / 5;
      parts.push(
        `<line x1="${x0}" x2="${x0 + panelW}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`,
        `<text x="${x0 - 6}" y="${y(v) + 4}" text-anchor="end" fill="#444">${fmt(v)}</text>`,
      );
    }
    const groupW = panelW / Math.max(1, systems.length);
    const barW = Math.min(28, (groupW - 10) / Math.max(1, certs.length));
    systems.forEach((s, i) => {
      const gx = x0 + i * groupW + (groupW - barW * certs.length) / 2;
      certs.forEach((k, j) => {
        const c = get(s, k);
        if (!c) return;
        const v = value(c);
        const bx = gx + j * barW;
        parts.push(
          `<rect x="${bx}" y="${y(v)}" width="${barW - 2}" height="${
            Math.max(0, y(0) - y(v))
          }" fill="${colors[k]}"><title>${esc(`${SHORT[s] ?? s} ${k}: ${fmt(v)}`)}</title></rect>`,
          `<text x="${bx + (barW - 2) / 2}" y="${
            y(v) - 4
          }" text-anchor="start" font-size="9" transform="rotate(-60 ${bx + (barW - 2) / 2} ${
            y(v) - 4
          })" fill="#222">${fmt(v)}</text>`,
        );
      });
      const lx = x0 + i * groupW + groupW / 2, ly = y(0) + 14;
      parts.push(
        `<text x="${lx}" y="${ly}" text-anchor="end" transform="rotate(-35 ${lx} ${ly})">${
          esc(SHORT[s] ?? s)
        }</text>`,
      );
    });
    parts.push(`<line x1="${x0}" x2="${x0 + panelW}" y1="${y(0)}" y2="${y(0)}" stroke="#000"/>`);
  };
  panel(
    left,
    "requests/s (higher is better)",
    (c) => c.rps,
    (v) => v >= 1000 ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)}k` : v.toFixed(0),
  );
  panel(
    left + panelW + gap,
    "server CPU-seconds per 10k requests (lower is better)",
    (c) => c.cpuPer10k,
    (v) => v.toFixed(2),
  );
  certs.forEach((k, j) => {
    const lx = left + j * 130, ly = H - 14;
    parts.push(
      `<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${colors[k]}"/>`,
      `<text x="${lx + 18}" y="${ly}">${k === "ecdsa" ? "ECDSA P-256" : "RSA-2048"}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

/** Hot potato / nginx against the sweep's run length k (log scale): req/s
 * (solid) and server CPU per request, nginx's over hot potato's (dashed). */
export function renderSweepChart(r: Result): string {
  const { cells, systems, ks } = sweepParts(r);
  const hp = systems.filter((s) => s !== "nginx");
  const colors: Record<string, string> = {
    "alternating": "#3b6fb6",
    "alternating-gateway": "#e08a2c",
  };
  const color = (s: string) => colors[s] ?? "#555";
  const get = (s: string, k: number) => cells.find((c) => c.system === s && c.runLength === k);
  type Point = { k: number; v: number };
  const series: { system: string; kind: "rps" | "cpu"; points: Point[] }[] = [];
  for (const s of hp) {
    for (const kind of ["rps", "cpu"] as const) {
      const points: Point[] = [];
      for (const k of ks) {
        const c = get(s, k), n = get("nginx", k);
        if (!c || !n) continue;
        points.push({ k, v: kind === "rps" ? c.rps / n.rps : n.cpuPer10k / c.cpuPer10k });
      }
      if (points.length) series.push({ system: s, kind, points });
    }
  }
  const left = 70, top = 80, plotW = 620, plotH = 300;
  const W = left + plotW + 80, H = top + plotH + 110;
  const sorted = [...ks].sort((a, b) => a - b);
  const lo = Math.log2(Math.max(1, sorted[0] ?? 1));
  const hi = Math.log2(Math.max(1, sorted[sorted.length - 1] ?? 1));
  const x = (k: number) =>
    hi > lo ? left + 30 + (Math.log2(k) - lo) / (hi - lo) * (plotW - 90) : left + plotW / 2;
  const max = niceMax(Math.max(1.2, ...series.flatMap((s) => s.points.map((p) => p.v))) * 1.1);
  const y = (v: number) => top + plotH - v / max * plotH;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(
    `<text x="${
      W / 2
    }" y="22" text-anchor="middle" font-size="16" font-weight="bold">Hot potato / nginx when the route changes every k requests</text>`,
  );
  parts.push(
    `<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">${
      esc(
        `${r.sweep?.cert === "rsa" ? "RSA-2048" : "ECDSA P-256"}, ${r.sweep?.connections} ` +
          `keep-alive connections, TLS 1.3, ${r.settings?.seconds} s per point`,
      )
    }</text>`,
    `<text x="${W / 2}" y="56" text-anchor="middle" fill="#555">${
      esc(`${r.machine?.nproc} cores (${r.machine?.cpu}), wrk on the same cores; ${r.startedAt}`)
    }</text>`,
  );
  for (let i = 0; i <= 5; i++) {
    const v = max * i / 5;
    parts.push(
      `<line x1="${left}" x2="${left + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`,
      `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end" fill="#444">${v.toFixed(2)}x</text>`,
    );
  }
  parts.push(
    `<line x1="${left}" x2="${left + plotW}" y1="${y(1)}" y2="${
      y(1)
    }" stroke="#222" stroke-dasharray="2 3"/>`,
    `<text x="${left + plotW + 6}" y="${y(1) + 4}" fill="#222">nginx = 1</text>`,
    `<line x1="${left}" x2="${left + plotW}" y1="${y(0)}" y2="${y(0)}" stroke="#000"/>`,
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${y(0)}" stroke="#000"/>`,
  );
  for (const k of sorted) {
    parts.push(
      `<line x1="${x(k)}" x2="${x(k)}" y1="${y(0)}" y2="${y(0) + 5}" stroke="#000"/>`,
      `<text x="${x(k)}" y="${y(0) + 19}" text-anchor="middle">${k}</text>`,
    );
  }
  parts.push(
    `<text x="${left + plotW / 2}" y="${
      y(0) + 38
    }" text-anchor="middle">k: requests of each connection between route changes (log scale)</text>`,
    `<text x="18" y="${top + plotH / 2}" text-anchor="middle" transform="rotate(-90 18 ${
      top + plotH / 2
    })">hot potato / nginx (above 1: better than nginx)</text>`,
  );
  series.forEach((s) => {
    const pts = s.points.map((p) => `${x(p.k).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    const dash = s.kind === "cpu" ? ` stroke-dasharray="6 4"` : "";
    parts.push(
      `<polyline points="${pts}" fill="none" stroke="${color(s.system)}" stroke-width="2"${dash}/>`,
    );
    // req/s values written beside their points: the first mode's above, the
    // second's below
    const above = hp.indexOf(s.system) === 0;
    for (const p of s.points) {
      const what = s.kind === "rps" ? "req/s" : "server CPU per request (nginx / hot potato)";
      parts.push(
        `<circle cx="${x(p.k)}" cy="${y(p.v)}" r="3.5" fill="${
          s.kind === "rps" ? color(s.system) : "white"
        }" stroke="${color(s.system)}" stroke-width="1.5"><title>${
          esc(`${sweepName(s.system)}, k=${p.k}, ${what}: ${p.v.toFixed(2)}x`)
        }</title></circle>`,
      );
      if (s.kind === "rps") {
        parts.push(
          `<text x="${x(p.k) + 6}" y="${
            above ? y(p.v) - 8 : y(p.v) + 16
          }" text-anchor="start" font-size="10" font-weight="bold" fill="${color(s.system)}">${
            p.v.toFixed(2)
          }</text>`,
        );
      }
    }
  });
  hp.forEach((s, col) => {
    const lx = left + col * 220, ly = y(0) + 64;
    parts.push(
      `<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="${
        color(s)
      }" stroke-width="2"/>`,
      `<line x1="${lx + 28}" x2="${lx + 50}" y1="${ly - 4}" y2="${ly - 4}" stroke="${
        color(s)
      }" stroke-width="2" stroke-dasharray="6 4"/>`,
      `<text x="${lx + 58}" y="${ly}">${esc(sweepName(s))}</text>`,
    );
  });
  parts.push(
    `<text x="${left}" y="${
      y(0) + 86
    }" font-size="11" fill="#444">solid: requests/s, hot potato / nginx; dashed: server CPU per request, nginx / hot potato</text>`,
  );
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

// `deno run -A bench/report.ts [bench/results/results.json]` re-renders
// results.md, chart.svg and sweep.svg from a results file without re-running
// anything.
if (import.meta.main) {
  const file = Deno.args[0] ?? new URL("./results/results.json", import.meta.url).pathname;
  const dir = file.slice(0, file.lastIndexOf("/"));
  const r = JSON.parse(await Deno.readTextFile(file)) as Result;
  await Deno.writeTextFile(`${dir}/results.md`, renderMarkdown(r));
  await Deno.writeTextFile(`${dir}/chart.svg`, renderChart(r));
  const sweep = r.sweep?.cells?.length > 0;
  if (sweep) await Deno.writeTextFile(`${dir}/sweep.svg`, renderSweepChart(r));
  console.log(`report: wrote ${dir}/results.md, chart.svg${sweep ? " and sweep.svg" : ""}`);
}
