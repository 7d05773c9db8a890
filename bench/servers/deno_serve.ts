/**
 * System (7): one Deno.serve process with Deno's own TLS (rustls), serving
 * /sum and /product itself — what a Deno user gets with no isolation.
 *
 *   deno run --allow-net=127.0.0.1 --allow-read bench/servers/deno_serve.ts \
 *     --port 18750 --cert .local/certs/cert.pem --key .local/certs/key.pem
 *
 * @module
 */

import { parseArgs } from "node:util";
import { printStatsOnSignal } from "../../src/operations/lifecycle.ts";
import { both } from "./functions.ts";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "18750" },
    cert: { type: "string", default: ".local/certs/cert.pem" },
    key: { type: "string", default: ".local/certs/key.pem" },
  },
});

const stats = { requests: 0 };
printStatsOnSignal(() => ({ ...stats }));

Deno.serve({
  hostname: "127.0.0.1",
  port: Number(values.port),
  cert: Deno.readTextFileSync(values.cert!),
  key: Deno.readTextFileSync(values.key!),
  onListen: ({ port }) => console.log(`deno-serve listening on https://127.0.0.1:${port}`),
}, (req) => {
  stats.requests++;
  return both(req);
});
