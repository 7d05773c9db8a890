/**
 * Test support: one real TLS connection inside this process. A listening
 * socket on the shim's event loop, wolfSSL's server side with the
 * development certificate, and a real client (Deno's rustls) that has sent
 * one request: for tests of what happens to a live connection (releasing,
 * placing, adopting it) without processes.
 *
 * @module
 */

import { projectRoot } from "../../ffi/paths.ts";
import { accept, closeFd, localPort, tcpListen } from "../../ffi/shim.ts";
import { TlsContext, TlsSession } from "../../ffi/wolfssl.ts";
import { EventLoop } from "../../src/connection/event_loop.ts";
import { TlsConnection } from "../../src/connection/tls_connection.ts";
import { CA_CERT, Client } from "./system.ts";
import { waitUntil } from "./wait.ts";

/** A server-side connection, its client, and how to end both. */
export interface TlsPair {
  /** The server side, handshaken, its first request arrived. */
  conn: TlsConnection;
  /** The client side. */
  client: Deno.TlsConn;
  /** The server's context (imports go into it too). */
  ctx: TlsContext;
  /** Close the client, the listening socket and the event loop. */
  done(): Promise<void>;
}

/**
 * A handshaken connection whose client has sent `GET /sum?a=1&b=2`; its
 * connection id and SNI as given (a test may need a field the handoff
 * message cannot carry).
 *
 * @example
 * ```ts
 * import { tlsPair } from "./tls_pair.ts";
 * const pair = await tlsPair({ connId: 7, sni: "" });
 * console.log(pair.conn.exportable);
 * await pair.done();
 * ```
 */
export async function tlsPair(info: { connId: number; sni: string }): Promise<TlsPair> {
  const loop = EventLoop.instance();
  const ctx = TlsContext.server({
    certFile: `${projectRoot}/.local/certs/cert.pem`,
    keyFile: `${projectRoot}/.local/certs/key.pem`,
  });
  const listenFd = tcpListen("127.0.0.1", 0);
  const handshaken = Promise.withResolvers<TlsConnection>();
  loop.add(listenFd, () => {
    for (let c = accept(listenFd); c; c = accept(listenFd)) {
      const conn = new TlsConnection(c.fd, TlsSession.accept(ctx, c.fd), {
        connId: info.connId,
        gatewayId: 1,
        handoffs: 0,
        peer: c.peer,
        sni: info.sni,
        alpn: "",
      });
      conn.handshake(Date.now() + 5000).then((ok) =>
        ok ? handshaken.resolve(conn) : handshaken.reject(new Error("no handshake"))
      );
    }
  });
  const client = await Deno.connectTls({
    hostname: "127.0.0.1",
    port: localPort(listenFd),
    caCerts: [await Deno.readTextFile(CA_CERT)],
  });
  await client.handshake();
  await client.write(Client.request("/sum?a=1&b=2"));
  const conn = await handshaken.promise;
  await waitUntil(() => conn.bufferedLength > 0 || conn.exportable, { what: "the request" });
  return {
    conn,
    client,
    ctx,
    async done() {
      try {
        client.close();
      } catch {
        // closed already (by the server)
      }
      loop.remove(listenFd);
      closeFd(listenFd);
      await loop.close();
    },
  };
}
