/**
 * The control socket's sessions (src/gateway/control_sessions.ts) over real
 * SOCK_SEQPACKET sockets: the first message decides what the peer is
 * (REGISTER a worker, JOIN a satellite, TAKEOVER a successor), with the
 * kernel's pid; anything else first closes the connection, and a HANDOFF
 * sent first is refused without its socket being kept.
 */

import assert from "node:assert/strict";
import { closeFd, EAGAIN, receiveMessage, sendMessage, unixListen } from "../ffi/shim.ts";
import type { ControlChannel } from "../src/handoff/control_channel.ts";
import { ControlSessions } from "../src/gateway/control_sessions.ts";
import { GatewayMetrics } from "../src/gateway/gateway_metrics.ts";
import { configureTrust } from "../src/handoff/trust.ts";
import {
  decodeMessage,
  encodeJson,
  encodeUnsealedHandoff,
  MessageType,
} from "../src/handoff/protocol.ts";
import { EventLoop } from "../src/connection/event_loop.ts";
import { sleep, waitUntil } from "./support/wait.ts";
import { seqpacketPair } from "./support/sockets.ts";

/** A client connected to the sessions over a fresh real Unix socket. */
async function connected(sessions: ControlSessions, dir: string): Promise<number> {
  const [client, server] = await seqpacketPair(dir);
  sessions.accept({ fd: server, peer: "unix" });
  return client;
}

/** Read what the gateway side sent (non-blocking, for up to `ms`), and
 * whether it closed the connection. */
async function readAll(fd: number, ms = 2000): Promise<{ types: number[]; eof: boolean }> {
  const buf = new Uint8Array(65536);
  const types: number[] = [];
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const r = receiveMessage(fd, buf);
    if (r === -EAGAIN) {
      await sleep(10);
      continue;
    }
    if (typeof r === "number" || r.length === 0) return { types, eof: true };
    if (r.fd >= 0) closeFd(r.fd);
    types.push(decodeMessage(buf.subarray(0, r.length)).type);
  }
  return { types, eof: false };
}

Deno.test({
  name: "control sessions: the first message decides; anything else first closes the connection",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    configureTrust({ socketGroup: "", gatewayUser: "" });
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-sessions-" });
    const seen: string[] = [];
    const channels: ControlChannel[] = [];
    const sessions = new ControlSessions(new GatewayMetrics(), {
      register: (channel, peer, body) => {
        channels.push(channel);
        seen.push(`register ${body.name} ${peer.pid}`);
      },
      join: (channel, peer) => {
        channels.push(channel);
        seen.push(`join ${peer.pid}`);
      },
      takeover: (channel, peer) => {
        channels.push(channel);
        seen.push(`takeover ${peer.pid}`);
      },
    });
    const clients: number[] = [];
    try {
      // A worker, a satellite, a successor: each reaches its handler with
      // the kernel's pid (the claimed one is 1).
      for (
        const msg of [
          encodeJson(MessageType.REGISTER, { name: "sum", routes: ["/sum"], pid: 1 }),
          encodeJson(MessageType.JOIN, { pid: 1 }),
          encodeJson(MessageType.TAKEOVER, { pid: 1 }),
        ]
      ) {
        const fd = await connected(sessions, dir);
        clients.push(fd);
        assert.ok(sendMessage(fd, msg) > 0);
      }
      await waitUntil(() => seen.length === 3, { what: "three sessions" });
      assert.deepEqual(seen, [
        `register sum ${Deno.pid}`,
        `join ${Deno.pid}`,
        `takeover ${Deno.pid}`,
      ]);
      // A STATS, a DRAIN first: closed, nothing handed on.
      for (
        const msg of [
          encodeJson(MessageType.STATS, { held: 0 }),
          encodeJson(MessageType.DRAIN, {}),
        ]
      ) {
        const fd = await connected(sessions, dir);
        clients.push(fd);
        assert.ok(sendMessage(fd, msg) > 0);
        const got = await readAll(fd);
        assert.equal(got.eof, true, "closed after a first message that is not a role's");
      }
      // A HANDOFF first: refused (ACK with ok false), then closed; its
      // socket is not kept.
      const fd = await connected(sessions, dir);
      clients.push(fd);
      const passed = unixListen(`${dir}/passed.sock`);
      const handoff = encodeUnsealedHandoff({
        info: { connId: 9, gatewayId: 1, handoffs: 1, peer: "127.0.0.1:1", sni: "", alpn: "" },
        tlsVersion: 4,
        sentAt: 0,
        unread: new Uint8Array(0),
        readAhead: new Uint8Array(0),
      }, 16);
      assert.ok(sendMessage(fd, handoff, passed) > 0);
      closeFd(passed);
      const got = await readAll(fd);
      assert.deepEqual(got.types, [MessageType.ACK]);
      assert.equal(got.eof, true);
      assert.equal(seen.length, 3, "no session for them");
    } finally {
      for (const c of channels) c.close();
      for (const fd of clients) closeFd(fd);
      sessions.close();
      await EventLoop.instance().close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "control sessions: a connection that says nothing is closed at the first-message limit",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    configureTrust({ socketGroup: "", gatewayUser: "" });
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-sessions-" });
    const seen: string[] = [];
    const sessions = new ControlSessions(new GatewayMetrics(), {
      register: () => seen.push("register"),
      join: () => seen.push("join"),
    }, 300);
    const fd = await connected(sessions, dir);
    try {
      const started = Date.now();
      const got = await readAll(fd, 3000);
      const waited = Date.now() - started;
      assert.equal(got.eof, true, "closed");
      assert.deepEqual(got.types, [], "nothing was sent to it");
      assert.ok(waited >= 250 && waited < 2500, `closed after ${waited} ms`);
      assert.deepEqual(seen, []);
    } finally {
      closeFd(fd);
      sessions.close();
      await EventLoop.instance().close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
