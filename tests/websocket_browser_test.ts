/**
 * WebSockets with a real browser: headless Chromium, driven over the Chrome
 * DevTools Protocol (tests/support/chromium.ts), opens WebSockets through
 * the real gateway to examples/echo.ts. Chromium must be installed (`make
 * test` installs it); without it this test fails, it does not skip.
 */

import assert from "node:assert/strict";
import { System } from "./support/system.ts";
import { Chromium } from "./support/chromium.ts";

const WORKERS = [{ name: "echo", file: "examples/echo.ts" }];

interface PageResult {
  got: string[];
  idle: { openAfterMs: number; readyState: number; echoed: string };
  closedByBrowser: { code: number; reason: string; wasClean: boolean };
  closedByServer: { code: number; reason: string; wasClean: boolean };
  errors: string[];
}

Deno.test("headless Chromium: text, binary, 1 MB messages, pings answered while idle, clean close both ways", async () => {
  const sys = await System.start({ workers: WORKERS });
  let browser: Chromium | undefined;
  try {
    browser = await Chromium.launch();
    const page = await browser.newPage();
    // idle=1: the server pings after 0.5 s without a frame from the browser
    // and closes with 1001 after 1 s unless a pong came back.
    const script = `
      const base = "wss://localhost:${sys.port}/echo";
      const errors = [];
      const open = (url) => new Promise((ok, fail) => {
        const ws = new WebSocket(url);
        ws.binaryType = "arraybuffer";
        const t = setTimeout(() => fail(new Error("no open in 10 s: " + url)), 10000);
        ws.onopen = () => { clearTimeout(t); ok(ws); };
        ws.onerror = () => errors.push("error event on " + url);
        ws.onclose = (e) => { clearTimeout(t); fail(new Error("closed before open: " + e.code + " " + url)); };
      });
      const closed = (ws) => new Promise((ok, fail) => {
        const t = setTimeout(() => fail(new Error("no close event in 10 s")), 10000);
        ws.addEventListener("close", (e) => {
          clearTimeout(t);
          ok({ code: e.code, reason: e.reason, wasClean: e.wasClean });
        });
      });
      const next = (ws) => new Promise((ok, fail) => {
        const t = setTimeout(() => fail(new Error("no message in 10 s")), 10000);
        ws.onmessage = (e) => { clearTimeout(t); ok(e.data); };
        ws.onclose = (e) => { clearTimeout(t); fail(new Error("closed: " + e.code + " " + e.reason)); };
      });
      const describe = async (data) => {
        if (typeof data === "string") {
          return data.length > 100 ? "text of " + data.length + " " + (data === big ? "same" : "differs") : data;
        }
        const bytes = new Uint8Array(data);
        if (bytes.length < 100) return "binary " + bytes.join(",");
        const same = bytes.length === bin.length && bytes.every((b, i) => b === bin[i]);
        return "binary of " + bytes.length + " " + (same ? "same" : "differs");
      };
      const big = Array.from({ length: 1 << 20 }, (_, i) => "abcdefghij✓"[i % 11]).join("");
      const bin = new Uint8Array(1 << 20);
      for (let off = 0; off < bin.length; off += 65536) crypto.getRandomValues(bin.subarray(off, off + 65536));

      const a = await open(base + "?idle=1");
      const got = [];
      for (const m of ["hello ✓", new Uint8Array([1, 2, 3, 255]), big, bin, "after"]) {
        const reply = next(a);
        a.send(m);
        got.push(await describe(await reply));
      }
      // Quiet for 1.75 s (the idle timeout 1.75 times over, the time under
      // test): only the browser's automatic pongs keep it open.
      const quietFrom = Date.now();
      await new Promise((ok) => setTimeout(ok, 1750));
      const idle = { openAfterMs: Date.now() - quietFrom, readyState: a.readyState, echoed: "" };
      if (a.readyState === WebSocket.OPEN) {
        const reply = next(a);
        a.send("still here");
        idle.echoed = await reply;
      }
      // The browser closes with a code and a reason.
      const byBrowser = closed(a);
      a.onclose = null;
      a.close(4000, "browser bye");
      const closedByBrowser = await byBrowser;
      // The server closes with a code and a reason.
      const b = await open(base);
      const byServer = closed(b);
      b.onclose = null;
      b.send("close 3001 bye now");
      const closedByServer = await byServer;
      return { got, idle, closedByBrowser, closedByServer, errors };
    `;
    const r = await browser.evaluate<PageResult>(page, script);
    assert.deepEqual(r.got, [
      "hello ✓",
      "binary 1,2,3,255",
      `text of ${1 << 20} same`,
      `binary of ${1 << 20} same`,
      "after",
    ]);
    assert.equal(r.idle.readyState, 1, `closed while idle: ${JSON.stringify(r.idle)}`);
    assert.equal(r.idle.echoed, "still here");
    assert.deepEqual(r.closedByBrowser, { code: 4000, reason: "", wasClean: true });
    assert.deepEqual(r.closedByServer, { code: 3001, reason: "bye now", wasClean: true });
    assert.deepEqual(r.errors, []);
    // The server's side: the browser's close (code and reason) and its own.
    const echo = sys.worker("echo");
    await echo.waitFor(/^echo close 4000 "browser bye" true$/, 5_000);
    await echo.waitFor(/^echo close 3001 "bye now" true$/, 5_000);
    await sys.settle();
    assert.equal(echo.count(/GET \/echo\W+101\b/), 2);
    assert.equal(echo.count(/^echo close /), 2);
  } finally {
    await browser?.close();
    await sys.stop();
  }
});
