// handoff-mode: both
/**
 * An upgraded connection stays on its worker while other connections change
 * function around it (route changes: the handoff mode decides how they
 * move), end to end with the real gateway and workers and examples/echo.ts.
 * (The other WebSocket tests: websocket_test.ts.)
 */

import assert from "node:assert/strict";
import { Client, System } from "./support/system.ts";
import { echoes, RawWebSocket } from "./support/websocket_client.ts";
import { waitUntil } from "./support/wait.ts";

const WORKERS = [
  { name: "sum", file: "workers/sum.ts" },
  { name: "echo", file: "examples/echo.ts" },
];

/** Wait (up to 5 s: workers report every second) until the echo worker's
 * open WebSockets are `n`. */
async function openBecomes(sys: System, n: number): Promise<void> {
  const labels = 'function="echo"';
  let v = -1;
  await waitUntil(async () => (v = await sys.metric("hotpotato_websockets_open", labels)) === n, {
    what: () => `hotpotato_websockets_open{${labels}} to be ${n} (it is ${v})`,
    timeoutMs: 5000,
    everyMs: 100,
  });
}

Deno.test("an upgraded connection stays on its worker while other connections move; counted in /metrics", async () => {
  const sys = await System.start({ workers: WORKERS });
  const client = await Client.connect(sys.port);
  try {
    const ws = await RawWebSocket.open(sys.port);
    await openBecomes(sys, 1);
    for (let i = 0; i < 3; i++) {
      // The other connection moves sum -> echo -> sum.
      const sum = await client.get("/sum?a=1&b=2");
      assert.match(sum.headers.get("x-hotpotato-worker") ?? "", /^sum\//);
      const plain = await client.get("/echo");
      assert.equal(plain.status, 400, "a plain GET is not an upgrade");
      assert.match(plain.headers.get("x-hotpotato-worker") ?? "", /^echo\//);
      await echoes(ws, `message ${i}`);
    }
    assert.ok(await sys.routeChanges(5) >= 5);
    // The client goes away without a close frame: the socket closes (1006).
    ws.close();
    await openBecomes(sys, 0);
  } finally {
    client.close();
    await sys.stop();
  }
});
