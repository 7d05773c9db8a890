/**
 * Releasing a connection for a handoff: once `releaseForHandoff` has
 * released it, the connection no longer owns its socket, so when the
 * HANDOFF cannot be built the socket is closed there, once. A real TLS
 * handshake with a real client (Deno's rustls), real sockets.
 */

import assert from "node:assert/strict";
import { closeFd, tcpListen } from "../ffi/shim.ts";
import { releaseForHandoff } from "../src/handoff/handoff.ts";
import { ProtocolError } from "../src/handoff/protocol.ts";
import { Sealer } from "../src/handoff/seal.ts";
import { tlsPair } from "./support/tls_pair.ts";

/** This process's open fds and what each is (`socket:[inode]`, ...), read
 * with find(1): Deno's own file API needs --allow-all for /proc. */
function openFds(): Map<number, string> {
  const { stdout } = new Deno.Command("find", {
    args: [`/proc/${Deno.pid}/fd`, "-type", "l", "-printf", "%f %l\\n"],
  }).outputSync();
  return new Map(
    new TextDecoder().decode(stdout).split("\n").filter((l) => l).map((l) => {
      const [n, link] = l.split(" ");
      return [Number(n), link];
    }),
  );
}

Deno.test({
  name:
    "a connection whose HANDOFF cannot be encoded after its release has its socket closed, once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // No client input makes a HANDOFF fail to encode once released (the
    // byte carries are checked before; wolfSSL keeps no SNI here): the
    // connection is given an SNI longer than the field's 255 bytes.
    const { conn, client, done } = await tlsPair({ connId: 1, sni: "x".repeat(256) });
    let other = -1;
    try {
      assert.ok(conn.exportable);
      const before = openFds();
      const socket = before.get(conn.fd);
      assert.match(socket ?? "", /^socket:\[\d+\]$/);

      assert.throws(
        () => releaseForHandoff(conn, new Sealer(Sealer.newKey()), 1),
        (e) => e instanceof ProtocolError && /sni/.test(e.message),
      );
      assert.equal(conn.isOpen, false, "released");
      const after = openFds();
      assert.deepEqual(
        [...after.values()].filter((link) => link === socket),
        [],
        "the socket is closed",
      );
      assert.equal(after.size, before.size - 1, "one fd fewer, no other");

      // The client sees the end of the connection (not silence).
      const end = await Promise.race([
        client.read(new Uint8Array(1024)).then((n) => n === null ? "eof" : "data", () => "eof"),
        new Promise<string>((ok) => setTimeout(() => ok("still open"), 3000)),
      ]);
      assert.equal(end, "eof");

      // Closed exactly once: what a caller then does with the connection
      // (close it) does not close an fd that took its number.
      other = tcpListen("127.0.0.1", 0);
      const otherSocket = openFds().get(other);
      conn.close(false);
      assert.equal(openFds().get(other), otherSocket, "a later fd is left alone");
    } finally {
      closeFd(other);
      await done();
    }
  },
});
