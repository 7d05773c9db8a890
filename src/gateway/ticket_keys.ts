/**
 * The TLS session-ticket keys of a gateway, shared so that a ticket one
 * gateway issued resumes on another (the satellites of one host, the
 * gateway that takes over from this one, the hosts behind one load
 * balancer). A ring holds the current key, which seals new tickets, and the
 * previous one, still accepted for one rotation period (a ticket sealed with
 * it is accepted and replaced by a new one).
 *
 * Where the keys come from:
 * - `memory` (the default, one host): random keys made in the primary
 *   gateway's memory, a new one every `--ticket-key-rotation`; the primary
 *   gives them to its satellites and to a gateway taking over (TICKETS).
 * - `file` (`--ticket-key-file PATH`, several hosts): a secret of at least
 *   32 bytes in a file only its owner may read, the same on every host; the
 *   key of each rotation period is derived from it (HKDF-SHA256 of the
 *   secret and the period's number), so hosts agree without talking. The
 *   keys of the period before and after are accepted too (clocks differ a
 *   little). A new file is read at the next period.
 * - `follower` (a satellite): whatever the primary sent last.
 *
 * Keys never reach a log; they live in this process's memory and the
 * shim's ring only (zeroed when replaced).
 *
 * @module
 */

import { fromBase64, toBase64 } from "../handoff/bytes.ts";
import { readPrivateFile, TICKET_KEY_ENTRY, TICKET_RING_KEYS, TicketRing } from "../../ffi/shim.ts";
import { wolfsslPath } from "../../ffi/paths.ts";
import type { TlsContext } from "../../ffi/wolfssl.ts";
import type { Tickets } from "../handoff/protocol.ts";
import { logger } from "../operations/log.ts";

const log = logger("gateway");
const enc = new TextEncoder();

/** Where a gateway's ticket keys come from. */
export type TicketSource =
  | { kind: "memory"; rotationMs: number }
  | { kind: "file"; path: string; rotationMs: number }
  | { kind: "follower" };

/** The name and key of rotation period `period`, derived from `secret`. */
async function derive(secret: Uint8Array, period: number): Promise<Uint8Array> {
  const raw = new Uint8Array(secret); // a copy on its own ArrayBuffer (zeroed below)
  const base = await crypto.subtle.importKey("raw", raw, "HKDF", false, ["deriveBits"]);
  raw.fill(0);
  const bits = await crypto.subtle.deriveBits(
    {
      name: "HKDF",
      hash: "SHA-256",
      salt: new Uint8Array(0),
      info: enc.encode(`hotpotato session ticket key v1 ${period}`),
    },
    base,
    TICKET_KEY_ENTRY * 8,
  );
  return new Uint8Array(bits);
}

/** Why `keys` cannot be a ring (none, not whole entries, too many), or
 * undefined when they can. */
function ringProblem(keys: Uint8Array): string | undefined {
  if (keys.length === 0) return "no key";
  if (keys.length % TICKET_KEY_ENTRY !== 0) {
    return `${keys.length} bytes, not whole ${TICKET_KEY_ENTRY}-byte entries`;
  }
  if (keys.length > TICKET_KEY_ENTRY * TICKET_RING_KEYS) {
    return `${keys.length / TICKET_KEY_ENTRY} keys, more than ${TICKET_RING_KEYS}`;
  }
  return undefined;
}

/**
 * One gateway's ticket keys.
 *
 * @example
 * ```ts
 * import { TicketKeys } from "./ticket_keys.ts";
 * import { TlsContext } from "../../ffi/wolfssl.ts";
 * const keys = new TicketKeys({ kind: "memory", rotationMs: 12 * 3600_000 });
 * await keys.start();
 * const context = TlsContext.server({ certFile: "cert.pem", keyFile: "key.pem" });
 * keys.attach(context);
 * ```
 */
export class TicketKeys {
  readonly source: TicketSource;
  #ring: TicketRing | undefined;
  /** The keys in use (entries, current first). */
  #keys = new Uint8Array(0);
  #timer: ReturnType<typeof setTimeout> | undefined;
  #listeners = new Set<(t: Tickets) => void>();
  #stopped = false;

  /** Keys from `source`; `start()` makes or reads the first ones.
   *
   * @example
   * ```ts
   * import { TicketKeys } from "./ticket_keys.ts";
   * new TicketKeys({ kind: "follower" });
   * ```
   */
  constructor(source: TicketSource) {
    this.source = source;
  }

  /** Make (memory) or derive (file) the first keys and schedule rotation.
   * Rejects when the file cannot be used.
   *
   * @example
   * ```ts
   * import type { TicketKeys } from "./ticket_keys.ts";
   * declare const keys: TicketKeys;
   * await keys.start();
   * ```
   */
  async start(): Promise<void> {
    if (this.source.kind === "memory") {
      this.#setKeys(crypto.getRandomValues(new Uint8Array(TICKET_KEY_ENTRY)));
      this.#timer = setInterval(() => this.#rotate(), this.source.rotationMs);
    } else if (this.source.kind === "file") {
      await this.#fromFile();
    } else {
      // A follower issues tickets with a key of its own until the primary's
      // keys come (an empty ring would fail every handshake).
      this.#setKeys(crypto.getRandomValues(new Uint8Array(TICKET_KEY_ENTRY)));
    }
  }

  /** Memory: a new current key; the current one stays accepted for a period. */
  #rotate(): void {
    const next = new Uint8Array(TICKET_KEY_ENTRY * 2);
    crypto.getRandomValues(next.subarray(0, TICKET_KEY_ENTRY));
    next.set(this.#keys.subarray(0, TICKET_KEY_ENTRY), TICKET_KEY_ENTRY);
    this.#setKeys(next);
    log.info("session-ticket key rotated (the previous one is accepted for one more period)");
  }

  /** File: the keys of this period (current), the one before and the one
   * after; again at the next period's start. */
  async #fromFile(): Promise<void> {
    if (this.source.kind !== "file") return;
    const { path, rotationMs } = this.source;
    const period = Math.floor(Date.now() / rotationMs);
    let retryMs = (period + 1) * rotationMs - Date.now() + 50;
    let secret: Uint8Array = new Uint8Array(0);
    try {
      secret = readPrivateFile(path, 4096);
      if (secret.length < 32) throw new Error(`${path}: the secret must be at least 32 bytes`);
      const keys = new Uint8Array(TICKET_KEY_ENTRY * 3);
      keys.set(await derive(secret, period), 0);
      keys.set(await derive(secret, period - 1), TICKET_KEY_ENTRY);
      keys.set(await derive(secret, period + 1), TICKET_KEY_ENTRY * 2);
      this.#setKeys(keys);
      keys.fill(0);
    } catch (e) {
      retryMs = Math.min(retryMs, 60_000); // try again soon; the keys in use stay
      throw e;
    } finally {
      secret.fill(0);
      if (!this.#stopped) {
        clearTimeout(this.#timer);
        this.#timer = setTimeout(() => {
          this.#fromFile().catch((e) =>
            log.error("session-ticket keys: {error}; the current ones stay", {
              error: (e as Error).message,
            })
          );
        }, retryMs);
      }
    }
  }

  /** Use `keys` (the ring first: when it refuses them, nothing changes). */
  #setKeys(keys: Uint8Array): void {
    const copy = keys.slice();
    try {
      this.#ring?.set(copy);
    } catch (e) {
      copy.fill(0);
      throw e;
    }
    this.#keys.fill(0);
    this.#keys = copy;
    if (this.#listeners.size > 0) {
      const message = this.message();
      for (const f of this.#listeners) f(message);
    }
  }

  /** Seal and open `context`'s tickets with these keys.
   *
   * @example
   * ```ts
   * import type { TicketKeys } from "./ticket_keys.ts";
   * import type { TlsContext } from "../../ffi/wolfssl.ts";
   * declare const keys: TicketKeys, context: TlsContext;
   * keys.attach(context);
   * ```
   */
  attach(context: TlsContext): void {
    this.#ring ??= new TicketRing(wolfsslPath);
    this.#ring.set(this.#keys);
    context.useTicketRing(this.#ring);
  }

  /** Take the keys another gateway sent (TICKETS; `from` names it in the
   * warning). Keys that cannot make a ring (none, a length that is not
   * whole entries, more than the ring holds) are refused with a warning
   * and the keys in use stay: returns whether they were taken.
   *
   * @example
   * ```ts
   * import type { TicketKeys } from "./ticket_keys.ts";
   * import type { Tickets } from "../handoff/protocol.ts";
   * declare const keys: TicketKeys, body: Tickets;
   * keys.use(body, "the primary gateway");
   * keys.use({ keys: "" }, "a test"); // false: refused, the keys in use stay
   * ```
   */
  use(tickets: Tickets, from = "another gateway"): boolean {
    let keys: Uint8Array = new Uint8Array(0);
    let problem: string | undefined;
    try {
      keys = fromBase64(tickets.keys);
      problem = ringProblem(keys);
      if (!problem) this.#setKeys(keys);
    } catch (e) {
      problem = (e as Error).message; // not base64, or the ring refused them
    } finally {
      keys.fill(0);
    }
    if (problem) {
      log.warning("session-ticket keys from {from} refused ({problem}); the current ones stay", {
        from,
        problem,
      });
    }
    return !problem;
  }

  /** The keys as a TICKETS body (for a satellite or a successor).
   *
   * @example
   * ```ts
   * import type { TicketKeys } from "./ticket_keys.ts";
   * declare const keys: TicketKeys;
   * const body = keys.message();
   * ```
   */
  message(): Tickets {
    return { keys: toBase64(this.#keys) };
  }

  /** Call `f` with the new keys whenever they change (to pass them on).
   *
   * @example
   * ```ts
   * import type { TicketKeys } from "./ticket_keys.ts";
   * declare const keys: TicketKeys;
   * keys.onChange((t) => console.log(`new keys: ${t.keys.length} base64 characters`));
   * ```
   */
  onChange(f: (t: Tickets) => void): void {
    this.#listeners.add(f);
  }

  /** Stop rotating and zero the keys (the contexts must be gone first).
   *
   * @example
   * ```ts
   * import type { TicketKeys } from "./ticket_keys.ts";
   * declare const keys: TicketKeys;
   * keys.stop();
   * ```
   */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearInterval(this.#timer);
    this.#keys.fill(0);
  }
}
