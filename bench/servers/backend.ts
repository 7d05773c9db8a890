/**
 * System (5)'s backends: a plain-HTTP Deno.serve process for ONE function
 * (nginx terminates TLS and proxies /sum to one, /product to the other, with
 * upstream keep-alive).
 *
 *   deno run --allow-net=127.0.0.1 bench/servers/backend.ts --function sum --port 18761
 *
 * `--function blob` answers `?size=N` bytes instead (bench/sizes.ts).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { HttpError, json } from "../../mod.ts";
import { printStatsOnSignal } from "../../src/operations/lifecycle.ts";
import { blob, product, sum } from "./functions.ts";

const { values } = parseArgs({
  options: {
    function: { type: "string", default: "sum" },
    port: { type: "string", default: "18761" },
  },
});
const fn = values.function === "product" ? product : values.function === "blob" ? blob : sum;
const stats = { requests: 0 };
printStatsOnSignal(() => ({ ...stats }));

Deno.serve({
  hostname: "127.0.0.1",
  port: Number(values.port),
  onListen: ({ port }) =>
    console.log(`backend ${values.function} listening on http://127.0.0.1:${port}`),
}, (req) => {
  stats.requests++;
  try {
    return fn(req);
  } catch (e) {
    if (e instanceof HttpError) {
      return json({ error: e.message, status: e.status }, { status: e.status });
    }
    throw e;
  }
});
