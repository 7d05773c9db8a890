/**
 * Bad input from clients, end to end: every malformed or unsupported request
 * gets the status RFC 9110/9112 asks for with a short JSON body (or a clean
 * close), and the processes keep serving everyone else.
 */

import assert from "node:assert/strict";
import { Client, run, System } from "./support/system.ts";
import { waitUntil } from "./support/wait.ts";

const enc = new TextEncoder();

/** [what, raw request, expected status] — each sent on a fresh connection. */
const httpCases: [string, string, number][] = [
  ["bare LF line endings", "GET /sum?a=1&b=2 HTTP/1.1\nhost: x\n\n", 400],
  ["obs-fold", "GET /sum?a=1&b=2 HTTP/1.1\r\nhost: x\r\nx-a: b\r\n c\r\n\r\n", 400],
  ["NUL in a header", "GET /sum?a=1&b=2 HTTP/1.1\r\nhost: x\r\nx-a: b\0c\r\n\r\n", 400],
  ["control byte in a header", "GET /sum?a=1&b=2 HTTP/1.1\r\nhost: x\r\nx-a: \x07\r\n\r\n", 400],
  ["space before the colon", "GET /sum?a=1&b=2 HTTP/1.1\r\nhost : x\r\n\r\n", 400],
  ["malformed request line", "GET  /sum HTTP/1.1\r\nhost: x\r\n\r\n", 400],
  ["no Host in HTTP/1.1", "GET /sum?a=1&b=2 HTTP/1.1\r\n\r\n", 400],
  [
    "conflicting Content-Length",
    "POST /sum HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
    400,
  ],
  [
    "Transfer-Encoding with Content-Length",
    "POST /sum HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
    400,
  ],
  [
    "unknown transfer coding",
    "POST /sum HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n",
    501,
  ],
  ["POST without a length", "POST /sum HTTP/1.1\r\nhost: x\r\n\r\n", 411],
  ["unknown method", "BREW /sum HTTP/1.1\r\nhost: x\r\n\r\n", 501],
  ["CONNECT", "CONNECT localhost:443 HTTP/1.1\r\nhost: x\r\n\r\n", 501],
  ["method the function does not allow", "DELETE /sum?a=1&b=2 HTTP/1.1\r\nhost: x\r\n\r\n", 405],
  ["HTTP/2.0 request line", "GET /sum?a=1&b=2 HTTP/2.0\r\nhost: x\r\n\r\n", 505],
  ["HTTP/1.2", "GET /sum?a=1&b=2 HTTP/1.2\r\nhost: x\r\n\r\n", 505],
  ["garbage version", "GET /sum?a=1&b=2 HTTQ/1.1\r\nhost: x\r\n\r\n", 400],
  ["asterisk target with GET", "GET * HTTP/1.1\r\nhost: x\r\n\r\n", 400],
  ["target too long", `GET /sum?a=${"1".repeat(9000)} HTTP/1.1\r\nhost: x\r\n\r\n`, 414],
  ["head too large", `GET /sum HTTP/1.1\r\nhost: x\r\nx-big: ${"b".repeat(17000)}\r\n\r\n`, 431],
  ["body too large", "POST /sum HTTP/1.1\r\nhost: x\r\ncontent-length: 2000000\r\n\r\n", 413],
  ["NaN operand", "GET /sum?a=NaN&b=1 HTTP/1.1\r\nhost: x\r\n\r\n", 400],
  ["Infinity operand", "GET /product?a=1&b=Infinity HTTP/1.1\r\nhost: x\r\n\r\n", 400],
  ["hex operand", "GET /sum?a=0x10&b=1 HTTP/1.1\r\nhost: x\r\n\r\n", 400],
  ["empty operand", "GET /sum?a=&b=1 HTTP/1.1\r\nhost: x\r\n\r\n", 400],
  ["repeated operand", "GET /sum?a=1&b=1&b=2 HTTP/1.1\r\nhost: x\r\n\r\n", 400],
  ["operand of 1001 digits", `GET /sum?a=${"9".repeat(1001)}&b=1 HTTP/1.1\r\nhost: x\r\n\r\n`, 400],
];

Deno.test("malformed and unsupported HTTP gets the right status and a JSON body", async () => {
  const sys = await System.start();
  try {
    for (const [what, raw, status] of httpCases) {
      const client = await Client.connect(sys.port);
      try {
        await client.write(enc.encode(raw));
        const res = await client.read();
        assert.equal(res.status, status, `${what}: ${res.body}`);
        assert.equal(res.headers.get("content-type"), "application/json", what);
        const body = JSON.parse(res.body);
        assert.equal(body.status, status, what);
        assert.equal(typeof body.error, "string", what);
        if (status === 405) assert.equal(res.headers.get("allow"), "GET, HEAD");
      } finally {
        client.close();
      }
    }
    // Everyone else is still served, by the same processes.
    const client = await Client.connect(sys.port);
    const res = await client.get("/product?a=6&b=7");
    assert.equal(JSON.parse(res.body).result, "42");
    client.close();
    for (const p of [sys.gateway, ...sys.workers]) {
      assert.equal(p.exited, false, `${p.name} is still running`);
    }
  } finally {
    await sys.stop();
  }
});

Deno.test("accepted odd forms: absolute-form target, percent-encoding, HEAD, huge integers", async () => {
  const sys = await System.start();
  const client = await Client.connect(sys.port);
  try {
    await client.write(
      enc.encode("GET https://localhost/sum?a=1&b=2 HTTP/1.1\r\nhost: localhost\r\n\r\n"),
    );
    assert.equal(JSON.parse((await client.read()).body).result, "3");
    assert.equal(JSON.parse((await client.get("/sum?a=%31%30&b=%2B5")).body).result, "15");
    await client.write(enc.encode("HEAD /product?a=2&b=3 HTTP/1.1\r\nhost: x\r\n\r\n"));
    // HEAD: headers only; the next response follows right after them.
    const head = await client.readHead();
    assert.equal(head.status, 200);
    assert.ok(Number(head.headers.get("content-length")) > 0);
    const nines = "9".repeat(400);
    const big = JSON.parse((await client.get(`/product?a=${nines}&b=${nines}`)).body).result;
    assert.equal(big, (BigInt(nines) * BigInt(nines)).toString());
  } finally {
    client.close();
    await sys.stop();
  }
});

Deno.test("not TLS: plain HTTP gets a plain 400, garbage and broken hellos a clean close", async () => {
  const sys = await System.start({ gatewayArgs: ["--handshake-timeout", "1"] });
  try {
    // Plain HTTP to the TLS port.
    const plain = await run("curl", ["-s", "-i", `http://127.0.0.1:${sys.port}/sum?a=1&b=2`]);
    assert.match(plain.stdout, /^HTTP\/1\.1 400 Bad Request/);
    assert.match(plain.stdout, /"error":"this port speaks HTTPS: use https:\/\/"/);

    const raw = async (bytes: Uint8Array, closeEarly = false): Promise<boolean> => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: sys.port });
      try {
        await conn.write(bytes);
        if (closeEarly) return true;
        const buf = new Uint8Array(4096);
        let timedOut = false;
        const timer = setTimeout(() => {
          timedOut = true;
          conn.close();
        }, 5000);
        try {
          while ((await conn.read(buf)) !== null) { /* drain alerts */ }
        } catch {
          // reset by the server (it closed with our bytes unread), or our timeout
        } finally {
          clearTimeout(timer);
        }
        return !timedOut;
      } finally {
        try {
          conn.close();
        } catch { /* closed */ }
      }
    };
    // Random bytes that start like a TLS record, and ones that do not.
    const random = crypto.getRandomValues(new Uint8Array(2000));
    random[0] = 0x16;
    assert.equal(await raw(random), true, "random TLS-looking bytes: closed");
    assert.equal(await raw(crypto.getRandomValues(new Uint8Array(300)).map((b) => b | 0x80)), true);
    // A truncated ClientHello: the handshake timeout closes it.
    assert.equal(await raw(new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])), true);
    // An abrupt close in the middle of a handshake.
    assert.equal(await raw(new Uint8Array([0x16, 0x03, 0x01, 0x00]), true), true);
    // TLS 1.0 and 1.1 clients are refused (the gateway speaks 1.2 and 1.3 only).
    for (const v of ["-tls1", "-tls1_1"]) {
      const r = await run("openssl", [
        "s_client",
        v,
        "-cipher",
        "DEFAULT@SECLEVEL=0",
        "-connect",
        `127.0.0.1:${sys.port}`,
      ], new Uint8Array(0));
      assert.notEqual(r.code, 0, `${v} must fail`);
      assert.match(r.stdout, /Cipher is \(NONE\)/, `${v}: no session was established`);
    }
    // An abrupt close in the middle of a request.
    const half = await Client.connect(sys.port);
    await half.write(enc.encode("GET /sum?a=1&b=2 HTTP/1.1\r\nhos"));
    half.close();

    const client = await Client.connect(sys.port);
    assert.equal(JSON.parse((await client.get("/sum?a=2&b=2")).body).result, "4");
    client.close();
    assert.equal(sys.gateway.exited, false);
  } finally {
    await sys.stop();
  }
});

Deno.test("TLS: only forward-secret AEAD suites; TLS 1.2 renegotiation is refused cleanly", async () => {
  const sys = await System.start();
  try {
    const connect = ["s_client", "-connect", `127.0.0.1:${sys.port}`, "-servername", "localhost"];
    // CBC and static-RSA suites are not offered.
    for (
      const cipher of ["ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA", "AES128-GCM-SHA256"]
    ) {
      const r = await run("openssl", [...connect, "-tls1_2", "-cipher", cipher], new Uint8Array(0));
      assert.match(r.stdout, /Cipher is \(NONE\)/, `${cipher} must be refused`);
    }
    const good = await run("openssl", [...connect, "-tls1_2"], new Uint8Array(0));
    assert.match(good.stdout, /Cipher is ECDHE-ECDSA-AES128-GCM-SHA256/);
    // A client-initiated renegotiation ("R") gets a fatal alert, not a new handshake.
    const reneg = await run("bash", [
      "-c",
      `(sleep 0.5; echo R; sleep 1) | openssl ${connect.join(" ")} -tls1_2 2>&1`,
    ]);
    assert.match(reneg.stdout, /RENEGOTIATING/);
    assert.match(reneg.stdout, /alert unexpected message|alert.*fatal|closed/);
    assert.doesNotMatch(reneg.stdout, /Reused|New, TLSv1\.2.*\n[\s\S]*New, TLSv1\.2/);
    const client = await Client.connect(sys.port);
    assert.equal((await client.get("/sum?a=1&b=1")).status, 200);
    client.close();
    assert.equal(sys.gateway.exited, false);
  } finally {
    await sys.stop();
  }
});

Deno.test("chunk framing that dwarfs its data is cut off at the buffer bound (413)", async () => {
  const sys = await System.start({
    workers: [{ name: "misbehave", file: "tests/fixtures/misbehave.ts" }],
  });
  const client = await Client.connect(sys.port);
  try {
    // A valid chunked body whose data (400 KB) is under --max-body (1 MiB) but
    // whose framing (2.4 MB of one-byte chunks) is more than any request may
    // make a holder buffer.
    const head = "POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n";
    await client.write(enc.encode(head));
    const chunks = enc.encode("1\r\nx\r\n".repeat(10_000));
    const sending = (async () => {
      for (let i = 0; i < 40; i++) await client.write(chunks);
      await client.write(enc.encode("0\r\n\r\n"));
    })().catch(() => {}); // the server stops reading once it has answered
    const res = await client.read();
    assert.equal(res.status, 413);
    assert.deepEqual(JSON.parse(res.body), { error: "request too large", status: 413 });
    await sending;
    // A reasonable chunked body is served.
    client.close();
    const ok = await Client.connect(sys.port);
    await ok.write(
      enc.encode(`${head}5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`),
    );
    assert.deepEqual(JSON.parse((await ok.read()).body), {
      method: "POST",
      length: 11,
      body: "hello world",
    });
    ok.close();
  } finally {
    client.close();
    await sys.stop();
  }
});

Deno.test("a worker's own error answers are counted in /metrics and logged, once each", async () => {
  // One holder serves connections everywhere: a bad request on a connection
  // a worker holds gets the same answer as at the gateway, and shows in the
  // worker's counters and request log.
  const sys = await System.start({ workerArgs: ["--header-timeout", "1"] });
  const cases: [string, string, number][] = [
    ["malformed request line", "GET  /sum HTTP/1.1\r\nhost: x\r\n\r\n", 400],
    ["target too long", `GET /sum?a=${"1".repeat(9000)} HTTP/1.1\r\nhost: x\r\n\r\n`, 414],
    ["head too large", `GET /sum HTTP/1.1\r\nhost: x\r\nx-big: ${"b".repeat(17000)}\r\n\r\n`, 431],
    ["body too large", "POST /sum HTTP/1.1\r\nhost: x\r\ncontent-length: 2000000\r\n\r\n", 413],
    ["head not finished in time", "GET /sum?a=1&b=2 HTTP/1.1\r\nhost: x\r\n", 408],
  ];
  try {
    for (const [what, raw, status] of cases) {
      const client = await Client.connect(sys.port);
      try {
        // The first request moves the connection to the sum worker.
        const first = await client.get("/sum?a=1&b=2");
        assert.match(first.headers.get("x-hotpotato-worker") ?? "", /^sum\//, what);
        await client.write(enc.encode(raw));
        const res = await client.read();
        assert.equal(res.status, status, `${what}: ${res.body}`);
        assert.equal(await client.closedByServer(), true, `${what}: closed after the answer`);
      } finally {
        client.close();
      }
    }
    // Workers report their counters every second: wait for these.
    const series = (status: number) =>
      `hotpotato_requests_total{function="sum",route="-",status="${status}"}`;
    let text = "";
    await waitUntil(async () => {
      text = await (await fetch(`http://127.0.0.1:${sys.adminPort}/metrics`)).text();
      return cases.every(([, , status]) => text.includes(series(status)));
    }, { what: () => `the sum worker's error counts in /metrics:\n${text}` });
    for (const [what, , status] of cases) {
      assert.ok(
        text.split("\n").includes(`${series(status)} 1`),
        `${what}: ${series(status)} 1 in\n${text}`,
      );
    }
    const sum = sys.worker("sum");
    await sum.settle(); // its log lines so far
    for (const [what, , status] of cases) {
      const lines = sum.lines.filter((l) =>
        new RegExp(`hotpotato\\.worker: - - ${status} 0ms worker sum/\\d+ conn`).test(l)
      );
      assert.equal(lines.length, 1, `${what}: one request log line for ${status}`);
    }
  } finally {
    await sys.stop();
  }
});
