/**
 * Placing a connection (src/handoff/placement.ts) with its parcel and key
 * ring, over real parts: a real TLS handshake with a real client (Deno's
 * rustls), real SOCK_SEQPACKET control channels between real sockets, the
 * receivers' answers sent as ACKs by real ControlChannels. A target that
 * refuses, one whose channel is closed, one that dies: the next is tried;
 * nobody: the connection is ours again, opened with the key it was sealed
 * under even after the key changed (a gateway restart), and it still
 * answers its client.
 */

import assert from "node:assert/strict";
import { closeFd } from "../ffi/shim.ts";
import { TlsConnection } from "../src/connection/tls_connection.ts";
import { ControlChannel } from "../src/handoff/control_channel.ts";
import { Keyring } from "../src/handoff/keyring.ts";
import { Parcel } from "../src/handoff/parcel.ts";
import { place, type Target } from "../src/handoff/placement.ts";
import { MessageType } from "../src/handoff/protocol.ts";
import { Sealer } from "../src/handoff/seal.ts";
import { logger } from "../src/operations/log.ts";
import { waitUntil } from "./support/wait.ts";
import { seqpacketPair } from "./support/sockets.ts";
import { tlsPair } from "./support/tls_pair.ts";

const log = logger("test");

/** A receiver at the far end of a channel: answers every HANDOFF with `ok`. */
class Receiver {
  readonly sender: ControlChannel;
  readonly channel: ControlChannel;
  offered = 0;
  constructor(pair: [number, number], ok: boolean) {
    this.sender = new ControlChannel(pair[0], { onMessage() {}, onClose() {} });
    this.channel = new ControlChannel(pair[1], {
      onMessage: (msg, fd) => {
        if (msg.type !== MessageType.HANDOFF) return;
        this.offered++;
        closeFd(fd); // a receiver that refuses closes its copy
        this.channel.confirm(msg.body.transfer ?? 0, ok);
      },
      onClose() {},
    });
  }
  close(): void {
    this.sender.close();
    this.channel.close();
  }
}

Deno.test("key ring: an old key stays while a lease holds it, and is zeroed after", () => {
  const ring = new Keyring();
  const first = Sealer.newKey();
  assert.equal(ring.use(first), true);
  assert.equal(ring.use(first), false, "the same key (a gateway that took over) changes nothing");
  const lease = ring.lease()!;
  const aad = new Uint8Array([1, 2, 3]);
  const sealed = lease.sealer.seal(new Uint8Array([42, 43]), aad);
  assert.equal(ring.use(Sealer.newKey()), true, "a new key (a restarted gateway)");
  assert.equal(ring.retained, 1, "the old key is kept: something sealed under it is out");
  assert.deepEqual(lease.sealer.open(sealed, aad), new Uint8Array([42, 43]));
  assert.equal(ring.sealer!.open(sealed, aad), null, "the new key does not open it");
  lease.release();
  lease.release(); // idempotent
  assert.equal(ring.retained, 0);
  assert.equal(lease.sealer.open(sealed, aad), null, "zeroed once nothing holds it");
  // A key nothing holds is zeroed at once on a change.
  const unused = ring.sealer!;
  const sealed2 = unused.seal(new Uint8Array([1]), aad);
  ring.use(Sealer.newKey());
  assert.equal(ring.retained, 0);
  assert.equal(unused.open(sealed2, aad), null);
  ring.destroy();
});

Deno.test({
  name:
    "placement: a refusal, a closed channel and a dead receiver each pass it on; the next confirms it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-placement-" });
    const { conn, done } = await tlsPair({ connId: 7, sni: "" });
    const refuses = new Receiver(await seqpacketPair(dir), false);
    const closed = new Receiver(await seqpacketPair(dir), true);
    closed.sender.close();
    const dies = new Receiver(await seqpacketPair(dir), true);
    dies.channel.close(); // the receiver's end is gone before it answers
    const takes = new Receiver(await seqpacketPair(dir), true);
    const ring = new Keyring();
    ring.use(Sealer.newKey());
    try {
      const parcel = Parcel.release(conn, ring.lease()!, 1);
      assert.ok(parcel instanceof Parcel);
      const events: string[] = [];
      const target = (name: string, r: Receiver): Target => ({
        name,
        channel: r.sender,
        returned: (why) => events.push(`${name} gave it back: ${why}`),
        confirmed: () => events.push(`${name} confirmed`),
      });
      let unplaced = "";
      place(parcel, [
        target("a", refuses),
        target("b", closed),
        target("c", dies),
        target("d", takes),
      ], { log, unplaced: (_p, reason) => unplaced = reason });
      await waitUntil(() => parcel.done, { what: "the parcel to end" });
      // c's send may fail at once (skipped) or come back unconfirmed.
      const seen = events.map((e) => e.replace(/: .*/, "")).filter((e) => e !== "c gave it back");
      assert.deepEqual(seen, ["a gave it back", "d confirmed"]);
      assert.equal(refuses.offered, 1);
      assert.equal(closed.offered, 0, "nothing goes over a closed channel");
      assert.equal(takes.offered, 1);
      assert.equal(unplaced, "", "placed");
      assert.equal(ring.retained, 0);
    } finally {
      for (const r of [refuses, closed, dies, takes]) r.close();
      ring.destroy();
      await done();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "placement: nobody takes it after the key changed: it is adopted with its old key and answers its client",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-placement-" });
    const { conn, client, ctx, done } = await tlsPair({ connId: 7, sni: "" });
    const refuses = new Receiver(await seqpacketPair(dir), false);
    const ring = new Keyring();
    ring.use(Sealer.newKey());
    try {
      const parcel = Parcel.release(conn, ring.lease()!, 1);
      assert.ok(parcel instanceof Parcel);
      // The gateway restarted: a new key arrives while the connection is out.
      ring.use(Sealer.newKey());
      assert.equal(ring.retained, 1);
      const back = Promise.withResolvers<{ parcel: Parcel; reason: string; from?: string }>();
      place(parcel, [{ name: "a", channel: refuses.sender }, {
        name: "nowhere",
        channel: undefined,
      }], {
        log,
        unplaced: (p, reason, from) => back.resolve({ parcel: p, reason, from }),
      });
      const came = await back.promise;
      assert.equal(came.from, "a");
      assert.match(came.reason, /refused/);
      const adopted = came.parcel.adopt(ctx);
      assert.ok(typeof adopted !== "string", adopted as string);
      const again = adopted.conn;
      assert.ok(again instanceof TlsConnection);
      assert.equal(ring.retained, 0, "the old key is zeroed once the parcel ended");
      // The connection is whole: it answers its client.
      await again.write(
        new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        Date.now() + 5000,
      );
      const buf = new Uint8Array(256);
      const n = await client.read(buf);
      assert.match(new TextDecoder().decode(buf.subarray(0, n ?? 0)), /200 OK[\s\S]*ok$/);
      again.close(false);
    } finally {
      refuses.close();
      ring.destroy();
      await done();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
