/**
 * One end of a control channel: a Unix SOCK_SEQPACKET socket between the
 * gateway and a worker (or, for direct handoffs, two workers: peers.ts). Receives messages (with a passed fd, if any) as the
 * socket becomes readable, and sends messages without ever blocking: when
 * the socket is full, messages wait in a bounded queue until it drains.
 *
 * Ownership: `send` takes the fd and closes this process's copy once the
 * kernel has it (or when sending fails), and zeroes the message bytes once
 * sent (they may hold the deployment key or a client's request bytes). A
 * received fd belongs to the `onMessage` callback when its message type may
 * carry one (protocol.ts `CARRIES_FD`: HANDOFF, and LISTENER on a channel
 * that takes listeners); with any other type the
 * channel closes it before the callback runs, which gets -1. Received bytes
 * are zeroed after it returns.
 *
 * Live connections move with `transfer`, acknowledged: the sender keeps its
 * copy of the socket and of the sealed message until the receiver's ACK.
 * Adopted: the copy is dropped. Refused, or the channel closes first (the
 * receiver died): the connection comes back to the sender's `onReturned`,
 * which places it elsewhere. The receiver answers with `confirm`, batched:
 * one ACK per receive turn, and what it does with an adopted connection
 * (read or write a TLS byte) waits until the ACK has left (`confirm`'s
 * `then`), so the sender's copy is never used once the new owner has moved
 * the TLS state on.
 *
 * Wakes: a channel is watched for writing only while messages wait for a
 * full socket (else every message the peer reads would wake this process).
 * A channel that only sends transfers and gets ACKs back (a worker's channel
 * to a sibling, `lazyAcks`) is not watched for reading at all: its ACKs are
 * read when it sends with COLLECT_AT transfers in flight, when its owner asks
 * (`collect`), within LAZY_ACKS_MS otherwise, and at once when the peer hangs
 * up. Reads take up to BATCH messages per system call (recvmmsg) and stop
 * when a read found fewer: no read that only says EAGAIN. A confirmation
 * then never wakes an idle sender by itself; the sender keeps each
 * connection until it has read the ACK, as before.
 *
 * @module
 */

import {
  closeFd,
  EAGAIN,
  EBADMSG,
  ECONNRESET,
  EMSGSIZE,
  ERROR,
  HANGUP,
  MessageBatch,
  RDHUP,
  sendMessage,
} from "../../ffi/shim.ts";
import { EventLoop } from "../connection/event_loop.ts";
import {
  type Ack,
  CARRIES_FD,
  decodeMessage,
  encodeAck,
  Limits,
  type Message,
  MessageType,
  ProtocolError,
  setTransferId,
  transferIdOf,
} from "./protocol.ts";
import { logger } from "../operations/log.ts";

const log = logger("control-channel");

/** A connection that came back to its sender: the receiver refused it, or
 * the channel closed before the receiver said anything. The callee owns
 * `fd` and `message` again (the sealed HANDOFF as sent). */
export type OnReturned = (fd: number, message: Uint8Array, reason: string) => void;

interface Transfer {
  fd: number;
  message: Uint8Array;
  onReturned: OnReturned;
  /** Called once the receiver confirmed it adopted the connection. */
  onConfirmed?: () => void;
  /** The kernel has it: the receiver may adopt it even if we close first. */
  sent: boolean;
}

interface Queued {
  data: Uint8Array;
  fd: number;
  /** A transfer: the fd stays open after sending (the sender keeps it until
   * the ACK). */
  keepFd: boolean;
  /** Run once the message has gone to the socket (true), or when it never
   * will and the peer may still be alive (false). */
  after?: ((mine: boolean) => void)[];
  /** The transfer this message carries. */
  transfer?: number;
}

/** What the channel reports to its owner. */
export interface ControlChannelHandlers {
  /** A decoded message; `fd` is the connection a HANDOFF passed (or
   * FD_LOST when the kernel discarded it: this process is at its fd limit),
   * else -1 (an fd that came with another type is closed already); `raw` is
   * the message's bytes (valid only during the call). */
  onMessage(msg: Message, fd: number, raw: Uint8Array): void;
  /** A message that could not be decoded; its fd was already closed. */
  onBadMessage?(error: string): void;
  /** The peer closed the channel (or it failed); the channel is closed.
   * Transfers still waiting for an ACK come back (`onReturned`) after this. */
  onClose(): void;
  /** Whether this channel takes a LISTENER's fd (only a gateway's channel
   * to the gateway it takes over from does); default false: the fd is
   * closed like any other that comes with a type not meant for this peer. */
  takesListeners?: boolean;
}

/** Options of a channel. */
export interface ControlChannelOptions {
  /** Only transfers go out and only ACKs come back: read them lazily (see
   * the module's doc), not on every arrival. */
  lazyAcks?: boolean;
}

/** A lazy channel with transfers in flight reads its ACKs at least this often. */
export const LAZY_ACKS_MS = 50;

/** Messages read per system call (recvmmsg). */
const BATCH = 16;
/** Read batches not in use (one per read in progress; see #receiveAll). */
const freeBatches: MessageBatch[] = [];
/** A lazy channel reads its ACKs when it sends once this many transfers are
 * in flight (one read takes up to BATCH of them), not at every transfer. */
export const COLLECT_AT = 8;

/** Close the fds and zero the bytes of entries `from` to `to` of `batch`. */
function discard(batch: MessageBatch, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    closeFd(batch.fd(i));
    batch.bytes(i).fill(0);
  }
}
/** Messages waiting for a full socket to drain, at most. */
const MAX_QUEUED = 4096;

/**
 * A non-blocking control channel over a connected SOCK_SEQPACKET fd.
 *
 * @example
 * ```ts
 * import { ControlChannel } from "./control_channel.ts";
 * import { unixConnect } from "../../ffi/shim.ts";
 * const channel = new ControlChannel(unixConnect("/tmp/hp/gateway.sock"), {
 *   onMessage: (msg) => console.log(msg.type),
 *   onClose: () => console.log("gateway gone"),
 * });
 * ```
 */
export class ControlChannel {
  readonly fd: number;
  #handlers: ControlChannelHandlers;
  #queue: Queued[] = [];
  #closed = false;
  /** Transfers sent and not acknowledged, by transfer id. */
  #pending = new Map<number, Transfer>();
  #nextTransfer = 1;
  /** Confirmations of this receive turn, and what waits for them. */
  #acks: Ack[] = [];
  #afterAcks: ((mine: boolean) => void)[] = [];
  /** The peer closed its end (EOF): what it sent us is ours alone. */
  #peerGone = false;
  /** A send failed: close once what the peer sent us has been read. */
  #broken = false;
  #ignoredAcks = 0;
  #lazy: boolean;
  /** Watched for writing (messages wait in the queue). */
  #watchingWrites = false;
  /** A lazy channel's next read of its ACKs, while transfers are in flight. */
  #collectTimer: ReturnType<typeof setTimeout> | undefined;
  /** Receive turns in progress (their confirmations leave together at the
   * end of the outermost). */
  #turns = 0;

  /** Take over `fd` and start receiving.
   *
   * @example
   * ```ts
   * import { ControlChannel } from "./control_channel.ts";
   * declare const fd: number;
   * new ControlChannel(fd, { onMessage() {}, onClose() {} });
   * ```
   */
  constructor(fd: number, handlers: ControlChannelHandlers, options: ControlChannelOptions = {}) {
    this.fd = fd;
    this.#handlers = handlers;
    this.#lazy = options.lazyAcks === true;
    // Adding an fd that is already readable reports it once: nothing is missed.
    EventLoop.instance().add(fd, (events) => this.#onReady(events), {
      writable: false,
      readable: !this.#lazy,
    });
  }

  #onReady(events: number): void {
    this.#flush();
    // A lazy channel hears of its peer only when it hangs up (or fails):
    // read everything, to the end.
    if (!this.#lazy || (events & (HANGUP | RDHUP | ERROR)) !== 0) this.#receive(true);
  }

  /** Read the ACKs that arrived on a lazy channel (see the module's doc);
   * on another channel, everything is read as it arrives anyway.
   *
   * @example
   * ```ts
   * import { ControlChannel } from "./control_channel.ts";
   * declare const channel: ControlChannel;
   * channel.collect();
   * console.log(channel.unconfirmed); // what is still in flight
   * ```
   */
  collect(): void {
    if (this.#lazy && !this.#closed && this.#pending.size > 0) this.#receive(false);
  }

  /** Give the channel new handlers (its peer turned out to be another kind
   * of peer: a gateway taking over, not a worker).
   *
   * @example
   * ```ts
   * import { ControlChannel } from "./control_channel.ts";
   * declare const channel: ControlChannel;
   * channel.retarget({ onMessage: (msg) => console.log(msg.type), onClose() {} });
   * ```
   */
  retarget(handlers: ControlChannelHandlers): void {
    this.#handlers = handlers;
  }

  /** Transfers sent on this channel and not acknowledged yet (the sender
   * still owns them).
   *
   * @example
   * ```ts
   * import { ControlChannel } from "./control_channel.ts";
   * declare const channel: ControlChannel;
   * if (channel.unconfirmed === 0) channel.close();
   * ```
   */
  get unconfirmed(): number {
    return this.#pending.size;
  }

  /** Read what the peer sent: `all`, to EAGAIN; else (a lazy channel's
   * ACKs) until nothing is in flight. */
  #receive(all = true): void {
    this.#turns++;
    try {
      this.#receiveAll(all);
    } finally {
      this.#turns--;
      this.#sendAcks();
      if (this.#broken) this.close(); // everything the peer sent is read
    }
  }

  #receiveAll(all: boolean): void {
    // A handler may make another channel read while this batch is handled:
    // each read takes a batch of its own.
    const batch = freeBatches.pop() ?? new MessageBatch(BATCH, Limits.maxMessage);
    try {
      while (!this.#closed && (all || this.#pending.size > 0)) {
        const n = batch.receive(this.fd);
        if (n < 0) {
          if (n === -EAGAIN) return;
          if (n === -ECONNRESET) {
            // The peer closed with our messages unread: the kernel reports
            // that before what it had sent us, so go on reading (its ACKs and
            // handoffs), up to the end of the stream.
            this.#peerGone = true;
            continue;
          }
          this.close();
          return;
        }
        for (let i = 0; i < n; i++) {
          if (this.#closed || !this.#take(batch, i)) {
            // Closed, or the end of the stream: what came after is nobody's
            // (a HANDOFF's sender still owns its connection and takes it
            // back when it sees the channel close).
            discard(batch, this.#closed ? i : i + 1, n);
            return;
          }
        }
        // Fewer than a batch: nothing more was queued (the next arrival is
        // a new edge), so no read that would only say EAGAIN.
        if (batch.drained) return;
      }
    } finally {
      freeBatches.push(batch);
    }
  }

  /** Handle entry `i` of `batch`; false at the end of the stream. */
  #take(batch: MessageBatch, i: number): boolean {
    const length = batch.length(i);
    if (length === -EMSGSIZE) {
      batch.slot(i).fill(0);
      this.#handlers.onBadMessage?.(`message larger than ${Limits.maxMessage} bytes`);
      return true;
    }
    if (length === -EBADMSG) {
      // An empty datagram: a bad message, not the end of the stream.
      this.#handlers.onBadMessage?.("empty message");
      return true;
    }
    if (length === 0) {
      // The end of the stream (an empty datagram is -EBADMSG above).
      this.#peerGone = true;
      this.close();
      return false;
    }
    const raw = batch.bytes(i);
    let msg: Message;
    try {
      msg = decodeMessage(raw);
    } catch (e) {
      closeFd(batch.fd(i));
      // A HANDOFF that does not decode still names its transfer: refuse
      // it, so that its sender places the connection elsewhere.
      if (raw.length >= 8 && raw[5] === MessageType.HANDOFF && raw[4] !== 0) {
        this.#acks.push({ transfer: transferIdOf(raw), ok: false });
      }
      raw.fill(0);
      this.#handlers.onBadMessage?.(e instanceof ProtocolError ? e.message : String(e));
      return true;
    }
    let fd = batch.fd(i);
    if (
      fd !== -1 &&
      (!CARRIES_FD[msg.type] ||
        (msg.type === MessageType.LISTENER && this.#handlers.takesListeners !== true))
    ) {
      closeFd(fd); // no message of this type carries one (here): no handler has to
      fd = -1;
    }
    if (msg.type === MessageType.ACK) {
      this.#acknowledged(msg.body);
      return true;
    }
    try {
      this.#handlers.onMessage(msg, fd, raw);
    } catch (e) {
      // One message's failure must not stop the reading of the others.
      this.#handlers.onBadMessage?.(`handling message type ${msg.type}: ${String(e)}`);
    } finally {
      raw.fill(0); // it may have held a sealed blob and request bytes
    }
    return true;
  }

  /** Send a live connection: `message` (a sealed HANDOFF, taken by the
   * channel) with `fd`. The sender keeps the socket until the receiver's
   * ACK; if it refuses, or the channel closes first, `onReturned` gets both
   * back; once it confirms, `onConfirmed` runs (the move happened). Returns
   * false (and takes nothing) when the channel is closed or too many
   * transfers are in flight.
   *
   * @example
   * ```ts
   * import { ControlChannel } from "./control_channel.ts";
   * declare const channel: ControlChannel, message: Uint8Array, connFd: number;
   * channel.transfer(message, connFd, (fd, msg, reason) => {
   *   console.log(`came back: ${reason}`); // place it elsewhere
   * });
   * ```
   */
  transfer(
    message: Uint8Array,
    fd: number,
    onReturned: OnReturned,
    onConfirmed?: () => void,
  ): boolean {
    // A lazy channel reads the ACKs that came in once COLLECT_AT transfers
    // are in flight: one read for many (the sender keeps those sockets a
    // little longer, which costs nothing).
    if (this.#pending.size >= COLLECT_AT) this.collect();
    if (this.#closed || this.#pending.size >= Limits.maxAcks) return false;
    let id = this.#nextTransfer;
    while (this.#pending.has(id)) id = (id + 1) & 0xffff;
    this.#nextTransfer = (id + 1) & 0xffff;
    setTransferId(message, id);
    this.#pending.set(id, { fd, message, onReturned, onConfirmed, sent: false });
    this.#write({ data: message, fd, keepFd: true, transfer: id });
    if (this.#lazy) this.#collectLater();
    return true;
  }

  /** A lazy channel with transfers in flight reads its ACKs within
   * LAZY_ACKS_MS even if it sends nothing more (one timer at a time). */
  #collectLater(): void {
    if (this.#collectTimer !== undefined || this.#closed) return;
    this.#collectTimer = setTimeout(() => {
      this.#collectTimer = undefined;
      this.collect();
      if (this.#pending.size > 0) this.#collectLater();
    }, LAZY_ACKS_MS);
  }

  /** ACK entries ignored so far: they named a transfer not in flight, or
   * one still waiting in this channel's queue (which the receiver cannot
   * have, so its answer cannot count).
   *
   * @example
   * ```ts
   * import { ControlChannel } from "./control_channel.ts";
   * declare const channel: ControlChannel;
   * if (channel.ignoredAcks > 0) console.log(`${channel.ignoredAcks} stray ACKs`);
   * ```
   */
  get ignoredAcks(): number {
    return this.#ignoredAcks;
  }

  /** Connections in flight on this channel, waiting for an ACK. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Answer a received HANDOFF: adopted (`ok`) or refused. Confirmations of
   * one receive turn leave in one ACK; `then(true)` runs once it has left
   * (start using an adopted connection there, not before), `then(false)` if
   * it never can while the sender may live (close the copy, send nothing).
   * With `now`, or outside a receive turn (an answer decided after a wait),
   * the ACK leaves at once instead of at the end of the turn.
   *
   * @example
   * ```ts
   * import { ControlChannel } from "./control_channel.ts";
   * declare const channel: ControlChannel, transfer: number;
   * channel.confirm(transfer, true, (mine) => console.log(mine ? "serve it" : "drop it"));
   * ```
   */
  confirm(
    transfer: number,
    ok: boolean,
    then?: (mine: boolean) => void,
    now = false,
  ): void {
    this.#acks.push({ transfer, ok });
    if (then) this.#afterAcks.push(then);
    // Outside a receive turn (after a wait) nothing else would send it: it
    // leaves at once, as with `now`.
    if (now || this.#closed || this.#turns === 0) this.#sendAcks();
  }

  #sendAcks(): void {
    if (this.#acks.length === 0) return;
    const acks = this.#acks, after = this.#afterAcks;
    this.#acks = [];
    this.#afterAcks = [];
    if (this.#closed) {
      // The sender is gone: what it sent is ours (its copy died with it).
      // If we closed the channel ourselves, it takes everything back.
      for (const f of after) f(this.#peerGone);
      return;
    }
    for (let i = 0; i < acks.length; i += Limits.maxAcks) {
      const last = i + Limits.maxAcks >= acks.length;
      this.#write({
        data: encodeAck(acks.slice(i, i + Limits.maxAcks)),
        fd: -1,
        keepFd: false,
        after: last ? after : undefined,
      });
    }
  }

  #acknowledged(acks: Ack[]): void {
    for (const a of acks) {
      const t = this.#pending.get(a.transfer);
      if (!t?.sent) {
        // Unknown, already settled, or still in our queue: the receiver
        // cannot have it (a peer that guessed an id), so it decides nothing.
        this.#ignoredAcks++;
        log.debug("ignored an ACK for transfer {transfer}: {why}", {
          transfer: a.transfer,
          why: t ? "not sent yet" : "not in flight",
        });
        continue;
      }
      this.#pending.delete(a.transfer);
      if (a.ok) {
        closeFd(t.fd);
        t.message.fill(0);
        t.onConfirmed?.();
      } else {
        t.onReturned(t.fd, t.message, "refused by the receiver");
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
      data.fill(0);
      return false;
    }
    this.#write({ data, fd, keepFd: false });
    return true;
  }

  /** Send now, or queue while the socket is full (a copy: data may be a view
   * of a reused buffer). */
  #write(q: Queued): void {
    if (this.#queue.length === 0 && !this.#broken) {
      const n = sendMessage(this.fd, q.data, q.fd);
      if (n >= 0) {
        this.#sent(q);
        return;
      }
      if (n !== -EAGAIN) this.#break();
    }
    this.#queue.push({ ...q, data: q.keepFd ? q.data : q.data.slice() });
    if (!q.keepFd) q.data.fill(0); // the queue holds its own copy
    if (!this.#watchingWrites && !this.#closed) {
      this.#watchingWrites = true;
      EventLoop.instance().watchWritable(this.fd);
    }
  }

  /** A send failed: the channel closes, but only after reading what the
   * peer sent (its ACKs decide who owns what). Not inline: the caller may be
   * in the middle of handling a message. */
  #break(): void {
    if (this.#broken) return;
    this.#broken = true;
    queueMicrotask(() => this.#receive());
  }

  #sent(q: Queued): void {
    if (!q.keepFd) {
      closeFd(q.fd);
      q.data.fill(0); // it may have held the deployment key or request bytes
    }
    if (q.transfer !== undefined) {
      const t = this.#pending.get(q.transfer);
      if (t && t.message === q.data) t.sent = true;
    }
    if (q.after) { for (const f of q.after) f(true); }
  }

  #flush(): void {
    while (this.#queue.length > 0 && !this.#closed && !this.#broken) {
      const q = this.#queue[0];
      const n = sendMessage(this.fd, q.data, q.fd);
      if (n === -EAGAIN) return;
      if (n < 0) {
        this.#break(); // it stays queued: close() settles it
        return;
      }
      this.#queue.shift();
      this.#sent(q);
    }
    if (this.#queue.length === 0 && this.#watchingWrites && !this.#closed) {
      this.#watchingWrites = false;
      EventLoop.instance().unwatchWritable(this.fd);
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
    clearTimeout(this.#collectTimer);
    EventLoop.instance().remove(this.fd);
    for (const q of this.#queue) {
      if (!q.keepFd) {
        closeFd(q.fd);
        q.data.fill(0);
      }
      // An ACK that never left: the sender takes back what it named. If it
      // died instead, the connections are ours.
      if (q.after) { for (const f of q.after) f(this.#peerGone); }
    }
    this.#queue = [];
    closeFd(this.fd);
    this.#handlers.onClose();
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const t of pending) {
      if (this.#peerGone || !t.sent) {
        // Never sent, or the receiver died with it unread: ours again.
        t.onReturned(t.fd, t.message, this.#peerGone ? "the receiver went away" : "never sent");
      } else {
        // We closed first; the live receiver reads it and keeps it (EOF
        // tells it we are gone). Our copy must never be used.
        closeFd(t.fd);
        t.message.fill(0);
      }
    }
  }
}
