/**
 * One end of a control channel: a Unix SOCK_SEQPACKET socket between the
 * gateway and a worker. Receives messages (with a passed fd, if any) as the
 * socket becomes readable, and sends messages without ever blocking: when
 * the socket is full, messages wait in a bounded queue until it drains.
 *
 * Ownership: `send` takes the fd and closes this process's copy once the
 * kernel has it (or when sending fails), and zeroes the message bytes once
 * sent (they may hold the deployment key or a client's request bytes). A
 * received fd belongs to the `onMessage` callback; received bytes are zeroed
 * after it returns.
 *
 * @module
 */

import { closeFd, EAGAIN, EMSGSIZE, receiveMessage, sendMessage } from "../ffi/shim.ts";
import { EventLoop } from "./event_loop.ts";
import { decodeMessage, Limits, type Message, ProtocolError } from "./protocol.ts";

/** What the channel reports to its owner. */
export interface ControlChannelHandlers {
  /** A decoded message; `fd` is the passed connection or -1; `raw` is the
   * message's bytes (valid only during the call). */
  onMessage(msg: Message, fd: number, raw: Uint8Array): void;
  /** A message that could not be decoded; its fd was already closed. */
  onBadMessage?(error: string): void;
  /** The peer closed the channel (or it failed); the channel is closed. */
  onClose(): void;
}

const recvBuf = new Uint8Array(Limits.maxMessage);
/** Messages waiting for a full socket to drain, at most. */
const MAX_QUEUED = 4096;

/**
 * A non-blocking control channel over a connected SOCK_SEQPACKET fd.
 *
 * @example
 * ```ts
 * import { ControlChannel } from "./control_channel.ts";
 * import { unixConnect } from "../ffi/shim.ts";
 * const channel = new ControlChannel(unixConnect("/tmp/hp/gateway.sock"), {
 *   onMessage: (msg) => console.log(msg.type),
 *   onClose: () => console.log("gateway gone"),
 * });
 * ```
 */
export class ControlChannel {
  readonly fd: number;
  #handlers: ControlChannelHandlers;
  #queue: { data: Uint8Array; fd: number }[] = [];
  #closed = false;

  /** Take over `fd` and start receiving.
   *
   * @example
   * ```ts
   * import { ControlChannel } from "./control_channel.ts";
   * declare const fd: number;
   * new ControlChannel(fd, { onMessage() {}, onClose() {} });
   * ```
   */
  constructor(fd: number, handlers: ControlChannelHandlers) {
    this.fd = fd;
    this.#handlers = handlers;
    // Adding an fd that is already readable reports it once: nothing is missed.
    EventLoop.instance().add(fd, () => this.#onReady());
  }

  #onReady(): void {
    this.#flush();
    this.#receive();
  }

  #receive(): void {
    while (!this.#closed) {
      const r = receiveMessage(this.fd, recvBuf);
      if (typeof r === "number") {
        if (r === -EAGAIN) return;
        if (r === -EMSGSIZE) {
          this.#handlers.onBadMessage?.(`message larger than ${Limits.maxMessage} bytes`);
          continue;
        }
        this.close();
        return;
      }
      if (r.length === 0) {
        closeFd(r.fd);
        this.close();
        return;
      }
      const raw = recvBuf.subarray(0, r.length);
      let msg: Message;
      try {
        msg = decodeMessage(raw);
      } catch (e) {
        closeFd(r.fd);
        raw.fill(0);
        this.#handlers.onBadMessage?.(e instanceof ProtocolError ? e.message : String(e));
        continue;
      }
      try {
        this.#handlers.onMessage(msg, r.fd, raw);
      } finally {
        raw.fill(0); // it may have held a sealed blob and request bytes
      }
    }
  }

  /** Send a message, passing `fd` along when given (its local copy is
   * closed once sent). Returns false when the channel is closed or its queue
   * is full; the fd is closed then too.
   *
   * @example
   * ```ts
   * import { ControlChannel } from "./control_channel.ts";
   * declare const channel: ControlChannel, message: Uint8Array, connFd: number;
   * channel.send(message, connFd);
   * ```
   */
  send(data: Uint8Array, fd = -1): boolean {
    if (this.#closed || this.#queue.length >= MAX_QUEUED) {
      closeFd(fd);
      return false;
    }
    if (this.#queue.length === 0) {
      const n = sendMessage(this.fd, data, fd);
      if (n >= 0) {
        closeFd(fd);
        data.fill(0); // it may have held the deployment key or request bytes
        return true;
      }
      if (n !== -EAGAIN) {
        closeFd(fd);
        this.close();
        return false;
      }
    }
    this.#queue.push({ data: data.slice(), fd }); // data may be a view of a reused buffer
    return true;
  }

  #flush(): void {
    while (this.#queue.length > 0 && !this.#closed) {
      const { data, fd } = this.#queue[0];
      const n = sendMessage(this.fd, data, fd);
      if (n === -EAGAIN) return;
      this.#queue.shift();
      closeFd(fd);
      data.fill(0);
      if (n < 0) {
        this.close();
        return;
      }
    }
  }

  /** Close the channel; queued fds are closed, `onClose` is called once.
   *
   * @example
   * ```ts
   * import { ControlChannel } from "./control_channel.ts";
   * declare const channel: ControlChannel;
   * channel.close();
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    EventLoop.instance().remove(this.fd);
    for (const { data, fd } of this.#queue) {
      closeFd(fd);
      data.fill(0);
    }
    this.#queue = [];
    closeFd(this.fd);
    this.#handlers.onClose();
  }
}
