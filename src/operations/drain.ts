/**
 * Draining, one way for every role: interrupt the connections held that
 * wait idle for a request (they close cleanly), let requests in flight
 * finish, and wait until nothing is held and nothing is pending (a
 * handshake in progress, a connection sent and not yet confirmed, which may
 * still come back), or until the deadline.
 *
 * @module
 */

import type { TlsConnection } from "../connection/tls_connection.ts";

/** How often a drain looks again. */
const POLL_MS = 20;

/** What a drain waits for. */
export interface DrainOptions {
  /** The connections held (read again at every look). */
  held: ReadonlySet<TlsConnection>;
  /** Work that is not a held connection yet: handshakes in progress,
   * connections sent and unconfirmed. Default: none. */
  pending?(): number;
  /** When to give up (ms since the epoch). */
  until: number;
  /** Stop waiting early when this turns true (a successor that went away). */
  abort?(): boolean;
}

/**
 * Wait until `held` is empty and nothing is pending, interrupting idle
 * connections, or until `until`, then close what is still held (the
 * deadline is the deadline; not when `abort` stopped the wait); returns how
 * many connections were still held.
 *
 * @example
 * ```ts
 * import { drainHeld } from "./drain.ts";
 * import type { TlsConnection } from "../connection/tls_connection.ts";
 * const held = new Set<TlsConnection>();
 * const left = await drainHeld({ held, until: Date.now() + 1000 });
 * console.log(`${left} connection(s) cut`);
 * ```
 */
export async function drainHeld(o: DrainOptions): Promise<number> {
  while (
    (o.held.size > 0 || (o.pending?.() ?? 0) > 0) && Date.now() < o.until && !o.abort?.()
  ) {
    for (const conn of o.held) conn.interruptIdle();
    await new Promise((ok) => setTimeout(ok, POLL_MS));
  }
  const left = o.held.size;
  // The deadline is the deadline; an aborted drain leaves them be.
  if (!o.abort?.()) { for (const conn of [...o.held]) conn.close(); }
  return left;
}
