/**
 * TLS conformance of the gateway's handshake, with hand-made ClientHellos
 * over a plain TCP socket: what a scanner or an unusual client sends gets a
 * ServerHello when a real client could send it, and the proper alert at once
 * otherwise (never a HelloRetryRequest that cannot succeed, a curve the client
 * did not offer, or a silent close).
 */

import assert from "node:assert/strict";
import {
  clientHello,
  GROUP,
  type HelloAnswer,
  records,
  sendHello,
} from "./support/client_hello.ts";
import { System } from "./support/system.ts";

const HANDSHAKE_FAILURE = 40;
const ILLEGAL_PARAMETER = 47;
const DECODE_ERROR = 50;

function alert(description: number): HelloAnswer {
  return { kind: "alert", level: 2, description };
}

/** Run the tests of `body` against one gateway (no workers needed). */
async function withGateway(body: (port: number, sys: System) => Promise<void>): Promise<void> {
  const sys = await System.start({ workers: [], gatewayArgs: ["--handshake-timeout", "8"] });
  try {
    await body(sys.port, sys);
  } finally {
    await sys.stop();
  }
}

Deno.test("TLS 1.3 with no key exchange group in common: handshake_failure, no HelloRetryRequest", async () => {
  await withGateway(async (port, sys) => {
    for (const groups of [[GROUP.x448], [GROUP.ffdhe2048], [GROUP.x448, GROUP.ffdhe2048]]) {
      const hello = records(clientHello({ version: "1.3", groups, x25519Share: false }));
      const { answer } = await sendHello(port, hello);
      assert.deepEqual(answer, alert(HANDSHAKE_FAILURE), `groups ${groups}`);
    }
    // A group in common but no key share for it: a HelloRetryRequest is right.
    const retry = records(
      clientHello({ version: "1.3", groups: [GROUP.x448, GROUP.secp256r1], x25519Share: false }),
    );
    assert.equal((await sendHello(port, retry)).answer.kind, "hello_retry_request");
    await sys.gateway.waitFor(
      /TLS handshake failed: conn \d+ from 127\.0\.0\.1:\d+: .*wolfSSL -\d+/,
    );
  });
});

Deno.test("TLS 1.2 offering only curves we lack: handshake_failure, never a curve it did not offer", async () => {
  await withGateway(async (port) => {
    const suites = [0xc02b, 0xc02f]; // ECDHE only
    for (const groups of [[GROUP.x448], [GROUP.ffdhe2048]]) {
      const { answer } = await sendHello(
        port,
        records(clientHello({ version: "1.2", suites, groups })),
      );
      assert.deepEqual(answer, alert(HANDSHAKE_FAILURE), `groups ${groups}`);
    }
    const ok = await sendHello(
      port,
      records(clientHello({ version: "1.2", suites, groups: [GROUP.x448, GROUP.secp256r1] })),
    );
    assert.deepEqual(ok.answer, { kind: "server_hello", suite: 0xc02b });
  });
});

Deno.test("ClientHellos as scanners send them: 500 suites, 1-byte records, 17 KB", async () => {
  await withGateway(async (port) => {
    // 497 suites nobody implements (as scanners list them), then real ones.
    const filler = Array.from({ length: 497 }, (_, i) => 0x0100 + i);
    for (const version of ["1.3", "1.2"] as const) {
      const want = version === "1.3" ? 0x1301 : 0xc02b;
      const many = clientHello({ version, suites: [...filler, 0x1301, 0xc02b, 0xc02f] });
      assert.deepEqual((await sendHello(port, records(many))).answer, {
        kind: "server_hello",
        suite: want,
      }, `${version}: 500 suites`);
      const tiny = records(clientHello({ version }), 1);
      assert.deepEqual((await sendHello(port, tiny)).answer, {
        kind: "server_hello",
        suite: want,
      }, `${version}: one byte per record`);
      const big = clientHello({ version, padding: 17_000 });
      assert.ok(big.length > 16384);
      assert.deepEqual((await sendHello(port, records(big))).answer, {
        kind: "server_hello",
        suite: want,
      }, `${version}: a ${big.length}-byte ClientHello in two records`);
    }
  });
});

Deno.test("ClientHellos past the limits get an alert, not a silent close", async () => {
  await withGateway(async (port) => {
    // More suites than any registry has: decode_error.
    const suites = Array.from({ length: 600 }, (_, i) => 0x0100 + i);
    const tooMany = await sendHello(port, records(clientHello({ version: "1.3", suites })));
    assert.deepEqual(tooMany.answer, alert(DECODE_ERROR));
    // A ClientHello of over 18 KB (20 KB of ALPN names, or a huge extension).
    const alpn = Array.from({ length: 100 }, (_, i) => `${i}`.padEnd(200, "x"));
    for (
      const hello of [
        clientHello({ version: "1.3", alpn }),
        clientHello({ version: "1.2", padding: 30_000 }),
      ]
    ) {
      assert.ok(hello.length > 20_000);
      const { answer } = await sendHello(port, records(hello));
      assert.deepEqual(answer, alert(ILLEGAL_PARAMETER), `${hello.length} bytes`);
    }
  });
});

Deno.test("a client that half-closes inside a ClientHello is closed at once", async () => {
  await withGateway(async (port) => {
    const hello = records(clientHello({ version: "1.3" }));
    for (const cut of [3, 60, hello.length - 1]) {
      const { answer, ms } = await sendHello(port, hello.subarray(0, cut), { halfClose: true });
      assert.notEqual(answer.kind, "server_hello");
      assert.ok(ms < 2_000, `cut at ${cut}: closed after ${ms} ms (handshake timeout 8 s)`);
    }
  });
});
