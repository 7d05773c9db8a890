/**
 * The gateway's registry of workers: the control connections workers open
 * (src/gateway/control_sessions.ts hands over each REGISTER), their messages,
 * their reports and their leaving; the router over their routes; and the
 * facade over the registry's parts, each in its own file:
 * - registration.ts: a REGISTER, its refusals, the answer;
 * - route_push.ts: the versioned route table pushed (ROUTES) to every
 *   worker and satellite, with the pool members in direct mode;
 * - versions.ts: promoting a version on standby (PROMOTED, HANDOVER);
 * - watchdog.ts: silent workers out of the router, vacant functions forgotten;
 * - upgrade_moves.ts: a gateway upgrade's MOVE, LEFT and what is unconfirmed;
 * - satellites.ts: the satellite gateways (they get the table too).
 *
 * @module
 */

import { closeFd } from "../../ffi/shim.ts";
import type { GatewayConfig } from "../operations/config.ts";
import type { ControlChannel } from "../handoff/control_channel.ts";
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
import { Router, type WorkerRef } from "../routing/router.ts";
import { type Satellite, Satellites } from "./satellites.ts";
import type { GatewayMetrics } from "./gateway_metrics.ts";
import { Registration } from "./registration.ts";
import { RoutePush } from "./route_push.ts";
import { UpgradeMoves } from "./upgrade_moves.ts";
import { type PromoteResult, Versions } from "./versions.ts";
import { Watchdog } from "./watchdog.ts";

export type { PromoteResult } from "./versions.ts";

const log = logger("gateway");

/** A worker connected over the control channel.
 *
 * @example
 * ```ts
 * import type { Worker } from "./workers.ts";
 * declare const worker: Worker;
 * if (worker.registered && worker.state === "serving") console.log(`${worker.name}/${worker.pid}`);
 * ```
 */
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
  /** Its last STATS report's load: CPU ms and requests answered since the
   * report before (the launcher's autoscaler reads them). */
  load?: { cpuMs: number; served: number };
  /** When it last answered a request or was given a connection, or
   * registered (ms since epoch): idle since then. */
  activeAt: number;
}

/** What the registry passes on to the rest of the gateway.
 *
 * @example
 * ```ts
 * import type { WorkerEvents } from "./workers.ts";
 * const events: WorkerEvents = {
 *   returned: (from, h) => console.log(`conn ${h.info.connId} back from ${from.name}/${from.pid}`),
 *   moved: (from, moved) => console.log(from.pid, moved),
 * };
 * console.log(Object.keys(events));
 * ```
 */
export interface WorkerEvents {
  /** A worker handed a connection back (HANDOFF on its control channel). */
  returned(from: Worker, h: Handoff, fd: number, raw: Uint8Array): void;
  /** A worker moved connections straight to siblings (MOVED). */
  moved(from: Worker, moved: Moved): void;
  /** A satellite gateway passed on a connection no worker took directly. */
  fromSatellite?(from: Satellite, h: Handoff, fd: number, raw: Uint8Array): void;
  /** A satellite gateway joined: what it should get besides the key and routes. */
  joined?(satellite: Satellite): void;
  /** A worker entered the router (registered serving, or promoted): what
   * waits for its function goes to it. */
  serving?(worker: Worker): void;
  /** Whether function `name`'s pool is balanced when it grows (a scaled
   * function: its busier workers SHED connections to a new one). */
  balances?(name: string): boolean;
  /** The declared routes of functions started on demand (route to
   * function), listed in the pushed table though no worker registered them. */
  coldRoutes?(): Record<string, string>;
}

/** A registered worker's load, as the launcher's autoscaler reads it
 * (`POST /admin/demand`).
 *
 * @example
 * ```ts
 * import type { WorkerLoad } from "./workers.ts";
 * const load: WorkerLoad = {
 *   name: "hello", pid: 42, generation: "1", state: "serving",
 *   conns: 3, cpuMs: 250, served: 900, idleMs: 0,
 * };
 * console.log(load.cpuMs / 1000); // a quarter of a core over the last second
 * ```
 */
export interface WorkerLoad {
  /** Its function. */
  name: string;
  /** Its pid. */
  pid: number;
  /** Its version's label. */
  generation: string;
  /** serving, standby, draining or stuck. */
  state: Worker["state"];
  /** Connections it holds. */
  conns: number;
  /** CPU ms it used over its last report's second. */
  cpuMs: number;
  /** Requests it answered over its last report's second. */
  served: number;
  /** ms since it last answered a request or was given a connection. */
  idleMs: number;
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
  #key: Uint8Array;
  #metrics: GatewayMetrics;
  #events: WorkerEvents;
  /** Every worker with an open control connection, registered or not. */
  #workers = new Set<Worker>();
  #push: RoutePush;
  #versions: Versions;
  #watchdog: Watchdog;
  #registration: Registration;
  #moves: UpgradeMoves;

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
    this.#key = key;
    this.#metrics = metrics;
    this.#events = events;
    const workers = this.#workers;
    this.router = new Router<Worker>(config.vacantGraceMs, () => this.#push.changed());
    this.satellites = new Satellites(metrics, {
      handoff: (from, h, fd, raw) => {
        if (events.fromSatellite) return events.fromSatellite(from, h, fd, raw);
        closeFd(fd);
        from.channel.confirm(h.transfer ?? 0, false);
      },
      joined: (satellite) => events.joined?.(satellite),
    }, {
      key: () => this.#key,
      routes: () => this.#push.message(true),
      moving: () => this.#moves.moving,
    });
    const { router, satellites } = this;
    this.#push = new RoutePush(config, {
      workers,
      router,
      satellites,
      coldRoutes: () => events.coldRoutes?.() ?? {},
    });
    const push = this.#push;
    this.#moves = new UpgradeMoves(workers, satellites);
    this.#versions = new Versions({ workers, router, push, metrics });
    this.#watchdog = new Watchdog(config, { workers, router, push });
    this.#registration = new Registration({
      router,
      push,
      versions: this.#versions,
      metrics,
      key: () => this.#key,
      moving: () => this.#moves.moving,
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
      activeAt: Date.now(),
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
    this.#registration.register(worker, body);
    if (worker.registered && worker.state === "serving") this.#serving(worker);
  }

  /** `worker` serves now: what waits for its function goes to it, and in a
   * scaled pool the workers holding more than their share shed the rest
   * (SHED), so a new worker takes part of the load at once. */
  #serving(worker: Worker): void {
    this.#events.serving?.(worker);
    if (!this.#events.balances?.(worker.name)) return;
    const pool = this.router.workersOf(worker.name);
    if (pool.length < 2) return;
    const share = Math.ceil(pool.reduce((n, w) => n + w.held, 0) / pool.length);
    for (const w of pool) {
      if (w.held <= share) continue;
      const count = Math.min(w.held - share, Limits.maxShed);
      log.debug("worker {worker} holds {held}, the pool's share is {share}: SHED {count}", {
        worker: `${w.name}/${w.pid}`,
        held: w.held,
        share,
        count,
      });
      w.channel.send(encodeJson(MessageType.SHED, { count }));
    }
  }

  /** The table's routes changed outside the router (a function's scaling
   * or declared routes): push it again.
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * workers.routesChanged();
   * ```
   */
  routesChanged(): void {
    this.#push.changed();
  }

  /** Stop worker `pid` of function `name` (the launcher scales down): out
   * of the router, it hands every connection over (HANDOVER: idle ones at
   * once, busy ones at their next request boundary) to the function's other
   * workers, and exits. Returns the connections it held, or why not.
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * const r = workers.retire("hello", 4242);
   * console.log(r.ok ? `${r.held} connection(s) handed over` : r.error);
   * ```
   */
  retire(name: string, pid: number): { ok: true; held: number } | { ok: false; error: string } {
    const w = [...this.#workers].find((w) => w.registered && w.pid === pid && w.name === name);
    if (!w) return { ok: false, error: `no registered worker ${name}/${pid}` };
    if (w.state !== "serving" && w.state !== "stuck") {
      return { ok: false, error: `worker ${name}/${pid} is ${w.state}` };
    }
    this.#versions.retire(w);
    log.info("worker {worker} stops (fewer workers): it hands its {held} connection(s) over", {
      worker: `${name}/${pid}`,
      held: w.held,
    });
    return { ok: true, held: w.held };
  }

  /** Every registered worker's load (the launcher's autoscaler reads it).
   *
   * @example
   * ```ts
   * import type { Workers } from "./workers.ts";
   * declare const workers: Workers;
   * for (const w of workers.loads()) console.log(w.name, w.pid, w.cpuMs, w.idleMs);
   * ```
   */
  loads(): WorkerLoad[] {
    const now = Date.now();
    const out: WorkerLoad[] = [];
    for (const w of this.#workers) {
      if (!w.registered) continue;
      out.push({
        name: w.name,
        pid: w.pid,
        generation: w.generation,
        state: w.state,
        conns: w.held,
        cpuMs: w.load?.cpuMs ?? 0,
        served: w.load?.served ?? 0,
        idleMs: Math.max(0, now - w.activeAt),
      });
    }
    return out;
  }

  #onGone(worker: Worker): void {
    this.#workers.delete(worker);
    if (!worker.registered) return;
    this.router.remove(worker);
    this.#push.membersChanged();
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
    if (worker.state === "stuck") this.#watchdog.revive(worker);
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
      this.#registration.register(worker, msg.body);
    } else if (msg.type === MessageType.STATS && worker.registered) {
      worker.held = msg.body.held;
      if (msg.body.metrics) worker.metrics = msg.body.metrics; // absent: too large, keep the last
      const { cpuMs, served, busy } = msg.body;
      if (cpuMs !== undefined || served !== undefined) {
        worker.load = { cpuMs: cpuMs ?? 0, served: served ?? 0 };
        // Answering, or busy with a long stream or a WebSocket: not idle.
        if (served || busy) worker.activeAt = Date.now();
      }
    } else if (msg.type === MessageType.MOVED && worker.registered) {
      this.#events.moved(worker, msg.body);
    } else if (msg.type === MessageType.DRAIN && worker.registered) {
      if (worker.handingOver) return; // replaced: out of the router already
      // It finishes what it holds; new connections go to the others.
      worker.state = "draining";
      this.router.remove(worker);
      this.#push.membersChanged();
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
    const own = this.loads().map(({ name, pid, generation, state, conns }) => ({
      name,
      pid,
      generation,
      state,
      held: conns,
    }));
    return [...own, ...this.satellites.list()];
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
    const r = this.#versions.promote(name, generation, handover);
    if (r.ok) {
      for (const w of this.#workers) if (r.promoted.includes(w.pid)) this.#events.serving?.(w);
    }
    return r;
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
    this.#push.settling(settling);
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
    this.#push.changed();
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
    this.#push.flush();
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
    this.#watchdog.check();
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
    return this.#moves.moveAll();
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
    this.#moves.stopMoving();
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
    return this.#moves.unconfirmed();
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
    return this.#moves.allLeft();
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
