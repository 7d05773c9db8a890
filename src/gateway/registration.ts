/**
 * A worker's REGISTER, and the gateway's answer: refused when its user may
 * not serve that function or those routes (src/handoff/trust.ts) or when its
 * routes conflict with another function's; else it enters the router (or
 * waits on standby for its version to be promoted, or with `replace` takes
 * over from its function's other workers at once: src/gateway/versions.ts),
 * and gets REGISTERED with the sealing key, then the route table, then MOVE
 * when a new gateway is taking over.
 *
 * @module
 */

import { toBase64 } from "../handoff/bytes.ts";
import { encodeJson, MessageType, type Register } from "../handoff/protocol.ts";
import { trust } from "../handoff/trust.ts";
import { logger } from "../operations/log.ts";
import { RouteConflictError, type Router } from "../routing/router.ts";
import type { GatewayMetrics } from "./gateway_metrics.ts";
import type { RoutePush } from "./route_push.ts";
import type { Versions } from "./versions.ts";
import type { Worker } from "./workers.ts";

const log = logger("gateway");

/** What registering a worker involves.
 *
 * @example
 * ```ts
 * import type { RegistrationParts } from "./registration.ts";
 * import type { RoutePush } from "./route_push.ts";
 * import type { Versions } from "./versions.ts";
 * import { Router } from "../routing/router.ts";
 * import { GatewayMetrics } from "./gateway_metrics.ts";
 * import { Sealer } from "../handoff/seal.ts";
 * import type { Worker } from "./workers.ts";
 * declare const push: RoutePush, versions: Versions;
 * const key = Sealer.newKey();
 * const parts: RegistrationParts = {
 *   router: new Router<Worker>(),
 *   push,
 *   versions,
 *   metrics: new GatewayMetrics(),
 *   key: () => key,
 *   moving: () => false,
 * };
 * console.log(parts.moving()); // false
 * ```
 */
export interface RegistrationParts {
  /** The router a serving worker enters. */
  router: Router<Worker>;
  /** The pushed table: a new worker gets it, and the members change. */
  push: RoutePush;
  /** Switches to a `replace` worker. */
  versions: Versions;
  /** Counts refusals and restarts. */
  metrics: GatewayMetrics;
  /** The sealing key given to workers now. */
  key(): Uint8Array;
  /** Whether a new gateway is taking over (a new worker moves on at once). */
  moving(): boolean;
}

/**
 * Admits (or refuses) workers' REGISTERs.
 *
 * @example
 * ```ts
 * import { Registration } from "./registration.ts";
 * import type { RegistrationParts } from "./registration.ts";
 * import type { Worker } from "./workers.ts";
 * declare const parts: RegistrationParts, worker: Worker;
 * const registration = new Registration(parts);
 * registration.register(worker, { name: "sum", routes: ["/sum"], pid: worker.pid });
 * ```
 */
export class Registration {
  #parts: RegistrationParts;

  /** Registration into `parts.router`.
   *
   * @example
   * ```ts
   * import { Registration } from "./registration.ts";
   * import type { RegistrationParts } from "./registration.ts";
   * declare const parts: RegistrationParts;
   * new Registration(parts);
   * ```
   */
  constructor(parts: RegistrationParts) {
    this.#parts = parts;
  }

  /** `worker` said REGISTER with `body`: check it, enter it (or refuse it:
   * REGISTERED with `ok: false`), and answer.
   *
   * @example
   * ```ts
   * import type { Registration } from "./registration.ts";
   * import type { Worker } from "./workers.ts";
   * declare const registration: Registration, worker: Worker;
   * registration.register(worker, {
   *   name: "sum",
   *   routes: ["/sum"],
   *   pid: worker.pid,
   *   generation: "2",
   *   standby: true,
   * });
   * ```
   */
  register(
    worker: Worker,
    { name, routes, pid, restarted, nestedRoutes, peer, replace, generation, standby }: Register,
  ): void {
    const { router, push, versions, metrics } = this.#parts;
    if (worker.registered) {
      log.warning("pid {pid} registered twice; ignored", { pid });
      return;
    }
    const denied = trust().registerRefusal(name, worker.uid, routes);
    if (denied) {
      metrics.controlRefused.labels("function user").inc();
      log.warning("refused REGISTER of {name} from pid {pid} (uid {uid}): {denied}", {
        name,
        pid: worker.pid,
        uid: worker.uid,
        denied,
      });
      worker.channel.send(encodeJson(MessageType.REGISTERED, { ok: false, error: denied }));
      worker.channel.close();
      return;
    }
    if (pid !== worker.pid) {
      log.warning("REGISTER claims pid {claimed} but the socket belongs to pid {pid}", {
        claimed: pid,
        pid: worker.pid,
      });
    }
    worker.name = name;
    worker.routes = routes;
    worker.nestedRoutes = nestedRoutes === true;
    worker.peer = peer === true && pid === worker.pid;
    worker.generation = generation ?? "";
    const refuse = (error: string) => {
      log.error("refused worker {name}/{pid}: {error}", { name, pid: worker.pid, error });
      worker.channel.send(encodeJson(MessageType.REGISTERED, { ok: false, error }));
    };
    if (standby || replace) {
      // Not in the router yet: promoted below (replace) or by the launcher.
      worker.state = "standby";
      worker.registered = true;
      if (replace) {
        const r = versions.switchTo([worker], true, false);
        if (!r.ok) {
          worker.registered = false;
          return refuse(r.error);
        }
      }
    } else {
      try {
        router.add(worker, routes, { nestedRoutes: worker.nestedRoutes });
      } catch (e) {
        return refuse(e instanceof RouteConflictError ? e.message : String(e));
      }
      worker.registered = true;
      push.membersChanged();
    }
    if (restarted) metrics.restarts.labels(name).inc();
    worker.channel.send(
      encodeJson(MessageType.REGISTERED, {
        ok: true,
        gatewayPid: Deno.pid,
        key: toBase64(this.#parts.key()),
      }),
    );
    // A pending push reaches it too (it is registered now); else the table as it is.
    if (!push.pending) worker.channel.send(push.message());
    // It reached this gateway's old socket during a takeover: on to the new one.
    if (this.#parts.moving()) worker.channel.send(encodeJson(MessageType.MOVE, {}));
    log.info("worker {name}/{pid} registered for {routes}{how}", {
      name,
      pid: worker.pid,
      routes: routes.join(" "),
      how: (worker.generation ? ` (generation ${worker.generation})` : "") +
        (worker.state === "standby" ? ", on standby until its version is promoted" : ""),
    });
  }
}
