/**
 * Test support: a tiny deterministic PRNG (xorshift32), so that a failure
 * of a randomized test can be replayed from its seed.
 *
 * @module
 */

/** Numbers in [0, 1) from `seed`, the same sequence every run. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}
