/**
 * The link from a worker or a satellite gateway to its gateway: one module
 * for both. It connects to the control path (retrying with a backoff, and
 * warning without flooding), checks the kernel-reported owner of the socket
 * (src/handoff/trust.ts), says who it is (REGISTER or JOIN, given by its
 * owner), takes the sealing key from REGISTERED into a {@linkcode Keyring}
 * (an old key stays while anything sealed under it can come back), reports
 * every second (STATS, the heartbeat), and follows a gateway upgrade (MOVE):
 * it registers with the new gateway beside the old channel, switches when
 * the new one registers it, tells the old one LEFT and keeps that channel
 * open for what it still hands over and for acknowledgements.
 *
 * Messages that are the owner's (HANDOFF, ROUTES, TICKETS, HANDOVER,
 * PROMOTED) are passed on with the channel they came on.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { ECONNREFUSED, ENOENT, SysError, unixConnect } from "../../ffi/shim.ts";
import { fromBase64 } from "./bytes.ts";
import { ControlChannel } from "./control_channel.ts";
import { Keyring } from "./keyring.ts";
import { encodeJson, type Message, MessageType, type Registered } from "./protocol.ts";
import { trust } from "./trust.ts";
import { PathWatch } from "./path_watch.ts";

/** The first and the longest wait between attempts to reach the gateway. */
export const RECONNECT_MS = { min: 50, max: 2000 } as const;
/** After losing a gateway we were registered with, try every RECONNECT_MS.min
 * this long before backing off: a crashed gateway is restarted at once (the
 * launcher holds its port, clients wait), so the sooner its workers are back,
 * the shorter that wait. A connect() to a Unix socket costs a few µs. */
export const FAST_RECONNECT_FOR_MS = 5000;
/** While the gateway stays unreachable, at most one warning this often. */
const WARNING_EVERY_MS = 15_000;
/** A new gateway (MOVE) that does not register us this soon is given up. */
const NEXT_GATEWAY_MS = 5000;
/** How often the owner's report (STATS) goes out. */
const REPORT_EVERY_MS = 1000;

/** What the link's owner (a worker or a satellite) decides. */
export interface LinkOwner {
  /** The messages that say who we are, first on every new channel (REGISTER
   * or JOIN, and DRAIN for a worker on its way out). `gatewayPid` is the
   * kernel's word; `next`: a gateway taking over (MOVE). */
  hello(gatewayPid: number, next: boolean): Uint8Array[];
  /** The gateway registered us (the key is in the keyring). */
  registered(body: Extract<Registered, { ok: true }>): void;
  /** The gateway refused us (the channel is closed). */
  refused(error: string): void;
  /** One of the owner's messages, on one of our gateway channels. */
  message(msg: Message, fd: number, channel: ControlChannel): void;
  /** The report sent every second while registered (STATS), if any. */
  report?(): Uint8Array | undefined;
  /** The gateway went away; its last route table still stands. */
  gone?(): void;
}

/** How a {@linkcode GatewayLink} connects. */
export interface LinkOptions {
  /** The gateway's control socket path. */
  control: string;
  /** Where its lines go. */
  log: Logger;
  /** How logs name the gateway: "gateway", "primary gateway". */
  peer: string;
  /** REGISTERED must prove the launcher's secret (a satellite can check;
   * a function is never given the secret). */
  proves: boolean;
  /** Whether this process has only just started (the role passes
   * src/operations/lifecycle.ts's `startingUp`: the launcher starts every
   * role at once). Until the link first registers, a gateway not reachable
   * while this is true is only retried, without a warning. */
  startingUp: () => boolean;
}

/**
 * A worker's or a satellite's link to its gateway.
 *
 * @example
 * ```ts
 * import { GatewayLink } from "./gateway_link.ts";
 * import { encodeJson, MessageType } from "./protocol.ts";
 * import { logger } from "../operations/log.ts";
 * const link = new GatewayLink({
 *   control: "/run/hotpotato/gateway.sock",
 *   log: logger("worker"),
 *   peer: "gateway",
 *   proves: false,
 *   startingUp: () => performance.now() < 2000,
 * }, {
 *   hello: () => [encodeJson(MessageType.REGISTER, { name: "sum", routes: ["/sum"], pid: Deno.pid })],
 *   registered: () => console.log("registered"),
 *   refused: (error) => console.log(error),
 *   message: (msg) => console.log(msg.type),
 * });
 * link.start();
 * ```
 */
export class GatewayLink {
  /** The sealing keys, current and still leased. */
  readonly keys: Keyring = new Keyring();
  #o: LinkOptions;
  #owner: LinkOwner;
  #channel: ControlChannel | undefined;
  /** A new gateway took over (MOVE): our channel to it, until it registers us. */
  #next: ControlChannel | undefined;
  /** The gateway we left after a MOVE: open for what it still hands us and
   * for acknowledgements, until it closes it. */
  #leaving: ControlChannel | undefined;
  /** The gateway's pid per channel, as the kernel reported it. */
  #pids = new WeakMap<ControlChannel, number>();
  #registered = false;
  #everRegistered = false;
  #stopped = false;
  #backoff: number = RECONNECT_MS.min;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** While a retry waits: the control path, watched, so that a gateway
   * that binds it is reached at once, not at the next attempt. */
  #watch: PathWatch | undefined;
  #reportTimer: ReturnType<typeof setInterval> | undefined;
  /** Failed attempts since the gateway was last reached. */
  #failures = 0;
  #failingSince = 0;
  /** When the gateway we were registered with went away (-Infinity: never). */
  #lostAt = -Infinity;
  #lastWarning = 0;
  #lastFailure = "";

  /** A link for `owner`; `start()` connects it.
   *
   * @example
   * ```ts
   * import { GatewayLink, type LinkOwner } from "./gateway_link.ts";
   * import { logger } from "../operations/log.ts";
   * declare const owner: LinkOwner;
   * new GatewayLink({
   *   control: "/tmp/gw.sock",
   *   log: logger("worker"),
   *   peer: "gateway",
   *   proves: false,
   *   startingUp: () => false,
   * }, owner);
   * ```
   */
  constructor(options: LinkOptions, owner: LinkOwner) {
    this.#o = options;
    this.#owner = owner;
  }

  /** Registered with a gateway now. */
  get registered(): boolean {
    return this.#registered;
  }

  /** Registered at least once since start. */
  get everRegistered(): boolean {
    return this.#everRegistered;
  }

  /** The channel to our gateway while registered (else undefined). */
  get channel(): ControlChannel | undefined {
    return this.#registered ? this.#channel : undefined;
  }

  /** Connections sent on our gateway channels and not confirmed yet. */
  get unconfirmed(): number {
    return (this.#channel?.unconfirmed ?? 0) + (this.#next?.unconfirmed ?? 0) +
      (this.#leaving?.unconfirmed ?? 0);
  }

  /** Whether `channel` is one of our channels to a gateway.
   *
   * @example
   * ```ts
   * import type { GatewayLink } from "./gateway_link.ts";
   * import type { ControlChannel } from "./control_channel.ts";
   * declare const link: GatewayLink, channel: ControlChannel;
   * if (link.isGateway(channel)) console.log("from the gateway");
   * ```
   */
  isGateway(channel: ControlChannel): boolean {
    return channel === this.#channel || channel === this.#next || channel === this.#leaving;
  }

  /** Connect (retrying until the gateway is there) and report every second.
   *
   * @example
   * ```ts
   * import type { GatewayLink } from "./gateway_link.ts";
   * declare const link: GatewayLink;
   * link.start();
   * ```
   */
  start(): void {
    if (this.#owner.report) {
      this.#reportTimer = setInterval(() => this.report(), REPORT_EVERY_MS);
    }
    this.#connect(false);
  }

  /** Send the owner's report now (it also goes every second).
   *
   * @example
   * ```ts
   * import type { GatewayLink } from "./gateway_link.ts";
   * declare const link: GatewayLink;
   * link.report();
   * ```
   */
  report(): void {
    const channel = this.channel;
    if (!channel) return;
    const msg = this.#owner.report?.();
    if (msg) channel.send(msg);
  }

  /** Send `message` to our gateway; `andNext`: to one taking over (MOVE)
   * too, which has not registered us yet (a DRAIN). False when not
   * registered.
   *
   * @example
   * ```ts
   * import type { GatewayLink } from "./gateway_link.ts";
   * import { encodeJson, MessageType } from "./protocol.ts";
   * declare const link: GatewayLink;
   * link.send(encodeJson(MessageType.DRAIN, {}), true);
   * ```
   */
  send(message: Uint8Array, andNext = false): boolean {
    if (andNext && this.#next) this.#next.send(message.slice());
    const channel = this.channel;
    if (!channel) {
      message.fill(0);
      return false;
    }
    return channel.send(message);
  }

  /** Stop: no reconnects, every channel closed, every key zeroed.
   *
   * @example
   * ```ts
   * import type { GatewayLink } from "./gateway_link.ts";
   * declare const link: GatewayLink;
   * link.stop();
   * ```
   */
  stop(): void {
    this.#stopped = true;
    this.#registered = false;
    clearTimeout(this.#timer);
    this.#unwatch();
    clearInterval(this.#reportTimer);
    this.#channel?.close();
    this.#next?.close();
    this.#leaving?.close();
    this.keys.destroy();
  }

  /** Connect to the gateway at the control path and say who we are;
   * `next`: a new gateway that took over (MOVE), beside the channel we have. */
  #connect(next: boolean): void {
    if (!next) this.#timer = undefined;
    if (this.#stopped) return;
    const { control, log, peer } = this.#o;
    const failed = (error: string) => {
      if (!next) return this.#failed(error);
      log.warning("cannot reach the new {peer} at {control}: {error}; staying with the old one", {
        peer,
        control,
        error,
      });
    };
    let fd: number;
    try {
      fd = unixConnect(control);
    } catch (e) {
      const none = e instanceof SysError && (e.errno === ENOENT || e.errno === ECONNREFUSED);
      failed(none ? `${e.reason} (is the gateway running?)` : (e as Error).message);
      return;
    }
    // It must run as the gateways' user (else fd is closed and the refusal logged).
    const owner = trust().admit(fd, "gateway", "control socket", log);
    if (!owner) {
      failed("it does not belong to the gateways' user: refused");
      return;
    }
    const channel: ControlChannel = new ControlChannel(fd, {
      onMessage: (msg, passed) => this.#onMessage(msg, passed, channel),
      onBadMessage: (error) =>
        log.warning("dropped a bad control message from the {peer}: {error}", { peer, error }),
      onClose: () => this.#closed(channel),
    });
    this.#pids.set(channel, owner.pid);
    if (next) {
      this.#next = channel;
      setTimeout(() => {
        if (this.#next !== channel) return;
        log.warning("the new {peer} did not register us within 5 s; staying with the old one", {
          peer,
        });
        channel.close();
      }, NEXT_GATEWAY_MS);
    } else this.#channel = channel;
    for (const m of this.#owner.hello(owner.pid, next)) channel.send(m);
  }

  /** An attempt to reach the gateway failed: warn on the first failure and
   * when the reason changes, then at most every WARNING_EVERY_MS with the
   * count, not at every attempt; try again after the backoff. */
  #failed(error: string): void {
    const now = Date.now();
    if (this.#failures++ === 0) this.#failingSince = now;
    // Started beside the gateway: it may not be up yet; only retry. Just
    // lost it ("went away; reconnecting" said so): it is being restarted.
    const early = (!this.#everRegistered && this.#o.startingUp()) || this.#justLost();
    const firstWarning = this.#lastWarning < this.#failingSince;
    if (
      !early &&
      (firstWarning || error !== this.#lastFailure || now - this.#lastWarning >= WARNING_EVERY_MS)
    ) {
      this.#lastWarning = now;
      const fields = {
        peer: this.#o.peer,
        control: this.#o.control,
        error,
        attempts: this.#failures,
        s: Math.round((now - this.#failingSince) / 1000),
        max: RECONNECT_MS.max / 1000,
      };
      if (firstWarning) {
        this.#o.log.warning(
          "cannot reach the {peer} at {control}: {error}; retrying (backoff up to {max} s)",
          fields,
        );
      } else {
        this.#o.log.warning(
          "still cannot reach the {peer} at {control} after {attempts} attempts in {s} s: {error}",
          fields,
        );
      }
    }
    this.#lastFailure = error;
    this.#retry();
  }

  #retry(): void {
    if (this.#stopped || this.#timer !== undefined) return;
    const fast = this.#justLost();
    this.#timer = setTimeout(() => this.#connect(false), fast ? RECONNECT_MS.min : this.#backoff);
    if (!fast) this.#backoff = Math.min(this.#backoff * 2, RECONNECT_MS.max);
    // The control socket appearing ends the wait (the timer stays as the
    // fallback where the directory cannot be watched).
    this.#watch ??= PathWatch.open(this.#o.control, () => {
      if (this.#timer === undefined || this.#stopped) return;
      clearTimeout(this.#timer);
      this.#connect(false);
    });
  }

  /** Within FAST_RECONNECT_FOR_MS of losing the gateway we were registered with. */
  #justLost(): boolean {
    return performance.now() - this.#lostAt < FAST_RECONNECT_FOR_MS;
  }

  #unwatch(): void {
    this.#watch?.close();
    this.#watch = undefined;
  }

  #closed(channel: ControlChannel): void {
    if (channel === this.#leaving) {
      this.#leaving = undefined; // the old gateway is done with us
      return;
    }
    if (channel === this.#next) {
      this.#next = undefined;
      this.#o.log.warning("the new {peer} closed the control connection before registering us", {
        peer: this.#o.peer,
      });
      return;
    }
    if (channel !== this.#channel) return;
    if (this.#next) {
      // The old gateway went before the new one registered us: the new one is ours.
      this.#channel = this.#next;
      this.#next = undefined;
      this.#registered = false;
      return;
    }
    // A gateway we had left is done with us too: we register anew.
    this.#leaving?.close();
    this.#leaving = undefined;
    const was = this.#registered;
    this.#registered = false;
    this.#channel = undefined;
    if (was) {
      this.#lostAt = performance.now();
      this.#o.log.warning("{peer} went away; reconnecting", { peer: this.#o.peer });
      this.#owner.gone?.();
    }
    if (!was && !this.#stopped) {
      this.#failed(`the ${this.#o.peer} closed the control connection before registering us`);
      return;
    }
    this.#retry();
  }

  /** A new gateway registered us (after a MOVE): it is our gateway now;
   * the old one is told LEFT and keeps its channel only to finish. */
  #switch(): void {
    const old = this.#channel;
    this.#channel = this.#next;
    this.#next = undefined;
    this.#registered = false; // the REGISTERED being handled registers us again
    if (old) {
      this.#leaving?.close();
      this.#leaving = old;
      old.send(encodeJson(MessageType.LEFT, {}));
    }
  }

  #onMessage(msg: Message, fd: number, channel: ControlChannel): void {
    if (msg.type === MessageType.HANDOFF) {
      this.#owner.message(msg, fd, channel); // confirmed on the channel it came on
      return;
    }
    if (msg.type === MessageType.REGISTERED && channel === this.#next) {
      if (!msg.body.ok || !this.#proven(channel, msg.body)) {
        if (!msg.body.ok) {
          this.#o.log.warning("the new {peer} refused us: {error}", {
            peer: this.#o.peer,
            error: msg.body.error,
          });
        }
        channel.close();
        return;
      }
      this.#switch();
    }
    if (channel !== this.#channel) return; // the gateway we left: only ACKs and HANDOFFs count
    if (msg.type === MessageType.REGISTERED) return this.#onRegistered(msg.body, channel);
    if (!this.#registered) return;
    if (msg.type === MessageType.MOVE) {
      if (this.#next) return;
      this.#o.log.info("a new {peer} took over; registering with it at {control}", {
        peer: this.#o.peer,
        control: this.#o.control,
      });
      this.#connect(true);
      return;
    }
    this.#owner.message(msg, fd, channel);
  }

  #onRegistered(body: Registered, channel: ControlChannel): void {
    if (this.#registered) {
      this.#o.log.warning("unexpected REGISTERED on a registered channel; ignored");
      return;
    }
    if (!body.ok || !this.#proven(channel, body)) {
      this.#channel = undefined; // not a gateway that went away: no "closed before" warning
      channel.close();
      if (!body.ok) this.#owner.refused(body.error);
      this.#retry(); // nothing when the owner stopped
      return;
    }
    const key = fromBase64(body.key);
    this.keys.use(key);
    key.fill(0);
    this.#registered = true;
    this.#everRegistered = true;
    this.#backoff = RECONNECT_MS.min;
    this.#unwatch();
    if (this.#failures > 0) {
      this.#o.log.info(
        "reached the {peer} at {control} after {attempts} failed attempt(s) in {s} s",
        {
          peer: this.#o.peer,
          control: this.#o.control,
          attempts: this.#failures,
          s: Math.round((Date.now() - this.#failingSince) / 100) / 10,
        },
      );
      this.#failures = 0;
      this.#lastFailure = "";
    }
    this.#owner.registered(body);
  }

  /** Whether a REGISTERED proves the launcher's secret, when we check. */
  #proven(channel: ControlChannel, body: Extract<Registered, { ok: true }>): boolean {
    if (!this.#o.proves) return true;
    const pid = this.#pids.get(channel) ?? 0;
    if (trust().proves("REGISTERED", pid, Deno.pid, body.proof)) return true;
    this.#o.log.error("the {peer} at {control} did not prove the launcher's secret: not joined", {
      peer: this.#o.peer,
      control: this.#o.control,
    });
    return false;
  }
}
