/**
 * The shim's epoll thread and JavaScript's side of it (ffi/shim.ts
 * `Poller`), with real sockets: events queued while JavaScript is busy all
 * arrive, in one wake, once it is idle again; an event queued for an fd that
 * was closed meanwhile never reaches the fd that reused its number.
 */

import assert from "node:assert/strict";
import { closeFd, duplicateFd, EDGE, Poller, READABLE, sendMessage } from "../ffi/shim.ts";
import { seqpacketPair } from "./support/sockets.ts";
import { waitUntil } from "./support/wait.ts";

/** Keep the JavaScript thread busy (the epoll thread goes on meanwhile). */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) { /* busy */ }
}

Deno.test({
  name:
    "events that come while JavaScript is busy arrive once it is idle; one for a closed fd never reaches the fd that reused its number",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-poller-" });
    const seen: number[] = [];
    const poller = new Poller((fd) => seen.push(fd));
    const pairs: [number, number][] = [];
    try {
      for (let i = 0; i < 3; i++) pairs.push(await seqpacketPair(dir));
      // 1. Three fds become readable while JavaScript does not yield: the
      //    epoll thread queues them; they are handled after.
      for (const [a] of pairs) poller.watch(a, READABLE | EDGE);
      for (const [, b] of pairs) assert.ok(sendMessage(b, new Uint8Array([1])) > 0);
      busy(50);
      assert.equal(seen.length, 0, "nothing runs while JavaScript is busy");
      await waitUntil(() => seen.length === 3, { what: "the three events" });
      assert.deepEqual(seen.toSorted(), pairs.map(([a]) => a).toSorted());

      // 2. An event is queued for `a`, then `a` is closed and its number
      //    reused before JavaScript takes the event: the new fd's handler
      //    must not get it (the generation differs).
      seen.length = 0;
      const [a, b] = pairs[0];
      assert.ok(sendMessage(b, new Uint8Array([2])) > 0); // a: readable again (a new edge)
      busy(50); // queued meanwhile, for the old `a`
      poller.forget(a);
      closeFd(a);
      // Copies of a quiet socket take the lowest free numbers, up to `a`'s.
      const fillers: number[] = [];
      let reused = duplicateFd(pairs[2][1]);
      while (reused !== a && fillers.length < 64) {
        fillers.push(reused);
        reused = duplicateFd(pairs[2][1]);
      }
      for (const f of fillers) closeFd(f);
      assert.equal(reused, a, "the number is reused");
      poller.watch(reused, READABLE | EDGE); // nothing to read on it
      // A later event proves the queue was taken.
      const [x, y] = pairs[1];
      assert.ok(sendMessage(y, new Uint8Array([3])) > 0);
      await waitUntil(() => seen.includes(x), { what: "the later event" });
      assert.deepEqual(seen, [x], "the stale event was dropped");
      closeFd(reused);
      pairs[0] = [-1, b];
    } finally {
      await poller.close();
      for (const [p, q] of pairs) {
        closeFd(p);
        closeFd(q);
      }
      await Deno.remove(dir, { recursive: true });
    }
  },
});
