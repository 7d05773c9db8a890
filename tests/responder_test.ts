/**
 * Tests for src/connection/responder.ts and src/http/response_body.ts: the synchronous path
 * (a synchronous handler returning `json()`) and the asynchronous one answer
 * with the same bytes; a body read by the handler, a stream body, errors and
 * timeouts take the standard path.
 *
 * @module
 */

import assert from "node:assert/strict";
import { parseRequest, type RequestHead } from "../src/http/http.ts";
import { HttpError, type Peer, Responder } from "../src/connection/responder.ts";
import { json, knownBody } from "../src/http/response_body.ts";

const peer: Peer = {
  info: { connId: 7, gatewayId: 1, handoffs: 2, peer: "127.0.0.1:5000", sni: "", alpn: "" },
  protocol: "TLSv1.3",
};

function head(raw: string): RequestHead {
  const r = parseRequest(new TextEncoder().encode(raw));
  if (r.kind !== "request") throw new Error(`test request does not parse: ${r.kind}`);
  return r.head;
}

const GET = head("GET /x?a=1 HTTP/1.1\r\nhost: example.test\r\n\r\n");
const EMPTY = new Uint8Array(0);

function responder(handler: ConstructorParameters<typeof Responder>[0], timeoutMs = 1000) {
  return new Responder(handler, {
    name: "t",
    label: "t/1",
    handlerTimeoutMs: timeoutMs,
    keepAlive: (h) => h.keepAlive,
  });
}

function text(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

Deno.test("json() remembers its body until the body is read", async () => {
  const res = json({ a: 1 }, { status: 201, headers: { "x-a": "b" } });
  assert.equal(knownBody(res), '{"a":1}\n');
  assert.equal(res.status, 201);
  assert.equal(res.headers.get("content-type"), "application/json");
  assert.equal(res.headers.get("x-a"), "b");
  assert.equal(await res.text(), '{"a":1}\n');
  assert.equal(knownBody(res), undefined, "a read body is not reused");
  assert.equal(knownBody(new Response("x")), undefined);
});

Deno.test("a synchronous handler with json() is answered without a promise", () => {
  let seen: Request | undefined;
  const answer = responder((req) => {
    seen = req;
    return json({ ok: true });
  }).respond(peer, GET, EMPTY);
  assert.ok(!(answer instanceof Promise));
  assert.equal(seen?.url, "https://example.test/x?a=1");
  assert.equal(seen?.method, "GET");
  assert.equal(answer.status, 200);
  assert.equal(answer.keepAlive, true);
  const out = text(answer.bytes);
  assert.match(out, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(out, /\r\ncontent-type: application\/json\r\n/);
  assert.match(out, /\r\nx-hotpotato-worker: t\/1\r\nx-hotpotato-handoffs: 2\r\n/);
  assert.match(out, /\r\nx-hotpotato-connection: 7\r\n/);
  assert.ok(out.endsWith('\r\ncontent-length: 12\r\nconnection: keep-alive\r\n\r\n{"ok":true}\n'));
});

Deno.test("the asynchronous paths give the same bytes as the synchronous one", async () => {
  const sync = responder(() => json({ ok: true })).respond(peer, GET, EMPTY) as {
    bytes: Uint8Array;
  };
  const asyncHandler = await responder(() => Promise.resolve(json({ ok: true })))
    .respond(peer, GET, EMPTY);
  const streamBody = await responder(() =>
    new Response(
      new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode('{"ok":true}\n'));
          c.close();
        },
      }),
      { headers: { "content-type": "application/json" } },
    )
  ).respond(peer, GET, EMPTY);
  assert.equal(text(asyncHandler.bytes), text(sync.bytes));
  // A stream whose bytes are all there at once is sent whole, with its length.
  assert.equal(text(streamBody.bytes), text(sync.bytes));
  assert.equal(streamBody.body, undefined);
  // One still being produced is streamed: the head says chunked, the body follows.
  const producing = await responder(() =>
    new Response(
      new ReadableStream({
        async pull(c) {
          await new Promise((ok) => setTimeout(ok, 5));
          c.enqueue(new TextEncoder().encode('{"ok":true}\n'));
          c.close();
        },
      }),
      { headers: { "content-type": "application/json" } },
    )
  ).respond(peer, GET, EMPTY);
  const head = text(sync.bytes).replace(
    'content-length: 12\r\nconnection: keep-alive\r\n\r\n{"ok":true}\n',
    "transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n",
  );
  assert.equal(text(producing.bytes), head);
  assert.equal(producing.body?.framing, "chunked");
  assert.equal(await new Response(producing.body!.stream).text(), '{"ok":true}\n');
});

Deno.test("a handler that read its own json() body still answers it", async () => {
  const answer = await responder(async () => {
    const res = json({ n: 1 });
    const copy = res.clone();
    await res.text(); // the original's body is used up
    return copy;
  }).respond(peer, GET, EMPTY);
  assert.ok(text(answer.bytes).endsWith('\r\n\r\n{"n":1}\n'));
});

Deno.test("errors: HttpError, a throw, a non-Response, a timeout", async () => {
  const cases: [ConstructorParameters<typeof Responder>[0], number, string][] = [
    [
      () => {
        throw new HttpError(418, "short and stout");
      },
      418,
      "short and stout",
    ],
    [
      () => {
        throw new Error("boom");
      },
      500,
      "function failed",
    ],
    [() => "nope" as unknown as Response, 500, "function failed"],
    [() => new Promise<Response>(() => {}), 504, "function timed out"],
  ];
  for (const [handler, status, message] of cases) {
    const answer = await responder(handler, 50).respond(peer, GET, EMPTY);
    assert.equal(answer.status, status);
    const body = text(answer.bytes).split("\r\n\r\n")[1];
    assert.deepEqual(JSON.parse(body), { error: message, status });
  }
});

Deno.test("POST passes its body; HEAD answers without one; close is honoured", async () => {
  const post = head(
    "POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc",
  );
  const answer = await responder(async (req) => json({ got: await req.text() }))
    .respond(peer, post, new TextEncoder().encode("abc"));
  assert.equal(answer.keepAlive, false);
  assert.ok(text(answer.bytes).endsWith('connection: close\r\n\r\n{"got":"abc"}\n'));
  const answerHead = responder(() => json({ ok: true })).respond(
    peer,
    head("HEAD /x HTTP/1.1\r\nhost: h\r\n\r\n"),
    EMPTY,
  ) as { bytes: Uint8Array };
  const out = text(answerHead.bytes);
  assert.ok(out.endsWith("content-length: 12\r\nconnection: keep-alive\r\n\r\n"), out);
});

Deno.test("a json() body with non-ASCII text is sent as UTF-8 with its byte length", () => {
  const answer = responder(() => json({ name: "Zoë ☕" })).respond(peer, GET, EMPTY) as {
    bytes: Uint8Array;
  };
  const body = new TextEncoder().encode('{"name":"Zoë ☕"}\n');
  const out = text(answer.bytes);
  assert.match(out, new RegExp(`\r\ncontent-length: ${body.length}\r\n`));
  assert.deepEqual(answer.bytes.subarray(answer.bytes.length - body.length), body);
});

Deno.test("bytes(): sent as they are with their length; still readable as a body", async () => {
  const { bytes } = await import("../src/http/response_body.ts");
  const data = new Uint8Array(100_000).map((_, i) => i & 0xff);
  const answer = await responder(() => bytes(data)).respond(peer, GET, EMPTY);
  // A large body is written after its head, the very same bytes (no copy).
  assert.equal(answer.tail, data);
  assert.match(text(answer.bytes), /\r\ncontent-type: application\/octet-stream\r\n/);
  assert.match(text(answer.bytes), /\r\ncontent-length: 100000\r\nconnection: keep-alive\r\n\r\n$/);
  // Middleware that reads the body gets the same bytes.
  const res = bytes(data, { headers: { "content-type": "text/plain" } });
  assert.equal(res.headers.get("content-type"), "text/plain");
  assert.deepEqual(new Uint8Array(await res.arrayBuffer()), data);
});
