/**
 * A third function, to show how small one is: `GET /hello?name=Ada` answers
 * `{"hello":"Ada","connection":7,"handoffs":2}`. Start it at any time, with
 * the gateway running or not: `./hp worker examples/hello.ts`.
 *
 * @module
 */

import { json, serveFunction } from "../mod.ts";

serveFunction({ name: "hello", routes: ["/hello"], methods: ["GET"] }, (req, info) => {
  const name = new URL(req.url).searchParams.get("name") ?? "world";
  return json({ hello: name.slice(0, 100), connection: info.connId, handoffs: info.handoffs });
});
