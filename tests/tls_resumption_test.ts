// handoff-mode: both
/**
 * TLS session resumption end to end, with real OpenSSL clients: TLS 1.2
 * tickets and session ids and TLS 1.3 tickets resume on the gateway and the
 * resumed connection moves between workers like any other; and no sequence of
 * client offers (versions, suites, resumptions) changes what the next client
 * is offered. (wolfSSL 5.5.4 built SINGLE_THREADED shared one suite list
 * between a context's sessions: after one TLS 1.3 resumption every TLS 1.2
 * client got alert 40.)
 */

import assert from "node:assert/strict";
import { System } from "./support/system.ts";
import { connect, type Offer } from "./support/s_client.ts";

/** The route-changing conversation every resumed connection has. */
const ROUTES = ["/sum?a=1&b=2", "/product?a=3&b=4", "/sum?a=5&b=6"];
const ANSWERS = [{ op: "sum", result: "3" }, { op: "product", result: "12" }, {
  op: "sum",
  result: "11",
}];

async function metric(sys: System, series: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${sys.adminPort}/metrics`)).text();
  let n = 0;
  for (const line of text.split("\n")) {
    if (series.test(line)) n += Number(line.split(" ").at(-1));
  }
  return n;
}

const RESUMPTIONS: { name: string; offer: Offer }[] = [
  { name: "TLS 1.3 ticket", offer: { version: "1.3" } },
  { name: "TLS 1.2 ticket", offer: { version: "1.2" } },
  { name: "TLS 1.2 session id", offer: { version: "1.2", noTicket: true } },
];

for (const { name, offer } of RESUMPTIONS) {
  Deno.test(`resumption: ${name}, then route changes on the resumed connection`, async () => {
    const sys = await System.start();
    const sess = `${sys.dir}/session.pem`;
    try {
      const first = await connect(sys.port, { ...offer, sessOut: sess }, ROUTES);
      assert.equal(first.code, 0, first.stderr);
      assert.equal(first.reused, false);
      assert.deepEqual(first.bodies, ANSWERS, first.stdout);
      const again = await connect(sys.port, { ...offer, sessIn: sess }, ROUTES);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(again.reused, true, `the session was not resumed:\n${again.stdout}`);
      assert.equal(again.protocol, offer.version === "1.2" ? "TLSv1.2" : "TLSv1.3");
      assert.deepEqual(again.bodies, ANSWERS, again.stdout);
      assert.equal(await metric(sys, /^hotpotato_tls_handshakes_total\{.*resumed="true"/), 1);
      // Each connection moved on every request: 3 handoffs, 2 returns each.
      assert.equal(await sys.routeChanges(4), 4);
    } finally {
      await sys.stop();
    }
  });
}

/** Every suite the gateway offers with its ECDSA certificate, by version. */
const TLS13_SUITES = [
  "TLS_AES_128_GCM_SHA256",
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
];
const TLS12_SUITES = [
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
];
/** The probes: one client per suite and version, plus each version's
 * default offer (which shows the server's preference). */
const PROBES: Offer[] = [
  { version: "1.3" },
  { version: "1.2" },
  ...TLS13_SUITES.map((cipher) => ({ version: "1.3" as const, cipher })),
  ...TLS12_SUITES.map((cipher) => ({ version: "1.2" as const, cipher })),
];

async function probeAll(port: number): Promise<string[]> {
  const seen: string[] = [];
  for (const p of PROBES) {
    const o = await connect(port, p, ["/sum?a=1&b=1"]);
    seen.push(
      `${p.version} ${p.cipher ?? "default"} -> ${o.protocol} ${o.cipher} ${o.bodies.length}`,
    );
  }
  return seen;
}

Deno.test("no sequence of client offers changes the suites the next client is offered", async () => {
  const sys = await System.start();
  const sess = `${sys.dir}/session.pem`;
  try {
    const baseline = await probeAll(sys.port);
    for (const line of baseline) assert.match(line, /-> TLSv1\.[23] \S+ 1$/, line);
    // Each offer once with a full handshake and once resumed, each followed
    // by the whole probe set, which must see exactly what the first one saw.
    const offers: Offer[] = [
      ...TLS13_SUITES.map((cipher) => ({ version: "1.3" as const, cipher })),
      ...TLS12_SUITES.map((cipher) => ({ version: "1.2" as const, cipher })),
      ...TLS12_SUITES.map((cipher) => ({ version: "1.2" as const, cipher, noTicket: true })),
    ];
    let resumed = 0;
    for (const offer of offers) {
      const full = await connect(sys.port, { ...offer, sessOut: sess }, ["/sum?a=2&b=2"]);
      assert.deepEqual(full.bodies, [{ op: "sum", result: "4" }], full.stdout + full.stderr);
      const again = await connect(sys.port, { ...offer, sessIn: sess }, ["/product?a=2&b=3"]);
      assert.deepEqual(again.bodies, [{ op: "product", result: "6" }], again.stdout);
      if (again.reused) resumed++;
      assert.deepEqual(
        await probeAll(sys.port),
        baseline,
        `after ${offer.version} ${offer.cipher}${offer.noTicket ? " (no ticket)" : ""}`,
      );
    }
    assert.equal(resumed, offers.length, "every offer resumed its session");
  } finally {
    await sys.stop();
  }
});
