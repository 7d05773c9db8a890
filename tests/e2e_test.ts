// handoff-mode: both
/**
 * End to end: the real gateway and workers as processes, real TLS clients
 * (curl, openssl s_client, Deno's rustls), real sockets.
 */

import { concat } from "./support/bytes.ts";
import assert from "node:assert/strict";
import { CA_CERT, Client, OpensslClient, run, System } from "./support/system.ts";

const enc = new TextEncoder();

function expectAnswer(
  res: { status: number; body: string; headers: Map<string, string> },
  op: string,
  a: number,
  b: number,
): void {
  assert.equal(res.status, 200, res.body);
  const want = op === "sum" ? a + b : a * b;
  assert.deepEqual(JSON.parse(res.body), {
    op,
    a: String(a),
    b: String(b),
    result: String(want),
  });
  assert.match(res.headers.get("x-hotpotato-worker") ?? "", new RegExp(`^${op}/\\d+$`));
}

Deno.test("curl: three requests on one connection, one handshake, two workers", async () => {
  const sys = await System.start();
  try {
    const base = `https://localhost:${sys.port}`;
    const r = await run("curl", [
      "-s",
      "--cacert",
      CA_CERT,
      "-w",
      "connects=%{num_connects}\\n",
      `${base}/sum?a=10&b=20`,
      `${base}/product?a=5&b=6`,
      `${base}/sum?a=1&b=2`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.deepEqual(lines, [
      `{"op":"sum","a":"10","b":"20","result":"30"}`,
      "connects=1",
      `{"op":"product","a":"5","b":"6","result":"30"}`,
      "connects=0",
      `{"op":"sum","a":"1","b":"2","result":"3"}`,
      "connects=0",
    ]);
    assert.equal(await sys.handshakes(), 1);
    assert.equal(await sys.routeChanges(2), 2);
    const head = await run("curl", ["-si", "--cacert", CA_CERT, `${base}/sum?a=1&b=1`]);
    assert.match(head.stdout, /^HTTP\/1\.1 200 OK\r$/m, "the standard reason phrase");
    assert.match(head.stdout, /^content-type: application\/json\r$/m);
  } finally {
    await sys.stop();
  }
});

for (const version of ["1.3", "1.2"] as const) {
  Deno.test(`TLS ${version}: 50 alternating requests, one handshake, right worker each time`, async () => {
    const sys = await System.start();
    const client = new OpensslClient(sys.port, version);
    try {
      const pids = new Map<string, string>();
      for (let i = 0; i < 50; i++) {
        const op = i % 2 === 0 ? "sum" : "product";
        const res = await client.get(`/${op}?a=${i}&b=3`);
        expectAnswer(res, op, i, 3);
        assert.equal(res.headers.get("x-hotpotato-handoffs"), String(i + 1));
        const worker = res.headers.get("x-hotpotato-worker")!;
        if (!pids.has(op)) pids.set(op, worker);
        assert.equal(worker, pids.get(op), "the same worker process serves each function");
      }
      assert.equal(await sys.handshakes(), 1);
      const protocol = version === "1.3" ? "TLSv1.3" : "TLSv1.2";
      assert.equal(sys.gateway.count(new RegExp(`handshake complete.*${protocol}`)), 1);
    } finally {
      await client.close();
      await sys.stop();
    }
  });
}

function mixedRequests(n: number): { bytes: Uint8Array[]; expect: [string, number, number][] } {
  const bytes: Uint8Array[] = [];
  const expect: [string, number, number][] = [];
  for (let i = 0; i < n; i++) {
    // Runs of the same route and switches, so both staying and moving happen.
    const op = [0, 1, 4, 5, 6, 9].includes(i % 10) ? "sum" : "product";
    bytes.push(Client.request(`/${op}?a=${i}&b=${i + 1}`));
    expect.push([op, i, i + 1]);
  }
  return { bytes, expect };
}

const splits: Record<string, (reqs: Uint8Array[]) => Uint8Array[]> = {
  "all in one TLS record": (reqs) => [concat(...reqs)],
  "one record per request": (reqs) => reqs,
  "records split mid-request": (reqs) => {
    const all = concat(...reqs);
    const out: Uint8Array[] = [];
    for (let off = 0, k = 0; off < all.length; k++) {
      const size = [7, 45, 13, 90, 3, 61][k % 6];
      out.push(all.subarray(off, off + size));
      off += size;
    }
    return out;
  },
};

for (const [how, split] of Object.entries(splits)) {
  Deno.test(`pipelining: 30 mixed requests, ${how}, answered complete and in order`, async () => {
    const sys = await System.start();
    const client = await Client.connect(sys.port);
    try {
      const { bytes, expect } = mixedRequests(30);
      for (const part of split(bytes)) await client.write(part);
      for (const [op, a, b] of expect) expectAnswer(await client.read(), op, a, b);
      // The connection is still usable afterwards.
      expectAnswer(await client.get("/product?a=7&b=6"), "product", 7, 6);
      assert.equal(await sys.handshakes(), 1);
    } finally {
      client.close();
      await sys.stop();
    }
  });
}

Deno.test("pipelining across three functions: 45 requests in one write, answered in order by their functions", async () => {
  const sys = await System.start({
    workers: [
      { name: "sum", file: "workers/sum.ts" },
      { name: "product", file: "workers/product.ts" },
      { name: "hello", file: "examples/hello.ts" },
    ],
  });
  const client = await Client.connect(sys.port);
  try {
    // Runs of one, two and three requests per function, in every order.
    const ops = ["sum", "product", "hello", "hello", "sum", "sum", "product", "product", "product"];
    const sent: [string, number][] = [];
    for (let i = 0; i < 45; i++) sent.push([ops[i % ops.length], i]);
    const bytes = sent.map(([op, i]) =>
      Client.request(op === "hello" ? `/hello?name=n${i}` : `/${op}?a=${i}&b=${i + 1}`)
    );
    await client.write(concat(...bytes));
    const workers = new Map<string, Set<string>>();
    for (const [op, i] of sent) {
      const res = await client.read();
      if (op === "hello") {
        assert.equal(res.status, 200, res.body);
        assert.equal(JSON.parse(res.body).hello, `n${i}`);
      } else expectAnswer(res, op, i, i + 1);
      const by = res.headers.get("x-hotpotato-worker") ?? "";
      assert.ok(by.startsWith(`${op}/`), `request ${i} (${op}) answered by ${by}`);
      (workers.get(op) ?? workers.set(op, new Set()).get(op)!).add(by);
    }
    for (const [op, by] of workers) assert.equal(by.size, 1, `${op}: one worker process`);
    assert.equal(await sys.handshakes(), 1);
    // 5 route changes per 9 requests (4 inside, 1 into the next 9): 24 in all.
    assert.equal(await sys.routeChanges(24), 24);
  } finally {
    client.close();
    await sys.stop();
  }
});

Deno.test("pipelined records read ahead by one worker travel to the next and are answered", async () => {
  // One record per request, all sent at once: a worker's single read takes
  // several records, so handing the connection on carries ciphertext the
  // next holder must decrypt. The workers' debug log shows the sizes.
  const sys = await System.start({ workerArgs: ["--log-level", "debug"] });
  const client = await Client.connect(sys.port);
  try {
    const { bytes, expect } = mixedRequests(30);
    for (const part of bytes) await client.write(part);
    for (const [op, a, b] of expect) expectAnswer(await client.read(), op, a, b);
    await sys.settle();
    const ahead = sys.workers.flatMap((w) => w.lines)
      .map((l) =>
        l.match(
          /(?:back to the gateway|straight to \S+) with \d+ unread bytes and (\d+) read ahead/,
        )
      )
      .filter((m) => m !== null)
      .map((m) => Number(m![1]));
    assert.ok(ahead.length > 0, "no hand-back was logged");
    assert.ok(ahead.some((n) => n > 0), `no hand-back carried read-ahead: ${ahead}`);
    assert.equal(await sys.handshakes(), 1);
  } finally {
    client.close();
    await sys.stop();
  }
});

Deno.test("200 concurrent clients, 20 alternating requests each, all correct", async () => {
  const sys = await System.start();
  try {
    let ok = 0;
    await Promise.all(Array.from({ length: 200 }, async (_, c) => {
      const client = await Client.connect(sys.port);
      try {
        for (let i = 0; i < 20; i++) {
          const op = (i + c) % 2 === 0 ? "sum" : "product";
          expectAnswer(await client.get(`/${op}?a=${c}&b=${i}`), op, c, i);
          ok++;
        }
      } finally {
        client.close();
      }
    }));
    assert.equal(ok, 4000);
    assert.equal(await sys.handshakes(), 200);
  } finally {
    await sys.stop();
  }
});

Deno.test("unknown route: 404 from the gateway, and the connection stays usable", async () => {
  const sys = await System.start();
  const client = await Client.connect(sys.port);
  try {
    const res = await client.get("/nope?a=1");
    assert.equal(res.status, 404);
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.deepEqual(JSON.parse(res.body), { error: "no function serves /nope", status: 404 });
    expectAnswer(await client.get("/sum?a=2&b=2"), "sum", 2, 2);
    // From a worker, too: the connection comes back, the gateway answers 404.
    assert.equal((await client.get("/missing")).status, 404);
    expectAnswer(await client.get("/product?a=2&b=5"), "product", 2, 5);
    assert.equal(await sys.handshakes(), 1);
  } finally {
    client.close();
    await sys.stop();
  }
});

Deno.test("bad operands: 400 with a JSON error naming the operand", async () => {
  const sys = await System.start();
  const client = await Client.connect(sys.port);
  try {
    const cases: [string, string][] = [
      ["/sum?b=1", "missing operand 'a'"],
      ["/sum?a=1", "missing operand 'b'"],
      ["/product?a=abc&b=1", `operand 'a' is not a decimal number: "abc"`],
      ["/product?a=1&b=1e3", `operand 'b' is not a decimal number: "1e3"`],
      ["/sum?a=1&a=2&b=3", "operand 'a' is given more than once"],
    ];
    for (const [path, error] of cases) {
      const res = await client.get(path);
      assert.equal(res.status, 400, path);
      assert.deepEqual(JSON.parse(res.body), { error, status: 400 });
    }
    const big = await client.get("/sum?a=9007199254740993&b=1");
    assert.equal(JSON.parse(big.body).result, "9007199254740994");
    const dec = await client.get("/product?a=1.5&b=-0.2");
    assert.equal(JSON.parse(dec.body).result, "-0.3");
  } finally {
    client.close();
    await sys.stop();
  }
});

Deno.test("Connection: close is honoured with a clean TLS close", async () => {
  const sys = await System.start();
  const client = await Client.connect(sys.port);
  try {
    const res = await client.get("/sum?a=1&b=1", "connection: close\r\n");
    assert.equal(res.headers.get("connection"), "close");
    assert.equal(await client.closedByServer(), true);
  } finally {
    client.close();
    await sys.stop();
  }
});

Deno.test("HTTP/1.0 closes unless it asks for keep-alive", async () => {
  const sys = await System.start();
  const a = await Client.connect(sys.port);
  const b = await Client.connect(sys.port);
  try {
    await a.write(enc.encode("GET /sum?a=1&b=2 HTTP/1.0\r\n\r\n"));
    const r1 = await a.read();
    assert.equal(r1.headers.get("connection"), "close");
    assert.equal(await a.closedByServer(), true);
    await b.write(enc.encode("GET /sum?a=1&b=2 HTTP/1.0\r\nconnection: keep-alive\r\n\r\n"));
    assert.equal((await b.read()).headers.get("connection"), "keep-alive");
    await b.write(enc.encode("GET /product?a=3&b=2 HTTP/1.0\r\nconnection: keep-alive\r\n\r\n"));
    expectAnswer(await b.read(), "product", 3, 2);
  } finally {
    a.close();
    b.close();
    await sys.stop();
  }
});
