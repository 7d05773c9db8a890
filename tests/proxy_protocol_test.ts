// handoff-mode: both
/**
 * The PROXY protocol v2 (issue 12): with `--proxy-protocol on` the gateway
 * takes connections only from `--proxy-trusted` peers that start with a
 * valid header, and the client address in it is the one logs, handlers and
 * handoffs see. Real gateway, workers and TLS clients (the header is written
 * on the TCP socket before TLS starts, as HAProxy's send-proxy-v2 does).
 */

import assert from "node:assert/strict";
import { proxiedPeer, ProxyProtocol } from "../src/gateway/proxy_protocol.ts";
import { parseCidr } from "../src/operations/cidr.ts";
import { CA_CERT, System } from "./support/system.ts";

const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/** A PROXY v2 header: PROXY over TCP/IPv4 from `src`, or LOCAL. */
function header(src?: [string, number]): Uint8Array {
  if (!src) return new Uint8Array([...SIG, 0x20, 0x00, 0, 0]);
  const body = new Uint8Array(12);
  const v = new DataView(body.buffer);
  src[0].split(".").forEach((b, i) => (body[i] = Number(b)));
  body.set([127, 0, 0, 1], 4);
  v.setUint16(8, src[1]);
  v.setUint16(10, 8443);
  return new Uint8Array([...SIG, 0x21, 0x11, 0, 12, ...body]);
}

/** Connect, write `prefix` in the clear, then TLS; GET each path. */
async function via(port: number, prefix: Uint8Array, paths: string[]): Promise<string[]> {
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  await tcp.write(prefix);
  const tls = await Deno.startTls(tcp, {
    hostname: "localhost",
    caCerts: [await Deno.readTextFile(CA_CERT)],
  });
  const out: string[] = [];
  try {
    for (const p of paths) {
      await tls.write(new TextEncoder().encode(`GET ${p} HTTP/1.1\r\nhost: localhost\r\n\r\n`));
      let text = "";
      const buf = new Uint8Array(8192);
      while (!/\r\n\r\n[\s\S]*\}\n?$/.test(text)) {
        const n = await tls.read(buf);
        if (n === null) throw new Error(`closed after ${JSON.stringify(text)}`);
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      out.push(text.slice(text.indexOf("\r\n\r\n") + 4));
    }
  } finally {
    tls.close();
  }
  return out;
}

Deno.test("PROXY v2 parsing: ranges, IPv4 and IPv6 addresses", () => {
  const p = new ProxyProtocol(["10.0.0.0/8", "::1/128", "192.168.1.7"]);
  assert.equal(p.trusts("10.200.3.4:5"), true);
  assert.equal(p.trusts("11.0.0.1:5"), false);
  assert.equal(p.trusts("[::1]:80"), true);
  assert.equal(p.trusts("[::2]:80"), false);
  assert.equal(p.trusts("192.168.1.7:1"), true);
  assert.equal(p.trusts("192.168.1.8:1"), false);
  assert.throws(() => parseCidr("10.0.0.0/33"));
  assert.throws(() => parseCidr("nope"));
  const v4 = new Uint8Array([203, 0, 113, 7, 10, 0, 0, 1, 0x10, 0x92, 0x20, 0xfb]);
  assert.deepEqual(proxiedPeer(0x11, v4), { ok: true, peer: "203.0.113.7:4242" });
  const v6 = new Uint8Array(36);
  v6.set([0x20, 0x01, 0x0d, 0xb8], 0);
  v6[15] = 1;
  v6.set([0x01, 0xbb], 32);
  assert.deepEqual(proxiedPeer(0x21, v6), { ok: true, peer: "[2001:db8::1]:443" });
  const mapped = new Uint8Array(36);
  mapped.set([0xff, 0xff, 10, 1, 2, 3], 10);
  mapped.set([0x00, 0x50], 32);
  assert.deepEqual(proxiedPeer(0x21, mapped), { ok: true, peer: "10.1.2.3:80" });
  assert.throws(() => parseCidr("10.0.0.0/")); // not /0: that would trust everyone
  assert.throws(() => parseCidr("10.0.0.0/0x8"));
  assert.deepEqual(proxiedPeer(0x11, v4.subarray(0, 8)), { ok: false, reason: "malformed" });
});

Deno.test("--proxy-protocol on: the header's client address reaches logs, handlers and handoffs; anything else is closed", async () => {
  const sys = await System.start({
    gatewayArgs: ["--proxy-protocol", "on", "--handshake-timeout", "1"],
    workers: [
      { name: "whoami", file: "tests/fixtures/whoami.ts" },
      { name: "sum", file: "workers/sum.ts" },
    ],
  });
  try {
    // Through a proxy: the handler sees the client, also after a route change.
    const [first, sum, again] = await via(sys.port, header(["203.0.113.7", 4242]), [
      "/whoami",
      "/sum?a=1&b=2",
      "/whoami",
    ]);
    assert.deepEqual(JSON.parse(first), { hostname: "203.0.113.7", port: 4242 });
    assert.equal(JSON.parse(sum).result, "3");
    assert.deepEqual(JSON.parse(again), { hostname: "203.0.113.7", port: 4242 });
    await sys.gateway.waitFor(/TLS handshake complete: conn \d+ from 203\.0\.113\.7:4242/);
    // LOCAL (the balancer's own check): its own address.
    const [local] = await via(sys.port, header(), ["/whoami"]);
    assert.equal(JSON.parse(local).hostname, "127.0.0.1");
    // No header, a broken one, or silence: closed before TLS.
    await assert.rejects(via(sys.port, new Uint8Array(0), ["/whoami"]));
    const broken = header(["203.0.113.7", 1]);
    broken[12] = 0x31; // version 3
    await assert.rejects(via(sys.port, broken, ["/whoami"]));
    // A trusted peer that sends nothing is closed at --handshake-timeout (1 s here).
    const silent = await Deno.connect({ hostname: "127.0.0.1", port: sys.port });
    const started = Date.now();
    const eof = await silent.read(new Uint8Array(16)).catch(() => null);
    silent.close();
    assert.equal(eof, null);
    assert.ok(Date.now() - started < 5000, `closed after ${Date.now() - started} ms`);
    const metrics = await (await fetch(`http://127.0.0.1:${sys.adminPort}/metrics`)).text();
    assert.match(metrics, /hotpotato_proxy_refused_total\{reason="malformed"\} [1-9]/);
    assert.match(metrics, /hotpotato_proxy_refused_total\{reason="timeout"\} 1/);
  } finally {
    await sys.stop();
  }
});

Deno.test("--proxy-protocol on: a peer outside --proxy-trusted is refused", async () => {
  const sys = await System.start({
    gatewayArgs: ["--proxy-protocol", "on", "--proxy-trusted", "10.0.0.0/8"],
  });
  try {
    await assert.rejects(via(sys.port, header(["203.0.113.7", 4242]), ["/sum?a=1&b=2"]));
    const metrics = await (await fetch(`http://127.0.0.1:${sys.adminPort}/metrics`)).text();
    assert.match(metrics, /hotpotato_proxy_refused_total\{reason="untrusted"\} 1/);
    // A bad range is a one-line error at start.
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--allow-ffi",
        "--allow-env",
        "gateway.ts",
        "--proxy-trusted",
        "10.0.0.0/99",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 2);
    assert.match(
      new TextDecoder().decode(out.stderr),
      /--proxy-trusted: "10\.0\.0\.0\/99" has a bad prefix length/,
    );
  } finally {
    await sys.stop();
  }
});
