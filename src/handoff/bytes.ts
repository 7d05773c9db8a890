/**
 * Small byte helpers the control plane shares: base64 for the keys that
 * travel in JSON messages (REGISTERED, LISTENER, TICKETS), and a comparison
 * whose time does not depend on where two secrets differ.
 *
 * @module
 */

/** `b` as base64.
 *
 * @example
 * ```ts
 * import { toBase64 } from "./bytes.ts";
 * toBase64(new Uint8Array([1, 2, 3])); // "AQID"
 * ```
 */
export function toBase64(b: Uint8Array): string {
  let s = "";
  for (const c of b) s += String.fromCharCode(c);
  return btoa(s);
}

/** The bytes of base64 `s` (throws on malformed input).
 *
 * @example
 * ```ts
 * import { fromBase64 } from "./bytes.ts";
 * fromBase64("AQID"); // Uint8Array [1, 2, 3]
 * ```
 */
export function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Whether `a` and `b` hold the same bytes, compared in time that depends
 * only on their length.
 *
 * @example
 * ```ts
 * import { sameBytes } from "./bytes.ts";
 * sameBytes(new Uint8Array([1]), new Uint8Array([1])); // true
 * ```
 */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
