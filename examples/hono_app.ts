/**
 * An unchanged Hono app (npm:hono) served as a hot potato function: routing,
 * middleware and Hono's `streamSSE` helper, passed to `serveFunction` as
 * `app.fetch`. Start it with `./hp worker examples/hono_app.ts`, then
 *
 *   curl -k https://localhost:8443/hono/hello/Ada
 *   curl -kN https://localhost:8443/hono/events
 *
 * @module
 */

import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { serveFunction } from "../mod.ts";

const app = new Hono().basePath("/hono");

// Middleware: every answer says how long the app took.
app.use("*", async (c, next) => {
  const started = performance.now();
  await next();
  c.header("x-app-ms", (performance.now() - started).toFixed(2));
});

app.get("/hello/:name", (c) => c.json({ hello: c.req.param("name") }));

app.post("/echo", async (c) => c.json({ received: await c.req.json() }));

app.get("/events", (c) => {
  const count = Number(c.req.query("count") ?? "3");
  return streamSSE(c, async (stream) => {
    for (let i = 1; i <= count; i++) {
      await stream.writeSSE({ id: String(i), event: "count", data: JSON.stringify({ i }) });
      await stream.sleep(20);
    }
  });
});

app.notFound((c) => c.json({ error: "not in this app" }, 404));

serveFunction({ name: "hono", routes: ["/hono"] }, app.fetch);
