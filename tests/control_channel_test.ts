/**
 * The control channel over real SOCK_SEQPACKET sockets (through the shim):
 * what a peer may send that must not be taken for something else. An ACK
 * naming a transfer still waiting in the sender's queue (not sent yet) is
 * ignored; an empty datagram is a bad message, not the peer's departure. A
 * lazy channel (a worker's to a sibling) reads its ACKs when it next sends,
 * within 50 ms otherwise, and hears a hang-up at once.
 */

import assert from "node:assert/strict";
import { closeFd, EAGAIN, receiveMessage, sendMessage, tcpListen } from "../ffi/shim.ts";
import { EventLoop } from "../src/connection/event_loop.ts";
import { COLLECT_AT, ControlChannel } from "../src/handoff/control_channel.ts";
import {
  decodeMessage,
  encodeAck,
  encodeJson,
  encodeUnsealedHandoff,
  Limits,
  type Message,
  MessageType,
  setTransferId,
  transferIdOf,
} from "../src/handoff/protocol.ts";
import { waitUntil } from "./support/wait.ts";
import { seqpacketPair } from "./support/sockets.ts";

/** This process's open fds and what each is (`socket:[inode]`, ...), read
 * with find(1): Deno's own file API needs --allow-all for /proc. */
function openFds(): [number, string][] {
  const { stdout } = new Deno.Command("find", {
    args: [`/proc/${Deno.pid}/fd`, "-type", "l", "-printf", "%f %l\\n"],
  }).outputSync();
  return new TextDecoder().decode(stdout).split("\n").filter((l) => l).map((l) => {
    const [n, link] = l.split(" ");
    return [Number(n), link];
  });
}

/** The fds of this process open on the same socket as `fd` is now (by its
 * inode): call the returned function to list them later. */
function sameSocket(fd: number): () => number[] {
  const inode = openFds().find(([n]) => n === fd)?.[1];
  assert.match(inode ?? "", /^socket:\[\d+\]$/);
  return () => openFds().filter(([, link]) => link === inode).map(([n]) => n);
}

/** A HANDOFF as a sender has it (its content does not matter to the channel). */
function handoff(connId: number): Uint8Array {
  return encodeUnsealedHandoff({
    info: { connId, gatewayId: 1, handoffs: 1, peer: "127.0.0.1:1", sni: "", alpn: "" },
    tlsVersion: 4,
    sentAt: 0,
    unread: new Uint8Array(0),
    readAhead: new Uint8Array(0),
  }, 16);
}

Deno.test({
  name: "an ACK for a transfer still in the sender's queue is ignored: the fd stays, is sent later",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-channel-" });
    const [a, b] = await seqpacketPair(dir);
    // Fill a → b until the kernel takes no more: what the channel sends now waits in its queue.
    const filler = new Uint8Array(4096).fill(7);
    let filled = 0;
    for (let n = sendMessage(a, filler); n > 0; n = sendMessage(a, filler)) filled++;
    assert.equal(sendMessage(a, filler), -EAGAIN, "the socket is full");
    assert.ok(filled > 0);

    const drains: number[] = [];
    const channel = new ControlChannel(a, {
      onMessage: (msg: Message) => drains.push(msg.type),
      onClose() {},
    });
    const returned: string[] = [];
    let confirmed = 0;
    const passed = [tcpListen("127.0.0.1", 0), tcpListen("127.0.0.1", 0)];
    const copies = passed.map(sameSocket);
    const messages = passed.map((_, i) => handoff(i + 1));
    const received: number[] = [];
    try {
      for (const [i, fd] of passed.entries()) {
        assert.ok(
          channel.transfer(messages[i], fd, (_fd, _m, reason) => returned.push(reason), () => {
            confirmed++;
          }),
        );
      }
      const ids = messages.map(transferIdOf);
      // The peer guesses the transfer ids and answers before it has them:
      // "adopted" for the first, "refused" for the second.
      assert.ok(
        sendMessage(
          b,
          encodeAck([{ transfer: ids[0], ok: true }, { transfer: ids[1], ok: false }]),
        ) >
          0,
      );
      // A message after the ACK: once it is handled, the ACK has been read.
      assert.ok(sendMessage(b, encodeJson(MessageType.DRAIN, {})) > 0);
      await waitUntil(() => drains.includes(MessageType.DRAIN), {
        what: "the DRAIN after the ACK",
      });

      assert.equal(channel.ignoredAcks, 2, "both answers were ignored");
      assert.deepEqual(returned, [], "no connection came back");
      assert.equal(confirmed, 0, "nothing was confirmed");
      assert.equal(channel.inFlight, 2, "both transfers are still the sender's");
      assert.deepEqual(copies[0](), [passed[0]], "the 'adopted' fd is still open");
      assert.deepEqual(copies[1](), [passed[1]], "the 'refused' fd is still open");

      // The peer reads: the queue drains, both connections arrive with their fds.
      const buf = new Uint8Array(Limits.maxMessage);
      const got: number[] = [];
      await waitUntil(() => {
        for (let r = receiveMessage(b, buf); typeof r !== "number"; r = receiveMessage(b, buf)) {
          if (r.fd >= 0) {
            received.push(r.fd);
            const msg = decodeMessage(buf.subarray(0, r.length));
            assert.equal(msg.type, MessageType.HANDOFF);
            got.push(msg.type === MessageType.HANDOFF ? msg.body.transfer : -1);
          }
        }
        return received.length === 2;
      }, { what: "both HANDOFFs" });
      assert.deepEqual(got, ids);
      for (const [i, fd] of received.entries()) {
        assert.deepEqual(copies[i]().sort(), [passed[i], fd].sort(), "the same socket came");
      }
      // Now the real answers count.
      assert.ok(
        sendMessage(
          b,
          encodeAck([{ transfer: ids[0], ok: true }, { transfer: ids[1], ok: true }]),
        ) >
          0,
      );
      await waitUntil(() => confirmed === 2, { what: "both confirmations" });
      assert.equal(channel.ignoredAcks, 2, "the real answers counted");
      assert.deepEqual(returned, []);
      for (const [i, fd] of received.entries()) {
        assert.deepEqual(copies[i](), [fd], "the sender's copy is closed once confirmed");
      }
    } finally {
      channel.close();
      for (const fd of received) closeFd(fd);
      closeFd(b);
      await EventLoop.instance().close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A channel on `a` that records what it reports. */
function recorder(a: number) {
  const seen = { types: [] as number[], bad: [] as string[], closed: 0 };
  const channel = new ControlChannel(a, {
    onMessage: (msg: Message) => seen.types.push(msg.type),
    onBadMessage: (error) => seen.bad.push(error),
    onClose: () => seen.closed++,
  });
  return { channel, seen };
}

Deno.test({
  name: "an empty datagram is a bad message: the channel stays open and reads on",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-channel-" });
    const [a, b] = await seqpacketPair(dir);
    const { channel, seen } = recorder(a);
    try {
      assert.equal(sendMessage(b, new Uint8Array(0)), 0, "an empty datagram sent");
      assert.ok(sendMessage(b, encodeJson(MessageType.DRAIN, {})) > 0);
      await waitUntil(() => seen.types.length > 0 || seen.closed > 0, { what: "the DRAIN" });
      assert.deepEqual(seen.types, [MessageType.DRAIN], "the valid message arrived");
      assert.equal(seen.bad.length, 1, "the empty one was reported");
      assert.match(seen.bad[0], /empty/);
      assert.equal(seen.closed, 0, "the channel is open");
      // It still sends, and the peer gets it.
      assert.ok(channel.send(encodeJson(MessageType.DRAIN, {})));
      const buf = new Uint8Array(64);
      let length = -1;
      await waitUntil(() => {
        const r = receiveMessage(b, buf);
        if (typeof r !== "number") length = r.length;
        return length >= 0;
      }, { what: "the channel's message" });
      assert.equal(decodeMessage(buf.subarray(0, length)).type, MessageType.DRAIN);
      // And the peer's real departure is still seen.
      closeFd(b);
      await waitUntil(() => seen.closed > 0, { what: "onClose" });
      assert.equal(seen.closed, 1);
    } finally {
      channel.close();
      await EventLoop.instance().close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "an empty datagram with an fd, a message and the peer's close, all queued: fd closed, message read",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-channel-" });
    const [a, b] = await seqpacketPair(dir);
    const { channel, seen } = recorder(a);
    try {
      // All sent before the channel reads anything (it reads in a later turn).
      const passed = tcpListen("127.0.0.1", 0);
      const copies = sameSocket(passed);
      assert.equal(sendMessage(b, new Uint8Array(0), passed), 0);
      closeFd(passed); // the kernel holds it now
      assert.ok(sendMessage(b, encodeJson(MessageType.DRAIN, {})) > 0);
      closeFd(b);
      await waitUntil(() => seen.closed > 0, { what: "onClose" });
      assert.deepEqual(seen.types, [MessageType.DRAIN], "the message after the empty one was read");
      assert.equal(seen.bad.length, 1);
      assert.match(seen.bad[0], /empty/);
      assert.equal(seen.closed, 1);
      assert.deepEqual(copies(), [], "the fd that came with the empty datagram was closed");
    } finally {
      channel.close();
      await EventLoop.instance().close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "lazy ACKs (a worker's channel to a sibling): read when a transfer finds COLLECT_AT in flight or within 50 ms, and a receiver that hangs up gives everything back at once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-channel-" });
    const [a, b] = await seqpacketPair(dir);
    const channel = new ControlChannel(a, { onMessage() {}, onClose() {} }, { lazyAcks: true });
    const returned: string[] = [];
    const confirmed: number[] = [];
    const passed = Array.from({ length: COLLECT_AT + 2 }, () => tcpListen("127.0.0.1", 0));
    const last = COLLECT_AT + 1;
    const copies = passed.map(sameSocket);
    const buf = new Uint8Array(Limits.maxMessage);
    const received: number[] = [];
    /** The receiver takes the next HANDOFF: its transfer id. */
    const take = (): number => {
      const r = receiveMessage(b, buf);
      assert.ok(typeof r !== "number", `a HANDOFF waits (${r})`);
      received.push(r.fd);
      return transferIdOf(buf.subarray(0, r.length));
    };
    const send = (i: number) =>
      assert.ok(
        channel.transfer(
          handoff(i + 1),
          passed[i],
          (_fd, _m, reason) => returned.push(reason),
          () => confirmed.push(i),
        ),
      );
    try {
      // 1. COLLECT_AT transfers, each acknowledged in an ACK of its own: not
      //    read while fewer are in flight; the next transfer reads them all,
      //    in the same call (no event-loop turn: an eagerly read channel
      //    needs one).
      const first = Array.from({ length: COLLECT_AT }, (_, i) => i);
      for (const i of first) {
        send(i);
        assert.ok(sendMessage(b, encodeAck([{ transfer: take(), ok: true }])) > 0);
      }
      assert.deepEqual(confirmed, [], "not read while fewer than COLLECT_AT are in flight");
      assert.equal(channel.unconfirmed, COLLECT_AT);
      send(COLLECT_AT);
      assert.deepEqual(confirmed, first, "read when sending with COLLECT_AT in flight");
      for (const i of first) {
        assert.deepEqual(copies[i](), [received[i]], "the sender's copy is closed");
      }
      // 2. Nothing more is sent: the ACK is read within LAZY_ACKS_MS anyway.
      assert.ok(sendMessage(b, encodeAck([{ transfer: take(), ok: true }])) > 0);
      await waitUntil(() => confirmed.length === COLLECT_AT + 1, {
        what: "the last ACK",
        timeoutMs: 2000,
      });
      assert.equal(channel.unconfirmed, 0);
      // 3. The receiver dies with the next unanswered: it comes back at once
      //    (the hang-up wakes the channel), fd and all.
      send(last);
      closeFd(b);
      await waitUntil(() => returned.length === 1, { what: "the last back", timeoutMs: 2000 });
      assert.deepEqual(returned, ["the receiver went away"]);
      assert.deepEqual(confirmed, [...first, COLLECT_AT]);
      assert.deepEqual(copies[last](), [passed[last]], "the sender holds the connection again");
    } finally {
      channel.close();
      for (const fd of received) closeFd(fd);
      closeFd(passed[last]);
      await EventLoop.instance().close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "reads take many messages per system call: 40 HANDOFFs queued with their sockets arrive in order, each with its own; a handler that closes the channel mid-batch leaves no fd behind",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-channel-" });
    EventLoop.instance(); // its own fds are not the channel's
    const sockets = () => openFds().filter(([, link]) => link.startsWith("socket:"));
    const before = sockets();
    try {
      // 1. All of them, in order, with the right socket each (more than one
      //    batch: the reader goes on while a read comes back full).
      const [a, b] = await seqpacketPair(dir);
      const listeners = Array.from({ length: 40 }, () => tcpListen("127.0.0.1", 0));
      const inodes = listeners.map((fd) => openFds().find(([n]) => n === fd)![1]);
      for (const [i, fd] of listeners.entries()) assert.ok(sendMessage(a, handoff(i + 1), fd) > 0);
      for (const fd of listeners) closeFd(fd);
      const got: [number, string][] = [];
      let closed = false;
      const channel = new ControlChannel(b, {
        onMessage(msg, fd) {
          assert.equal(msg.type, MessageType.HANDOFF);
          if (msg.type !== MessageType.HANDOFF) return;
          got.push([msg.body.info.connId, openFds().find(([n]) => n === fd)![1]]);
          closeFd(fd);
        },
        onClose: () => closed = true,
      });
      await waitUntil(() => got.length === 40, { what: "40 HANDOFFs" });
      assert.deepEqual(got, inodes.map((inode, i) => [i + 1, inode]));
      closeFd(a);
      await waitUntil(() => closed, { what: "the end of the stream" });
      channel.close();

      // 2. The handler closes the channel at the 3rd of 10 queued: the 7
      //    received after it are closed by the channel, not leaked.
      const [c, d] = await seqpacketPair(dir);
      for (let i = 0; i < 10; i++) {
        const fd = tcpListen("127.0.0.1", 0);
        assert.ok(sendMessage(c, handoff(i + 1), fd) > 0);
        closeFd(fd);
      }
      const seen: number[] = [];
      const channels: ControlChannel[] = [];
      channels.push(
        new ControlChannel(d, {
          onMessage(_msg, fd) {
            seen.push(fd);
            closeFd(fd);
            if (seen.length === 3) channels[0].close();
          },
          onClose() {},
        }),
      );
      await waitUntil(() => seen.length === 3, { what: "3 HANDOFFs" });
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(seen.length, 3, "nothing is handled after the close");
      closeFd(c);
      assert.deepEqual(sockets(), before, "no socket is left open");
    } finally {
      await EventLoop.instance().close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "confirmations of one receive turn leave in one ACK; one decided later (after a wait) leaves at once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-channel-" });
    const [a, b] = await seqpacketPair(dir);
    const later: number[] = [];
    const started: number[] = [];
    const channel = new ControlChannel(b, {
      onMessage(msg, fd) {
        closeFd(fd);
        if (msg.type !== MessageType.HANDOFF) return;
        const id = msg.body.transfer ?? 0;
        // The 4th is answered after a wait, outside any receive turn.
        if (msg.body.info.connId === 4) later.push(id);
        else channel.confirm(id, true, () => started.push(id));
      },
      onClose() {},
    });
    const buf = new Uint8Array(Limits.maxMessage);
    /** The ACKs that came back: their entries, one list per message. */
    const acks = (): number[][] => {
      const got: number[][] = [];
      for (let r = receiveMessage(a, buf); typeof r !== "number"; r = receiveMessage(a, buf)) {
        const m = decodeMessage(buf.subarray(0, r.length));
        if (m.type === MessageType.ACK) got.push(m.body.map((x) => x.transfer));
      }
      return got;
    };
    try {
      // Three HANDOFFs (transfer ids 11-13) queued before the channel reads.
      for (let i = 1; i <= 3; i++) {
        const h = handoff(i);
        setTransferId(h, 10 + i);
        const fd = tcpListen("127.0.0.1", 0);
        assert.ok(sendMessage(a, h, fd) > 0);
        closeFd(fd);
      }
      await waitUntil(() => started.length === 3, { what: "three adopted" });
      assert.deepEqual(acks(), [[11, 12, 13]], "one ACK for the turn");
      const h = handoff(4);
      setTransferId(h, 14);
      assert.ok(sendMessage(a, h) > 0);
      await waitUntil(() => later.length === 1, { what: "the 4th" });
      await new Promise((r) => setTimeout(r, 20));
      channel.confirm(later[0], false);
      assert.deepEqual(acks(), [[14]], "sent at once, not at the next turn");
    } finally {
      channel.close();
      closeFd(a);
      await EventLoop.instance().close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
