/**
 * The two benchmark functions for the comparison servers (bound, Deno.serve,
 * nginx backends), with exactly the handler logic of workers/sum.ts and
 * workers/product.ts: those files call serveFunction() when imported, so the
 * two lines of each are repeated here over the same modules (mod.ts's json,
 * workers/decimal.ts).
 *
 * @module
 */

import { bytes, HttpError, json } from "../../mod.ts";
import { add, format, multiply, operands } from "../../workers/decimal.ts";

/** workers/sum.ts's handler. */
export function sum(req: Request): Response {
  const { a, b, x, y } = operands(req);
  return json({ op: "sum", a, b, result: format(add(x, y)) });
}

/** workers/product.ts's handler. */
export function product(req: Request): Response {
  const { a, b, x, y } = operands(req);
  return json({ op: "product", a, b, result: format(multiply(x, y)) });
}

/** The handler serving `path` ("/sum", "/sum/x", "/product"), or undefined. */
export function handlerFor(path: string): ((req: Request) => Response) | undefined {
  if (path === "/sum" || path.startsWith("/sum/")) return sum;
  if (path === "/product" || path.startsWith("/product/")) return product;
  return undefined;
}

/** A fetch handler for both routes, as a Deno.serve user would write it:
 * 404 for other paths, an HttpError answered as JSON with its status. */
export function both(req: Request): Response {
  const url = new URL(req.url);
  const h = handlerFor(url.pathname);
  if (!h) return json({ error: "not found", status: 404 }, { status: 404 });
  try {
    return h(req);
  } catch (e) {
    if (e instanceof HttpError) {
      return json({ error: e.message, status: e.status }, { status: e.status });
    }
    throw e;
  }
}

/** 1 MiB made once, for {@linkcode blob}. */
const BLOB = new Uint8Array(1 << 20).map((_, i) => (i * 7) & 0xff);

/** `?size=N` bytes (at most 1 MiB) of a buffer made at start, without a
 * copy: the body-size benchmark's function (bench/sizes.ts), the same in a
 * hot potato worker (bench/servers/blob_sum.ts) and a Deno.serve backend. */
export function blob(req: Request): Response {
  const q = req.url.indexOf("size=");
  const size = q < 0 ? 1024 : Math.min(BLOB.length, Number(req.url.slice(q + 5)) || 0);
  return bytes(BLOB.subarray(0, size));
}
