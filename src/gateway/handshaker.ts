/**
 * The gateway's front door: a client's TCP connection becomes a TLS session
 * (the one handshake the client gets) or is closed. A client that speaks
 * plain HTTP to the TLS port is told so; a failed handshake is logged with
 * wolfSSL's reason, within a budget (any client can cause them).
 *
 * @module
 */

import { closeFd } from "../../ffi/shim.ts";
import { type TlsContext, TlsError, TlsSession } from "../../ffi/wolfssl.ts";
import type { Accepted } from "../connection/listener.ts";
import { retryBlockedListeners } from "../connection/listener.ts";
import { type ConnectionInfo, TlsConnection } from "../connection/tls_connection.ts";
import { errorResponse } from "../http/http.ts";
import { LogBudget, logger, LogLine } from "../operations/log.ts";
import type { GatewayMetrics } from "./gateway_metrics.ts";
import type { ProxyProtocol } from "./proxy_protocol.ts";

const log = logger("gateway");
const handshakeLine = new LogLine(
  log,
  "info",
  "TLS handshake complete: conn {conn} from {peer}, {protocol} {cipher}",
);

/** The first byte of a TLS ClientHello (content type "handshake"). */
const TLS_HANDSHAKE_RECORD = 0x16;
/** What a client that speaks plain HTTP to the TLS port gets. */
const PLAIN_HTTP_ANSWER = errorResponse(400, "this port speaks HTTPS: use https://", {
  keepAlive: false,
});

/**
 * Connection ids, unique across gateways (issue 19): a log line's `conn N`
 * names one connection in a whole deployment (a primary and its satellites,
 * a gateway and the one that took over from it, gateways on several hosts),
 * and the id travels with the connection in its HANDOFF (`info.connId`, a
 * u32 bound into the seal; the wire format is unchanged).
 *
 * The scheme: each source (one per gateway process) draws a random 32-bit
 * base and hands out base, base+1, base+2, ... modulo 2^32, skipping 0. No
 * coordination, so it works across hosts and takeovers alike; within one
 * gateway an id repeats only after 2^32 - 1 connections (as the old
 * per-process counter did).
 *
 * Collision odds: two gateways share an id only if their runs of ids
 * overlap on the 2^32 circle. For gateways that accept n1 and n2
 * connections over their lives that is about (n1 + n2) / 2^32: 2 in a
 * million for 5,000 each, 1 in 2,000 (4.7e-4) for a million each; for G
 * gateways of n each about G(G-1)n / 2^32 (8 gateways of a million each:
 * 1.3%). Even then the two connections are not confused by the system (the
 * HANDOFF also carries the gateway id); only a reader of the logs could,
 * and only where both ids appear. The alternatives do worse: a random id
 * per connection collides by the birthday bound (50% at ~77,000
 * connections in all), and splitting the field into gateway bits and
 * counter bits either wraps the counter soon (16/16: every 65,536
 * connections) or leaves few gateway bits (a 16-bit gateway id collides
 * with another 1 in 65,536 per pair).
 *
 * Ids are printed in decimal as before (up to 10 digits), in the logs and
 * the `x-hotpotato-connection` header alike.
 *
 * @example
 * ```ts
 * import { ConnIds } from "./handshaker.ts";
 * const ids = new ConnIds(); // a random base
 * console.log(ids.next(), ids.next()); // two in a row, e.g. 2834110617 2834110618
 * ```
 */
export class ConnIds {
  #next: number;

  /** A source whose first id is `base` (or 1 if `base` is 0); by default a
   * random base, which is what makes two gateways' ids disjoint.
   *
   * @example
   * ```ts
   * import { ConnIds } from "./handshaker.ts";
   * const ids = new ConnIds(0xfffffffe);
   * console.log(ids.next(), ids.next(), ids.next()); // 4294967294 4294967295 1
   * ```
   */
  constructor(base: number = crypto.getRandomValues(new Uint32Array(1))[0]) {
    this.#next = base >>> 0;
  }

  /** The next id: a u32, never 0.
   *
   * @example
   * ```ts
   * import { ConnIds } from "./handshaker.ts";
   * console.log(new ConnIds(41).next()); // 41
   * ```
   */
  next(): number {
    if (this.#next === 0) this.#next = 1; // 0 would read as "no connection"
    const id = this.#next;
    this.#next = (id + 1) >>> 0;
    return id;
  }
}

/** What a {@linkcode Handshaker} needs. */
export interface HandshakerOptions {
  /** The server context (certificate, key, resumption). */
  context: TlsContext;
  /** This gateway's id, carried in every handoff of its connections. */
  gatewayId: number;
  /** --handshake-timeout, ms. */
  handshakeTimeoutMs: number;
  /** Metrics to bump. */
  metrics: GatewayMetrics;
  /** Called with each connection whose handshake completed; it is the
   * callee's until its promise settles. */
  ready(conn: TlsConnection): Promise<void>;
  /** `--proxy-protocol on`: the header each connection must start with. */
  proxy?: ProxyProtocol;
}

/**
 * Turns accepted TCP connections into TLS connections.
 *
 * @example
 * ```ts
 * import { Handshaker } from "./handshaker.ts";
 * import { GatewayMetrics } from "./gateway_metrics.ts";
 * import { TlsContext } from "../../ffi/wolfssl.ts";
 * const handshaker = new Handshaker({
 *   context: TlsContext.server({ certFile: ".local/certs/cert.pem", keyFile: ".local/certs/key.pem" }),
 *   gatewayId: 1,
 *   handshakeTimeoutMs: 10_000,
 *   metrics: new GatewayMetrics(),
 *   ready: (conn) => Promise.resolve(conn.close()),
 * });
 * ```
 */
export class Handshaker {
  #opts: HandshakerOptions;
  #connIds = new ConnIds();
  #logBudget = new LogBudget(10, 1000);
  #inProgress = 0;

  /** Connections accepted whose handshake has not ended yet.
   *
   * @example
   * ```ts
   * import type { Handshaker } from "./handshaker.ts";
   * declare const handshaker: Handshaker;
   * console.log(handshaker.inProgress);
   * ```
   */
  get inProgress(): number {
    return this.#inProgress;
  }

  /** A handshaker with these settings.
   *
   * @example
   * ```ts
   * import { Handshaker, type HandshakerOptions } from "./handshaker.ts";
   * declare const options: HandshakerOptions;
   * new Handshaker(options);
   * ```
   */
  constructor(opts: HandshakerOptions) {
    this.#opts = opts;
  }

  /** Take a client's TCP connection (its fd is ours from here on).
   *
   * @example
   * ```ts
   * import type { Handshaker } from "./handshaker.ts";
   * import { Listener } from "../connection/listener.ts";
   * import { tcpListen } from "../../ffi/shim.ts";
   * declare const handshaker: Handshaker;
   * new Listener(tcpListen("127.0.0.1", 0), "clients", (c) => handshaker.accept(c));
   * ```
   */
  accept(c: Accepted): void {
    this.#opts.metrics.accepted.inc();
    const info: ConnectionInfo = {
      connId: this.#connIds.next(),
      gatewayId: this.#opts.gatewayId,
      handoffs: 0,
      peer: c.peer,
      sni: "",
      alpn: "",
    };
    let tls: TlsSession;
    try {
      tls = TlsSession.accept(this.#opts.context, c.fd);
    } catch (e) {
      log.error("cannot create a TLS session: {error}", { error: (e as Error).message });
      closeFd(c.fd);
      return;
    }
    let conn: TlsConnection;
    try {
      conn = new TlsConnection(c.fd, tls, info); // watches the fd: can fail (ENOMEM, ENOSPC)
    } catch (e) {
      log.error("cannot watch a connection: {error}", { error: (e as Error).message });
      tls.free();
      closeFd(c.fd);
      return;
    }
    this.#inProgress++;
    this.#handshake(conn, () => this.#inProgress--)
      .catch((e) => {
        log.error("conn {conn}: {error}", { conn: info.connId, error: String(e) });
        conn.close(false);
      })
      // Its fd is closed or handed off now: room for one in the listen queue.
      .finally(retryBlockedListeners);
  }

  async #handshake(conn: TlsConnection, ended: () => void): Promise<void> {
    let done = false;
    const end = () => {
      if (!done) (done = true, ended());
    };
    try {
      await this.#shake(conn, end);
    } finally {
      end();
    }
  }

  async #shake(conn: TlsConnection, end: () => void): Promise<void> {
    const { metrics, proxy } = this.#opts;
    const deadline = Date.now() + this.#opts.handshakeTimeoutMs;
    if (proxy) {
      const peer = conn.info.peer;
      const r = await proxy.read(conn, deadline);
      if (!r.ok) {
        metrics.proxyRefused.labels(r.reason).inc();
        const skipped = this.#logBudget.take();
        if (skipped !== false) {
          log.info("conn {conn} from {peer}: {why}; closed", {
            conn: conn.info.connId,
            peer,
            why: r.reason === "untrusted"
              ? "not a trusted proxy (--proxy-trusted)"
              : r.reason === "timeout"
              ? "no PROXY header within --handshake-timeout"
              : "no valid PROXY v2 header",
          });
        }
        conn.close(false);
        return;
      }
      if (r.peer) conn.info.peer = r.peer;
    }
    const first = await conn.peekStart(deadline);
    if (!first) {
      conn.close(false);
      return;
    }
    if (first[0] !== TLS_HANDSHAKE_RECORD) {
      // Not TLS. A plain-HTTP request gets a plain answer saying so.
      log.debug("conn {conn}: not TLS from {peer}", {
        conn: conn.info.connId,
        peer: conn.info.peer,
      });
      if (first[0] >= 0x41 && first[0] <= 0x5a) {
        metrics.requests.labels("gateway", "", 400).inc();
        conn.closeWithPlain(PLAIN_HTTP_ANSWER);
      } else conn.close(false);
      return;
    }
    let ok = false;
    let failure = "";
    try {
      ok = await conn.handshake(deadline);
      if (!ok && Date.now() >= deadline) failure = "no handshake within --handshake-timeout";
    } catch (e) {
      failure = e instanceof TlsError ? `${e.reason} (wolfSSL ${e.code})` : String(e);
    }
    if (!ok) {
      metrics.handshakeFailures.inc();
      this.#failed(conn, failure);
      conn.close(false);
      return;
    }
    metrics.handshakes.labels(conn.session.resumed, conn.protocol).inc();
    conn.info.sni = conn.session.serverName;
    conn.info.alpn = conn.session.alpn;
    handshakeLine.log(() => ({
      conn: conn.info.connId,
      peer: conn.info.peer,
      protocol: conn.protocol,
      cipher: conn.cipher,
    }));
    end(); // from here the connection is held (or handed off)
    await this.#opts.ready(conn);
  }

  /** Log a failed handshake: at info with wolfSSL's reason and the client's
   * address, at most 10 lines a second; a client that just went away is
   * logged at debug. */
  #failed(conn: TlsConnection, failure: string): void {
    if (!failure) {
      log.debug("conn {conn}: {peer} closed during the handshake", {
        conn: conn.info.connId,
        peer: conn.info.peer,
      });
      return;
    }
    const skipped = this.#logBudget.take();
    if (skipped === false) return;
    const props = { conn: conn.info.connId, peer: conn.info.peer, error: failure, skipped };
    if (skipped === 0) log.info("TLS handshake failed: conn {conn} from {peer}: {error}", props);
    else {
      log.info(
        "TLS handshake failed: conn {conn} from {peer}: {error} ({skipped} more not logged)",
        props,
      );
    }
  }
}
