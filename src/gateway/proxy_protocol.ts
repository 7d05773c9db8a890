/**
 * The PROXY protocol, version 2 (the binary one HAProxy sends with
 * `send-proxy-v2`): a load balancer in front of the gateways tells them the
 * client's real address in a header before the TLS bytes. With
 * `--proxy-protocol on` the gateway takes connections only from the
 * addresses `--proxy-trusted` lists, each must start with a valid header
 * (read with a bound of 16 + 512 bytes, within the handshake timeout), and
 * the client address in it replaces the peer's in logs, in the handler's
 * `info.remoteAddr` and in every handoff. A LOCAL header (the balancer's own
 * health check) keeps the balancer's address. Anything else is closed.
 *
 * @module
 */

import type { TlsConnection } from "../connection/tls_connection.ts";
import { addressBytes, type Cidr, parseCidr, within } from "../operations/cidr.ts";

/** The 12 bytes every version 2 header starts with. */
const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
/** Most address and TLV bytes accepted after the 16-byte start. */
export const MAX_PROXY_BODY = 512;

/** "host:port" or "[v6]:port" → its host part. */
function hostOf(peer: string): string {
  const v6 = peer.match(/^\[([^\]]+)\]:\d+$/);
  if (v6) return v6[1];
  const i = peer.lastIndexOf(":");
  return i > 0 ? peer.slice(0, i) : peer;
}

/** What reading a header gave. */
export type ProxyResult =
  | { ok: true; peer?: string }
  | { ok: false; reason: "untrusted" | "malformed" | "timeout" };

/**
 * A gateway's PROXY protocol policy: which peers may send the header, and
 * reading it.
 *
 * @example
 * ```ts
 * import { ProxyProtocol } from "./proxy_protocol.ts";
 * const proxy = new ProxyProtocol(["127.0.0.1/32", "10.0.0.0/8"]);
 * proxy.trusts("10.1.2.3:40000"); // true
 * ```
 */
export class ProxyProtocol {
  #trusted: Cidr[];

  /** A policy trusting the given ranges.
   *
   * @example
   * ```ts
   * import { ProxyProtocol } from "./proxy_protocol.ts";
   * new ProxyProtocol(["::1/128"]);
   * ```
   */
  constructor(trusted: string[]) {
    this.#trusted = trusted.filter((t) => t.trim()).map(parseCidr);
  }

  /** Whether `peer` ("host:port") may send a header.
   *
   * @example
   * ```ts
   * import { ProxyProtocol } from "./proxy_protocol.ts";
   * new ProxyProtocol(["127.0.0.1"]).trusts("127.0.0.1:5000"); // true
   * ```
   */
  trusts(peer: string): boolean {
    const addr = addressBytes(hostOf(peer));
    return addr !== undefined && this.#trusted.some((r) => within(addr, r));
  }

  /** Check the peer and read the header from `conn` (before TLS).
   *
   * @example
   * ```ts
   * import type { ProxyProtocol } from "./proxy_protocol.ts";
   * import type { TlsConnection } from "../connection/tls_connection.ts";
import { addressBytes, type Cidr, parseCidr, within } from "../operations/cidr.ts";
   * declare const proxy: ProxyProtocol, conn: TlsConnection;
   * const r = await proxy.read(conn, Date.now() + 5000);
   * if (r.ok && r.peer) conn.info.peer = r.peer;
   * ```
   */
  async read(conn: TlsConnection, deadline: number): Promise<ProxyResult> {
    if (!this.trusts(conn.info.peer)) return { ok: false, reason: "untrusted" };
    const start = await conn.readPlain(16, deadline);
    if (!start) return { ok: false, reason: Date.now() >= deadline ? "timeout" : "malformed" };
    if (SIGNATURE.some((b, i) => start[i] !== b)) return { ok: false, reason: "malformed" };
    const version = start[12] >> 4, command = start[12] & 0x0f;
    const length = (start[14] << 8) | start[15];
    if (version !== 2 || command > 1 || length > MAX_PROXY_BODY) {
      return { ok: false, reason: "malformed" };
    }
    const body = length ? await conn.readPlain(length, deadline) : new Uint8Array(0);
    if (!body) return { ok: false, reason: Date.now() >= deadline ? "timeout" : "malformed" };
    if (command === 0) return { ok: true }; // LOCAL: the balancer itself
    return proxiedPeer(start[13], body);
  }
}

/** An IPv6 address and port as the kernel's peers are written: compressed
 * ("[2001:db8::1]:443"), and an IPv4-mapped one as IPv4 ("10.0.0.1:443"). */
function formatPeer(addr: Uint8Array, port: number): string {
  if (addr.subarray(0, 10).every((b) => b === 0) && addr[10] === 0xff && addr[11] === 0xff) {
    return `${[...addr.subarray(12)].join(".")}:${port}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((addr[i * 2] << 8) | addr[i * 2 + 1]);
  // The longest run of two or more zero groups becomes "::".
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) (best = i, bestLen = j - i);
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  const text = best < 0
    ? hex.join(":")
    : `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
  return `[${text}]:${port}`;
}

/** The client address of a PROXY command's body, by its family byte. */
export function proxiedPeer(family: number, body: Uint8Array): ProxyResult {
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  if (family === 0x11 && body.length >= 12) { // TCP over IPv4
    return { ok: true, peer: `${[...body.subarray(0, 4)].join(".")}:${v.getUint16(8)}` };
  }
  if (family === 0x21 && body.length >= 36) { // TCP over IPv6
    return { ok: true, peer: formatPeer(body.subarray(0, 16), v.getUint16(32)) };
  }
  if (family === 0x00) return { ok: true }; // UNSPEC: keep the real peer
  return { ok: false, reason: "malformed" };
}
