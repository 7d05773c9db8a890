/**
 * A listening socket on the event loop: it accepts until the kernel says
 * EAGAIN and hands each new connection to its owner.
 *
 * The listener is watched edge-triggered, so a connection left in the listen
 * queue is only looked at again on the next edge, which only a new arrival
 * brings. When accepting fails for want of file descriptors (EMFILE, ENFILE)
 * or kernel memory, the queue would then wait for a client that may never
 * come, even after fds are free again. So the listener retries on its own:
 * every {@linkcode RETRY_MS} (nginx waits 500 ms too), and at once when the
 * process has closed a connection ({@linkcode retryBlockedListeners}). It
 * never spins: each retry is one accept() that either succeeds or re-arms the
 * timer. One warning per episode, and an info line when it accepts again.
 *
 * @module
 */

import {
  accept,
  closeFd,
  EMFILE,
  ENFILE,
  ENOBUFS,
  ENOMEM,
  spareFd,
  SysError,
} from "../../ffi/shim.ts";
import { EventLoop } from "./event_loop.ts";
import { logger } from "../operations/log.ts";

const log = logger("listener");

/** How long a listener out of fds waits before trying again, ms. */
export const RETRY_MS = 500;

/** Failures that freeing fds or memory will cure. */
const SCARCE = new Set([EMFILE, ENFILE, ENOBUFS, ENOMEM]);
/** Errors that belong to one aborted connection, not to the listener
 * (accept(2), "Error handling"): that connection is gone, the next one in the
 * queue may be fine. EINTR, EPROTO, ECONNABORTED, ENETDOWN, ENETUNREACH,
 * ENONET, ENOPROTOOPT, EHOSTDOWN, EHOSTUNREACH. */
const PER_CONNECTION = new Set([4, 71, 103, 100, 101, 64, 92, 112, 113]);
/** Most such errors in a row before the listener backs off like for EMFILE. */
const MAX_PER_CONNECTION = 64;

/** Listeners waiting for fds, poked when the process frees one. */
const blocked = new Set<Listener>();

/** The process closed a connection (an fd is free): every listener that is
 * waiting for fds tries again now instead of at its next timer.
 *
 * @example
 * ```ts
 * import { retryBlockedListeners } from "./listener.ts";
 * retryBlockedListeners(); // after closing a client's socket
 * ```
 */
export function retryBlockedListeners(): void {
  for (const l of blocked) l.retrySoon();
}

/** How a {@linkcode Listener} behaves. */
export interface ListenerOptions {
  /** Keep one fd in reserve, and spend it on a connection when accepting
   * fails for want of fds (EMFILE, ENFILE): for a listener whose
   * connections must not wait in the queue while the process is full (a
   * worker's peer socket: a sibling waits for its answer). One connection
   * per freed reserve; the reserve is taken again when fds are free. */
  spareFd?: boolean;
}

/** A new connection: its fd (owned by the callee) and peer address. */
export interface Accepted {
  /** The connection's fd. */
  fd: number;
  /** "ip:port", or "unix". */
  peer: string;
}

/**
 * Accepts connections on a listening fd (which it owns from now on).
 *
 * @example
 * ```ts
 * import { Listener } from "./listener.ts";
 * import { closeFd, tcpListen } from "../../ffi/shim.ts";
 * const listener = new Listener(tcpListen("127.0.0.1", 0), "clients", (c) => closeFd(c.fd));
 * listener.close();
 * ```
 */
export class Listener {
  readonly fd: number;
  readonly name: string;
  #onConnection: (c: Accepted) => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #blockedSince = 0;
  #retries = 0;
  /** The pending retry is the immediate one (see retrySoon). */
  #soon = false;
  #closed = false;
  #paused = false;
  /** The reserved fd (-1: none, or not wanted). */
  #spare = -1;
  #wantSpare: boolean;

  /** Watch `fd` and call `onConnection` for each connection accepted.
   * `name` appears in the log lines ("clients", "control", "admin").
   *
   * @example
   * ```ts
   * import { Listener } from "./listener.ts";
   * import { closeFd, tcpListen } from "../../ffi/shim.ts";
   * new Listener(tcpListen("127.0.0.1", 0), "admin", ({ fd, peer }) => {
   *   console.log(`connection from ${peer}`);
   *   closeFd(fd);
   * });
   * ```
   */
  constructor(
    fd: number,
    name: string,
    onConnection: (c: Accepted) => void,
    options: ListenerOptions = {},
  ) {
    this.fd = fd;
    this.name = name;
    this.#onConnection = onConnection;
    this.#wantSpare = options.spareFd === true;
    this.#takeSpare();
    EventLoop.instance().add(fd, () => this.#accept());
  }

  /** True while accepting waits for fds to be freed. */
  get blocked(): boolean {
    return this.#blockedSince !== 0;
  }

  /** Stop accepting, keeping the socket open (connections wait in its
   * queue, or another process sharing the socket takes them).
   *
   * @example
   * ```ts
   * import { Listener } from "./listener.ts";
   * import { closeFd, tcpListen } from "../../ffi/shim.ts";
   * const listener = new Listener(tcpListen("127.0.0.1", 0), "clients", (c) => closeFd(c.fd));
   * listener.pause();
   * listener.resume();
   * listener.close();
   * ```
   */
  pause(): void {
    if (this.#closed || this.#paused) return;
    this.#paused = true;
    this.#disarm();
    blocked.delete(this);
    EventLoop.instance().remove(this.fd);
  }

  /** Accept again after {@linkcode Listener.pause} (what queued meanwhile
   * is taken at once).
   *
   * @example
   * ```ts
   * import type { Listener } from "./listener.ts";
   * declare const listener: Listener;
   * listener.resume();
   * ```
   */
  resume(): void {
    if (this.#closed || !this.#paused) return;
    this.#paused = false;
    EventLoop.instance().add(this.fd, () => this.#accept());
    this.#accept();
  }

  #accept(): void {
    let aborted = 0;
    while (!this.#closed && !this.#paused) {
      let c;
      try {
        c = accept(this.fd);
      } catch (e) {
        const errno = e instanceof SysError ? e.errno : 0;
        if (PER_CONNECTION.has(errno) && ++aborted < MAX_PER_CONNECTION) continue;
        if ((errno === EMFILE || errno === ENFILE) && this.#spare >= 0) {
          closeFd(this.#spare); // room for this one connection
          this.#spare = -1;
          log.warning("{listener}: out of fds; the reserved one takes a connection", {
            listener: this.name,
          });
          continue;
        }
        this.#block(e as Error, SCARCE.has(errno));
        return;
      }
      this.#unblock();
      if (this.#spare < 0) this.#takeSpare();
      if (!c) return;
      try {
        this.#onConnection(c);
      } catch (e) {
        // The owner's bug or failure (its fd is its own to close): the rest
        // of the queue must not wait for an edge that may never come.
        log.error("{listener}: cannot take a connection: {error}", {
          listener: this.name,
          error: String(e),
        });
      }
    }
  }

  /** Reserve an fd again, if wanted and there is one to take. */
  #takeSpare(): void {
    if (!this.#wantSpare || this.#spare >= 0 || this.#closed) return;
    const fd = spareFd();
    if (fd >= 0) this.#spare = fd;
  }

  /** Accepting failed: try again later, without waiting for an edge. */
  #block(e: Error, scarce: boolean): void {
    if (this.#blockedSince === 0) {
      this.#blockedSince = Date.now();
      this.#retries = 0;
      blocked.add(this);
      log.warning(
        "{listener}: accept failed: {error}; connections wait in the listen queue, " +
          "retrying every {ms} ms{also}",
        {
          listener: this.name,
          error: e.message,
          ms: RETRY_MS,
          also: scarce ? " and whenever a connection closes" : "",
        },
      );
    } else {
      this.#retries++;
    }
    this.#arm(RETRY_MS);
  }

  #unblock(): void {
    if (this.#blockedSince === 0) return;
    log.info("{listener}: accepting again after {ms} ms ({retries} retries)", {
      listener: this.name,
      ms: Date.now() - this.#blockedSince,
      retries: this.#retries,
    });
    this.#blockedSince = 0;
    blocked.delete(this);
    this.#disarm();
  }

  /** One retry in `ms` (replacing any pending one). */
  #arm(ms: number): void {
    this.#disarm();
    this.#soon = ms === 0;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#soon = false;
      this.#accept();
    }, ms);
  }

  #disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#soon = false;
  }

  /** While blocked, try again on the next turn of the event loop (one
   * attempt, however often this is called in the meantime).
   *
   * @example
   * ```ts
   * import type { Listener } from "./listener.ts";
   * declare const listener: Listener;
   * listener.retrySoon();
   * ```
   */
  retrySoon(): void {
    if (this.#blockedSince !== 0 && !this.#closed && !this.#soon) this.#arm(0);
  }

  /** Stop accepting and close the listening fd.
   *
   * @example
   * ```ts
   * import type { Listener } from "./listener.ts";
   * declare const listener: Listener;
   * listener.close();
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#paused = false;
    this.#disarm();
    blocked.delete(this);
    EventLoop.instance().remove(this.fd);
    closeFd(this.fd);
    closeFd(this.#spare);
    this.#spare = -1;
  }
}
