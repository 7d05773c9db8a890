/**
 * The gateway's registry of workers: the control connections workers open,
 * their registration (name, routes, pool membership), their reports, the
 * watchdog that takes a silent (stuck) worker out of the router until it
 * speaks again, and the versioned route table pushed to every worker.
 *
 * Every registered worker gets the route table (ROUTES) right after
 * REGISTERED and again whenever it changes (changes in one event-loop turn
 * make one push, and a pending push goes out before any connection is handed
 * to a worker: {@linkcode Workers.flushRoutes}), so workers keep a
 * connection only for paths the gateway would route to them. In direct mode
 * the table carries each function's pool members, the workers that take
 * connections straight from their siblings.
 *
 * @module
 */

import { closeFd } from "../../ffi/shim.ts";
import type { GatewayConfig } from "../operations/config.ts";
import { ControlChannel } from "../handoff/control_channel.ts";
import { logger } from "../operations/log.ts";
import type { Accepted } from "../connection/listener.ts";
import { retryBlockedListeners } from "../connection/listener.ts";
import {
  encodeJson,
  type Handoff,
  Limits,
  type Message,
  MessageType,
  type Moved,
  type Register,
} from "../handoff/protocol.ts";
import type { Snapshot } from "../operations/metrics.ts";
import { RouteConflictError, Router, type WorkerRef } from "../routing/router.ts";
import { sameUser } from "../handoff/same_user.ts";
import type { GatewayMetrics } from "./gateway_metrics.ts";

const log = logger("gateway");

/** A worker connected over the control channel. */
export interface Worker extends WorkerRef {
  /** Its control connection. */
  channel: ControlChannel;
  /** The routes it registered. */
  routes: string[];
  /** Its routes may nest with other functions' (REGISTER's nestedRoutes). */
  nestedRoutes: boolean;
  /** It listens on its peer socket for direct handoffs (REGISTER's peer). */
  peer: boolean;
  /** It registered (and was accepted). */
  registered: boolean;
  /** The metrics of its last STATS report that had them. */
  metrics?: Snapshot;
  /** When it last sent anything (ms since epoch): workers report every second. */
  lastSeen: number;
  /** "serving", "draining" (sent DRAIN) or "stuck" (silent past --worker-timeout);
   * only a serving worker is in the router. */
  state: "serving" | "draining" | "stuck";
}

/** What the registry passes on to the rest of the gateway. */
export interface WorkerEvents {
  /** A worker handed a connection back (HANDOFF on its control channel). */
  returned(from: Worker, h: Handoff, fd: number, raw: Uint8Array): void;
  /** A worker moved connections straight to siblings (MOVED). */
  moved(from: Worker, moved: Moved): void;
}

function bytesToBase64(b: Uint8Array): string {
  let s = "";
  for (const c of b) s += String.fromCharCode(c);
  return btoa(s);
}

/**
 * The workers a gateway knows, and the router over their routes.
 *
 * @example
 * ```ts
 * import { Workers } from "./workers.ts";
 * import { GatewayMetrics } from "./gateway_metrics.ts";
 * import { gatewayConfig } from "../operations/config.ts";
 * import { Sealer } from "../handoff/seal.ts";
 * const workers = new Workers(gatewayConfig([]).config, Sealer.newKey(), new GatewayMetrics(), {
 *   returned: () => {},
 *   moved: () => {},
 * });
 * console.log(workers.router.functions()); // []
 * ```
 */
export class Workers {
  /** Which function, and which of its workers, serves a path. */
  readonly router: Router<Worker>;
  #config: GatewayConfig;
  #key: Uint8Array;
  #metrics: GatewayMetrics;
  #events: WorkerEvents;
  #workers = new Set<Worker>();
  /** The route table changed since it was last sent to the workers. */
  #routesPending = false;
  /** Version of the ROUTES sent last (one per message: members change too). */
  #routesVersion = 0;

  /** A registry that gives registered workers `key` (the sealing key).
   *
   * @example
   * ```ts
   * import { Workers } from "./workers.ts";
   * import { GatewayMetrics } from "./gateway_metrics.ts";
   * import { gatewayConfig } from "../operations/config.ts";
   * import { Sealer } from "../handoff/seal.ts";
   * new Workers(gatewayConfig([]).config, Sealer.newKey(), new GatewayMetrics(), {
   *   returned: () => {},
   *   moved: () => {},
   * });
   * ```
   */
  constructor(
    config: GatewayConfig,
    key: Uint8Array,
    metrics: GatewayMetrics,
    events: WorkerEvents,
  ) {
    this.#config = config;
    this.#key = key;
    this.#metrics = metrics;
    this.#events = events;
    this.router = new Router<Worker>(config.vacantGraceMs, () => this.#routesChanged());
  }

  /** Registered workers' last reports (for /metrics).
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * for (const { name, metrics } of workers.reports()) console.log(name, metrics.families.length);
   * ```
   */
  reports(): { name: string; metrics: Snapshot }[] {
    const out: { name: string; metrics: Snapshot }[] = [];
    for (const w of this.#workers) {
      if (w.registered && w.metrics) out.push({ name: w.name, metrics: w.metrics });
    }
    return out;
  }

  /** A worker connected to the control socket: check it runs as our user,
   * then wait for its REGISTER.
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * import { Listener } from "../connection/listener.ts";
   * import { unixListen } from "../../ffi/shim.ts";
   * declare const workers: Workers;
   * new Listener(unixListen(`${Deno.makeTempDirSync()}/c.sock`), "control", (c) => workers.accept(c));
   * ```
   */
  accept(c: Accepted): void {
    const cred = sameUser(c.fd, "control connection", log);
    if (!cred) return;
    const worker: Worker = {
      name: "",
      pid: cred.pid,
      held: 0,
      routes: [],
      nestedRoutes: false,
      peer: false,
      registered: false,
      channel: undefined as unknown as ControlChannel,
      lastSeen: Date.now(),
      state: "serving",
    };
    try {
      worker.channel = new ControlChannel(c.fd, {
        onMessage: (msg, fd, raw) => this.#onMessage(worker, msg, fd, raw),
        onBadMessage: (error) =>
          log.warning("dropped a bad message from pid {pid}: {error}", { pid: cred.pid, error }),
        onClose: () => {
          this.#onGone(worker);
          retryBlockedListeners();
        },
      });
    } catch (e) {
      log.error("cannot watch a control connection: {error}", { error: (e as Error).message });
      closeFd(c.fd);
      return;
    }
    this.#workers.add(worker);
  }

  #onGone(worker: Worker): void {
    this.#workers.delete(worker);
    if (!worker.registered) return;
    this.router.remove(worker);
    this.#membersChanged();
    if (worker.metrics) this.#metrics.workerLeft(worker.name, worker.metrics);
    worker.metrics = undefined;
    log.warning("worker {worker} disconnected; {routes} now has {left} worker(s)", {
      worker: `${worker.name}/${worker.pid}`,
      routes: worker.routes.join(" "),
      left: this.router.functions().find((f) => f.name === worker.name)?.workers ?? 0,
    });
  }

  #onMessage(worker: Worker, msg: Message, fd: number, raw: Uint8Array): void {
    worker.lastSeen = Date.now();
    if (worker.state === "stuck") this.#revive(worker);
    if (msg.type === MessageType.HANDOFF) {
      if (worker.registered) this.#events.returned(worker, msg.body, fd, raw);
      else {
        closeFd(fd);
        worker.channel.confirm(msg.body.transfer ?? 0, false); // not ours to take
      }
      return;
    }
    if (msg.type === MessageType.REGISTER) {
      this.#register(worker, msg.body);
    } else if (msg.type === MessageType.STATS && worker.registered) {
      worker.held = msg.body.held;
      if (msg.body.metrics) worker.metrics = msg.body.metrics; // absent: too large, keep the last
    } else if (msg.type === MessageType.MOVED && worker.registered) {
      this.#events.moved(worker, msg.body);
    } else if (msg.type === MessageType.DRAIN && worker.registered) {
      // It finishes what it holds; new connections go to the others.
      worker.state = "draining";
      this.router.remove(worker);
      this.#membersChanged();
      log.info("worker {worker} is draining; no new connections for it", {
        worker: `${worker.name}/${worker.pid}`,
      });
    } else {
      log.warning("unexpected message type {type} from pid {pid}", {
        type: msg.type,
        pid: worker.pid,
      });
    }
  }

  #register(
    worker: Worker,
    { name, routes, pid, restarted, nestedRoutes, peer, replace }: Register,
  ): void {
    if (worker.registered) {
      log.warning("pid {pid} registered twice; ignored", { pid });
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
    try {
      this.router.add(worker, routes, { nestedRoutes: worker.nestedRoutes });
    } catch (e) {
      const error = e instanceof RouteConflictError ? e.message : String(e);
      log.error("refused worker {name}/{pid}: {error}", { name, pid: worker.pid, error });
      worker.channel.send(encodeJson(MessageType.REGISTERED, { ok: false, error }));
      return;
    }
    worker.registered = true;
    this.#membersChanged();
    if (replace) this.#replaceOthers(worker);
    if (restarted) this.#metrics.restarts.labels(name).inc();
    worker.channel.send(
      encodeJson(MessageType.REGISTERED, {
        ok: true,
        gatewayPid: Deno.pid,
        key: bytesToBase64(this.#key),
      }),
    );
    // A pending push reaches it too (it is registered now); else the table as it is.
    if (!this.#routesPending) worker.channel.send(this.#routesMessage());
    log.info("worker {name}/{pid} registered for {routes}", {
      name,
      pid: worker.pid,
      routes: routes.join(" "),
    });
  }

  /** A new version of `by`'s function registered: its other workers get no
   * new connections and hand theirs over (HANDOVER), then exit. */
  #replaceOthers(by: Worker): void {
    const old: string[] = [];
    for (const w of this.#workers) {
      if (w === by || !w.registered || w.name !== by.name || w.state === "draining") continue;
      w.state = "draining";
      this.router.remove(w);
      w.channel.send(encodeJson(MessageType.HANDOVER, {}));
      old.push(`${w.name}/${w.pid}`);
    }
    this.#membersChanged();
    log.info("worker {worker} replaces {old}: they hand their connections over", {
      worker: `${by.name}/${by.pid}`,
      old: old.join(" ") || "no running worker",
    });
  }

  /** The router's table changed: push it to the workers once this turn of
   * the event loop is over (several changes make one push). */
  #routesChanged(): void {
    if (this.#routesPending) return;
    this.#routesPending = true;
    queueMicrotask(() => this.flushRoutes());
  }

  /** Send the route table to every registered worker now if it changed
   * since the last push (before handing a worker a connection: it decides
   * what is its by the table, so it must have the newest).
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * workers.flushRoutes();
   * ```
   */
  flushRoutes(): void {
    if (!this.#routesPending) return;
    this.#routesPending = false;
    const msg = this.#routesMessage();
    let sent = 0;
    for (const w of this.#workers) {
      if (!w.registered) continue;
      w.channel.send(msg.slice()); // send() zeroes what it sent: one copy each
      sent++;
    }
    log.debug("route table version {version} sent to {sent} worker(s)", {
      version: this.#routesVersion,
      sent,
    });
  }

  #routesMessage(): Uint8Array {
    const direct = this.#config.handoff === "direct";
    const members: Record<string, number[]> = {};
    if (direct) {
      let n = 0;
      for (const w of this.#workers) {
        if (!w.registered || !w.peer || w.state !== "serving") continue;
        if (n++ >= Limits.maxMembers) break; // the rest are reached through the gateway
        (members[w.name] ??= []).push(w.pid);
      }
    }
    return encodeJson(MessageType.ROUTES, {
      version: ++this.#routesVersion,
      routes: this.router.routes(),
      handoff: this.#config.handoff,
      ...(direct ? { members } : {}),
    });
  }

  /** A worker joined, left, stopped answering or came back: in direct mode
   * the workers' member lists change. */
  #membersChanged(): void {
    if (this.#config.handoff === "direct") this.#routesChanged();
  }

  /** The watchdog (every second): take workers that have been silent past
   * --worker-timeout out of the router (their event loop is stuck, so a
   * connection handed to them would wait forever; their routes answer 503,
   * or go to the function's other workers, until they speak again), and
   * forget functions vacant past --vacant-grace, so the workers' tables
   * drop them even when no request asks for their routes.
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * setInterval(() => workers.check(), 1000);
   * ```
   */
  check(): void {
    this.router.sweep(); // forgotten functions leave the workers' tables too
    const limit = Date.now() - this.#config.workerTimeoutMs;
    for (const w of this.#workers) {
      if (!w.registered || w.state !== "serving" || w.lastSeen >= limit) continue;
      w.state = "stuck";
      this.router.remove(w);
      this.#membersChanged();
      log.warning(
        "worker {worker} silent for {ms} ms; no new connections for it until it answers",
        { worker: `${w.name}/${w.pid}`, ms: Date.now() - w.lastSeen },
      );
    }
  }

  #revive(worker: Worker): void {
    try {
      this.router.add(worker, worker.routes, { nestedRoutes: worker.nestedRoutes });
      this.#membersChanged();
    } catch (e) {
      // Another function took its routes while it was silent.
      log.warning("worker {worker} answers again but cannot return: {error}", {
        worker: `${worker.name}/${worker.pid}`,
        error: (e as Error).message,
      });
      worker.channel.close();
      return;
    }
    worker.state = "serving";
    log.info("worker {worker} answers again; it gets new connections", {
      worker: `${worker.name}/${worker.pid}`,
    });
  }

  /** Close every control connection (the workers reconnect to the next
   * gateway).
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * workers.close();
   * ```
   */
  close(): void {
    for (const w of [...this.#workers]) w.channel.close();
  }
}
