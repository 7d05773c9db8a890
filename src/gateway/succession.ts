/**
 * A gateway taking over from a running one (`--takeover on`), both sides:
 * the new gateway's ({@linkcode inherit}) and the running gateway's
 * ({@linkcode Successor}: what it passes on, BOUND, ACCEPTING, the
 * connections it passes on, a successor that goes away).
 *
 * 1. The new gateway connects to the running one's control socket (same
 *    user only) and sends TAKEOVER.
 * 2. The running gateway passes its listening sockets (LISTENER, the fd
 *    beside it: the admin port's, then the public port's with the handoff
 *    sealing key, so that workers keep one key, and the number of workers
 *    that will move), and its session-ticket keys (TICKETS, then again at
 *    each rotation until it exits, so that its tickets resume on the new
 *    one). The new gateway binds its own control socket and
 *    renames it over the path (workers connecting there reach one of the
 *    two, never nothing) and says BOUND; the running gateway then tells its
 *    workers to register with the new one (MOVE). It keeps accepting
 *    meanwhile: the kernel's queue is shared.
 * 3. The new gateway waits until those workers have registered with it (5 s
 *    at most), accepts on the sockets, and says ACCEPTING; the old one
 *    closes its copies, finishes the handshakes in progress, passes on what
 *    it holds and exits. No connection attempt is refused: the listening
 *    socket never closes.
 *
 * @module
 */

import { fromBase64, toBase64 } from "../handoff/bytes.ts";
import { closeFd, duplicateFd, unixConnect } from "../../ffi/shim.ts";
import type { TlsConnection } from "../connection/tls_connection.ts";
import { Parcel } from "../handoff/parcel.ts";
import { place } from "../handoff/placement.ts";
import type { Sealer } from "../handoff/seal.ts";
import { trust } from "../handoff/trust.ts";
import { ControlChannel } from "../handoff/control_channel.ts";
import { encodeJson, type Handoff, MessageType, type Tickets } from "../handoff/protocol.ts";
import { logger } from "../operations/log.ts";
import { ControlSocket } from "./control_socket.ts";

const log = logger("gateway");

/** What the new gateway takes over. */
export interface Inheritance {
  /** Its control socket, now at the path. */
  control: ControlSocket;
  /** The public listening socket and its port. */
  https: { fd: number; port: number };
  /** The admin listening socket, when the old gateway had one. */
  admin?: { fd: number; port: number };
  /** The handoff sealing key (the caller zeroes it when done). */
  key: Uint8Array;
  /** Workers told to register with the new gateway. */
  workers: number;
  /** The old gateway's pid. */
  pid: number;
  /** Its session-ticket keys, so that its tickets resume here. */
  tickets?: Tickets;
  /** The channel to the old gateway: it passes on what it holds there;
   * send ACCEPTING on it once accepting. */
  channel: ControlChannel;
}

/** What the old gateway sends once the new one accepts. */
export interface InheritanceEvents {
  /** A connection it held, passed on (confirm it on `channel`). */
  handoff(h: Handoff, fd: number, raw: Uint8Array): void;
  /** It closed the channel (it exited, or died). */
  closed(): void;
  /** Its ticket keys changed (rotated) while it finishes. */
  tickets?(t: Tickets): void;
}

/**
 * Take over from the gateway answering on the control socket at `path`:
 * steps 1 and 2 above. Rejects (with nothing left open) when no gateway of
 * this user answers there, or when it does not pass its sockets within
 * `timeoutMs`.
 *
 * @example
 * ```ts
 * import { inherit } from "./succession.ts";
 * const heir = await inherit("/run/user/1000/hotpotato/gateway.sock", 5000, {
 *   handoff: (_h, fd) => console.log(`connection passed on: fd ${fd}`),
 *   closed: () => console.log("the old gateway is gone"),
 * });
 * console.log(`listening on port ${heir.https.port}`);
 * ```
 */
export function inherit(
  path: string,
  timeoutMs: number,
  events: InheritanceEvents,
): Promise<Inheritance> {
  let fd: number;
  try {
    fd = unixConnect(path);
  } catch (e) {
    return Promise.reject(
      new Error(`no running gateway to take over from at ${path}: ${(e as Error).message}`),
    );
  }
  // The running gateway runs as the gateways' user; else fd is closed.
  const cred = trust().admit(fd, "gateway", "control socket", log);
  if (!cred) {
    return Promise.reject(new Error(`cannot take over from ${path}: it is not this user's`));
  }
  const pid = cred.pid;
  const { promise, resolve, reject } = Promise.withResolvers<Inheritance>();
  let admin: { fd: number; port: number } | undefined;
  let tickets: Tickets | undefined;
  /** Settled: resolved (then the channel is the caller's) or rejected. */
  let settled = false;
  let resolved = false;
  const fail = (why: string) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    if (admin) closeFd(admin.fd);
    channel.close();
    reject(new Error(`cannot take over from gateway pid ${pid}: ${why}`));
  };
  const channel: ControlChannel = new ControlChannel(fd, {
    onMessage: (msg, passed, raw) => {
      if (msg.type === MessageType.HANDOFF && resolved) {
        return events.handoff(msg.body, passed, raw);
      }
      if (msg.type === MessageType.TICKETS) {
        // Its ticket keys (before LISTENER), then any rotation while it
        // finishes; the caller installs them (TicketKeys.use checks them).
        // (No fd comes with TICKETS: the channel closed any.)
        if (resolved) events.tickets?.(msg.body);
        else if (!settled) tickets = msg.body;
        return;
      }
      if (msg.type !== MessageType.LISTENER || settled) {
        if (passed >= 0) closeFd(passed);
        log.warning("unexpected message type {type} from the old gateway", { type: msg.type });
        return;
      }
      if (passed < 0) return fail(`its ${msg.body.kind} socket did not come with LISTENER`);
      if (msg.body.kind === "admin") {
        if (admin) closeFd(admin.fd);
        admin = { fd: passed, port: msg.body.port };
        return;
      }
      if (!msg.body.key) {
        closeFd(passed);
        return fail("LISTENER came without the sealing key");
      }
      if (!trust().proves("LISTENER", pid, Deno.pid, msg.body.proof)) {
        closeFd(passed);
        return fail("it did not prove the launcher's secret: not our gateway");
      }
      // It agreed: only now take the control path over, then tell it so.
      let control: ControlSocket;
      try {
        control = ControlSocket.listenOver(path);
      } catch (e) {
        closeFd(passed);
        return fail((e as Error).message);
      }
      settled = resolved = true;
      clearTimeout(timer);
      channel.send(encodeJson(MessageType.BOUND, {}));
      resolve({
        control,
        https: { fd: passed, port: msg.body.port },
        admin,
        key: fromBase64(msg.body.key),
        workers: msg.body.workers ?? 0,
        pid,
        channel,
        tickets,
      });
    },
    onBadMessage: (error) => log.warning("bad message from the old gateway: {error}", { error }),
    takesListeners: true,
    onClose: () => {
      if (resolved) events.closed();
      else fail("it closed the connection (is it draining, or being taken over already?)");
    },
  });
  const timer = setTimeout(
    () => fail(`its sockets did not come within ${timeoutMs} ms`),
    timeoutMs,
  );
  const proof = trust().proof("TAKEOVER", pid, Deno.pid);
  channel.send(encodeJson(MessageType.TAKEOVER, { pid: Deno.pid, ...(proof ? { proof } : {}) }));
  return promise;
}

/** Connections a successor may refuse before the running gateway stops
 * offering it more (it keeps what is left). */
const MAX_SUCCESSOR_REFUSALS = 100;

/** What the running gateway passes to its successor. */
export interface Bequest {
  /** The public listening socket (a duplicate is passed) and its port. */
  https: { fd: number; port: number };
  /** The admin listening socket, when there is one. */
  admin?: { fd: number; port: number };
  /** The handoff sealing key. */
  key: Uint8Array;
  /** Its session-ticket keys, when it has them. */
  tickets?: Tickets;
  /** How many workers (and satellites) will move. */
  workers: number;
}

/** What the running gateway does at each step of being taken over. */
export interface SuccessorHost {
  /** BOUND: the successor has the control path; tell every worker and
   * satellite to move (MOVE); returns how many were told. */
  moveAll(): number;
  /** ACCEPTING: stop accepting, finish and pass on what is held. */
  retire(successor: Successor): void;
  /** It went away before taking everything over: serve on (bind the
   * control path again when it had it, accept again when it accepted). */
  gone(successor: Successor): void;
  /** A connection it did not take is the running gateway's again. */
  keep(parcel: Parcel): void;
  /** The sealing key, to release connections for it. */
  sealer(): Sealer;
}

/**
 * The running gateway's side of a takeover: the successor that sent
 * TAKEOVER (its user and proof checked by src/gateway/control_sessions.ts),
 * what it is passed (LISTENER, TICKETS), where it is (BOUND, ACCEPTING), and
 * the connections passed on to it at their next request boundary.
 *
 * @example
 * ```ts
 * import { Successor, type SuccessorHost, type Bequest } from "./succession.ts";
 * import type { ControlChannel } from "../handoff/control_channel.ts";
 * declare const channel: ControlChannel, host: SuccessorHost, bequest: Bequest;
 * const successor = Successor.start(channel, 4242, bequest, host);
 * if (successor) console.log(`gateway pid ${successor.pid} takes over`);
 * ```
 */
export class Successor {
  /** Its pid, as the kernel reported it. */
  readonly pid: number;
  /** Its channel (it connected to our control socket). */
  readonly channel: ControlChannel;
  /** Its control socket is at the path (BOUND): the workers were told to move. */
  bound = false;
  /** It accepts now: what this gateway holds goes to it. */
  accepting = false;
  /** It went away (or refused connections again and again): keep what is left here. */
  broken = false;
  #refused = 0;
  #host: SuccessorHost;

  private constructor(channel: ControlChannel, pid: number, host: SuccessorHost) {
    this.channel = channel;
    this.pid = pid;
    this.#host = host;
  }

  /** Take `channel` as the successor's and pass it `bequest` (duplicates of
   * the listening sockets, the key, the ticket keys); undefined when that
   * fails (the channel is closed).
   *
   * @example
   * ```ts
   * import { Successor, type SuccessorHost, type Bequest } from "./succession.ts";
   * import type { ControlChannel } from "../handoff/control_channel.ts";
   * declare const channel: ControlChannel, host: SuccessorHost, bequest: Bequest;
   * Successor.start(channel, 4242, bequest, host);
   * ```
   */
  static start(
    channel: ControlChannel,
    pid: number,
    bequest: Bequest,
    host: SuccessorHost,
  ): Successor | undefined {
    const s = new Successor(channel, pid, host);
    channel.retarget({
      onMessage: (msg, fd) => {
        if (fd >= 0) closeFd(fd);
        if (msg.type === MessageType.BOUND && !s.bound) {
          s.bound = true;
          const n = host.moveAll();
          log.info("gateway pid {pid} holds the control socket now; {n} worker(s) told to move", {
            pid,
            n,
          });
        } else if (msg.type === MessageType.ACCEPTING && s.bound && !s.accepting) {
          s.accepting = true;
          host.retire(s);
        } else {
          log.warning("unexpected message type {type} from gateway pid {pid}", {
            type: msg.type,
            pid,
          });
        }
      },
      onBadMessage: (error) =>
        log.warning("bad message from gateway pid {pid}: {error}", { pid, error }),
      onClose: () => {
        s.broken = true;
        host.gone(s);
      },
    });
    try {
      if (bequest.admin) {
        channel.send(
          encodeJson(MessageType.LISTENER, { kind: "admin", port: bequest.admin.port }),
          duplicateFd(bequest.admin.fd),
        );
      }
      if (bequest.tickets) channel.send(encodeJson(MessageType.TICKETS, bequest.tickets));
      const proof = trust().proof("LISTENER", Deno.pid, pid);
      channel.send(
        encodeJson(MessageType.LISTENER, {
          kind: "https",
          port: bequest.https.port,
          key: toBase64(bequest.key),
          workers: bequest.workers,
          ...(proof ? { proof } : {}),
        }),
        duplicateFd(bequest.https.fd),
      );
    } catch (e) {
      log.error("cannot pass the listening sockets to gateway pid {pid}: {error}", {
        pid,
        error: (e as Error).message,
      });
      channel.close();
      return undefined;
    }
    log.info("gateway pid {pid} takes over: listening sockets passed on", { pid });
    return s;
  }

  /** Whether what this gateway holds goes to the successor now. */
  get takesConnections(): boolean {
    return this.accepting && !this.broken;
  }

  /** Pass an idle connection on (at a request boundary). False when it
   * cannot go (the holder closes it).
   *
   * @example
   * ```ts
   * import type { Successor } from "./succession.ts";
   * import type { TlsConnection } from "../connection/tls_connection.ts";
   * declare const successor: Successor, conn: TlsConnection;
   * if (!successor.passOn(conn)) conn.close();
   * ```
   */
  passOn(conn: TlsConnection): boolean {
    if (this.broken) return false;
    // The gateway's key lives as long as the gateway: nothing to release.
    const lease = { sealer: this.#host.sealer(), release: () => {} };
    const parcel = Parcel.release(conn, lease, conn.info.handoffs);
    if (!(parcel instanceof Parcel)) return !parcel.intact; // intact: the holder closes it
    place(parcel, [{
      name: `gateway pid ${this.pid}`,
      channel: this.channel,
      // Offered again at its next boundary, unless it keeps refusing.
      returned: () => {
        if (++this.#refused >= MAX_SUCCESSOR_REFUSALS) this.broken = true;
      },
    }], {
      log,
      unplaced: (p, reason) => {
        log.warning("conn {conn}: gateway pid {pid} did not take it ({reason}); kept here", {
          conn: p.connId,
          pid: this.pid,
          reason,
        });
        this.#host.keep(p);
      },
    });
    return true;
  }
}
