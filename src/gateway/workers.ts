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

import { toBase64 } from "../handoff/bytes.ts";
import { closeFd } from "../../ffi/shim.ts";
import type { GatewayConfig } from "../operations/config.ts";
import { ControlChannel } from "../handoff/control_channel.ts";
import { logger } from "../operations/log.ts";
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
import { type Satellite, Satellites } from "./satellites.ts";
import { trust } from "../handoff/trust.ts";
import type { GatewayMetrics } from "./gateway_metrics.ts";

const log = logger("gateway");

/** A worker connected over the control channel. */
export interface Worker extends WorkerRef {
  /** Its control connection. */
  channel: ControlChannel;
  /** Its uid, as the kernel reported it when it connected (SO_PEERCRED). */
  uid: number;
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
  /** "serving", "standby" (registered with `standby`: waits for its
   * version to be promoted), "draining" (sent DRAIN, or replaced by a new
   * version) or "stuck" (silent past --worker-timeout); only a serving worker
   * is in the router. */
  state: "serving" | "standby" | "draining" | "stuck";
  /** Its version's label (REGISTER's generation; "" when none). */
  generation: string;
  /** It was told HANDOVER: what it hands back goes to the new version. */
  handingOver: boolean;
  /** It registered with the gateway that took over from this one (LEFT). */
  left: boolean;
}

/** What {@linkcode Workers.promote} did. */
export type PromoteResult =
  | {
    ok: true;
    /** Pids of the workers that now serve the function. */
    promoted: number[];
    /** Pids of the workers they replace (told HANDOVER, or only taken out of
     * the router when `handover` was false). */
    replaced: number[];
  }
  | { ok: false; error: string };

/** What the registry passes on to the rest of the gateway. */
export interface WorkerEvents {
  /** A worker handed a connection back (HANDOFF on its control channel). */
  returned(from: Worker, h: Handoff, fd: number, raw: Uint8Array): void;
  /** A worker moved connections straight to siblings (MOVED). */
  moved(from: Worker, moved: Moved): void;
  /** A satellite gateway passed on a connection no worker took directly. */
  fromSatellite?(from: Satellite, h: Handoff, fd: number, raw: Uint8Array): void;
  /** A satellite gateway joined: what it should get besides the key and routes. */
  joined?(satellite: Satellite): void;
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
  /** The satellite gateways that joined (they get the table too). */
  readonly satellites: Satellites;
  #config: GatewayConfig;
  #key: Uint8Array;
  #settling: () => boolean = () => false;
  /** The member counts in the last table pushed (JSON), to push again when they change. */
  #heldSent = "";
  #metrics: GatewayMetrics;
  #events: WorkerEvents;
  #workers = new Set<Worker>();
  /** The route table changed since it was last sent to the workers. */
  #routesPending = false;
  /** A new gateway took the control path over: every worker moves to it. */
  #moving = false;
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
    this.satellites = new Satellites(metrics, {
      handoff: (from, h, fd, raw) => {
        if (events.fromSatellite) return events.fromSatellite(from, h, fd, raw);
        closeFd(fd);
        from.channel.confirm(h.transfer ?? 0, false);
      },
      joined: (satellite) => events.joined?.(satellite),
    }, {
      key: () => this.#key,
      routes: () => this.#routesMessage(true),
      moving: () => this.#moving,
    });
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
  reports(): { name: string; metrics: Snapshot; satellite?: boolean }[] {
    const out: { name: string; metrics: Snapshot; satellite?: boolean }[] = [];
    for (const w of this.#workers) {
      if (w.registered && w.metrics) out.push({ name: w.name, metrics: w.metrics });
    }
    return [...out, ...this.satellites.reports()];
  }

  /** Send `message` to every satellite gateway (a copy each).
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * import { encodeJson, MessageType } from "../handoff/protocol.ts";
   * declare const workers: Workers;
   * workers.toSatellites(encodeJson(MessageType.TICKETS, { keys: "" }));
   * ```
   */
  toSatellites(message: Uint8Array): void {
    this.satellites.broadcast(message);
  }

  /** A process on the control socket said REGISTER (src/gateway/control_sessions.ts
   * checked its user): it is a worker, its channel ours from now on.
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * import type { ControlChannel } from "../handoff/control_channel.ts";
   * declare const workers: Workers, channel: ControlChannel;
   * workers.register(channel, { pid: 4242, uid: 1000 }, { name: "sum", routes: ["/sum"], pid: 4242 });
   * ```
   */
  register(channel: ControlChannel, peer: { pid: number; uid: number }, body: Register): void {
    const worker: Worker = {
      name: "",
      pid: peer.pid,
      uid: peer.uid,
      held: 0,
      routes: [],
      nestedRoutes: false,
      peer: false,
      registered: false,
      channel,
      lastSeen: Date.now(),
      state: "serving",
      generation: "",
      handingOver: false,
      left: false,
    };
    this.#workers.add(worker);
    channel.retarget({
      onMessage: (msg, fd, raw) => this.#onMessage(worker, msg, fd, raw),
      onBadMessage: (error) =>
        log.warning("dropped a bad message from pid {pid}: {error}", { pid: peer.pid, error }),
      onClose: () => {
        this.#onGone(worker);
        retryBlockedListeners();
      },
    });
    this.#register(worker, body);
  }

  #onGone(worker: Worker): void {
    this.#workers.delete(worker);
    if (!worker.registered) return;
    this.router.remove(worker);
    this.#membersChanged();
    if (worker.metrics) this.#metrics.workerLeft(worker.name, worker.metrics);
    worker.metrics = undefined;
    const fields = {
      how: worker.handingOver
        ? "(replaced) left"
        : worker.state === "draining"
        ? "left after draining"
        : "disconnected",
      worker: `${worker.name}/${worker.pid}`,
      routes: worker.routes.join(" "),
      left: this.router.functions().find((f) => f.name === worker.name)?.workers ?? 0,
    };
    const message = "worker {worker} {how}; {routes} now has {left} worker(s)";
    if (worker.state === "draining") log.info(message, fields);
    else log.warning(message, fields);
  }

  #onMessage(worker: Worker, msg: Message, fd: number, raw: Uint8Array): void {
    worker.lastSeen = Date.now();
    if (worker.state === "stuck") this.#revive(worker);
    if (msg.type === MessageType.HANDOFF) {
      if (worker.registered) {
        if (worker.handingOver) this.#metrics.handedOver.labels(worker.name).inc();
        this.#events.returned(worker, msg.body, fd, raw);
      } else {
        closeFd(fd);
        worker.channel.confirm(msg.body.transfer ?? 0, false); // not ours to take
      }
      return;
    }
    if (msg.type === MessageType.LEFT && worker.registered) {
      worker.left = true;
      log.debug("worker {worker} registered with the new gateway", {
        worker: `${worker.name}/${worker.pid}`,
      });
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
      if (worker.handingOver) return; // replaced: out of the router already
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
    { name, routes, pid, restarted, nestedRoutes, peer, replace, generation, standby }: Register,
  ): void {
    if (worker.registered) {
      log.warning("pid {pid} registered twice; ignored", { pid });
      return;
    }
    const denied = trust().registerRefusal(name, worker.uid, routes);
    if (denied) {
      this.#metrics.controlRefused.labels("function user").inc();
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
        const r = this.#switchTo([worker], true, false);
        if (!r.ok) {
          worker.registered = false;
          return refuse(r.error);
        }
      }
    } else {
      try {
        this.router.add(worker, routes, { nestedRoutes: worker.nestedRoutes });
      } catch (e) {
        return refuse(e instanceof RouteConflictError ? e.message : String(e));
      }
      worker.registered = true;
      this.#membersChanged();
    }
    if (restarted) this.#metrics.restarts.labels(name).inc();
    worker.channel.send(
      encodeJson(MessageType.REGISTERED, {
        ok: true,
        gatewayPid: Deno.pid,
        key: toBase64(this.#key),
      }),
    );
    // A pending push reaches it too (it is registered now); else the table as it is.
    if (!this.#routesPending) worker.channel.send(this.#routesMessage());
    // It reached this gateway's old socket during a takeover: on to the new one.
    if (this.#moving) worker.channel.send(encodeJson(MessageType.MOVE, {}));
    log.info("worker {name}/{pid} registered for {routes}{how}", {
      name,
      pid: worker.pid,
      routes: routes.join(" "),
      how: (worker.generation ? ` (generation ${worker.generation})` : "") +
        (worker.state === "standby" ? ", on standby until its version is promoted" : ""),
    });
  }

  /** Registered workers by function, generation and state (for /metrics
   * and the launcher's reload).
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * for (const w of workers.list()) console.log(w.name, w.pid, w.generation, w.state);
   * ```
   */
  list(): { name: string; pid: number; generation: string; state: string; held: number }[] {
    const out = [];
    for (const w of this.#workers) {
      if (!w.registered) continue;
      out.push({
        name: w.name,
        pid: w.pid,
        generation: w.generation,
        state: w.state,
        held: w.held,
      });
    }
    return [...out, ...this.satellites.list()];
  }

  /** How many workers (not satellites) are registered.
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * console.log(workers.registered());
   * ```
   */
  registered(): number {
    let n = 0;
    for (const w of this.#workers) if (w.registered) n++;
    return n;
  }

  /** Switch function `name` to its workers of `generation` that wait on
   * standby: they take new connections from now on, and the function's other
   * workers get none and (with `handover`) hand theirs over (HANDOVER) and
   * exit; without it they are only taken out of the router (the launcher
   * then stops them: a reload that closes connections, for comparison). On
   * failure (no such worker, or their routes conflict) nothing changes.
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * const r = workers.promote("sum", "2", true);
   * if (!r.ok) console.log(r.error);
   * ```
   */
  promote(name: string, generation: string, handover: boolean): PromoteResult {
    const news = [...this.#workers].filter((w) =>
      w.registered && w.name === name && w.generation === generation && w.state === "standby"
    );
    if (news.length === 0) {
      return {
        ok: false,
        error: `no worker of ${name} generation ${JSON.stringify(generation)} is on standby`,
      };
    }
    return this.#switchTo(news, handover);
  }

  /** `news` (on standby, one function) take over from the function's other
   * workers: see {@linkcode Workers.promote}. `tell`: send them PROMOTED (a
   * `replace` worker is not on standby in its own eyes). */
  #switchTo(news: Worker[], handover: boolean, tell = true): PromoteResult {
    const { name } = news[0];
    const olds = [...this.#workers].filter((w) =>
      w.registered && w.name === name && !news.includes(w) &&
      (w.state === "serving" || w.state === "stuck")
    );
    // The old ones leave the router first, so a new version may change the
    // function's routes; on a conflict they come back as they were.
    for (const w of olds) this.router.remove(w);
    const added: Worker[] = [];
    try {
      for (const w of news) {
        this.router.add(w, w.routes, { nestedRoutes: w.nestedRoutes });
        added.push(w);
      }
    } catch (e) {
      for (const w of added) this.router.remove(w);
      for (const w of olds) {
        if (w.state !== "serving") continue;
        try {
          this.router.add(w, w.routes, { nestedRoutes: w.nestedRoutes });
        } catch { /* its own routes: cannot conflict */ }
      }
      const error = e instanceof RouteConflictError ? e.message : String(e);
      log.error("cannot switch {name} to pid(s) {pids}: {error}", {
        name,
        pids: news.map((w) => w.pid).join(" "),
        error,
      });
      return { ok: false, error };
    }
    for (const w of news) {
      if (tell) w.channel.send(encodeJson(MessageType.PROMOTED, {}));
      w.state = "serving";
    }
    for (const w of olds) {
      w.state = "draining";
      if (!handover) continue;
      w.handingOver = true;
      w.channel.send(encodeJson(MessageType.HANDOVER, {}));
    }
    this.#membersChanged();
    this.#metrics.switches.labels(name).inc();
    log.info(
      "{name}: pid(s) {news} (generation {generation}) take over from {olds}{how}",
      {
        name,
        news: news.map((w) => w.pid).join(" "),
        generation: news[0].generation || "-",
        olds: olds.map((w) => `${w.name}/${w.pid}`).join(" ") || "no running worker",
        how: olds.length === 0
          ? ""
          : handover
          ? ": they hand their connections over"
          : ": they get no new connections",
      },
    );
    return { ok: true, promoted: news.map((w) => w.pid), replaced: olds.map((w) => w.pid) };
  }

  /** The router's table changed: push it to the workers once this turn of
   * the event loop is over (several changes make one push). */
  #routesChanged(): void {
    if (this.#routesPending) return;
    this.#routesPending = true;
    queueMicrotask(() => this.flushRoutes());
  }

  /** Tell the workers' tables whether this gateway is settling (its
   * workers registering after a start or takeover): a path their table
   * does not serve then gets 503, not 404.
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * workers.settling(() => false);
   * ```
   */
  settling(settling: () => boolean): void {
    this.#settling = settling;
  }

  /** Settling is over: push a new table that says so.
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * workers.settled();
   * ```
   */
  settled(): void {
    this.#routesChanged();
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
      w.channel.send(msg.slice()); // send() zeroes what it sent
      sent++;
    }
    if (this.satellites.size > 0) this.satellites.broadcast(this.#routesMessage(true, false));
    log.debug("route table version {version} sent to {sent} worker(s)", {
      version: this.#routesVersion,
      sent,
    });
  }

  /** The ROUTES message; `satellite`: the satellites' copy, with every
   * function's members whatever the handoff mode (they place connections
   * directly). `bump`: a new version (the satellites' copy of a push keeps
   * the workers'). */
  #routesMessage(satellite = false, bump = true): Uint8Array {
    const direct = satellite || this.#config.handoff === "direct";
    const { members, held } = direct ? this.#members() : { members: {}, held: {} };
    if (direct) this.#heldSent = JSON.stringify(held);
    if (bump) this.#routesVersion++;
    return encodeJson(MessageType.ROUTES, {
      version: this.#routesVersion,
      routes: this.router.routes(),
      handoff: satellite ? "direct" : this.#config.handoff,
      ...(direct ? { members, held } : {}),
      ...(this.#settling() ? { settling: true } : {}),
    });
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

  /** A worker joined, left, stopped answering or came back: in direct mode
   * the workers' member lists change. */
  #membersChanged(): void {
    // Satellites place connections directly whatever the mode: they need the members.
    if (this.#config.handoff === "direct" || this.#hasSatellites()) this.#routesChanged();
  }

  #hasSatellites(): boolean {
    return this.satellites.size > 0;
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
    // Direct placers balance by the counts in the table: refresh them when
    // they changed (at most once a second).
    if (this.#config.handoff === "direct" || this.#hasSatellites()) {
      if (JSON.stringify(this.#members().held) !== this.#heldSent) this.#routesChanged();
    }
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

  /** Tell every registered worker that a new gateway listens on the
   * control path (MOVE); returns how many were told. Workers on their way
   * out (draining, handing over) move too, and say DRAIN there at once;
   * workers that register later are told at once.
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * console.log(`${workers.moveAll()} worker(s) move to the new gateway`);
   * ```
   */
  moveAll(): number {
    this.#moving = true;
    let n = 0;
    for (const w of this.#workers) {
      if (!w.registered) continue;
      w.channel.send(encodeJson(MessageType.MOVE, {}));
      n++;
    }
    n += this.satellites.size;
    this.satellites.broadcast(encodeJson(MessageType.MOVE, {}));
    return n;
  }

  /** The new gateway went away: workers that register from now on stay.
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * workers.stopMoving();
   * ```
   */
  stopMoving(): void {
    this.#moving = false;
  }

  /** Connections sent to workers and satellites, not confirmed yet.
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * console.log(`${workers.unconfirmed()} in flight`);
   * ```
   */
  unconfirmed(): number {
    let n = 0;
    for (const w of this.#workers) n += w.channel.unconfirmed;
    return n + this.satellites.unconfirmed();
  }

  /** Whether every worker registered with the gateway that took over
   * (LEFT) and nothing sent to one is unconfirmed.
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * if (workers.allLeft()) console.log("retired");
   * ```
   */
  allLeft(): boolean {
    for (const w of this.#workers) {
      if (w.channel.unconfirmed > 0) return false;
      if (w.registered && !w.left) return false;
    }
    return this.satellites.allLeft();
  }

  /** Use `key` as the sealing key given to workers from now on (a gateway
   * taking over keeps its predecessor's, so workers keep one key).
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * import { Sealer } from "../handoff/seal.ts";
   * declare const workers: Workers;
   * workers.useKey(Sealer.newKey());
   * ```
   */
  useKey(key: Uint8Array): void {
    this.#key = key;
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
    this.satellites.close();
  }
}
