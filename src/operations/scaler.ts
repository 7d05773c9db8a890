/**
 * The launcher's autoscaling loop: it asks the gateway for the demand
 * (`POST /admin/demand`, a long poll answered at once when a function gets
 * its first waiting request, else after a second), lets the
 * {@linkcode Autoscaler} decide, and has the launcher start and stop workers.
 * Each scale event is one info line of the launcher's, and is counted in the
 * gateway's /metrics (`hotpotato_scale_events_total`). Runs only while some
 * function has a pool that can change (min 0, or max above min).
 *
 * @module
 */

import { AdminClient, ImpostorError } from "./admin_client.ts";
import { Autoscaler, type Decision, type Pool } from "./autoscaler.ts";

/** How long one demand request waits for news, ms. */
const POLL_WAIT_MS = 1000;
/** After a failed demand request, wait this long before the next, ms. */
const RETRY_MS = 200;

const sleep = (ms: number) => new Promise<void>((ok) => setTimeout(ok, ms));

/** What the loop asks of the launcher. */
export interface ScalerActions {
  /** The pools now. */
  pools(): Pool[];
  /** Start `count` workers of `fn`; returns how many it started. */
  start(fn: string, count: number, reason: string): number;
  /** Stop worker `pid` of `fn` (it hands its connections over); false when
   * it is not one of the launcher's. */
  stop(fn: string, pid: number, reason: string): Promise<boolean>;
  /** Whether the launcher is stopping. */
  stopping(): boolean;
  /** Print one line of the launcher's own. */
  say(message: string): void;
}

/**
 * Polls the demand and acts on the autoscaler's decisions.
 *
 * @example
 * ```ts
 * import { Scaler, type ScalerActions } from "./scaler.ts";
 * import type { AdminClient } from "./admin_client.ts";
 * declare const admin: AdminClient, actions: ScalerActions;
 * const scaler = new Scaler(admin, actions);
 * scaler.start();
 * // later: scaler.stop();
 * ```
 */
export class Scaler {
  #admin: AdminClient;
  #actions: ScalerActions;
  #autoscaler = new Autoscaler();
  #running = false;
  #warned = "";
  /** The last demand's waiting requests, by function. */
  #waiting = new Map<string, number>();

  /** A loop over `admin`'s demand, acting through `actions`.
   *
   * @example
   * ```ts
   * import { Scaler, type ScalerActions } from "./scaler.ts";
   * import type { AdminClient } from "./admin_client.ts";
   * declare const admin: AdminClient, actions: ScalerActions;
   * new Scaler(admin, actions);
   * ```
   */
  constructor(admin: AdminClient, actions: ScalerActions) {
    this.#admin = admin;
    this.#actions = actions;
  }

  /** Start the loop (once).
   *
   * @example
   * ```ts
   * import type { Scaler } from "./scaler.ts";
   * declare const scaler: Scaler;
   * scaler.start();
   * ```
   */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop();
  }

  /** Stop the loop (after its current request).
   *
   * @example
   * ```ts
   * import type { Scaler } from "./scaler.ts";
   * declare const scaler: Scaler;
   * scaler.stop();
   * ```
   */
  stop(): void {
    this.#running = false;
  }

  async #loop(): Promise<void> {
    let after = 0;
    let gateway = 0;
    while (this.#running && !this.#actions.stopping()) {
      let demand;
      try {
        demand = await this.#admin.demand(after, gateway, POLL_WAIT_MS);
      } catch (e) {
        const why = (e as Error).message;
        // The gateway is away (restarting): quietly again; an impostor on
        // the port, or no permission: said once.
        const loud = e instanceof ImpostorError || e instanceof Deno.errors.NotCapable;
        if (loud && why !== this.#warned) this.#actions.say(`autoscaling: ${why}`);
        if (loud) this.#warned = why;
        await sleep(RETRY_MS);
        continue;
      }
      this.#warned = "";
      this.#waiting = new Map(Object.entries(demand.functions).map(([fn, f]) => [fn, f.waiting]));
      gateway = demand.gatewayPid;
      after = demand.seq;
      if (!this.#running || this.#actions.stopping()) return;
      try {
        const pools = this.#actions.pools();
        for (const d of this.#autoscaler.decide(Date.now(), demand, pools)) await this.#act(d);
      } catch (e) {
        // A bug here must not end the launcher, nor the loop.
        this.#actions.say(`autoscaling: ${(e as Error).stack ?? e}`);
        await sleep(RETRY_MS);
      }
    }
  }

  /** Requests waiting for `fn` to start, as of the last demand (undefined
   * before the first).
   *
   * @example
   * ```ts
   * import type { Scaler } from "./scaler.ts";
   * declare const scaler: Scaler;
   * console.log(scaler.waiting("hello") ?? "not known yet");
   * ```
   */
  waiting(fn: string): number | undefined {
    return this.#waiting.get(fn);
  }

  async #act(d: Decision): Promise<void> {
    if (d.action === "start") {
      const started = this.#actions.start(d.fn, d.count, d.reason);
      if (started > 0) this.#admin.scaled(d.fn, "up", d.cause);
      return;
    }
    if (await this.#actions.stop(d.fn, d.pid, d.reason)) {
      this.#admin.scaled(d.fn, "down", d.cause);
    }
  }
}
