/**
 * Who is on the other end of a control connection, decided once: the
 * kernel-reported user must be one of the roles' (src/handoff/trust.ts), and
 * the first message says what the peer is, each checked against that user:
 * REGISTER makes it a worker (src/gateway/workers.ts), JOIN a satellite
 * gateway (src/gateway/satellites.ts), TAKEOVER a successor gateway
 * (src/gateway/succession.ts). From then on its messages go to that
 * session's handler only; anything else first (or nothing within
 * {@linkcode FIRST_MESSAGE_MS}) closes the connection.
 *
 * @module
 */

import { closeFd } from "../../ffi/shim.ts";
import type { Accepted } from "../connection/listener.ts";
import { retryBlockedListeners } from "../connection/listener.ts";
import { ControlChannel } from "../handoff/control_channel.ts";
import { type Message, MessageType, type Register } from "../handoff/protocol.ts";
import { trust } from "../handoff/trust.ts";
import { logger } from "../operations/log.ts";
import type { GatewayMetrics } from "./gateway_metrics.ts";

const log = logger("gateway");

/** How long a new control connection may take to say what it is. */
export const FIRST_MESSAGE_MS = 10_000;

/** The peer of a control connection, as the kernel reported it. */
export interface ControlPeer {
  pid: number;
  uid: number;
}

/** Where each kind of session goes. */
export interface SessionHandlers {
  /** A worker's REGISTER: the channel is the registry's from now on. */
  register(channel: ControlChannel, peer: ControlPeer, body: Register): void;
  /** A satellite gateway joined (its user and proof checked). */
  join(channel: ControlChannel, peer: ControlPeer): void;
  /** A successor gateway takes over (its user and proof checked); absent:
   * this gateway cannot be taken over (TAKEOVER is refused). */
  takeover?(channel: ControlChannel, peer: ControlPeer): void;
}

/**
 * The gateway's control connections until each says what it is.
 *
 * @example
 * ```ts
 * import { ControlSessions } from "./control_sessions.ts";
 * import { GatewayMetrics } from "./gateway_metrics.ts";
 * import { Listener } from "../connection/listener.ts";
 * import { unixListen } from "../../ffi/shim.ts";
 * const sessions = new ControlSessions(new GatewayMetrics(), {
 *   register: () => {},
 *   join: () => {},
 * });
 * new Listener(unixListen(`${Deno.makeTempDirSync()}/c.sock`), "control", (c) => sessions.accept(c));
 * ```
 */
export class ControlSessions {
  #metrics: GatewayMetrics;
  #to: SessionHandlers;
  /** How long a connection may take to say what it is. */
  #firstMessageMs: number;
  /** Connections that have not said what they are yet. */
  #pending = new Set<ControlChannel>();

  /** Sessions handed to `to`; refusals are counted in `metrics`; a
   * connection silent for `firstMessageMs` is closed.
   *
   * @example
   * ```ts
   * import { ControlSessions } from "./control_sessions.ts";
   * import { GatewayMetrics } from "./gateway_metrics.ts";
   * new ControlSessions(new GatewayMetrics(), { register: () => {}, join: () => {} });
   * ```
   */
  constructor(metrics: GatewayMetrics, to: SessionHandlers, firstMessageMs = FIRST_MESSAGE_MS) {
    this.#metrics = metrics;
    this.#to = to;
    this.#firstMessageMs = firstMessageMs;
  }

  /** A process connected to the control socket: check it runs as one of
   * the roles' users, then wait for its first message.
   *
   * @example
   * ```ts
   * import type { ControlSessions } from "./control_sessions.ts";
   * import type { Accepted } from "../connection/listener.ts";
   * declare const sessions: ControlSessions, c: Accepted;
   * sessions.accept(c);
   * ```
   */
  accept(c: Accepted): void {
    const cred = trust().admit(c.fd, "role", "control connection", log);
    if (!cred) return;
    const peer: ControlPeer = { pid: cred.pid, uid: cred.uid };
    let channel: ControlChannel;
    try {
      channel = new ControlChannel(c.fd, {
        onMessage: (msg, fd) => this.#first(channel, peer, msg, fd),
        onBadMessage: (error) =>
          log.warning("dropped a bad message from pid {pid}: {error}", { pid: peer.pid, error }),
        onClose: () => {
          this.#pending.delete(channel);
          retryBlockedListeners();
        },
      });
    } catch (e) {
      log.error("cannot watch a control connection: {error}", { error: (e as Error).message });
      closeFd(c.fd);
      return;
    }
    this.#pending.add(channel);
    setTimeout(() => {
      if (!this.#pending.has(channel)) return;
      log.warning("pid {pid} said nothing on the control socket in {s} s; closed", {
        pid: peer.pid,
        s: this.#firstMessageMs / 1000,
      });
      channel.close();
    }, this.#firstMessageMs);
  }

  /** Close the connections that have not said what they are.
   *
   * @example
   * ```ts
   * import type { ControlSessions } from "./control_sessions.ts";
   * declare const sessions: ControlSessions;
   * sessions.close();
   * ```
   */
  close(): void {
    for (const channel of [...this.#pending]) channel.close();
  }

  #first(channel: ControlChannel, peer: ControlPeer, msg: Message, fd: number): void {
    this.#pending.delete(channel);
    switch (msg.type) {
      case MessageType.REGISTER:
        this.#to.register(channel, peer, msg.body);
        return;
      case MessageType.JOIN:
        if (this.#isGateway(channel, peer, "JOIN", msg.body.proof)) this.#to.join(channel, peer);
        return;
      case MessageType.TAKEOVER:
        if (!this.#to.takeover) break;
        if (this.#isGateway(channel, peer, "TAKEOVER", msg.body.proof)) {
          this.#to.takeover(channel, peer); // the kernel's pid, not the claimed one
        }
        return;
      case MessageType.HANDOFF:
        closeFd(fd);
        channel.confirm(msg.body.transfer ?? 0, false, undefined, true); // not ours to take
        break;
    }
    log.warning(
      "pid {pid} began with message type {type}, not REGISTER, JOIN or TAKEOVER; closed",
      {
        pid: peer.pid,
        type: msg.type,
      },
    );
    channel.close();
  }

  /** Whether the peer may do what a gateway does (`type`: JOIN or
   * TAKEOVER): it runs as the gateways' user and, when this gateway has the
   * launcher's secret, proves it too. Otherwise the refusal is logged and
   * counted and its connection closed. */
  #isGateway(
    channel: ControlChannel,
    peer: ControlPeer,
    type: "JOIN" | "TAKEOVER",
    proof: string | undefined,
  ): boolean {
    const t = trust();
    const why = !t.isGateway(peer.uid)
      ? "not the gateway user"
      : !t.proves(type, Deno.pid, peer.pid, proof)
      ? "no proof of the launcher's secret"
      : "";
    if (!why) return true;
    this.#metrics.controlRefused.labels(why).inc();
    log.warning("refused {type} from pid {pid} (uid {uid}): {why}", {
      type,
      pid: peer.pid,
      uid: peer.uid,
      why,
    });
    channel.close();
    return false;
  }
}
