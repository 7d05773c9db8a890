/** The admin endpoint, in process: large answers are sent whole, bad requests get 4xx. */

import assert from "node:assert/strict";
import { AdminServer } from "../src/gateway/admin_server.ts";
import { EventLoop } from "../src/connection/event_loop.ts";

Deno.test({
  name: "admin server: a response larger than the socket buffer arrives whole",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const big = "m".repeat(4 * 1024 * 1024) + "\n";
    const admin = new AdminServer("127.0.0.1", 0, (head) => ({
      status: head.path === "/big" ? 200 : 404,
      contentType: "text/plain",
      body: head.path === "/big" ? big : "no\n",
    }));
    const port = admin.start();
    try {
      const res = await fetch(`http://127.0.0.1:${port}/big`);
      assert.equal(res.status, 200);
      assert.equal((await res.text()).length, big.length);
      const missing = await fetch(`http://127.0.0.1:${port}/other`);
      assert.equal(missing.status, 404);
      await missing.body?.cancel();
      // A malformed request gets a 400 and a close.
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(new TextEncoder().encode("GARBAGE\r\n\r\n"));
      const reply = new Uint8Array(512);
      const n = await conn.read(reply);
      assert.match(new TextDecoder().decode(reply.subarray(0, n ?? 0)), /^HTTP\/1\.1 400 /);
      conn.close();
    } finally {
      admin.stop();
      await EventLoop.instance().close();
    }
  },
});
