/**
 * The versioned route table the gateway pushes (ROUTES) to every registered
 * worker and to every satellite gateway, so each keeps a connection only for
 * paths the gateway would route to it.
 *
 * A worker gets the table right after REGISTERED and again whenever it
 * changes: changes in one event-loop turn make one push, and a pending push
 * goes out before any connection is handed to a worker
 * ({@linkcode RoutePush.flush}). In direct mode the table carries each
 * function's pool members (the workers that take connections straight from
 * their siblings) and what each holds; the satellites' copy always does,
 * whatever the mode (they place connections directly). While the gateway
 * settles (its workers registering after a start or takeover) the table says
 * so, and a path it does not serve gets 503, not 404.
 *
 * @module
 */

import type { GatewayConfig } from "../operations/config.ts";
import { logger } from "../operations/log.ts";
import { encodeJson, Limits, MessageType } from "../handoff/protocol.ts";
import type { Router } from "../routing/router.ts";
import type { Satellites } from "./satellites.ts";
import type { Worker } from "./workers.ts";

const log = logger("gateway");

/** What the table is made from, and who gets it.
 *
 * @example
 * ```ts
 * import type { RoutePushSources } from "./route_push.ts";
 * import { Router } from "../routing/router.ts";
 * import type { Satellites } from "./satellites.ts";
 * import type { Worker } from "./workers.ts";
 * declare const satellites: Satellites;
 * const sources: RoutePushSources = {
 *   workers: new Set<Worker>(),
 *   router: new Router<Worker>(),
 *   satellites,
 * };
 * console.log(sources.workers.size); // 0
 * ```
 */
export interface RoutePushSources {
  /** The registry's workers (the registered ones get the table). */
  workers: ReadonlySet<Worker>;
  /** The router whose routes the table lists. */
  router: Router<Worker>;
  /** The satellite gateways (they get their copy). */
  satellites: Satellites;
  /** Routes of functions that have no worker yet but start on demand
   * (declared, `min` 0): listed too, so that a satellite or a worker
   * passes their requests on instead of answering 404. */
  coldRoutes?(): Record<string, string>;
}

/**
 * The route table pushed to workers and satellites, and its version.
 *
 * @example
 * ```ts
 * import { RoutePush } from "./route_push.ts";
 * import { Router } from "../routing/router.ts";
 * import { Satellites } from "./satellites.ts";
 * import { GatewayMetrics } from "./gateway_metrics.ts";
 * import { gatewayConfig } from "../operations/config.ts";
 * import type { Worker } from "./workers.ts";
 * const workers = new Set<Worker>();
 * const router: Router<Worker> = new Router<Worker>(30_000, () => push.changed());
 * const satellites: Satellites = new Satellites(new GatewayMetrics(), { handoff: () => {} }, {
 *   key: () => new Uint8Array(32),
 *   routes: (): Uint8Array => push.message(true),
 * });
 * const push: RoutePush = new RoutePush(gatewayConfig([]).config, { workers, router, satellites });
 * push.flush(); // nothing changed: nothing sent
 * ```
 */
export class RoutePush {
  #config: GatewayConfig;
  #workers: ReadonlySet<Worker>;
  #router: Router<Worker>;
  #satellites: Satellites;
  #coldRoutes: (() => Record<string, string>) | undefined;
  #settling: () => boolean = () => false;
  /** The member counts in the last table pushed (JSON), to push again when they change. */
  #heldSent = "";
  /** The route table changed since it was last sent to the workers. */
  #pending = false;
  /** Version of the ROUTES sent last (one per message: members change too). */
  #version = 0;

  /** The table of `sources.router` for `sources.workers` and
   * `sources.satellites`, with members when `config.handoff` is "direct".
   *
   * @example
   * ```ts
   * import { RoutePush } from "./route_push.ts";
   * import type { RoutePushSources } from "./route_push.ts";
   * import { gatewayConfig } from "../operations/config.ts";
   * declare const sources: RoutePushSources;
   * new RoutePush(gatewayConfig(["--handoff", "direct"]).config, sources);
   * ```
   */
  constructor(config: GatewayConfig, sources: RoutePushSources) {
    this.#config = config;
    this.#workers = sources.workers;
    this.#router = sources.router;
    this.#satellites = sources.satellites;
    this.#coldRoutes = sources.coldRoutes;
  }

  /** Whether a push is due (the table changed since the last one).
   *
   * @example
   * ```ts
   * import type { RoutePush } from "./route_push.ts";
   * declare const push: RoutePush;
   * if (push.pending) push.flush();
   * ```
   */
  get pending(): boolean {
    return this.#pending;
  }

  /** The router's table changed: push it to the workers once this turn of
   * the event loop is over (several changes make one push).
   *
   * @example
   * ```ts
   * import type { RoutePush } from "./route_push.ts";
   * declare const push: RoutePush;
   * push.changed();
   * push.changed(); // still one push
   * ```
   */
  changed(): void {
    if (this.#pending) return;
    this.#pending = true;
    queueMicrotask(() => this.flush());
  }

  /** Tell the tables whether the gateway is settling (its workers
   * registering after a start or takeover): a path a table does not serve
   * then gets 503, not 404.
   *
   * @example
   * ```ts
   * import type { RoutePush } from "./route_push.ts";
   * declare const push: RoutePush;
   * push.settling(() => false);
   * ```
   */
  settling(settling: () => boolean): void {
    this.#settling = settling;
  }

  /** Send the route table to every registered worker (and a copy to every
   * satellite) now if it changed since the last push.
   *
   * @example
   * ```ts
   * import type { RoutePush } from "./route_push.ts";
   * declare const push: RoutePush;
   * push.flush();
   * ```
   */
  flush(): void {
    if (!this.#pending) return;
    this.#pending = false;
    const msg = this.message();
    let sent = 0;
    for (const w of this.#workers) {
      if (!w.registered) continue;
      w.channel.send(msg.slice()); // send() zeroes what it sent
      sent++;
    }
    if (this.#satellites.size > 0) this.#satellites.broadcast(this.message(true, false));
    log.debug("route table version {version} sent to {sent} worker(s)", {
      version: this.#version,
      sent,
    });
  }

  /** The ROUTES message; `satellite`: the satellites' copy, with every
   * function's members whatever the handoff mode (they place connections
   * directly). `bump`: a new version (the satellites' copy of a push keeps
   * the workers').
   *
   * @example
   * ```ts
   * import type { RoutePush } from "./route_push.ts";
   * import type { ControlChannel } from "../handoff/control_channel.ts";
   * declare const push: RoutePush, channel: ControlChannel;
   * channel.send(push.message()); // a newly registered worker's table
   * ```
   */
  message(satellite = false, bump = true): Uint8Array {
    const direct = satellite || this.#config.handoff === "direct";
    const { members, held } = direct ? this.#members() : { members: {}, held: {} };
    if (direct) this.#heldSent = JSON.stringify(held);
    if (bump) this.#version++;
    return encodeJson(MessageType.ROUTES, {
      version: this.#version,
      routes: { ...this.#coldRoutes?.(), ...this.#router.routes() },
      handoff: satellite ? "direct" : this.#config.handoff,
      ...(direct ? { members, held } : {}),
      ...(this.#settling() ? { settling: true } : {}),
    });
  }

  /** A worker joined, left, stopped answering or came back: in direct mode
   * (or with satellites) the member lists change.
   *
   * @example
   * ```ts
   * import type { RoutePush } from "./route_push.ts";
   * declare const push: RoutePush;
   * push.membersChanged();
   * ```
   */
  membersChanged(): void {
    // Satellites place connections directly whatever the mode: they need the members.
    if (this.#config.handoff === "direct" || this.#satellites.size > 0) this.changed();
  }

  /** Push again if what the members hold changed since the last table that
   * listed them (direct placers balance by these counts; the watchdog calls
   * this once a second).
   *
   * @example
   * ```ts
   * import type { RoutePush } from "./route_push.ts";
   * declare const push: RoutePush;
   * setInterval(() => push.heldChanged(), 1000);
   * ```
   */
  heldChanged(): void {
    if (this.#config.handoff === "direct" || this.#satellites.size > 0) {
      if (JSON.stringify(this.#members().held) !== this.#heldSent) this.changed();
    }
  }

  /** The workers that take direct handoffs, by function, and what each
   * holds (same order). */
  #members(): { members: Record<string, number[]>; held: Record<string, number[]> } {
    const members: Record<string, number[]> = {};
    const held: Record<string, number[]> = {};
    let n = 0;
    for (const w of this.#workers) {
      if (!w.registered || !w.peer || w.state !== "serving") continue;
      if (n++ >= Limits.maxMembers) break; // the rest are reached through the gateway
      (members[w.name] ??= []).push(w.pid);
      (held[w.name] ??= []).push(w.held);
    }
    return { members, held };
  }
}
