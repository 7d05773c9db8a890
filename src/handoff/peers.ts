/**
 * Worker-to-worker channels for direct handoffs (`--handoff direct`): each
 * worker listens on a socket of its own, `peers/peer-<pid>.sock` beside the
 * gateway's control socket (a directory of mode 0700 with one user, 03770
 * with the roles' socket group when each role has its own user: the sticky
 * bit keeps each socket its owner's), and a worker whose next request
 * belongs to another function connects to a worker of that function and
 * hands the connection over in one hop, acknowledged like every handoff
 * (src/handoff/control_channel.ts). Both ends check the other with
 * SO_PEERCRED (one of the roles' users: src/handoff/trust.ts), and the
 * connecting side also checks that the socket belongs to the process the
 * gateway's route table names. A peer channel carries HANDOFF and ACK only.
 *
 * @module
 */

import { closeFd, removeFile, unixConnect, unixListen } from "../../ffi/shim.ts";
import { ControlChannel } from "./control_channel.ts";
import { type Accepted, Listener } from "../connection/listener.ts";
import { logger } from "../operations/log.ts";
import { type Handoff, MessageType } from "./protocol.ts";
import { trust } from "./trust.ts";

const log = logger("peers");

/**
 * The directory of the peer sockets of the workers registered on the
 * control socket at `control`: `peers/` beside it.
 *
 * @example
 * ```ts
 * import { peerDirectory } from "./peers.ts";
 * console.log(peerDirectory("/run/hotpotato/gateway.sock")); // "/run/hotpotato/peers"
 * ```
 */
export function peerDirectory(control: string): string {
  return `${control.slice(0, control.lastIndexOf("/")) || ""}/peers`;
}

/** Called with a connection another worker hands us, and the channel to
 * confirm it on. */
export type OnPeerHandoff = (h: Handoff, fd: number, channel: ControlChannel) => void;

/**
 * This worker's peer socket and its channels to other workers.
 *
 * @example
 * ```ts
 * import { Peers } from "./peers.ts";
 * const peers = new Peers("/run/user/1000/hotpotato", (h, fd, channel) => {
 *   channel.confirm(h.transfer ?? 0, false); // refuse: the sender places it elsewhere
 * });
 * console.log(peers.socket); // tell the gateway, in REGISTER
 * peers.close();
 * ```
 */
export class Peers {
  /** This worker's peer socket path. */
  readonly socket: string;
  #listener: Listener | undefined;
  #onHandoff: OnPeerHandoff | undefined;
  /** The directory every process's peer socket is in. */
  #dir: string;
  /** Channels this worker opened, by peer pid. */
  #out = new Map<number, ControlChannel>();
  /** Channels other workers opened to us. */
  #in = new Set<ControlChannel>();
  #closed = false;

  /** Connections sent to peers and not confirmed yet.
   *
   * @example
   * ```ts
   * import type { Peers } from "./peers.ts";
   * declare const peers: Peers;
   * console.log(peers.unconfirmed);
   * ```
   */
  get unconfirmed(): number {
    let n = 0;
    for (const c of this.#out.values()) {
      c.collect(); // ACKs on these channels are read lazily
      n += c.unconfirmed;
    }
    return n;
  }

  /** Listen on `<dir>/peer-<pid>.sock` (dir: {@linkcode peerDirectory},
   * made or checked here) for connections handed to us; without
   * `onHandoff`, only hand connections to others (a satellite gateway), with
   * no socket of our own.
   *
   * @example
   * ```ts
   * import { Peers } from "./peers.ts";
   * new Peers(`${Deno.makeTempDirSync()}/peers`, () => {});
   * ```
   */
  constructor(dir: string, onHandoff?: OnPeerHandoff) {
    this.#dir = dir;
    this.socket = `${dir}/peer-${Deno.pid}.sock`;
    this.#onHandoff = onHandoff;
    if (!onHandoff) return; // outgoing only (a satellite gateway): no socket of ours
    trust().peerDirectory(dir);
    removeFile(this.socket); // a pid is unique among live processes: a stale file
    // A sibling waits for our answer on a peer channel: at our fd limit the
    // reserved fd takes its channel, so that we can refuse what it sends.
    const fd = unixListen(this.socket, trust().socketMode);
    this.#listener = new Listener(fd, "peer", (c) => this.#accepted(c), {
      spareFd: true,
    });
  }

  #accepted(c: Accepted): void {
    const cred = trust().admit(c.fd, "role", "peer connection", log);
    if (!cred) return;
    const channel: ControlChannel = new ControlChannel(c.fd, {
      onMessage: (msg, fd) => {
        if (msg.type === MessageType.HANDOFF) {
          this.#onHandoff!(msg.body, fd, channel);
          return;
        }
        log.warning("unexpected message type {type} from peer pid {pid}", {
          type: msg.type,
          pid: cred.pid,
        });
      },
      onBadMessage: (error) =>
        log.warning("dropped a bad message from peer pid {pid}: {error}", { pid: cred.pid, error }),
      onClose: () => this.#in.delete(channel),
    });
    this.#in.add(channel);
  }

  /** The channel to the process `pid` (a worker the route table names),
   * connecting to its `peer-<pid>.sock` first if needed; undefined when it
   * cannot be reached or the socket is not that process's.
   *
   * @example
   * ```ts
   * import { Peers } from "./peers.ts";
   * declare const peers: Peers;
   * const channel = peers.channelTo(4242);
   * ```
   */
  channelTo(pid: number): ControlChannel | undefined {
    if (this.#closed) return undefined;
    const known = this.#out.get(pid);
    if (known) return known;
    const socket = `${this.#dir}/peer-${pid}.sock`;
    let fd: number;
    try {
      fd = unixConnect(socket);
    } catch (e) {
      log.debug("cannot reach peer {pid} at {socket}: {error}", {
        pid,
        socket,
        error: (e as Error).message,
      });
      return undefined;
    }
    const cred = trust().admit(fd, "role", "peer socket", log);
    if (!cred) return undefined;
    if (cred.pid !== pid) {
      log.warning("peer socket {socket} belongs to pid {pid}, not pid {want}; not used", {
        socket,
        pid: cred.pid,
        want: pid,
      });
      closeFd(fd);
      return undefined;
    }
    const channel: ControlChannel = new ControlChannel(fd, {
      onMessage: (msg, mfd) => {
        // Only ACKs are expected back (handled by the channel).
        if (msg.type === MessageType.HANDOFF) {
          closeFd(mfd);
          channel.confirm(msg.body.transfer, false);
        }
        log.warning("unexpected message type {type} from peer pid {pid}", {
          type: msg.type,
          pid,
        });
      },
      onClose: () => {
        if (this.#out.get(pid) === channel) this.#out.delete(pid);
      },
    }, { lazyAcks: true }); // only ACKs come back: they need not wake us

    this.#out.set(pid, channel);
    return channel;
  }

  /** Close every channel and the listening socket, and remove its file.
   *
   * @example
   * ```ts
   * import { Peers } from "./peers.ts";
   * declare const peers: Peers;
   * peers.close();
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#listener) {
      this.#listener.close();
      removeFile(this.socket);
    }
    for (const c of [...this.#out.values(), ...this.#in]) c.close();
  }
}
