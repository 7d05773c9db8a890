/**
 * Test support: a connected SOCK_SEQPACKET pair over a real listening Unix
 * socket (through the shim), the kind of socket control channels and peer
 * sockets use, for tests that put real channels on both ends.
 *
 * @module
 */

import { accept, closeFd, unixConnect, unixListen } from "../../ffi/shim.ts";
import { sleep } from "./wait.ts";

/**
 * A connected pair of non-blocking SOCK_SEQPACKET fds: [the connecting end,
 * the accepted end]. The listening socket (a fresh name in `dir`) is closed
 * once the pair is made.
 *
 * @example
 * ```ts
 * import { seqpacketPair } from "./sockets.ts";
 * import { closeFd } from "../../ffi/shim.ts";
 * const [a, b] = await seqpacketPair(await Deno.makeTempDir());
 * closeFd(a);
 * closeFd(b);
 * ```
 */
export async function seqpacketPair(dir: string): Promise<[number, number]> {
  const path = `${dir}/${crypto.randomUUID().slice(0, 8)}.sock`;
  const listenFd = unixListen(path);
  const a = unixConnect(path);
  try {
    for (let i = 0; i < 200; i++) {
      const c = accept(listenFd);
      if (c) return [a, c.fd];
      await sleep(5);
    }
    closeFd(a);
    throw new Error("the socket pair did not connect");
  } finally {
    closeFd(listenFd);
  }
}
