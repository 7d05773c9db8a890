/**
 * The process's event loop: one epoll thread (in the C shim) and a table of
 * which handler owns each fd. Every fd is watched edge-triggered: owners try
 * their I/O first and only wait for the next edge after the socket said
 * EAGAIN. Client connections are watched for reading only until a write
 * would block: a fresh socket is writable at once, and that edge would cost
 * a whole wake of the loop for nothing on every connection a worker adopts.
 *
 * @module
 */

import { EDGE, Poller, RDHUP, READABLE, WRITABLE } from "../../ffi/shim.ts";
import { logger } from "../operations/log.ts";

const log = logger("event-loop");

/** Called with the epoll event flags each time the fd becomes ready. */
export type FdHandler = (events: number) => void;

/**
 * A registry of fd handlers over the shim's epoll thread.
 *
 * @example
 * ```ts
 * import { EventLoop } from "./event_loop.ts";
 * const loop = EventLoop.instance();
 * loop.add(0, (events) => console.log("stdin ready", events));
 * ```
 */
export class EventLoop {
  static #instance: EventLoop | undefined;
  #handlers = new Map<number, FdHandler>();
  /** What each fd is watched for (epoll flags). */
  #interest = new Map<number, number>();
  #poller: Poller;

  private constructor() {
    this.#poller = new Poller((fd, events) => {
      try {
        this.#handlers.get(fd)?.(events);
      } catch (e) {
        // A bug in one fd's handler must not stop every other fd.
        log.error("handler for fd {fd} failed: {error}", { fd, error: String(e) });
      }
    }, 512);
  }

  /** The process-wide loop, started on first use.
   *
   * @example
   * ```ts
   * import { EventLoop } from "./event_loop.ts";
   * const loop = EventLoop.instance();
   * ```
   */
  static instance(): EventLoop {
    EventLoop.#instance ??= new EventLoop();
    return EventLoop.#instance;
  }

  /** Watch fd (edge-triggered) and call handler: for reading and writing,
   * or for reading only with `{ writable: false }` (see
   * {@linkcode EventLoop.watchWritable}), or for hang-ups only with
   * `{ readable: false, writable: false }` (errors and hang-ups are always
   * reported).
   *
   * @example
   * ```ts
   * import { EventLoop } from "./event_loop.ts";
   * declare const fd: number;
   * EventLoop.instance().add(fd, () => {});
   * ```
   */
  add(
    fd: number,
    handler: FdHandler,
    opts: { writable?: boolean; readable?: boolean } = {},
  ): void {
    const events = (opts.readable === false ? 0 : READABLE) |
      (opts.writable === false ? 0 : WRITABLE) | RDHUP | EDGE;
    this.#poller.watch(fd, events);
    this.#interest.set(fd, events);
    this.#handlers.set(fd, handler);
  }

  /** Also watch an fd added with `{ writable: false }` for writing (until
   * {@linkcode EventLoop.unwatchWritable}). If it is writable already, the
   * handler hears of it at once.
   *
   * @example
   * ```ts
   * import { EventLoop } from "./event_loop.ts";
   * declare const fd: number;
   * EventLoop.instance().watchWritable(fd);
   * ```
   */
  watchWritable(fd: number): void {
    this.#setInterest(fd, WRITABLE, true);
  }

  /** Stop watching fd for writing: every time a peer reads what we wrote,
   * a writable socket's edge would wake the process for nothing.
   *
   * @example
   * ```ts
   * import { EventLoop } from "./event_loop.ts";
   * declare const fd: number;
   * EventLoop.instance().unwatchWritable(fd);
   * ```
   */
  unwatchWritable(fd: number): void {
    this.#setInterest(fd, WRITABLE, false);
  }

  #setInterest(fd: number, flag: number, on: boolean): void {
    const was = this.#interest.get(fd);
    if (was === undefined) return;
    const now = on ? was | flag : was & ~flag;
    if (now === was) return;
    this.#poller.change(fd, now);
    this.#interest.set(fd, now);
  }

  /** Stop watching fd. Call before the fd is closed or handed off.
   *
   * @example
   * ```ts
   * import { EventLoop } from "./event_loop.ts";
   * declare const fd: number;
   * EventLoop.instance().remove(fd);
   * ```
   */
  remove(fd: number): void {
    this.#interest.delete(fd);
    if (this.#handlers.delete(fd)) this.#poller.forget(fd);
  }

  /** Number of fds being watched.
   *
   * @example
   * ```ts
   * import { EventLoop } from "./event_loop.ts";
   * console.log(EventLoop.instance().size);
   * ```
   */
  get size(): number {
    return this.#handlers.size;
  }

  /** Stop the epoll thread (for tests and shutdown).
   *
   * @example
   * ```ts
   * import { EventLoop } from "./event_loop.ts";
   * await EventLoop.instance().close();
   * ```
   */
  async close(): Promise<void> {
    const me = EventLoop.#instance;
    EventLoop.#instance = undefined;
    this.#handlers.clear();
    if (me) await me.#poller.close();
  }
}
