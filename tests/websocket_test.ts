/**
 * WebSockets end to end: the real gateway and workers with examples/echo.ts,
 * Deno's own `WebSocket` client (in a subprocess that trusts the test CA)
 * and a raw client that writes frames itself (tests/support/websocket_client.ts)
 * for what a well-behaved client never sends. (An upgraded connection while
 * other connections change function: websocket_moves_test.ts.)
 */

import assert from "node:assert/strict";
import { CA_CERT, System } from "./support/system.ts";
import { echoes, RawWebSocket, upgradeRequest } from "./support/websocket_client.ts";
import { waitUntil } from "./support/wait.ts";
import { closePayload, type Incoming, Opcode } from "../src/http/websocket_frames.ts";

const dec = new TextDecoder();
const enc = new TextEncoder();

const WORKERS = [
  { name: "sum", file: "workers/sum.ts" },
  { name: "echo", file: "examples/echo.ts" },
];

/** Answer the server's close frame with ours, then expect it to close the
 * connection. The server's close frame must be `code`. */
async function closesWith(ws: RawWebSocket, code: number, what: string): Promise<Incoming> {
  let e = await ws.next();
  while (e && (e.type === "ping" || e.type === "pong")) e = await ws.next();
  assert.equal(e?.type, "close", `${what}: ${JSON.stringify(e)}`);
  assert.equal((e as { code: number }).code, code, `${what}: ${JSON.stringify(e)}`);
  await ws.send(Opcode.Close, closePayload(code)).catch(() => {});
  assert.ok(await ws.closedByServer(), `${what}: the server closes the connection`);
  return e!;
}

async function metric(sys: System, series: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${sys.adminPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Wait (up to 5 s: workers report every second) until `series` is `n`. */
async function metricBecomes(sys: System, series: string, n: number): Promise<void> {
  let v: number | undefined;
  await waitUntil(async () => (v = await metric(sys, series)) === n, {
    what: () => `${series} to be ${n} (it is ${v})`,
    timeoutMs: 5000,
    everyMs: 100,
  });
}

Deno.test("Deno's WebSocket client: text and binary echo, 1 MB, clean close both ways", async () => {
  const sys = await System.start({ workers: WORKERS });
  try {
    const script = `
      const url = "wss://localhost:${sys.port}/echo";
      const done = (ws) => new Promise((ok) => ws.addEventListener("close", (e) =>
        ok({ code: e.code, reason: e.reason, wasClean: e.wasClean })));
      const a = new WebSocket(url);
      a.binaryType = "arraybuffer";
      const got = [];
      a.onopen = () => {
        a.send("hello ✓");
        a.send(new Uint8Array([1, 2, 3, 255]));
        a.send("x".repeat(1 << 20));
      };
      a.onmessage = (e) => {
        got.push(typeof e.data === "string"
          ? (e.data.length > 100 ? "text of " + e.data.length : e.data)
          : "binary " + [...new Uint8Array(e.data)].join(","));
        if (got.length === 3) a.send("close 3001 bye now");
      };
      const closedByServer = await done(a);
      const b = new WebSocket(url);
      b.onopen = () => b.send("first");
      b.onmessage = () => b.close(4000, "client bye");
      const closedByClient = await done(b);
      console.log(JSON.stringify({ got, protocol: a.protocol, closedByServer, closedByClient }));
    `;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--cert", CA_CERT, script],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(out.code, 0, dec.decode(out.stderr));
    assert.deepEqual(JSON.parse(dec.decode(out.stdout)), {
      got: ["hello ✓", "binary 1,2,3,255", `text of ${1 << 20}`],
      protocol: "",
      closedByServer: { code: 3001, reason: "bye now", wasClean: true },
      // The server echoes the client's code.
      closedByClient: { code: 4000, reason: "", wasClean: true },
    });
    // Each upgrade was answered once, with a 101.
    await sys.settle();
    assert.equal(sys.worker("echo").count(/GET \/echo\W+101\b/), 2);
  } finally {
    await sys.stop();
  }
});

Deno.test("raw frames: a fragmented 1 MB message with pings between its fragments, ping/pong", async () => {
  const sys = await System.start({ workers: WORKERS });
  try {
    const ws = await RawWebSocket.open(sys.port);
    await ws.send(Opcode.Ping, "are you there?");
    assert.deepEqual(await ws.next(), { type: "pong", data: enc.encode("are you there?") });
    const message = new Uint8Array(1 << 20);
    for (let off = 0; off < message.length; off += 65536) {
      crypto.getRandomValues(message.subarray(off, off + 65536));
    }
    const piece = 65536;
    for (let off = 0; off < message.length; off += piece) {
      const opcode = off === 0 ? Opcode.Binary : Opcode.Continuation;
      const fin = off + piece >= message.length;
      await ws.send(opcode, message.subarray(off, off + piece), { fin });
      if (off === 4 * piece) await ws.send(Opcode.Ping, "mid");
    }
    assert.deepEqual(await ws.next(), { type: "pong", data: enc.encode("mid") });
    const echoed = await ws.next();
    assert.equal(echoed?.type, "binary");
    assert.deepEqual((echoed as { data: Uint8Array }).data, message);
    // A fragmented text message whose fragments split a character.
    const text = enc.encode("naïve ✓ text");
    await ws.send(Opcode.Text, text.subarray(0, 3), { fin: false });
    await ws.send(Opcode.Continuation, text.subarray(3, 9), { fin: false });
    await ws.send(Opcode.Continuation, text.subarray(9));
    assert.deepEqual(await ws.next(), { type: "text", data: "naïve ✓ text" });
    // The client closes with a code and a reason; the server echoes the code.
    await ws.send(Opcode.Close, closePayload(1000, "done here"));
    assert.deepEqual(await ws.next(), { type: "close", code: 1000, reason: "" });
    assert.ok(await ws.closedByServer());
  } finally {
    await sys.stop();
  }
});

Deno.test("raw frames: malformed frames get their close code and leave other connections alone", async () => {
  const sys = await System.start({ workers: WORKERS });
  try {
    const bystander = await RawWebSocket.open(sys.port);
    await echoes(bystander, "before");
    const cases: [string, string, (ws: RawWebSocket) => Promise<void>, number][] = [
      ["unmasked frame", "/echo", (ws) => ws.send(Opcode.Text, "hi", { mask: false }), 1002],
      ["opcode 3", "/echo", (ws) => ws.send(3, "x"), 1002],
      ["reserved bit", "/echo", (ws) => ws.send(Opcode.Text, "x", { rsv: 4 }), 1002],
      [
        "bad UTF-8",
        "/echo",
        (ws) => ws.send(Opcode.Text, new Uint8Array([0x68, 0xc3, 0x28])),
        1007,
      ],
      ["fragmented ping", "/echo", (ws) => ws.send(Opcode.Ping, "x", { fin: false }), 1002],
      ["ping of 126 bytes", "/echo", (ws) => ws.send(Opcode.Ping, new Uint8Array(126)), 1002],
      ["continuation first", "/echo", (ws) => ws.send(Opcode.Continuation, "x"), 1002],
      ["close code 1005", "/echo", (ws) => ws.send(Opcode.Close, closePayload(1005)), 1002],
      ["close code 2000", "/echo", (ws) => ws.send(Opcode.Close, closePayload(2000)), 1002],
      ["oversized", "/echo?max=1000", (ws) => ws.send(Opcode.Binary, new Uint8Array(1001)), 1009],
      [
        "oversized across fragments",
        "/echo?max=100000",
        async (ws) => {
          await ws.send(Opcode.Binary, new Uint8Array(60000), { fin: false });
          await ws.send(Opcode.Continuation, new Uint8Array(60000));
        },
        1009,
      ],
      [
        "an HTTP request after the upgrade",
        "/echo",
        (ws) => ws.write(enc.encode("GET /sum?a=1&b=2 HTTP/1.1\r\nhost: localhost\r\n\r\n")),
        1002,
      ],
    ];
    for (const [name, path, send, code] of cases) {
      const ws = await RawWebSocket.open(sys.port, path);
      await send(ws);
      await closesWith(ws, code, name);
      await echoes(bystander, name);
    }
    // A client that never answers the close frame: closed after a few seconds.
    const mute = await RawWebSocket.open(sys.port);
    await mute.send(3, "x");
    const e = await mute.next();
    assert.deepEqual(e && e.type === "close" && e.code, 1002);
    const started = Date.now();
    assert.ok(await mute.closedByServer(6000));
    const waited = Date.now() - started;
    assert.ok(waited > 2000 && waited < 5000, `closed after ${waited} ms`);
    await echoes(bystander, "after");
    bystander.close(); // (left open, it would hold the stop for the closing handshake's 3 s)
  } finally {
    await sys.stop();
  }
});

Deno.test("the server's WebSocket API: events, Blobs in order, listeners that throw, close events", async () => {
  const sys = await System.start({
    workers: [...WORKERS, { name: "wsapi", file: "tests/fixtures/websocket_api.ts" }],
  });
  try {
    const wsapi = sys.worker("wsapi");
    const ws = await RawWebSocket.open(sys.port, "/wsapi?x=1");
    await ws.send(Opcode.Text, "facts");
    const facts = await ws.next();
    assert.equal(facts?.type, "text");
    assert.deepEqual(JSON.parse((facts as { data: string }).data), {
      sendWhileConnecting: "InvalidStateError",
      connecting: 0,
      open: 1,
      badCode: "InvalidAccessError",
      longReason: "SyntaxError",
      bufferedAmount: 0,
      protocol: "",
      url: "wss://localhost/wsapi?x=1",
      constants: [0, 1, 2, 3],
    });
    // A Blob goes back before the text sent after it.
    await ws.send(Opcode.Binary, new Uint8Array([7, 8, 9]));
    assert.deepEqual(await ws.next(), { type: "binary", data: new Uint8Array([7, 8, 9]) });
    assert.deepEqual(await ws.next(), { type: "text", data: "size 3" });
    // The client closes: the server's close event has its code and reason.
    await ws.send(Opcode.Close, closePayload(4001, "bye ✓"));
    assert.deepEqual(await ws.next(), { type: "close", code: 4001, reason: "" });
    assert.ok(await ws.closedByServer());
    await wsapi.waitFor(/^wsapi close 4001 "bye ✓" true ""$/);
    // A protocol error: an error event, then close 1002, not clean.
    const bad = await RawWebSocket.open(sys.port, "/wsapi");
    await bad.send(Opcode.Text, "x", { mask: false });
    await closesWith(bad, 1002, "unmasked");
    await wsapi.waitFor(/^wsapi close 1002 "client frames must be masked" false "client frames/);
    // Gone without a close frame: 1006.
    const gone = await RawWebSocket.open(sys.port, "/wsapi");
    gone.close();
    await wsapi.waitFor(/^wsapi close 1006 "" false ""$/);
    // The listeners that threw were logged; the worker is still here.
    await sys.settle();
    assert.equal(wsapi.count(/a listener that throws/), 2);
    assert.equal(wsapi.count(/a listener that rejects/), 2);
    assert.equal(wsapi.exited, false);
  } finally {
    await sys.stop();
  }
});

Deno.test("upgrade validation: 400, 426 with the version, and the accept key", async () => {
  const sys = await System.start({ workers: WORKERS });
  try {
    const answer = async (headers: Record<string, string | null>, path = "/echo") => {
      const ws = await RawWebSocket.connect(sys.port);
      try {
        return await ws.request(upgradeRequest(path, headers));
      } finally {
        ws.close();
      }
    };
    const ok = await answer({});
    assert.equal(ok.status, 101);
    assert.equal(ok.headers.get("sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert.equal(ok.headers.get("upgrade"), "websocket");
    assert.equal(ok.headers.get("connection"), "upgrade");
    assert.match(ok.headers.get("x-hotpotato-worker") ?? "", /^echo\//);
    const bad: Record<string, string | null>[] = [
      { upgrade: null },
      { upgrade: "h2c" },
      { connection: "keep-alive" },
      { "sec-websocket-key": null },
      { "sec-websocket-key": "not-base64-of-16-bytes" },
    ];
    for (const headers of bad) {
      const r = await answer(headers);
      assert.equal(r.status, 400, JSON.stringify(headers));
    }
    const version = await answer({ "sec-websocket-version": "8" });
    assert.equal(version.status, 426);
    assert.equal(version.headers.get("sec-websocket-version"), "13");
    // A subprotocol the client offered is answered; one it did not is a 400.
    const chat = await answer({ "sec-websocket-protocol": "v1, chat" }, "/echo?protocol=chat");
    assert.equal(chat.status, 101);
    assert.equal(chat.headers.get("sec-websocket-protocol"), "chat");
    assert.equal((await answer({}, "/echo?protocol=chat")).status, 400);
  } finally {
    await sys.stop();
  }
});

Deno.test("keep-alive: an idle client is pinged, and closed with 1001 when it does not answer", async () => {
  const sys = await System.start({ workers: WORKERS });
  try {
    const quiet = await RawWebSocket.open(sys.port, "/echo?idle=1");
    const lively = await RawWebSocket.open(sys.port, "/echo?idle=1");
    const started = Date.now();
    // The lively client answers every ping, for 3 s.
    const answering = (async () => {
      const until = Date.now() + 3000;
      let pings = 0;
      while (Date.now() < until) {
        const e = await lively.next(until - Date.now()).catch(() => null);
        if (!e) break;
        if (e.type !== "ping") return JSON.stringify(e);
        pings++;
        await lively.send(Opcode.Pong, e.data);
      }
      return pings;
    })();
    assert.deepEqual(await quiet.next(), { type: "ping", data: new Uint8Array(0) });
    const pinged = Date.now() - started;
    assert.ok(pinged >= 400 && pinged < 1500, `pinged after ${pinged} ms`);
    const close = await quiet.next();
    assert.deepEqual(close, { type: "close", code: 1001, reason: "No response from ping frame." });
    assert.ok(await quiet.closedByServer());
    // After 3 s of pings and pongs the lively one is still open.
    const pings = await answering;
    assert.ok(typeof pings === "number" && pings >= 3, `pings: ${pings}`);
    await echoes(lively, "still here");
    lively.close();
  } finally {
    await sys.stop();
  }
});

Deno.test("a client that does not read is given up (send buffer limit), others go on", async () => {
  const sys = await System.start({ workers: WORKERS });
  try {
    const reader = await RawWebSocket.open(sys.port);
    const sleeper = await RawWebSocket.open(sys.port);
    await sleeper.send(Opcode.Text, "flood 100"); // 100 MiB, never read
    await reader.send(Opcode.Text, "flood 3");
    for (let i = 0; i < 3; i++) {
      const e = await reader.next();
      assert.equal(e?.type, "binary");
      assert.equal((e as { data: Uint8Array }).data.length, 1 << 20);
      assert.equal((e as { data: Uint8Array }).data[0], i);
    }
    // Over the limit at once; the close frame cannot get through, and the
    // closing handshake's 3 s (CLOSE_TIMEOUT_MS) end with the connection cut.
    await sys.worker("echo").waitFor(/^echo close 1008 /, 10_000);
    let received = 0;
    for (;;) {
      const e = await sleeper.next();
      if (e === null) break; // cut (in the middle of a frame, whatever was in flight)
      if (e.type === "close") {
        assert.equal(e.code, 1008);
        continue;
      }
      assert.equal(e.type, "binary");
      received++;
    }
    assert.ok(received < 40, `${received} MiB reached the client that did not read`);
    await echoes(reader, "still served");
    reader.close();
  } finally {
    await sys.stop();
  }
});

Deno.test("many WebSockets at once: every message echoed on every connection", async () => {
  const sys = await System.start({ workers: WORKERS });
  try {
    const sockets = await Promise.all(
      Array.from({ length: 50 }, () => RawWebSocket.open(sys.port)),
    );
    await Promise.all(sockets.map(async (ws, i) => {
      for (let m = 0; m < 5; m++) await echoes(ws, `conn ${i} message ${m}`);
      await ws.send(Opcode.Close, closePayload(1000));
      assert.deepEqual(await ws.next(), { type: "close", code: 1000, reason: "" });
      assert.ok(await ws.closedByServer());
    }));
    await metricBecomes(sys, 'hotpotato_websockets_open{function="echo"}', 0);
  } finally {
    await sys.stop();
  }
});

Deno.test("drain: open WebSockets get close 1001, and the worker exits", async () => {
  const sys = await System.start({ workers: WORKERS });
  try {
    const polite = await RawWebSocket.open(sys.port);
    const mute = await RawWebSocket.open(sys.port);
    await echoes(polite, "hi");
    const echo = sys.worker("echo");
    const started = Date.now();
    echo.child.kill("SIGTERM");
    await closesWith(polite, 1001, "drain");
    const e = await mute.next();
    assert.deepEqual(e, { type: "close", code: 1001, reason: "going away" });
    // The one that never answers is cut after the close timeout.
    assert.ok(await mute.closedByServer(8000));
    const status = await echo.child.status;
    assert.equal(status.code, 0);
    const took = Date.now() - started;
    assert.ok(took < 8000, `drained in ${took} ms`);
  } finally {
    await sys.stop();
  }
});
