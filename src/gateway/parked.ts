/**
 * Idle keep-alive connections of a function at zero workers, parked in the
 * gateway. When a function's last worker stops (scaled to zero), it hands
 * its idle connections over; no worker is left to take them, so the gateway
 * keeps each one as it came, unopened (the socket and the sealed TLS state:
 * the gateway never imports a function's state), and watches the socket.
 * When the client sends its next request the function is started on demand
 * and the connection goes to its new worker, which reads the request itself:
 * the client keeps its connection and its TLS session across scale-to-zero.
 * A parked connection whose client hangs up, or that stays idle for
 * `--idle-timeout`, is closed (without close_notify: the gateway holds no
 * TLS state of it).
 *
 * @module
 */

import { ERROR, HANGUP, RDHUP } from "../../ffi/shim.ts";
import { EventLoop } from "../connection/event_loop.ts";
import type { Parcel } from "../handoff/parcel.ts";
import { logger } from "../operations/log.ts";
import type { GatewayMetrics } from "./gateway_metrics.ts";

const log = logger("gateway");

/** Most connections parked per function. */
export const MAX_PARKED = 10_000;

/** What {@linkcode ParkedConnections} works with. */
export interface ParkedOptions {
  /** How long a parked connection may stay idle, ms (`--idle-timeout`). */
  idleTimeoutMs: number;
  /** Where the parked count is shown. */
  metrics: GatewayMetrics;
  /** The client spoke: start `fn` and hand `parcel` to its worker. */
  wake(fn: string, path: string, parcel: Parcel): void;
}

interface Entry {
  fn: string;
  fd: number;
  parcel: Parcel;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * The connections parked for functions at zero workers.
 *
 * @example
 * ```ts
 * import { ParkedConnections } from "./parked.ts";
 * import { GatewayMetrics } from "./gateway_metrics.ts";
 * const parked = new ParkedConnections({
 *   idleTimeoutMs: 30_000,
 *   metrics: new GatewayMetrics(),
 *   wake: (fn, _path, parcel) => console.log(`start ${fn} for conn ${parcel.connId}`),
 * });
 * console.log(parked.count("hello")); // 0
 * ```
 */
export class ParkedConnections {
  #o: ParkedOptions;
  #byFn = new Map<string, Set<Entry>>();

  /** Parked connections over these parts.
   *
   * @example
   * ```ts
   * import { ParkedConnections, type ParkedOptions } from "./parked.ts";
   * declare const options: ParkedOptions;
   * new ParkedConnections(options);
   * ```
   */
  constructor(options: ParkedOptions) {
    this.#o = options;
  }

  /** Connections parked for `fn` now.
   *
   * @example
   * ```ts
   * import type { ParkedConnections } from "./parked.ts";
   * declare const parked: ParkedConnections;
   * console.log(parked.count("hello"));
   * ```
   */
  count(fn: string): number {
    return this.#byFn.get(fn)?.size ?? 0;
  }

  /** Park `parcel` (ours: confirmed; its socket is `fd`) for `fn`, whose
   * route `path` it was idle on; false when `fn` has MAX_PARKED already
   * (the caller drops it).
   *
   * @example
   * ```ts
   * import type { ParkedConnections } from "./parked.ts";
   * import type { Parcel } from "../handoff/parcel.ts";
   * declare const parked: ParkedConnections, parcel: Parcel;
   * if (!parked.park("hello", "/hello", 42, parcel)) parcel.drop();
   * ```
   */
  park(fn: string, path: string, fd: number, parcel: Parcel): boolean {
    const set = this.#byFn.get(fn) ?? new Set<Entry>();
    if (set.size >= MAX_PARKED) return false;
    this.#byFn.set(fn, set);
    const entry: Entry = {
      fn,
      fd,
      parcel,
      timer: setTimeout(() => {
        this.#unpark(entry);
        log.debug("conn {conn}: parked for {fn} and idle too long; closed", {
          conn: parcel.connId,
          fn,
        });
        parcel.drop();
      }, this.#o.idleTimeoutMs),
    };
    set.add(entry);
    this.#o.metrics.parked.labels(fn).set(set.size);
    // Readable (the next request) or hung up, whichever comes first; a
    // request already waiting in the socket shows at once.
    EventLoop.instance().add(fd, (events) => {
      if (!this.#unpark(entry)) return;
      if (events & (RDHUP | HANGUP | ERROR)) {
        log.debug("conn {conn}: parked for {fn}; the client left", { conn: parcel.connId, fn });
        parcel.drop();
        return;
      }
      this.#o.wake(fn, path, parcel);
    }, { writable: false });
    return true;
  }

  /** Close every parked connection (the gateway stops).
   *
   * @example
   * ```ts
   * import type { ParkedConnections } from "./parked.ts";
   * declare const parked: ParkedConnections;
   * parked.closeAll();
   * ```
   */
  closeAll(): void {
    for (const set of [...this.#byFn.values()]) {
      for (const entry of [...set]) {
        this.#unpark(entry);
        entry.parcel.drop();
      }
    }
  }

  /** Take `entry` out (its watch and timer); false when it was out already. */
  #unpark(entry: Entry): boolean {
    const set = this.#byFn.get(entry.fn);
    if (!set?.delete(entry)) return false;
    clearTimeout(entry.timer);
    EventLoop.instance().remove(entry.fd);
    this.#o.metrics.parked.labels(entry.fn).set(set.size);
    if (set.size === 0) this.#byFn.delete(entry.fn);
    return true;
  }
}
