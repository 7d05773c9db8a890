/**
 * Placing a connection: one way for every role. A {@linkcode Parcel} (the
 * released connection) is offered to a chain of targets in order (a peer
 * worker, the gateway, another worker of the route, a successor gateway);
 * each one that refuses it, dies or closes its channel before confirming
 * gives it back, and the next is tried. When none takes it, it is ours
 * again: `unplaced` adopts it and answers its request here, 503 with
 * `Retry-After: 1` (src/gateway/gateway_policy.ts and the worker's holder
 * policy say so) on a connection that stays open.
 *
 * The chain is an iterable read lazily, so a placer can pick its next
 * target when the previous one has failed (the gateway picks another worker
 * of the route, up to {@linkcode MAX_PLACEMENTS}).
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import type { ControlChannel } from "./control_channel.ts";
import type { Parcel } from "./parcel.ts";

/** How many targets a connection is offered to before it is answered 503
 * by its holder (each refusal or death before confirming is one). */
export const MAX_PLACEMENTS = 3;

/** One place a connection can go. */
export interface Target {
  /** For logs: `sum/1234`, `the gateway`, `gateway pid 42`. */
  name: string;
  /** Its channel, or undefined when it cannot take connections now (skipped). */
  channel: ControlChannel | undefined;
  /** The handoff count to carry to it (default: the parcel's). */
  handoffs?: number;
  /** Runs before sending (the gateway pushes its newest route table first). */
  before?(): void;
  /** Runs once it has gone (the kernel has it, not yet confirmed). */
  sent?(): void;
  /** Runs when it confirmed: the connection is its now. */
  confirmed?(): void;
  /** Runs when it gave the connection back (refused, or went away). */
  returned?(reason: string): void;
}

/** What {@linkcode place} reports. */
export interface Placing {
  /** Where to log a target that did not take it. */
  log: Logger;
  /** Nobody took it: it is the caller's again, to adopt and answer, or to
   * drop. `reason`: the last refusal; `from`: the last target tried. */
  unplaced(parcel: Parcel, reason: string, from: string | undefined): void;
}

/**
 * Offer `parcel` to `targets` in order until one confirms it; `unplaced`
 * when none does.
 *
 * @example
 * ```ts
 * import { place } from "./placement.ts";
 * import type { Parcel } from "./parcel.ts";
 * import type { ControlChannel } from "./control_channel.ts";
 * import { logger } from "../operations/log.ts";
 * declare const parcel: Parcel, peer: ControlChannel, gateway: ControlChannel;
 * place(parcel, [{ name: "product/42", channel: peer }, { name: "the gateway", channel: gateway }], {
 *   log: logger("worker"),
 *   unplaced: (p) => p.drop(),
 * });
 * ```
 */
export function place(parcel: Parcel, targets: Iterable<Target>, how: Placing): void {
  const chain = targets[Symbol.iterator]();
  let reason = "nowhere to go";
  let failed: Target | undefined;
  const next = (): void => {
    for (;;) {
      const step = chain.next();
      if (step.done) {
        how.unplaced(parcel, reason, failed?.name);
        return;
      }
      const t = step.value;
      if (!t.channel) continue;
      if (failed) warn(how.log, parcel, failed, reason, `to ${t.name}`);
      t.before?.();
      parcel.setHandoffs(t.handoffs ?? parcel.handoffs);
      const back = (why: string) => {
        t.returned?.(why);
        reason = why;
        failed = t;
        next();
      };
      if (parcel.transfer(t.channel, back, t.confirmed)) {
        t.sent?.();
        return;
      }
      reason = "its channel is closed or full";
      failed = t;
    }
  };
  next();
}

function warn(log: Logger, parcel: Parcel, t: Target, reason: string, next: string): void {
  log.warning("conn {conn}: {to} did not take it ({reason}); {next}", {
    conn: parcel.connId,
    to: t.name,
    reason,
    next,
  });
}
