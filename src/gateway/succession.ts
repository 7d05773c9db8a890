/**
 * A gateway taking over from a running one (`--takeover on`), the new
 * gateway's side; the running gateway's side is in gateway_server.ts
 * (TAKEOVER, ACCEPTING, handing over what it holds).
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

import { fromBase64 } from "../handoff/bytes.ts";
import { closeFd, unixConnect } from "../../ffi/shim.ts";
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
