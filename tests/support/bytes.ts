/**
 * Test support: byte strings built from parts, and shown as hex.
 *
 * @module
 */

/** The parts one after another, in a new array.
 *
 * @example
 * ```ts
 * import { concat } from "./bytes.ts";
 * console.log(concat(Uint8Array.of(1), [2, 3])); // Uint8Array [1, 2, 3]
 * ```
 */
export function concat(...parts: ArrayLike<number>[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Lower-case hex of `b`.
 *
 * @example
 * ```ts
 * import { hex } from "./bytes.ts";
 * console.log(hex(Uint8Array.of(0xcf, 0x21))); // "cf21"
 * ```
 */
export function hex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}
