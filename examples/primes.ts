/**
 * A CPU-bound function: `GET /primes?n=100000` counts the primes below n
 * (at most 10,000,000) by trial division, a few milliseconds of CPU at the
 * default. The load step of bench/cold_start.ts scales it from zero: each
 * worker is one JavaScript thread, so a busy pool grows.
 *
 * @module
 */

import { json, serveFunction } from "../mod.ts";

serveFunction({ name: "primes", routes: ["/primes"], methods: ["GET"] }, (req) => {
  const raw = new URL(req.url).searchParams.get("n") ?? "100000";
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 2 || n > 10_000_000) {
    return json({ error: "n must be an integer from 2 to 10000000" }, { status: 400 });
  }
  let count = 0;
  for (let i = 2; i < n; i++) {
    let prime = true;
    for (let d = 2; d * d <= i; d++) {
      if (i % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) count++;
  }
  return json({ n, primes: count });
});
