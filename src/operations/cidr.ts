/**
 * Address ranges ("10.0.0.0/8", "::1/128", or a bare address): parsing one
 * and testing an address against it. The PROXY protocol's trusted peers
 * (src/gateway/proxy_protocol.ts) and the check of `--proxy-trusted` at
 * start (src/operations/config.ts) share it.
 *
 * @module
 */

/** An address range, e.g. 10.0.0.0/8 or ::1/128. */
export interface Cidr {
  /** The address, 4 bytes (IPv4) or 16 (IPv6). */
  bytes: Uint8Array;
  /** How many leading bits of it a matching address shares. */
  bits: number;
}

/** An IPv4 or IPv6 address as bytes (IPv4-mapped IPv6 as IPv4), or undefined.
 *
 * @example
 * ```ts
 * import { addressBytes } from "./cidr.ts";
 * addressBytes("::ffff:10.1.2.3"); // Uint8Array [10, 1, 2, 3]
 * ```
 */
export function addressBytes(text: string): Uint8Array | undefined {
  const v4 = text.match(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/);
  if (v4) {
    const b = v4.slice(1).map(Number);
    return b.every((x) => x <= 255) ? new Uint8Array(b) : undefined;
  }
  if (!/^[0-9a-fA-F:.]+$/.test(text) || text.split("::").length > 2) return undefined;
  const mapped = text.match(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i);
  if (mapped) return addressBytes(mapped[1]);
  const [left, right = ""] = text.split("::");
  const parts = (s: string) => (s ? s.split(":") : []);
  const l = parts(left), r = parts(right);
  const fill = 8 - l.length - r.length;
  if (
    (text.includes("::") ? fill < 1 : fill !== 0) ||
    [...l, ...r].some((p) => !/^[0-9a-fA-F]{1,4}$/.test(p))
  ) {
    return undefined;
  }
  const groups = [...l, ...Array(fill).fill("0"), ...r].map((g) => parseInt(g, 16));
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

/** Parse "addr/bits" (or a bare address: all its bits); throws on nonsense.
 *
 * @example
 * ```ts
 * import { parseCidr } from "./cidr.ts";
 * parseCidr("10.0.0.0/8");
 * ```
 */
export function parseCidr(text: string): Cidr {
  const [addr, bits] = text.trim().split("/");
  const bytes = addressBytes(addr);
  if (!bytes) throw new Error(`--proxy-trusted: ${JSON.stringify(text)} is not an address range`);
  const max = bytes.length * 8;
  const n = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > max) {
    throw new Error(`--proxy-trusted: ${JSON.stringify(text)} has a bad prefix length`);
  }
  return { bytes, bits: n };
}

/** Whether the address `addr` (from {@linkcode addressBytes}) is in `range`.
 *
 * @example
 * ```ts
 * import { addressBytes, parseCidr, within } from "./cidr.ts";
 * within(addressBytes("10.1.2.3")!, parseCidr("10.0.0.0/8")); // true
 * ```
 */
export function within(addr: Uint8Array, range: Cidr): boolean {
  if (addr.length !== range.bytes.length) return false;
  for (let i = 0; i < range.bits; i++) {
    const bit = 0x80 >> (i % 8);
    if ((addr[i >> 3] & bit) !== (range.bytes[i >> 3] & bit)) return false;
  }
  return true;
}
