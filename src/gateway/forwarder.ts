/**
 * Moving connections from the gateway to workers, acknowledged: a
 * connection stays the gateway's (its fd and its sealed state) until the
 * receiving worker confirms it adopted it. A worker that refuses it, dies or
 * closes its channel first gives it back: it goes to another worker of its
 * route, or, after {@linkcode MAX_PLACEMENTS} tries, is answered 503 here
 * on a connection that stays open.
 *
 * Connections that workers hand back (their next request is another
 * function's) are forwarded unopened: the gateway confirms them, then passes
 * the sealed message and fd on to the route's worker. The gateway never
 * imports TLS state a function produced (wolfSSL's import trusts its input,
 * and a function is not trusted with the gateway's memory): a hand-back for
 * a route no worker serves is refused, and the worker answers it (404 or
 * 503); one whose next worker refuses it too, with no other to take it, goes
 * back to the worker that handed it back, which answers it 503 (a worker
 * answers the request a connection comes from the gateway with rather than
 * move it again). Connections from another gateway (a satellite, the gateway
 * this one took over from) are imported to answer here as before. Direct
 * moves between workers are only told to the gateway (MOVED): logged and
 * counted as if forwarded.
 *
 * @module
 */

import { closeFd, FD_LOST } from "../../ffi/shim.ts";
import type { TlsContext } from "../../ffi/wolfssl.ts";
import type { TlsConnection } from "../connection/tls_connection.ts";
import { parseRequest, type RequestHead } from "../http/http.ts";
import { MAX_HEAD_BYTES } from "../connection/request_reader.ts";
import { nowMicros } from "../handoff/handoff.ts";
import type { Handoff, Moved } from "../handoff/protocol.ts";
import type { Sealer } from "../handoff/seal.ts";
import { Parcel } from "../handoff/parcel.ts";
import { MAX_PLACEMENTS, place, type Target } from "../handoff/placement.ts";
import type { KeyLease } from "../handoff/keyring.ts";
import { logger, LogLine } from "../operations/log.ts";
import type { GatewayMetrics } from "./gateway_metrics.ts";
import type { ControlChannel } from "../handoff/control_channel.ts";
import type { Worker, Workers } from "./workers.ts";
import type { ColdStarts } from "./cold_starts.ts";
import type { ParkedConnections } from "./parked.ts";

const log = logger("gateway");
const returnedLine = new LogLine(
  log,
  "info",
  "connection returned: conn {conn} from {worker} for {path}, to {target}",
);
const movedLine = new LogLine(
  log,
  "info",
  "connection moved: conn {conn} from {worker} for {route}, to {target}",
);

/** How long a function's connection for a route a just-started gateway does
 * not know yet waits (unconfirmed) for a worker before it is refused. */
const WAIT_FOR_WORKER_MS = 1000;

/** A connection handed to this gateway, while it decides where it goes. */
interface Taken {
  channel: ControlChannel;
  sender: string;
  conn: number;
  handoffs: number;
  transfer: number;
  fd: number;
  /** A copy of the HANDOFF (the received bytes are zeroed after the callback). */
  message: Uint8Array;
  path: string | undefined;
  /** Its state is a gateway's (else a function's: never imported here). */
  ours: boolean;
  origin: Worker | undefined;
}

export { MAX_PLACEMENTS } from "../handoff/placement.ts";

/** The head of the request at the start of `unread`, if complete. */
function requestHead(unread: Uint8Array, maxBody: number): RequestHead | undefined {
  const parsed = parseRequest(unread, { maxHeadBytes: MAX_HEAD_BYTES, maxBodyBytes: maxBody });
  return parsed.kind === "request" || parsed.kind === "incomplete" ? parsed.head : undefined;
}

/** What a {@linkcode Forwarder} works with. */
export interface ForwarderOptions {
  /** The registry whose router picks the workers. */
  workers: Workers;
  /** Seals and opens handoff state. */
  sealer: Sealer;
  /** Imports connections the gateway answers itself. */
  importContext: TlsContext;
  /** --max-body (a returned request's head is read to route it). */
  maxBody: number;
  /** Metrics to bump. */
  metrics: GatewayMetrics;
  /** Hold an imported connection and answer it here; `unplaced`: its next
   * request could not be placed (answer 503). */
  serve(conn: TlsConnection, unplaced: boolean): void;
  /** The gateway has just started or taken over: its workers may still be
   * registering (a function's connection for an unknown route waits). */
  settling?(): boolean;
  /** Functions started on demand: a connection handed back for one with no
   * worker waits, unconfirmed, while it starts. */
  cold?: ColdStarts;
  /** Where an idle connection of a function at zero workers (its last
   * worker stopped) is parked until its client speaks. */
  parked?: ParkedConnections;
}

/**
 * The gateway's handoff paths.
 *
 * @example
 * ```ts
 * import { Forwarder, type ForwarderOptions } from "./forwarder.ts";
 * declare const options: ForwarderOptions;
 * const forwarder = new Forwarder(options);
 * ```
 */
export class Forwarder {
  #o: ForwarderOptions;
  /** The gateway's key as a lease: it lives as long as the gateway (or
   * until a takeover gives it its predecessor's), so releasing is nothing. */
  #key: KeyLease;

  /** A forwarder over these parts.
   *
   * @example
   * ```ts
   * import { Forwarder, type ForwarderOptions } from "./forwarder.ts";
   * declare const options: ForwarderOptions;
   * new Forwarder(options);
   * ```
   */
  constructor(options: ForwarderOptions) {
    this.#o = options;
    this.#key = { sealer: options.sealer, release: () => {} };
  }

  /** Seal and open handoffs with `sealer` from now on (a gateway taking
   * over uses its predecessor's key).
   *
   * @example
   * ```ts
   * import type { Forwarder } from "./forwarder.ts";
   * import { Sealer } from "../handoff/seal.ts";
   * declare const forwarder: Forwarder;
   * forwarder.useSealer(new Sealer(Sealer.newKey()));
   * ```
   */
  useSealer(sealer: Sealer): void {
    this.#o = { ...this.#o, sealer };
    this.#key = { sealer, release: () => {} };
  }

  /** Hand a connection the gateway holds to a worker of `route`. False
   * when no worker serves its path now (the caller answers it).
   *
   * @example
   * ```ts
   * import type { Forwarder } from "./forwarder.ts";
   * import type { TlsConnection } from "../connection/tls_connection.ts";
   * declare const forwarder: Forwarder, conn: TlsConnection;
   * forwarder.handOff(conn, "/sum?a=1&b=2");
   * ```
   */
  handOff(conn: TlsConnection, path: string): boolean {
    const hit = this.#o.workers.router.pickWithRoute(path);
    if (!hit) return false;
    const parcel = Parcel.release(conn, this.#lease(), conn.info.handoffs + 1);
    if (!(parcel instanceof Parcel)) {
      log.warning("conn {conn}: cannot move it: {error}", {
        conn: conn.info.connId,
        error: parcel.error,
      });
      return !parcel.intact; // intact: answered here; released: it is closed
    }
    this.#place(parcel, path, hit, true);
    return true;
  }

  /** The gateway's key, as a lease. */
  #lease(): KeyLease {
    return this.#key;
  }

  /** Offer `parcel` to the workers of `path`'s route, `first` first, up to
   * MAX_PLACEMENTS of them; it stays ours until one confirms. If none does,
   * it is answered 503 here (the connection stays open) when its state is
   * `ours`, else it goes back to the worker it came from (`origin`), which
   * answers it; closed when that cannot be. */
  #place(
    parcel: Parcel,
    path: string,
    first: { worker: Worker; route: string },
    ours: boolean,
    origin?: Worker,
  ): void {
    place(parcel, this.#workersFor(path, first), {
      log,
      unplaced: (p, reason, from) => {
        log.warning("conn {conn}: {worker} did not take it ({reason}); {next}", {
          conn: p.connId,
          worker: from ?? "no worker",
          reason,
          next: ours
            ? "answering 503 here"
            : origin
            ? `back to ${origin.name}/${origin.pid}, which answers it`
            : "closed (its TLS state is a function's: never imported here)",
        });
        if (ours) this.#adopt(p, true);
        else if (origin) this.#giveBack(p, origin);
        else p.drop();
      },
    });
  }

  /** The workers a connection for `path` is offered to, one at a time: a
   * new least-held pick after each refusal, never a worker that has
   * refused it or could not be sent it. */
  *#workersFor(path: string, first: { worker: Worker; route: string }): Generator<Target> {
    const { workers, metrics } = this.#o;
    const tried = new Set<Worker>();
    let hit: { worker: Worker; route: string } | undefined = first;
    for (let attempt = 1; hit && attempt <= MAX_PLACEMENTS; attempt++) {
      const worker: Worker = hit.worker;
      const route: string = hit.route;
      tried.add(worker);
      yield {
        name: `${worker.name}/${worker.pid}`,
        channel: worker.channel,
        // The worker decides what is its by the table: it must have the newest.
        before: () => workers.flushRoutes(),
        sent: () => {
          worker.held++;
          worker.activeAt = Date.now();
          metrics.handoffs.labels(worker.name, route).inc();
        },
        returned: () => {
          worker.held = Math.max(0, worker.held - 1);
        },
      };
      // Here only when it gave it back, or its channel was closed or full.
      hit = workers.router.pickWithRoute(path, tried);
    }
  }

  /** A function's connection nobody else took: back to the worker that
   * exported it, which imports its own state again and answers it. */
  #giveBack(parcel: Parcel, origin: Worker): void {
    const lost = (why: string) => {
      log.warning("conn {conn}: {worker} did not take it back ({why}); closed", {
        conn: parcel.connId,
        worker: `${origin.name}/${origin.pid}`,
        why,
      });
      parcel.drop();
    };
    if (!parcel.transfer(origin.channel, lost)) lost("its channel is closed");
  }

  /** A worker handed a connection back: its next request is not for it.
   * Confirm it, then (once the confirmation has left) forward it unopened to
   * the route's worker, or answer it here.
   *
   * @example
   * ```ts
   * import type { Forwarder } from "./forwarder.ts";
   * import type { Worker } from "./workers.ts";
   * import type { Handoff } from "../handoff/protocol.ts";
   * declare const forwarder: Forwarder, from: Worker, h: Handoff, fd: number, raw: Uint8Array;
   * forwarder.returned(from, h, fd, raw);
   * ```
   */
  returned(from: Worker, h: Handoff, fd: number, raw: Uint8Array): void {
    this.#o.metrics.returned.labels(from.name).inc();
    from.held = Math.max(0, from.held - 1);
    // An idle connection a replaced worker hands over (HANDOVER) has no
    // request yet: it goes to the function's new version as it is.
    const idle = from.handingOver ? from.routes[0] : undefined;
    this.#take(from.channel, `${from.name}/${from.pid}`, h, fd, raw, false, idle, from);
  }

  /** The gateway this one took over from passed on a connection it held:
   * like a hand-back, confirmed, then forwarded to the worker of its next
   * request (when it came with one) or held here.
   *
   * @example
   * ```ts
   * import type { Forwarder } from "./forwarder.ts";
   * import type { ControlChannel } from "../handoff/control_channel.ts";
   * import type { Handoff } from "../handoff/protocol.ts";
   * declare const forwarder: Forwarder, channel: ControlChannel, h: Handoff, fd: number, raw: Uint8Array;
   * forwarder.inherited(channel, 4242, h, fd, raw);
   * ```
   */
  inherited(channel: ControlChannel, pid: number, h: Handoff, fd: number, raw: Uint8Array): void {
    this.#take(channel, `gateway/${pid}`, h, fd, raw, true);
  }

  /** A connection this gateway sent away came back unconfirmed: it is ours
   * again, held here.
   *
   * @example
   * ```ts
   * import type { Forwarder } from "./forwarder.ts";
   * import type { Parcel } from "../handoff/parcel.ts";
   * declare const forwarder: Forwarder, parcel: Parcel;
   * forwarder.takeBack(parcel);
   * ```
   */
  takeBack(parcel: Parcel): void {
    this.#adopt(parcel, false);
  }

  /** Confirm a connection sent to us on `channel` by `sender`, then (once
   * the confirmation has left) forward it unopened to the route's worker,
   * or answer it here when its state is a gateway's (`ours`); a worker's
   * that no worker can take is refused (the worker answers it). */
  #take(
    channel: ControlChannel,
    sender: string,
    h: Handoff,
    fd: number,
    raw: Uint8Array,
    ours: boolean,
    idlePath?: string,
    origin?: Worker,
  ): void {
    const transfer = h.transfer ?? 0;
    if (fd < 0) {
      log.warning("conn {conn}: HANDOFF from {worker} without a socket{why}; refused", {
        conn: h.info.connId,
        worker: sender,
        why: fd === FD_LOST ? " (the gateway is at its open-file limit)" : "",
      });
      channel.confirm(transfer, false);
      return;
    }
    const message = raw.slice(); // raw is zeroed when this returns
    // Decide where it goes before confirming: between the confirmation and
    // the kernel taking the forward, the connection lives in this process
    // alone (a SIGKILL then loses it), so that gap holds two sendmsg calls.
    const head = requestHead(h.unread, this.#o.maxBody);
    const path = head?.path ?? (h.unread.length === 0 ? idlePath : undefined);
    const t: Taken = {
      channel,
      sender,
      conn: h.info.connId,
      handoffs: h.info.handoffs,
      transfer,
      fd,
      message,
      path,
      ours,
      origin,
    };
    const router = this.#o.workers.router;
    const hit = path !== undefined ? router.pickWithRoute(path) : undefined;
    // A function's connection for a route this gateway does not know yet,
    // while its workers are still registering with it (it has just started
    // or taken over): wait a moment for one, still unconfirmed (the sender
    // keeps it), rather than refuse at once.
    // A function's connection for a function at zero workers, started on
    // demand: it waits the same way (unconfirmed) while one starts.
    const cold = !hit && !ours && path !== undefined ? this.#o.cold?.coldFunction(path) : undefined;
    // An idle connection its function's last worker handed over (scaled to
    // zero): parked, not a reason to start the function again.
    if (cold !== undefined && head === undefined && this.#o.parked) {
      return this.#park(t, cold, path!);
    }
    if (cold !== undefined) {
      return this.#whenStarted(cold, t.conn, () => {
        this.#decide(t, router.pickWithRoute(path!));
      });
    }
    const waits = !hit && !ours && path !== undefined && (this.#o.settling?.() ?? false) &&
      router.status(path) === "unknown";
    if (!waits) return this.#decide(t, hit);
    const until = Date.now() + WAIT_FOR_WORKER_MS;
    const again = () => {
      const later = router.pickWithRoute(path!);
      if (later || Date.now() >= until) this.#decide(t, later);
      else setTimeout(again, 20);
    };
    setTimeout(again, 20);
  }

  /** Take `t` (an idle connection of `fn`, at zero workers) and park it,
   * unopened, until its client speaks. */
  #park(t: Taken, fn: string, path: string): void {
    t.channel.confirm(t.transfer, true, (mine) => {
      if (!mine) {
        closeFd(t.fd); // its sender took it back
        t.message.fill(0);
        return;
      }
      const parcel = Parcel.carry(t.conn, t.handoffs + 1, t.fd, t.message);
      if (!this.#o.parked!.park(fn, path, t.fd, parcel)) {
        log.warning("conn {conn}: too many connections parked for {fn}; closed", {
          conn: t.conn,
          fn,
        });
        parcel.drop();
        return;
      }
      log.debug("conn {conn}: idle, from {worker}; parked until its client speaks", {
        conn: t.conn,
        worker: t.sender,
      });
    });
  }

  /** A parked connection's client spoke: start `fn` (held like any request
   * for it) and hand the connection, unopened, to its worker, which reads
   * the request itself; closed when the function cannot start.
   *
   * @example
   * ```ts
   * import type { Forwarder } from "./forwarder.ts";
   * import type { Parcel } from "../handoff/parcel.ts";
   * declare const forwarder: Forwarder, parcel: Parcel;
   * forwarder.unpark("hello", "/hello", parcel);
   * ```
   */
  unpark(fn: string, path: string, parcel: Parcel): void {
    const router = this.#o.workers.router;
    const place = () => {
      const hit = router.pickWithRoute(path);
      if (hit) this.#place(parcel, path, hit, false);
      else {
        log.warning("conn {conn}: {fn} did not start; its parked connection is closed", {
          conn: parcel.connId,
          fn,
        });
        parcel.drop();
      }
    };
    if (router.workersOf(fn).length > 0) return place();
    this.#whenStarted(fn, parcel.connId, place, () => parcel.drop());
  }

  /** Run `then` once function `fn` has a worker (it waited: a worker came,
   * or the cold-start timeout passed), or at once when it cannot wait for
   * one (too many wait already). `failed` when `then` threw. */
  #whenStarted(
    fn: string,
    conn: number,
    then: () => void,
    failed: () => void = () => {},
  ): void {
    const wait = this.#o.cold?.hold(fn);
    if (wait === undefined || wait === "full") return then();
    wait.then(then).catch((e) => {
      log.error("conn {conn}: after waiting for {fn}: {error}", {
        conn,
        fn,
        error: (e as Error).message,
      });
      failed();
    });
  }

  /** Confirm and forward `t` to `hit`, or (no worker) answer it here when
   * its state is ours, else refuse it (its sender answers). Decided after a
   * wait (outside the receive turn), the answer leaves at once: the channel
   * sends a confirmation made outside a turn without waiting for one. */
  #decide(t: Taken, hit: { worker: Worker; route: string } | undefined): void {
    const { channel, fd, message } = t;
    if (!hit && !t.ours) {
      log.debug("conn {conn}: no worker for {path} from {worker}; refused, it answers", {
        conn: t.conn,
        path: t.path ?? "?",
        worker: t.sender,
      });
      closeFd(fd);
      message.fill(0);
      channel.confirm(t.transfer, false);
      return;
    }
    channel.confirm(t.transfer, true, (mine) => {
      if (!mine) {
        closeFd(fd); // its sender took it back
        message.fill(0);
        return;
      }
      // Ours now; forwarded unopened, one handoff more.
      const lease = t.ours ? this.#lease() : undefined;
      const parcel = Parcel.carry(t.conn, t.handoffs + 1, fd, message, lease);
      if (hit && t.path !== undefined) this.#place(parcel, t.path, hit, t.ours, t.origin);
      else this.#adopt(parcel, false);
      returnedLine.log(() => ({
        conn: t.conn,
        worker: t.sender,
        path: t.path ?? "-",
        target: hit ? `${hit.worker.name}/${hit.worker.pid}` : "gateway",
      }));
    });
  }

  /** Route changes a worker made directly (`--handoff direct`), told after
   * the fact: logged and counted as if the gateway had forwarded them.
   *
   * @example
   * ```ts
   * import type { Forwarder } from "./forwarder.ts";
   * import type { Worker } from "./workers.ts";
   * declare const forwarder: Forwarder, from: Worker;
   * forwarder.moved(from, { moves: [{ conn: 1, to: 4242, fn: "product", route: "/product" }] });
   * ```
   */
  moved(from: Worker, { moves }: Moved): void {
    const { metrics } = this.#o;
    for (const m of moves) {
      // Labels come from a worker: only a route of the named function is
      // counted under it (a stale table may name a function just gone).
      const known = this.#o.workers.router.functionFor(m.route) === m.fn;
      metrics.moved.labels(from.name).inc();
      metrics.returned.labels(from.name).inc(); // it left from's function, as a hand-back does
      if (known) metrics.handoffs.labels(m.fn, m.route).inc();
      movedLine.log(() => ({
        conn: m.conn,
        worker: `${from.name}/${from.pid}`,
        route: m.route,
        target: `${m.fn}/${m.to}`,
      }));
    }
  }

  /** Import a connection to answer it here (no worker for it, or none could
   * take it: `unplaced`). */
  #adopt(parcel: Parcel, unplaced: boolean): void {
    const adopted = parcel.adopt(this.#o.importContext);
    if (typeof adopted === "string") {
      log.warning("conn {conn}: {error}; connection dropped", {
        conn: parcel.connId,
        error: adopted,
      });
      return;
    }
    const { conn, sentAt } = adopted;
    this.#o.metrics.handoffLatency.observe(Math.max(0, nowMicros() - sentAt) / 1e6);
    this.#o.serve(conn, unplaced);
  }
}
