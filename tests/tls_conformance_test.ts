/**
 * TLS conformance of the gateway's handshake and record layer, with
 * hand-made records over a plain TCP socket (`support/client_hello.ts` for
 * a first flight, `support/tls_client.ts` for whole connections): what a
 * scanner or an unusual client sends gets a ServerHello when a real client
 * could send it, and the alert OpenSSL sends otherwise (never a
 * HelloRetryRequest that cannot succeed, a curve the client did not offer,
 * a silent close, or a close_notify after an error). Each test stands for a
 * tlsfuzzer finding (docs/tls.md#conformance).
 */

import assert from "node:assert/strict";
import {
  clientHello,
  GROUP,
  type HelloAnswer,
  records,
  sendHello,
  type Share,
} from "./support/client_hello.ts";
import { type Answer, TlsClient, type TlsClientOptions } from "./support/tls_client.ts";
import { System } from "./support/system.ts";

const UNEXPECTED_MESSAGE = 10;
const RECORD_OVERFLOW = 22;
const HANDSHAKE_FAILURE = 40;
const DECODE_ERROR = 50;
const ILLEGAL_PARAMETER = 47;
const CHANGE_CIPHER_SPEC = 20, HANDSHAKE = 22, APPLICATION_DATA = 23;

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

/** Run `body` against a gateway with the sum and product functions. */
async function withFunctions(body: (port: number) => Promise<void>): Promise<void> {
  const sys = await System.start();
  try {
    await body(sys.port);
  } finally {
    await sys.stop();
  }
}

/** Connect, handshake (it must succeed) and hand the client to `body`. */
async function connected(
  port: number,
  opts: TlsClientOptions,
  body: (c: TlsClient, received: number[], hrr: boolean) => Promise<void> | void,
): Promise<void> {
  const c = await TlsClient.connect(port, opts);
  try {
    const r = await c.handshake();
    assert.ok(r.ok, `handshake ${JSON.stringify(opts)}: ${JSON.stringify(!r.ok && r.answer)}`);
    await body(c, r.received, r.hrr);
  } finally {
    c.close();
  }
}

/** GET `path` on an open connection; the response's first line and body. */
async function get(c: TlsClient, path: string): Promise<string> {
  await c.sendAppData(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
  const text = await c.readHttpResponse();
  return `${text.split("\r\n")[0]} ${text.slice(text.indexOf("\r\n\r\n") + 4)}`;
}

/** What the peer sends after a protocol error: the alert, then the end, with
 * no close_notify (an orderly end) anywhere. */
async function expectFatal(c: TlsClient, description: number, what: string): Promise<void> {
  const first: Answer = await c.readAnswer();
  assert.deepEqual(first, { kind: "alert", level: 2, description }, what);
  const next: Answer = await c.readAnswer();
  assert.deepEqual(next, { kind: "closed" }, `${what}: then the end, no close_notify`);
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

Deno.test("ClientHellos as scanners send them: 600 suites, 8,001 schemes, 1-byte records, 65 KB", async () => {
  await withGateway(async (port) => {
    // Suites nobody implements (as scanners list them), then real ones: 500
    // fit wolfSSL's list; 600 are filtered to what the server could choose.
    for (const count of [497, 597]) {
      const filler = Array.from({ length: count }, (_, i) => 0x0100 + i);
      for (const version of ["1.3", "1.2"] as const) {
        const want = version === "1.3" ? 0x1301 : 0xc02b;
        const many = clientHello({ version, suites: [...filler, 0x1301, 0xc02b, 0xc02f] });
        assert.deepEqual((await sendHello(port, records(many))).answer, {
          kind: "server_hello",
          suite: want,
        }, `${version}: ${count + 3} suites`);
      }
    }
    // 8,000 signature schemes nobody has, then a real one (wolfSSL kept the
    // first 19): the real one is used.
    const schemes = [...Array.from({ length: 8_000 }, (_, i) => 0x0900 + i % 0x600), 0x0403];
    for (const version of ["1.3", "1.2"] as const) {
      const want = version === "1.3" ? 0x1301 : 0xc02b;
      assert.deepEqual(
        (await sendHello(port, records(clientHello({ version, sigAlgs: schemes })))).answer,
        { kind: "server_hello", suite: want },
        `${version}: 8,001 signature schemes`,
      );
    }
    for (const version of ["1.3", "1.2"] as const) {
      const want = version === "1.3" ? 0x1301 : 0xc02b;
      const tiny = records(clientHello({ version }), 1);
      assert.deepEqual((await sendHello(port, tiny)).answer, {
        kind: "server_hello",
        suite: want,
      }, `${version}: one byte per record`);
      // Post-quantum and many-extension hellos grow: OpenSSL takes up to
      // 128 KiB (here 65 KB: an extension's largest size, as tlsfuzzer's).
      for (const padding of [17_000, 65_000]) {
        const big = clientHello({ version, padding });
        assert.deepEqual((await sendHello(port, records(big))).answer, {
          kind: "server_hello",
          suite: want,
        }, `${version}: a ${big.length}-byte ClientHello`);
      }
    }
  });
});

Deno.test("ClientHellos past the limits get an alert, not a silent close", async () => {
  await withGateway(async (port) => {
    const hello = clientHello({ version: "1.3" });
    // A handshake message that says it is 200,000 bytes long (OpenSSL's
    // ClientHello limit is 131,396): illegal_parameter ("excessive message size").
    const huge = hello.slice(0, 200);
    huge.set([0x03, 0x0d, 0x40], 1);
    assert.deepEqual((await sendHello(port, records(huge))).answer, alert(ILLEGAL_PARAMETER));
    // A plaintext record over 2^14 bytes: record_overflow (RFC 8446 5.1);
    // wolfSSL allowed 2^14 + 1062.
    const big = clientHello({ version: "1.3", padding: 17_000 });
    const one = new Uint8Array(5 + 16_385);
    one.set([HANDSHAKE, 3, 1, 16_385 >> 8, 16_385 & 0xff]);
    one.set(big.subarray(0, 16_385), 5);
    assert.deepEqual((await sendHello(port, one)).answer, alert(RECORD_OVERFLOW));
  });
});

Deno.test("a ClientHello of a later version, (4,1), gets TLS 1.2 (RFC 5246 E.1)", async () => {
  await withGateway(async (port) => {
    for (const [major, minor] of [[4, 1], [3, 4], [3, 9]]) {
      const hello = clientHello({ version: "1.2" });
      hello.set([major, minor], 4);
      assert.deepEqual((await sendHello(port, records(hello))).answer, {
        kind: "server_hello",
        suite: 0xc02b,
      }, `(${major},${minor})`);
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

/** A genuine public key of `curve`, uncompressed (0x04 || x || y). */
async function ecPoint(curve: "P-256" | "P-384"): Promise<Uint8Array> {
  const pair = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: curve }, true, [
    "deriveBits",
  ]) as CryptoKeyPair;
  return new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
}

Deno.test("invalid key shares get illegal_parameter before any ServerHello, for every group offered", async () => {
  const p256 = await ecPoint("P-256"), p384 = await ecPoint("P-384");
  const offCurve = (p: Uint8Array) => p.map((b, i) => i === p.length - 1 ? b ^ 1 : b);
  const zeros = (n: number) => new Uint8Array(n);
  const x25519One = zeros(32).map((_, i) => i === 0 ? 1 : 0);
  const cases: [string, Share][] = [
    ["x25519 all zero", { group: GROUP.x25519, key: zeros(32) }],
    ['x25519 "1"', { group: GROUP.x25519, key: x25519One }],
    ["x25519 31 bytes", { group: GROUP.x25519, key: crypto.getRandomValues(zeros(31)) }],
    ["x25519 33 bytes", { group: GROUP.x25519, key: crypto.getRandomValues(zeros(33)) }],
    ["x25519 empty", { group: GROUP.x25519, key: zeros(0) }],
    ["P-256 off the curve", { group: GROUP.secp256r1, key: offCurve(p256) }],
    ["P-256 (0,0)", { group: GROUP.secp256r1, key: Uint8Array.of(4, ...zeros(64)) }],
    ["P-256 at infinity", { group: GROUP.secp256r1, key: zeros(1) }],
    ["P-256 a P-384 point", { group: GROUP.secp256r1, key: p384 }],
    ["P-256 compressed", {
      group: GROUP.secp256r1,
      key: Uint8Array.of(2, ...p256.subarray(1, 33)),
    }],
    ["P-256 truncated", { group: GROUP.secp256r1, key: p256.subarray(0, 64) }],
    ["P-384 off the curve", { group: GROUP.secp384r1, key: offCurve(p384) }],
    ["P-384 (0,0)", { group: GROUP.secp384r1, key: Uint8Array.of(4, ...zeros(96)) }],
    ["P-384 a P-256 point", { group: GROUP.secp384r1, key: p256 }],
  ];
  await withGateway(async (port) => {
    for (const [what, share] of cases) {
      const hello = clientHello({ version: "1.3", groups: [share.group], shares: [share] });
      const { answer } = await sendHello(port, records(hello));
      assert.deepEqual(answer, alert(ILLEGAL_PARAMETER), what);
    }
    // The genuine points are taken (the checks refuse only what is wrong).
    for (
      const share of [{ group: GROUP.secp256r1, key: p256 }, { group: GROUP.secp384r1, key: p384 }]
    ) {
      const hello = clientHello({ version: "1.3", groups: [share.group], shares: [share] });
      assert.deepEqual((await sendHello(port, records(hello))).answer, {
        kind: "server_hello",
        suite: 0x1301,
      }, `group ${share.group}`);
    }
  });
});

Deno.test("unknown groups beside a known one: the known one is negotiated", async () => {
  const p256 = await ecPoint("P-256");
  await withGateway(async (port) => {
    // Unassigned code points of the EC range, with shares of 128 and 256 bytes.
    const groups = [0x0040, 0x0041, GROUP.secp256r1];
    const unknown = [
      { group: 0x0040, key: crypto.getRandomValues(new Uint8Array(128)) },
      { group: 0x0041, key: crypto.getRandomValues(new Uint8Array(256)) },
    ];
    const both = clientHello({
      version: "1.3",
      groups,
      shares: [...unknown, { group: GROUP.secp256r1, key: p256 }],
    });
    assert.deepEqual((await sendHello(port, records(both))).answer, {
      kind: "server_hello",
      suite: 0x1301,
    });
    // A share for a group the client did not list (RFC 8446 4.2.8: it MUST
    // NOT): illegal_parameter, as OpenSSL answers, not a HelloRetryRequest.
    const unlisted = clientHello({
      version: "1.3",
      groups: [GROUP.x25519],
      shares: [{ group: GROUP.secp256r1, key: p256 }],
    });
    assert.deepEqual((await sendHello(port, records(unlisted))).answer, alert(ILLEGAL_PARAMETER));
    // Only the unknown groups' shares: a HelloRetryRequest for P-256.
    const retry = clientHello({ version: "1.3", groups, shares: unknown });
    assert.deepEqual((await sendHello(port, records(retry))).answer, {
      kind: "hello_retry_request",
      suite: 0x1301,
    });
  });
});

Deno.test("TLS 1.3 compatibility mode: a ChangeCipherSpec after ServerHello and HelloRetryRequest when asked", async () => {
  await withGateway(async (port) => {
    // A 32-byte legacy_session_id asks for it (RFC 8446 D.4), as OpenSSL's,
    // BoringSSL's and NSS's clients send; 16 bytes is as valid.
    for (const size of [32, 16]) {
      const sessionId = crypto.getRandomValues(new Uint8Array(size));
      await connected(port, { sessionId }, (_c, received) => {
        assert.deepEqual(received, [HANDSHAKE, CHANGE_CIPHER_SPEC], `session id of ${size}`);
      });
    }
    await connected(port, { share: false }, (_c, received, hrr) => {
      assert.ok(hrr);
      assert.deepEqual(received, [HANDSHAKE, CHANGE_CIPHER_SPEC, HANDSHAKE]);
    });
    // No session id: no compatibility mode, no CCS.
    await connected(port, { sessionId: new Uint8Array(0) }, (_c, received) => {
      assert.deepEqual(received, [HANDSHAKE]);
    });
  });
});

Deno.test("connections from compatibility mode, a HelloRetryRequest or small records still move", async () => {
  await withFunctions(async (port) => {
    const variants: TlsClientOptions[] = [
      { share: false }, // HelloRetryRequest, then the compat CCS
      { group: "secp256r1", share: false, fragment: 1 },
      { version: "1.2", fragment: 1 }, // the encrypted Finished in 1-byte records
      { version: "1.2", group: "secp256r1", fragment: 7 },
      { fragment: 1 },
    ];
    for (const opts of variants) {
      await connected(port, opts, async (c) => {
        assert.match(await get(c, "/sum?a=1&b=2"), /^HTTP\/1\.1 200 .*"result":"3"/);
        assert.match(await get(c, "/product?a=5&b=6"), /^HTTP\/1\.1 200 .*"result":"30"/);
        assert.match(await get(c, "/sum?a=10&b=20"), /^HTTP\/1\.1 200 .*"result":"30"/);
      });
    }
  });
});

Deno.test("a protocol error after the handshake ends with its fatal alert, never close_notify", async () => {
  await withFunctions(async (port) => {
    // In the gateway (no request yet) and in a worker (after a move).
    for (const where of ["gateway", "worker"]) {
      const prepare = async (c: TlsClient) => {
        if (where === "worker") assert.match(await get(c, "/sum?a=1&b=2"), / 200 /);
      };
      // A record of content type 0, bare or all padding: unexpected_message.
      for (const padding of [0, 10]) {
        await connected(port, {}, async (c) => {
          await prepare(c);
          await c.sendRecord(APPLICATION_DATA, new Uint8Array(0), { innerType: 0, padding });
          await expectFatal(c, UNEXPECTED_MESSAGE, `${where}: zero type, padding ${padding}`);
        });
      }
      // 2^14 + 1 bytes of plaintext in one record: record_overflow.
      await connected(port, {}, async (c) => {
        await prepare(c);
        await c.sendRecord(APPLICATION_DATA, new Uint8Array(16_385).fill(0x41));
        await expectFatal(c, RECORD_OVERFLOW, `${where}: 16,385 bytes of plaintext`);
      });
      // A record of a type no TLS version has: unexpected_message.
      await connected(port, {}, async (c) => {
        await prepare(c);
        await c.write(Uint8Array.of(99, 3, 3, 0, 20, ...new Uint8Array(20)));
        await expectFatal(c, UNEXPECTED_MESSAGE, `${where}: record type 99`);
      });
      // A record of version 2.0: wolfSSL closes without an alert; the
      // connection must not then say close_notify (an orderly end).
      await connected(port, {}, async (c) => {
        await prepare(c);
        await c.write(Uint8Array.of(APPLICATION_DATA, 2, 0, 0, 20, ...new Uint8Array(20)));
        const a = await c.readAnswer();
        assert.ok(a.kind === "closed" || (a.kind === "alert" && a.level === 2), JSON.stringify(a));
      });
      // KeyUpdates (type 24): two in one record (the keys change after the
      // first: RFC 8446 5.1), and one with an empty body.
      const keyUpdate = [24, 0, 0, 1, 0];
      for (
        const [what, body, description] of [
          ["two KeyUpdates in one record", [...keyUpdate, ...keyUpdate], UNEXPECTED_MESSAGE],
          ["an empty KeyUpdate", [24, 0, 0, 0], DECODE_ERROR],
        ] as const
      ) {
        await connected(port, {}, async (c) => {
          await prepare(c);
          await c.sendRecord(APPLICATION_DATA, Uint8Array.from(body), { innerType: HANDSHAKE });
          await expectFatal(c, description, `${where}: ${what}`);
        });
      }
      // A handshake message after the handshake that is not one (type 99).
      await connected(port, {}, async (c) => {
        await prepare(c);
        await c.sendRecord(APPLICATION_DATA, Uint8Array.of(99, 0, 0, 0), { innerType: HANDSHAKE });
        const a = await c.readAnswer();
        assert.equal(a.kind, "alert", `${where}: unknown handshake type: ${JSON.stringify(a)}`);
        assert.equal((a as { level: number }).level, 2);
        assert.deepEqual(await c.readAnswer(), { kind: "closed" });
      });
    }
    // 2^14 bytes exactly are fine.
    await connected(port, {}, async (c) => {
      const head = "GET /sum?a=2&b=3 HTTP/1.1\r\nHost: localhost\r\nX-Pad: ";
      const line = head + "x".repeat(16_384 - head.length - 4) + "\r\n\r\n";
      await c.sendRecord(APPLICATION_DATA, new TextEncoder().encode(line));
      assert.match(await c.readHttpResponse(), /"result":"5"/);
    });
  });
});

Deno.test("malformed records during the handshake get unexpected_message", async () => {
  await withGateway(async (port) => {
    // TLS 1.2: a ChangeCipherSpec of two bytes (RFC 5246 7.1: one byte, 1).
    const c = await TlsClient.connect(port, { version: "1.2" });
    try {
      await c.write(records(clientHello({ version: "1.2" })));
      const first = await c.readAnswer();
      assert.equal(first.kind, "record");
      await c.sendRecord(CHANGE_CIPHER_SPEC, Uint8Array.of(1, 1), { encrypted: false });
      let a: Answer;
      do a = await c.readAnswer(); while (a.kind === "record");
      assert.deepEqual(a, { kind: "alert", level: 2, description: UNEXPECTED_MESSAGE });
    } finally {
      c.close();
    }
    // An empty application_data record inside a fragmented ClientHello.
    const hello = records(clientHello({ version: "1.3" }), 100);
    const empty = Uint8Array.of(APPLICATION_DATA, 3, 3, 0, 0);
    const mixed = new Uint8Array(hello.length + empty.length);
    mixed.set(hello.subarray(0, 105));
    mixed.set(empty, 105);
    mixed.set(hello.subarray(105), 105 + empty.length);
    assert.deepEqual((await sendHello(port, mixed)).answer, alert(UNEXPECTED_MESSAGE));
  });
});
