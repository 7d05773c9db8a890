/**
 * The satellite gateways that joined this one (JOIN on the control socket,
 * checked by src/gateway/control_sessions.ts): each shares the public port,
 * gets the sealing key, the route table with every function's workers
 * (pushed on each change, with the workers' table) and the TLS ticket keys,
 * reports its metrics every second (STATS; /metrics adds them in), passes on
 * connections no worker took directly (HANDOFF), and follows a gateway
 * upgrade (MOVE, then LEFT) as workers do. A satellite is in no router and
 * no member list.
 *
 * @module
 */

import { closeFd } from "../../ffi/shim.ts";
import { toBase64 } from "../handoff/bytes.ts";
import type { ControlChannel } from "../handoff/control_channel.ts";
import { encodeJson, type Handoff, type Message, MessageType } from "../handoff/protocol.ts";
import { trust } from "../handoff/trust.ts";
import { logger } from "../operations/log.ts";
import type { Snapshot } from "../operations/metrics.ts";
import type { GatewayMetrics } from "./gateway_metrics.ts";

const log = logger("gateway");

/** A satellite gateway connected over the control channel. */
export interface Satellite {
  /** Its pid and uid, as the kernel reported them (SO_PEERCRED). */
  pid: number;
  uid: number;
  /** Its control connection. */
  channel: ControlChannel;
  /** Connections it held at its last report. */
  held: number;
  /** The metrics of its last report that had them. */
  metrics?: Snapshot;
  /** It joined the gateway that took over from this one (LEFT). */
  left: boolean;
}

/** What the satellites pass on to the rest of the gateway. */
export interface SatelliteEvents {
  /** A satellite passed on a connection no worker took directly. */
  handoff(from: Satellite, h: Handoff, fd: number, raw: Uint8Array): void;
  /** A satellite joined: what it should get besides the key and routes. */
  joined?(satellite: Satellite): void;
}

/**
 * The satellites of a gateway.
 *
 * @example
 * ```ts
 * import { Satellites } from "./satellites.ts";
 * import { GatewayMetrics } from "./gateway_metrics.ts";
 * import { Sealer } from "../handoff/seal.ts";
 * const key = Sealer.newKey();
 * const satellites = new Satellites(new GatewayMetrics(), { handoff: () => {} }, {
 *   key: () => key,
 *   routes: () => new Uint8Array(0),
 * });
 * console.log(satellites.size); // 0
 * ```
 */
export class Satellites {
  #all = new Set<Satellite>();
  #metrics: GatewayMetrics;
  #events: SatelliteEvents;
  #state: { key(): Uint8Array; routes(): Uint8Array; moving?(): boolean };

  /** Satellites given `state.key()` and `state.routes()` (their copy of the
   * table) when they join, and MOVE while `state.moving()`.
   *
   * @example
   * ```ts
   * import { Satellites } from "./satellites.ts";
   * import { GatewayMetrics } from "./gateway_metrics.ts";
   * new Satellites(new GatewayMetrics(), { handoff: () => {} }, {
   *   key: () => new Uint8Array(32),
   *   routes: () => new Uint8Array(0),
   * });
   * ```
   */
  constructor(
    metrics: GatewayMetrics,
    events: SatelliteEvents,
    state: { key(): Uint8Array; routes(): Uint8Array; moving?(): boolean },
  ) {
    this.#metrics = metrics;
    this.#events = events;
    this.#state = state;
  }

  /** How many satellites are joined. */
  get size(): number {
    return this.#all.size;
  }

  /** A gateway process joined (its JOIN checked): it gets the sealing key
   * (with the proof of the launcher's secret), the table and the ticket
   * keys, and its channel's messages from now on.
   *
   * @example
   * ```ts
   * import type { Satellites } from "./satellites.ts";
   * import type { ControlChannel } from "../handoff/control_channel.ts";
   * declare const satellites: Satellites, channel: ControlChannel;
   * satellites.join(channel, { pid: 4242, uid: 999 });
   * ```
   */
  join(channel: ControlChannel, cred: { pid: number; uid: number }): void {
    const s: Satellite = { pid: cred.pid, uid: cred.uid, channel, held: 0, left: false };
    this.#all.add(s);
    channel.retarget({
      onMessage: (msg, fd, raw) => this.#onMessage(s, msg, fd, raw),
      onBadMessage: (error) =>
        log.warning("dropped a bad message from satellite pid {pid}: {error}", {
          pid: s.pid,
          error,
        }),
      onClose: () => this.#gone(s),
    });
    this.#metrics.satelliteBack(s.pid);
    const proof = trust().proof("REGISTERED", Deno.pid, s.pid);
    channel.send(
      encodeJson(MessageType.REGISTERED, {
        ok: true,
        gatewayPid: Deno.pid,
        key: toBase64(this.#state.key()),
        ...(proof ? { proof } : {}),
      }),
    );
    channel.send(this.#state.routes());
    this.#events.joined?.(s);
    if (this.#state.moving?.()) channel.send(encodeJson(MessageType.MOVE, {}));
    log.info("satellite gateway pid {pid} joined", { pid: s.pid });
  }

  #onMessage(s: Satellite, msg: Message, fd: number, raw: Uint8Array): void {
    switch (msg.type) {
      case MessageType.HANDOFF:
        this.#events.handoff(s, msg.body, fd, raw);
        return;
      case MessageType.STATS:
        s.held = msg.body.held;
        if (msg.body.metrics) s.metrics = msg.body.metrics; // absent: too large, keep the last
        return;
      case MessageType.LEFT:
        s.left = true;
        return;
      default:
        if (fd >= 0) closeFd(fd);
        log.warning("unexpected message type {type} from satellite pid {pid}", {
          type: msg.type,
          pid: s.pid,
        });
    }
  }

  #gone(s: Satellite): void {
    this.#all.delete(s);
    if (s.metrics) this.#metrics.satelliteLeft(s.pid, s.metrics);
    log.info("satellite gateway pid {pid} left", { pid: s.pid });
  }

  /** Send `message` to every satellite (a copy each); zeroes it.
   *
   * @example
   * ```ts
   * import type { Satellites } from "./satellites.ts";
   * import { encodeJson, MessageType } from "../handoff/protocol.ts";
   * declare const satellites: Satellites;
   * satellites.broadcast(encodeJson(MessageType.MOVE, {}));
   * ```
   */
  broadcast(message: Uint8Array): void {
    for (const s of this.#all) s.channel.send(message.slice());
    message.fill(0);
  }

  /** Their last reports (for /metrics).
   *
   * @example
   * ```ts
   * import type { Satellites } from "./satellites.ts";
   * declare const satellites: Satellites;
   * for (const r of satellites.reports()) console.log(r.metrics.families.length);
   * ```
   */
  reports(): { name: string; metrics: Snapshot; satellite: true }[] {
    const out: { name: string; metrics: Snapshot; satellite: true }[] = [];
    for (const s of this.#all) {
      if (s.metrics) out.push({ name: "gateway", metrics: s.metrics, satellite: true });
    }
    return out;
  }

  /** The satellites as `/workers` lists them.
   *
   * @example
   * ```ts
   * import type { Satellites } from "./satellites.ts";
   * declare const satellites: Satellites;
   * console.log(satellites.list());
   * ```
   */
  list(): { name: string; pid: number; generation: string; state: string; held: number }[] {
    return [...this.#all].map((s) => ({
      name: "gateway",
      pid: s.pid,
      generation: "",
      state: "satellite",
      held: s.held,
    }));
  }

  /** Connections sent to satellites and not confirmed (a relay's), plus
   * satellites that have not joined the gateway taking over yet (LEFT).
   *
   * @example
   * ```ts
   * import type { Satellites } from "./satellites.ts";
   * declare const satellites: Satellites;
   * if (satellites.allLeft()) console.log("every satellite follows the new gateway");
   * ```
   */
  allLeft(): boolean {
    for (const s of this.#all) if (!s.left || s.channel.unconfirmed > 0) return false;
    return true;
  }

  /** Connections on satellite channels not confirmed yet.
   *
   * @example
   * ```ts
   * import type { Satellites } from "./satellites.ts";
   * declare const satellites: Satellites;
   * console.log(satellites.unconfirmed());
   * ```
   */
  unconfirmed(): number {
    let n = 0;
    for (const s of this.#all) n += s.channel.unconfirmed;
    return n;
  }

  /** Close every satellite's channel.
   *
   * @example
   * ```ts
   * import type { Satellites } from "./satellites.ts";
   * declare const satellites: Satellites;
   * satellites.close();
   * ```
   */
  close(): void {
    for (const s of [...this.#all]) s.channel.close();
  }
}
