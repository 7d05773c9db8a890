/**
 * A streamed response: Server-Sent Events, one event a second with the
 * time, for as long as the client listens (`?count=N` stops after N).
 * Watch it with
 *
 *   curl -kN https://localhost:8443/clock
 *
 * Each event is sent as it is produced (chunked), a client that reads slowly
 * pauses the clock, and one that goes away cancels it (the stream's
 * `cancel` runs and the request's signal aborts). Start it with
 * `./hp worker examples/clock.ts`.
 *
 * @module
 */

import { serveFunction } from "../mod.ts";

const encoder = new TextEncoder();

serveFunction({ name: "clock", routes: ["/clock"], methods: ["GET"] }, (req) => {
  const params = new URL(req.url).searchParams;
  const count = Number(params.get("count") ?? "0");
  const every = Math.max(10, Math.min(Number(params.get("every") ?? "1000") || 1000, 60_000));
  let timer: ReturnType<typeof setTimeout> | undefined;
  let wake: (() => void) | undefined;
  let sent = 0;
  // A pull source: the next event is made only when the last one has been
  // taken, so a slow reader slows the clock instead of queueing events.
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent > 0) {
        await new Promise<void>((ok) => {
          wake = ok;
          timer = setTimeout(ok, every);
        });
        if (req.signal.aborted) return;
      }
      sent++;
      const data = JSON.stringify({ n: sent, time: new Date().toISOString() });
      controller.enqueue(encoder.encode(`id: ${sent}\nevent: tick\ndata: ${data}\n\n`));
      if (count > 0 && sent >= count) controller.close();
    },
    cancel() {
      clearTimeout(timer); // the client went away
      wake?.();
    },
  }, { highWaterMark: 0 });
  return new Response(body, {
    headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
  });
});
