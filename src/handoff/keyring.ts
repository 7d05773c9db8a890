/**
 * The handoff sealing key a worker or satellite has from its gateway, and
 * the keys it had before. A gateway that restarts brings a new key; a
 * connection sealed under the old one may still be in flight (sent to a
 * peer or a gateway, not confirmed), and when it comes back its sender must
 * open it again to answer it. So an old key is kept, zeroed only once
 * nothing sealed under it can come back: every sealed connection holds a
 * lease on its key ({@linkcode Keyring.lease}) until it is confirmed or
 * taken back.
 *
 * @module
 */

import { Sealer } from "./seal.ts";

/** A sealer in use by sealed connections; zeroed once retired and free. */
interface Held {
  sealer: Sealer;
  leases: number;
  retired: boolean;
}

/**
 * A lease on the key a connection was sealed with: `sealer` stays usable
 * until `release()`.
 *
 * @example
 * ```ts
 * import { Keyring } from "./keyring.ts";
 * import { Sealer } from "./seal.ts";
 * const ring = new Keyring();
 * ring.use(Sealer.newKey());
 * const lease = ring.lease()!;
 * lease.sealer.seal(new Uint8Array(4), new Uint8Array(0));
 * lease.release();
 * ```
 */
export interface KeyLease {
  /** The sealer, valid until `release()`. */
  readonly sealer: Sealer;
  /** Done with it (idempotent): an old key with no lease left is zeroed. */
  release(): void;
}

/**
 * The current sealing key and the old ones still leased.
 *
 * @example
 * ```ts
 * import { Keyring } from "./keyring.ts";
 * import { Sealer } from "./seal.ts";
 * const ring = new Keyring();
 * const key = Sealer.newKey();
 * ring.use(key); // true: a new key
 * ring.use(key); // false: the same (a gateway that took over keeps it)
 * ```
 */
export class Keyring {
  #current: Held | undefined;
  /** Retired keys still leased. */
  #old = new Set<Held>();

  /** The current key's sealer (to open what is handed to us), if any. */
  get sealer(): Sealer | undefined {
    return this.#current?.sealer;
  }

  /** Old keys kept because something sealed under them is in flight. */
  get retained(): number {
    return this.#old.size;
  }

  /** Seal with `key` from now on (copied; the caller zeroes its copy).
   * False when it is the key in use already. The previous key is zeroed at
   * once if nothing holds it, else when its last lease ends.
   *
   * @example
   * ```ts
   * import { Keyring } from "./keyring.ts";
   * import { Sealer } from "./seal.ts";
   * new Keyring().use(Sealer.newKey()); // true
   * ```
   */
  use(key: Uint8Array): boolean {
    if (this.#current?.sealer.uses(key)) return false;
    if (this.#current) this.#retire(this.#current);
    this.#current = { sealer: new Sealer(key), leases: 0, retired: false };
    return true;
  }

  /** A lease on the current key, or undefined when there is none yet.
   *
   * @example
   * ```ts
   * import { Keyring } from "./keyring.ts";
   * const lease = new Keyring().lease(); // undefined: no key yet
   * ```
   */
  lease(): KeyLease | undefined {
    const held = this.#current;
    if (!held) return undefined;
    held.leases++;
    let released = false;
    return {
      sealer: held.sealer,
      release: () => {
        if (released) return;
        released = true;
        held.leases--;
        if (held.retired && held.leases === 0) this.#zero(held);
      },
    };
  }

  /** Zero every key, leased or not (on stop).
   *
   * @example
   * ```ts
   * import { Keyring } from "./keyring.ts";
   * new Keyring().destroy();
   * ```
   */
  destroy(): void {
    for (const held of [...this.#old]) this.#zero(held);
    if (this.#current) this.#current.sealer.destroy();
    this.#current = undefined;
  }

  #retire(held: Held): void {
    held.retired = true;
    if (held.leases === 0) held.sealer.destroy();
    else this.#old.add(held);
  }

  #zero(held: Held): void {
    held.sealer.destroy();
    this.#old.delete(held);
  }
}
