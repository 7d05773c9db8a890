/**
 * Reaching a restarted gateway at once (issue 24): the control path is
 * watched (inotify, through the shim) while a worker or satellite waits to
 * reconnect, so it connects the moment a gateway binds the socket, not at
 * its next attempt (up to 2 s later). Real inotify, real Unix sockets, the
 * real GatewayLink.
 */

import assert from "node:assert/strict";
import { closeFd, unixListenOver } from "../ffi/shim.ts";
import { Listener } from "../src/connection/listener.ts";
import { GatewayLink } from "../src/handoff/gateway_link.ts";
import { PathWatch } from "../src/handoff/path_watch.ts";
import { logger } from "../src/operations/log.ts";
import { sleep, waitUntil } from "./support/wait.ts";

Deno.test("PathWatch hears its name appear (a socket renamed into place), not other names", async () => {
  const dir = Deno.makeTempDirSync();
  let seen = 0;
  const watch = PathWatch.open(`${dir}/gateway.sock`, () => seen++)!;
  try {
    assert.ok(watch);
    Deno.writeTextFileSync(`${dir}/other`, "");
    await sleep(100);
    assert.equal(seen, 0, "another name");
    const fd = unixListenOver(`${dir}/gateway.sock`); // bound as x.new, renamed over
    await waitUntil(() => seen === 1, { what: "the socket seen", timeoutMs: 2000 });
    closeFd(fd);
    watch.close();
    unixListenOver(`${dir}/gateway.sock`); // after close(): not heard
    await sleep(100);
    assert.equal(seen, 1);
  } finally {
    watch.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("PathWatch.open: undefined for a directory that does not exist (the caller polls)", () => {
  assert.equal(PathWatch.open("/nonexistent-hotpotato/gateway.sock", () => {}), undefined);
});

Deno.test("a link waiting out its 2 s backoff reaches a gateway as soon as its socket appears", async () => {
  const dir = Deno.makeTempDirSync();
  const control = `${dir}/gateway.sock`;
  const link = new GatewayLink({
    control,
    log: logger("test"),
    peer: "gateway",
    proves: false,
    startingUp: () => true, // no warnings
  }, { hello: () => [], registered: () => {}, refused: () => {}, message: () => {} });
  let acceptedAt = 0;
  let listener: Listener | undefined;
  try {
    link.start();
    // Attempts at 0, 50, 150, 350, 750, 1550 and 3150 ms: the next one is
    // at 5150 ms.
    await sleep(3400);
    const bound = performance.now();
    listener = new Listener(unixListenOver(control), "control", ({ fd }) => {
      acceptedAt ||= performance.now();
      closeFd(fd);
    });
    await waitUntil(() => acceptedAt > 0, { what: "the link's connection", timeoutMs: 5000 });
    const ms = acceptedAt - bound;
    assert.ok(ms < 1000, `connected ${Math.round(ms)} ms after the socket appeared (not polled)`);
  } finally {
    link.stop();
    listener?.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
