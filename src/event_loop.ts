/**
 * The process's event loop: one epoll thread (in the C shim) and a table of
 * which handler owns each fd. Every fd is watched edge-triggered for reading
 * and writing once, for its whole life: owners try their I/O first and only
 * wait for the next edge after the socket said EAGAIN.
 *
 * @module
 */

import { EDGE, Poller, RDHUP, READABLE, WRITABLE } from "../ffi/shim.ts";
import { logger } from "./log.ts";

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

  /** Watch fd (edge-triggered, readable and writable) and call handler.
   *
   * @example
   * ```ts
   * import { EventLoop } from "./event_loop.ts";
   * declare const fd: number;
   * EventLoop.instance().add(fd, () => {});
   * ```
   */
  add(fd: number, handler: FdHandler): void {
    this.#poller.watch(fd, READABLE | WRITABLE | RDHUP | EDGE);
    this.#handlers.set(fd, handler);
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
