// handoff-mode: both
/**
 * The path a request is routed by is the pathname its handler sees
 * (src/http/request_path.ts): for tricky targets (dot segments, `%2e`,
 * backslashes, encoded slashes) the parser's `head.path`, the route it
 * matches and the real Responder's `new URL(req.url).pathname` agree, or the
 * target is refused with 400; end to end, `/sum/%2e%2e/product` is answered
 * by product, whether the gateway or the sum worker holding the connection
 * decides.
 */

import assert from "node:assert/strict";
import { parseRequest, type RequestHead } from "../src/http/http.ts";
import { routedPath } from "../src/http/request_path.ts";
import { type Peer, Responder } from "../src/connection/responder.ts";
import { RouteTable } from "../src/routing/route_table.ts";
import { Client, type HttpResponse, System } from "./support/system.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const peer: Peer = {
  info: { connId: 1, gatewayId: 1, handoffs: 0, peer: "127.0.0.1:5000", sni: "", alpn: "" },
  protocol: "TLSv1.3",
};
const ROUTES = new RouteTable([["/sum", "sum"], ["/product", "product"]]);

/** target → the routed path and function, or 400 (refused). */
const TABLE: [string, string | 400, string | undefined][] = [
  ["/sum/x/%2e%2e/admin", "/sum/admin", "sum"],
  ["/sum/%2e%2e/product", "/product", "product"],
  ["/sum/%2E%2e/product?a=2&b=3", "/product", "product"],
  ["/sum/.%2E/product", "/product", "product"],
  ["/sum/%2e./product", "/product", "product"],
  ["/sum\\..\\product", "/product", "product"],
  ["/sum\\x", "/sum/x", "sum"],
  ["/sum/..%2fproduct", "/sum/..%2fproduct", "sum"], // %2F is part of its segment
  ["/sum%2Fx", "/sum%2Fx", undefined], // one segment "sum%2Fx", not under /sum
  ["/%73um", "/%73um", undefined], // nothing else is decoded
  ["/./sum", "/sum", "sum"],
  ["//sum", "//sum", undefined], // the empty segment stays
  ["/sum/..", "/", undefined],
  ["/sum/%2e", "/sum/", "sum"],
  ["/sum/%2e%2e%2e", "/sum/%2e%2e%2e", "sum"], // three dots: not a dot segment
  ["/product/../../sum", "/sum", "sum"],
  ["/sum?x=/../product&y=a.b", "/sum", "sum"], // the query is not the path
  ["/sum/{x}", "/sum/%7Bx%7D", "sum"],
  ["/sum/app.js", "/sum/app.js", "sum"],
  ["/.well-known/x", "/.well-known/x", undefined],
  ["https://h/sum/%2e%2e/product?a=1", "/product", "product"], // absolute-form
  ["%2e%2e", 400, undefined],
  ["..", 400, undefined],
];

function parse(target: string): ReturnType<typeof parseRequest> {
  return parseRequest(enc.encode(`GET ${target} HTTP/1.1\r\nhost: h\r\n\r\n`));
}

/** The pathname the handler sees for `head`, through the real Responder. */
async function handlerPathname(head: RequestHead): Promise<string> {
  let seen: string | undefined;
  const responder = new Responder((req) => {
    seen = new URL(req.url).pathname;
    return new Response("ok");
  }, { name: "t", label: "t/1", handlerTimeoutMs: 1000, keepAlive: () => true });
  const answer = await responder.respond(peer, head, new Uint8Array(0));
  assert.match(dec.decode(answer.bytes), /^HTTP\/1\.1 200 /);
  return seen!;
}

Deno.test("the routed path of a tricky target is the pathname its handler sees, or it is refused", async () => {
  for (const [target, want, fn] of TABLE) {
    const r = parse(target);
    if (want === 400) {
      assert.equal(r.kind, "error", target);
      if (r.kind === "error") assert.equal(r.status, 400, target);
      continue;
    }
    assert.equal(r.kind, "request", target);
    if (r.kind !== "request") continue;
    assert.equal(r.head.path, want, target);
    const origin = target.startsWith("/") ? target : target.slice("https://h".length);
    assert.equal(r.head.path, new URL(`https://h${origin}`).pathname, target);
    assert.equal(await handlerPathname(r.head), r.head.path, target);
    assert.equal(ROUTES.match(r.head.path)?.value, fn, target);
  }
});

Deno.test("OPTIONS * keeps the path * and matches no route", () => {
  const r = parseRequest(enc.encode("OPTIONS * HTTP/1.1\r\nhost: h\r\n\r\n"));
  assert.equal(r.kind, "request");
  if (r.kind === "request") {
    assert.equal(r.head.path, "*");
    assert.equal(new RouteTable([["/", "all"]]).match(r.head.path), undefined);
  }
});

Deno.test("routedPath agrees with the WHATWG parser over random paths", () => {
  // Fixed seed (xorshift32): the same 20,000 paths every run.
  let s = 0x9e3779b9;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  const parts = ["/", "/", ".", "..", "%2e", "%2E", "%2f", "%", "\\", "a", "sum", '"', "{", "`"];
  for (let i = 0; i < 20_000; i++) {
    let p = "/";
    const n = Math.floor(next() * 8);
    for (let k = 0; k < n; k++) p += parts[Math.floor(next() * parts.length)];
    assert.equal(routedPath(p), new URL(`https://h${p}`).pathname, p);
  }
  assert.equal(routedPath("sum"), undefined, "not origin-form");
});

Deno.test("a path none of whose characters can change is not parsed (no new URL)", () => {
  const Real = globalThis.URL;
  let made = 0;
  globalThis.URL = class extends Real {
    constructor(url: string | URL, base?: string | URL) {
      super(url, base);
      made++;
    }
  } as typeof URL;
  try {
    for (const p of ["/sum", "/product/x", "/static/app.js", "/a-b_c~d/e%41"]) {
      assert.equal(routedPath(p), p);
    }
    assert.equal(made, 0);
    assert.equal(routedPath("/sum/%2e%2e/product"), "/product");
    assert.equal(made, 1, "a path that can change is parsed");
  } finally {
    globalThis.URL = Real;
  }
});

const holder = (res: HttpResponse) => res.headers.get("x-hotpotato-worker");

Deno.test("end to end: /sum/%2e%2e/product is answered by product, never by sum", async () => {
  const sys = await System.start();
  const clients: Client[] = [];
  try {
    const sum = `sum/${sys.worker("sum").child.pid}`;
    const product = `product/${sys.worker("product").child.pid}`;
    const isProduct = (res: HttpResponse, what: string) => {
      assert.equal(res.status, 200, `${what}: ${res.body}`);
      assert.equal(holder(res), product, what);
      assert.equal(JSON.parse(res.body).op, "product", what);
      assert.equal(JSON.parse(res.body).result, "6", what);
    };

    // A new connection: the gateway decides.
    const fresh = await Client.connect(sys.port);
    clients.push(fresh);
    isProduct(await fresh.get("/sum/%2e%2e/product?a=2&b=3"), "gateway, %2e%2e");

    // A connection sum holds: the sum worker decides, and must move it.
    const held = await Client.connect(sys.port);
    clients.push(held);
    let res = await held.get("/sum?a=1&b=1");
    assert.equal(holder(res), sum);
    isProduct(await held.get("/sum/%2e%2e/product?a=2&b=3"), "sum holds, %2e%2e");
    res = await held.get("/sum?a=1&b=1");
    assert.equal(holder(res), sum);
    isProduct(await held.get("/sum\\..\\product?a=2&b=3"), "sum holds, backslashes");
    res = await held.get("/sum?a=1&b=1");
    assert.equal(holder(res), sum);
    isProduct(await held.get("/sum/.%2E/product?a=2&b=3"), "sum holds, .%2E");

    // Now product holds it: the way back to sum goes by the normalized path too.
    res = await held.get("/product/%2e%2e/sum?a=2&b=3");
    assert.equal(holder(res), sum);
    assert.equal(JSON.parse(res.body).result, "5");

    // A target that is not a path: 400 with a short JSON body.
    const bad = await Client.connect(sys.port);
    clients.push(bad);
    res = await bad.get("%2e%2e");
    assert.equal(res.status, 400);
    assert.deepEqual(JSON.parse(res.body), { error: "invalid request-target", status: 400 });
  } finally {
    for (const c of clients) c.close();
    await sys.stop();
  }
});
