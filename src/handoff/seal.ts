/**
 * Sealing of exported TLS state: ChaCha20-Poly1305 (wolfCrypt) under the
 * deployment key, so that a blob is only imported when it was made by a
 * process of this deployment and not changed on the way. wolfSSL's import
 * trusts its input; a forged or damaged blob must never reach it.
 *
 * @module
 */

import { sameBytes } from "./bytes.ts";
import {
  AEAD_KEY_BYTES,
  AEAD_NONCE_BYTES,
  AEAD_TAG_BYTES,
  aeadOpen,
  aeadSeal,
} from "../../ffi/wolfssl.ts";

/** A sealed blob: ciphertext plus the nonce and tag needed to open it. */
export interface Sealed {
  /** 12 bytes, unique for every seal under a key. */
  nonce: Uint8Array;
  /** The 16-byte Poly1305 tag. */
  tag: Uint8Array;
  /** The encrypted blob, as long as the plaintext. */
  ciphertext: Uint8Array;
}

// Nonces: 4 random bytes fixed per process, then a 64-bit counter that starts
// at a random value. Unique per (key, nonce) across the gateway and workers
// unless two processes draw the same prefix and overlapping counter ranges;
// cheaper than a random draw per seal.
const noncePrefix = crypto.getRandomValues(new Uint8Array(4));
const nonceCounter = crypto.getRandomValues(new BigUint64Array(1));

const nonceCounterBytes = new Uint8Array(nonceCounter.buffer);

function nextNonce(nonce: Uint8Array): Uint8Array {
  nonce.set(noncePrefix);
  nonceCounter[0]++;
  nonce.set(nonceCounterBytes, 4);
  return nonce;
}

/** Length of the deployment key in bytes. */
export const KEY_BYTES: number = AEAD_KEY_BYTES;

/**
 * Seals and opens TLS state blobs with one deployment key.
 *
 * @example
 * ```ts
 * import { Sealer } from "./seal.ts";
 * const sealer = new Sealer(Sealer.newKey());
 * const aad = new Uint8Array([1, 2, 3]);
 * const sealed = sealer.seal(new Uint8Array([42]), aad);
 * const blob = sealer.open(sealed, aad); // Uint8Array [42], or null if forged
 * ```
 */
export class Sealer {
  #key: Uint8Array;

  /** Use `key` (32 bytes; copied).
   *
   * @example
   * ```ts
   * import { Sealer } from "./seal.ts";
   * const sealer = new Sealer(crypto.getRandomValues(new Uint8Array(32)));
   * ```
   */
  constructor(key: Uint8Array) {
    if (key.length !== AEAD_KEY_BYTES) throw new RangeError(`key must be ${AEAD_KEY_BYTES} bytes`);
    this.#key = key.slice();
  }

  /** Whether this sealer uses `key` (a gateway that took over keeps its
   * predecessor's key: a worker then keeps its sealer). Compared in time
   * that depends only on the lengths.
   *
   * @example
   * ```ts
   * import { Sealer } from "./seal.ts";
   * const key = Sealer.newKey();
   * new Sealer(key).uses(key); // true
   * ```
   */
  uses(key: Uint8Array): boolean {
    return sameBytes(this.#key, key);
  }

  /** A fresh random key.
   *
   * @example
   * ```ts
   * import { Sealer } from "./seal.ts";
   * const key = Sealer.newKey();
   * ```
   */
  static newKey(): Uint8Array {
    return crypto.getRandomValues(new Uint8Array(AEAD_KEY_BYTES));
  }

  /** Encrypt `plain` and bind it to `aad`. Zeroes `plain` afterwards. With
   * `into`, the nonce, tag and ciphertext are written there (views of the
   * message that carries them, say: see protocol.ts `handoffSealed`) and
   * `into` is returned; its ciphertext must be as long as `plain`, and none
   * of them may overlap `aad`.
   *
   * @example
   * ```ts
   * import { Sealer } from "./seal.ts";
   * const sealed = new Sealer(Sealer.newKey()).seal(new Uint8Array(8), new Uint8Array(0));
   * ```
   */
  seal(plain: Uint8Array, aad: Uint8Array, into?: Sealed): Sealed {
    let out: Sealed;
    if (into) {
      if (
        into.nonce.length !== AEAD_NONCE_BYTES || into.tag.length !== AEAD_TAG_BYTES ||
        into.ciphertext.length !== plain.length
      ) {
        plain.fill(0);
        throw new RangeError("sealing into parts of the wrong size");
      }
      out = into;
    } else {
      // One allocation for the three parts (an ArrayBuffer is not cheap).
      const buf = new Uint8Array(AEAD_NONCE_BYTES + AEAD_TAG_BYTES + plain.length);
      out = {
        nonce: buf.subarray(0, AEAD_NONCE_BYTES),
        tag: buf.subarray(AEAD_NONCE_BYTES, AEAD_NONCE_BYTES + AEAD_TAG_BYTES),
        ciphertext: buf.subarray(AEAD_NONCE_BYTES + AEAD_TAG_BYTES),
      };
    }
    nextNonce(out.nonce);
    const ok = aeadSeal(this.#key, out.nonce, aad, plain, out.ciphertext, out.tag);
    plain.fill(0);
    if (!ok) throw new Error("sealing failed");
    return out;
  }

  /** Decrypt and authenticate; null when the blob is not authentic. The
   * caller zeroes the returned bytes after use.
   *
   * @example
   * ```ts
   * import { Sealer, type Sealed } from "./seal.ts";
   * declare const sealer: Sealer, sealed: Sealed;
   * const blob = sealer.open(sealed, new Uint8Array(0));
   * if (!blob) throw new Error("not authentic");
   * ```
   */
  open(sealed: Sealed, aad: Uint8Array): Uint8Array | null {
    if (sealed.nonce.length !== AEAD_NONCE_BYTES || sealed.tag.length !== AEAD_TAG_BYTES) {
      return null;
    }
    const out = new Uint8Array(sealed.ciphertext.length);
    if (!aeadOpen(this.#key, sealed.nonce, aad, sealed.ciphertext, sealed.tag, out)) {
      out.fill(0);
      return null;
    }
    return out;
  }

  /** Overwrite the key (on shutdown or when a new key replaces it).
   *
   * @example
   * ```ts
   * import { Sealer } from "./seal.ts";
   * new Sealer(Sealer.newKey()).destroy();
   * ```
   */
  destroy(): void {
    this.#key.fill(0);
  }
}
