/**
 * The project's C shim (`shim/libhotpotato.so`) through Deno FFI: the symbols
 * table and a typed wrapper. Only this file touches the shim's pointers.
 *
 * Functions return a value or `-errno`; the wrapper turns `-errno` into a
 * {@linkcode SysError} where failure is exceptional, and returns it where the
 * caller must branch on it (EAGAIN).
 *
 * @module
 */

import net from "node:net";
import { shimPath } from "./paths.ts";

const symbols = {
  /** int hp_tcp_listen(const char* host, int port, int backlog, int reuse_port) */
  hp_tcp_listen: { parameters: ["buffer", "i32", "i32", "i32"], result: "i32" },
  /** int hp_local_port(int fd) */
  hp_local_port: { parameters: ["i32"], result: "i32" },
  /** int hp_is_tcp_listener(int fd) */
  hp_is_tcp_listener: { parameters: ["i32"], result: "i32" },
  /** int hp_set_inheritable(int fd, int on) */
  hp_set_inheritable: { parameters: ["i32", "i32"], result: "i32" },
  /** int hp_set_nonblocking(int fd) */
  hp_set_nonblocking: { parameters: ["i32"], result: "i32" },
  /** int hp_accept(int lfd, char* addr, int cap) */
  hp_accept: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  /** int hp_unix_listen(const char* path, int backlog, int mode) */
  hp_unix_listen: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  /** int hp_dup(int fd) */
  hp_dup: { parameters: ["i32"], result: "i32" },
  /** int hp_unix_listen_over(const char* path, int backlog, int mode): a new socket renamed over a live one */
  hp_unix_listen_over: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  /** int hp_watch_dir(const char* dir): an inotify fd for names appearing in dir */
  hp_watch_dir: { parameters: ["buffer"], result: "i32" },
  /** int hp_watch_saw(int fd, const char* name): drain it; 1 when an event named name */
  hp_watch_saw: { parameters: ["i32", "buffer"], result: "i32" },
  /** int hp_unix_connect(const char* path) */
  hp_unix_connect: { parameters: ["buffer"], result: "i32" },
  /** int hp_peer_uid(int fd) */
  hp_peer_uid: { parameters: ["i32"], result: "i32" },
  /** int hp_peer_pid(int fd) */
  hp_peer_pid: { parameters: ["i32"], result: "i32" },
  /** int hp_send_msg(int sock, const uint8_t* buf, uint32_t len, int fd) */
  hp_send_msg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  /** int hp_recv_msg(int sock, uint8_t* buf, uint32_t cap, int32_t* fd_out) */
  hp_recv_msg: { parameters: ["i32", "buffer", "u32", "buffer"], result: "i32" },
  /** int hp_recv_batch(int sock, uint8_t* buf, uint32_t cap, uint32_t max, int32_t* out): recvmmsg */
  hp_recv_batch: {
    parameters: ["i32", "buffer", "u32", "u32", "buffer"],
    result: "i32",
  },
  /** int hp_close(int fd) */
  hp_close: { parameters: ["i32"], result: "i32" },
  /** int hp_shutdown_write(int fd) */
  hp_shutdown_write: { parameters: ["i32"], result: "i32" },
  /** struct hp_ticket_ring* hp_ticket_ring_new(const char* wolfssl_path) */
  hp_ticket_ring_new: { parameters: ["buffer"], result: "pointer" },
  /** int hp_ticket_ring_set(struct hp_ticket_ring* r, const uint8_t* keys, int count) */
  hp_ticket_ring_set: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  /** int hp_ticket_ring_attach(struct hp_ticket_ring* r, WOLFSSL_CTX* ctx) */
  hp_ticket_ring_attach: { parameters: ["pointer", "pointer"], result: "i32" },
  /** void hp_ticket_ring_free(struct hp_ticket_ring* r) */
  hp_ticket_ring_free: { parameters: ["pointer"], result: "void" },
  /** int hp_read_private_file(const char* path, uint8_t* buf, int cap) */
  hp_read_private_file: { parameters: ["buffer", "buffer", "i32"], result: "i32" },
  /** int hp_spare_fd(void) */
  hp_spare_fd: { parameters: [], result: "i32" },
  /** struct hp_rx_pool* hp_rx_pool_new(void) */
  hp_rx_pool_new: { parameters: [], result: "pointer" },
  /** struct hp_rx* hp_rx_new(struct hp_rx_pool* pool, int fd) */
  hp_rx_new: { parameters: ["pointer", "i32"], result: "pointer" },
  /** void hp_rx_free(struct hp_rx* rx) */
  hp_rx_free: { parameters: ["pointer"], result: "void" },
  /** int hp_rx_capacity(void) */
  hp_rx_capacity: { parameters: [], result: "i32" },
  /** void hp_rx_readable(struct hp_rx* rx, int peer_closed) */
  hp_rx_readable: { parameters: ["pointer", "i32"], result: "void" },
  /** int hp_rx_at_boundary(struct hp_rx* rx) */
  hp_rx_at_boundary: { parameters: ["pointer"], result: "i32" },
  /** int hp_rx_buffered(struct hp_rx* rx) */
  hp_rx_buffered: { parameters: ["pointer"], result: "i32" },
  /** int hp_rx_take(struct hp_rx* rx, uint8_t* out, uint32_t cap) */
  hp_rx_take: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  /** int hp_rx_put(struct hp_rx* rx, const uint8_t* in, uint32_t len) */
  hp_rx_put: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  /** void* hp_rx_callback(void) */
  hp_rx_callback: { parameters: [], result: "pointer" },
  /** struct hp_loop* hp_loop_new(int max_events, int ring_cap) */
  hp_loop_new: { parameters: ["i32", "i32"], result: "pointer" },
  /** int hp_loop_wake_fd(struct hp_loop* l): the pipe that wakes JavaScript */
  hp_loop_wake_fd: { parameters: ["pointer"], result: "i32" },
  /** void* hp_loop_events(struct hp_loop* l) */
  hp_loop_events: { parameters: ["pointer"], result: "pointer" },
  /** int hp_loop_take(struct hp_loop* l): queued events into hp_loop_events */
  hp_loop_take: { parameters: ["pointer"], result: "i32" },
  /** int hp_loop_idle(struct hp_loop* l): 1 idle, 0 more events came */
  hp_loop_idle: { parameters: ["pointer"], result: "i32" },
  /** int hp_loop_add(struct hp_loop* l, int fd, uint32_t events, uint32_t gen) */
  hp_loop_add: { parameters: ["pointer", "i32", "u32", "u32"], result: "i32" },
  /** int hp_loop_mod(struct hp_loop* l, int fd, uint32_t events, uint32_t gen) */
  hp_loop_mod: { parameters: ["pointer", "i32", "u32", "u32"], result: "i32" },
  /** int hp_loop_del(struct hp_loop* l, int fd) */
  hp_loop_del: { parameters: ["pointer", "i32"], result: "i32" },
  /** void hp_loop_stop(struct hp_loop* l) */
  hp_loop_stop: { parameters: ["pointer"], result: "void" },
  /** int hp_loop_finished(struct hp_loop* l) */
  hp_loop_finished: { parameters: ["pointer"], result: "i32" },
  /** void hp_loop_free(struct hp_loop* l) */
  hp_loop_free: { parameters: ["pointer"], result: "void" },
  /** int hp_private_dir(const char* path) */
  hp_private_dir: { parameters: ["buffer"], result: "i32" },
  /** int hp_unlink(const char* path) */
  hp_unlink: { parameters: ["buffer"], result: "i32" },
  /** int hp_file_id(const char* path, uint64_t* out) (out: dev, inode) */
  hp_file_id: { parameters: ["buffer", "buffer"], result: "i32" },
  /** int hp_peek(int fd, uint8_t* buf, uint32_t cap) */
  hp_peek: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** int hp_recv(int fd, uint8_t* buf, uint32_t cap) */
  hp_recv: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** int hp_send(int fd, const uint8_t* buf, uint32_t len) */
  hp_send: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** int hp_raise_nofile(int32_t* before) */
  hp_raise_nofile: { parameters: ["buffer"], result: "i32" },
  /** int hp_uid(void) */
  hp_uid: { parameters: [], result: "i32" },
  // privileges.c: keeping the roles apart
  /** int hp_nondumpable(void): 0, the pid of a tracer already attached, or -errno */
  hp_nondumpable: { parameters: [], result: "i32" },
  /** int hp_user_uid(const char* name) */
  hp_user_uid: { parameters: ["buffer"], result: "i32" },
  /** int hp_user_gid(const char* name) */
  hp_user_gid: { parameters: ["buffer"], result: "i32" },
  /** int hp_group_gid(const char* name) */
  hp_group_gid: { parameters: ["buffer"], result: "i32" },
  /** int hp_peer_in_group(int fd, int gid) */
  hp_peer_in_group: { parameters: ["i32", "i32"], result: "i32" },
  /** int hp_shared_dir(const char* path, int gid, int mode, int owner) */
  hp_shared_dir: { parameters: ["buffer", "i32", "i32", "i32"], result: "i32" },

  // import_check.c: a received TLS state is checked before wolfSSL imports it
  /** int hp_tls_import_check(int version, const uint8_t* blob, uint32_t len) */
  hp_tls_import_check: { parameters: ["i32", "buffer", "u32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

let lib: Deno.DynamicLibrary<typeof symbols>["symbols"] | undefined;

function shim(): Deno.DynamicLibrary<typeof symbols>["symbols"] {
  lib ??= Deno.dlopen(shimPath, symbols).symbols;
  return lib;
}

/** errno values the callers branch on. */
export const EAGAIN = 11,
  EBADMSG = 74,
  EMSGSIZE = 90,
  ENOENT = 2,
  ENOMEM = 12,
  ENFILE = 23,
  EMFILE = 24,
  ENOBUFS = 105,
  EADDRINUSE = 98,
  ECONNRESET = 104,
  ECONNREFUSED = 111;

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM (not owned by this user)",
  2: "ENOENT",
  9: "EBADF",
  11: "EAGAIN",
  13: "EACCES",
  12: "ENOMEM",
  20: "ENOTDIR",
  22: "EINVAL",
  23: "ENFILE (too many open files in the system)",
  24: "EMFILE (too many open files)",
  32: "EPIPE",
  36: "ENAMETOOLONG",
  71: "EPROTO",
  74: "EBADMSG",
  88: "ENOTSOCK (not a socket)",
  90: "EMSGSIZE",
  91: "EPROTOTYPE (a socket of another type)",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  103: "ECONNABORTED",
  104: "ECONNRESET",
  105: "ENOBUFS",
  111: "ECONNREFUSED",
};

/** A system call that failed, with its errno.
 *
 * @example
 * ```ts
 * import { SysError } from "./shim.ts";
 * throw new SysError("listen", 98);
 * ```
 */
export class SysError extends Error {
  /** The errno (positive). */
  readonly errno: number;
  /** The errno's name, with a word of explanation for some ("ENOENT",
   * "EMFILE (too many open files)"): the message without what failed. */
  readonly reason: string;
  /** Create an error for a failed call.
   *
   * @example
   * ```ts
   * import { SysError } from "./shim.ts";
   * const e = new SysError("connect", 111); // "connect: ECONNREFUSED"
   * ```
   */
  constructor(what: string, errno: number) {
    const reason = ERRNO_NAMES[errno] ?? `errno ${errno}`;
    super(`${what}: ${reason}`);
    this.name = "SysError";
    this.errno = errno;
    this.reason = reason;
  }
}

function check(what: string, rc: number): number {
  if (rc < 0) throw new SysError(what, -rc);
  return rc;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const cstr = (s: string) => enc.encode(s + "\0");
const addrBuf = new Uint8Array(64);
const fdOut = new Int32Array(1);
const fdOutBytes = new Uint8Array(fdOut.buffer);

function readCString(buf: Uint8Array): string {
  const end = buf.indexOf(0);
  return dec.decode(buf.subarray(0, end < 0 ? buf.length : end));
}

/** Listen for TCP connections (non-blocking). Port 0 picks a free port.
 * With `reusePort`, SO_REUSEPORT: other processes of this user listening
 * the same way on the same port share its connections (several gateways).
 *
 * @example
 * ```ts
 * import { tcpListen, localPort } from "./shim.ts";
 * const fd = tcpListen("127.0.0.1", 0);
 * console.log(localPort(fd));
 * ```
 */
export function tcpListen(host: string, port: number, backlog = 4096, reusePort = false): number {
  return check(
    `listen on ${host}:${port}`,
    shim().hp_tcp_listen(cstr(host), port, backlog, reusePort ? 1 : 0),
  );
}

/** The local port of a bound socket.
 *
 * @example
 * ```ts
 * import { localPort, tcpListen } from "./shim.ts";
 * localPort(tcpListen("127.0.0.1", 0));
 * ```
 */
export function localPort(fd: number): number {
  return check("getsockname", shim().hp_local_port(fd));
}

/** Whether `fd` is a listening TCP socket (IPv4 or IPv6); false for any
 * other fd, and for a number that is no open fd.
 *
 * @example
 * ```ts
 * import { isTcpListener, tcpListen } from "./shim.ts";
 * console.log(isTcpListener(tcpListen("127.0.0.1", 0))); // true
 * ```
 */
export function isTcpListener(fd: number): boolean {
  return shim().hp_is_tcp_listener(fd) === 1;
}

/** Let `fd` pass to the programs this process starts from now on (`on`),
 * or not (the default of every fd this process opens).
 *
 * @example
 * ```ts
 * import { setInheritable, tcpListen } from "./shim.ts";
 * const fd = tcpListen("127.0.0.1", 0);
 * setInheritable(fd, true);
 * // ... spawn the one process that should have it ...
 * setInheritable(fd, false);
 * ```
 */
export function setInheritable(fd: number, on: boolean): void {
  check("fcntl(F_SETFD)", shim().hp_set_inheritable(fd, on ? 1 : 0));
}

/** Make `fd` non-blocking (a socket systemd passes is blocking by default).
 *
 * @example
 * ```ts
 * import { setNonBlocking, tcpListen } from "./shim.ts";
 * setNonBlocking(tcpListen("127.0.0.1", 0));
 * ```
 */
export function setNonBlocking(fd: number): void {
  check("fcntl(F_SETFL)", shim().hp_set_nonblocking(fd));
}

/** Accept one connection: `{ fd, peer }`, or null when none is waiting.
 *
 * @example
 * ```ts
 * import { accept } from "./shim.ts";
 * declare const listenFd: number;
 * const conn = accept(listenFd); // { fd: 9, peer: "127.0.0.1:51234" } or null
 * ```
 */
export function accept(listenFd: number): { fd: number; peer: string } | null {
  const fd = shim().hp_accept(listenFd, addrBuf, addrBuf.length);
  if (fd === -EAGAIN) return null;
  if (fd < 0) throw new SysError("accept", -fd);
  return { fd, peer: readCString(addrBuf) };
}

/** Listen on a Unix SOCK_SEQPACKET socket (non-blocking; file mode `mode`:
 * 0o600, or 0o660 where the roles share the directory's group).
 * A socket file left by a process that is gone (connecting is refused) is
 * replaced; a socket that answers is never removed: that throws a
 * {@linkcode SysError} with errno EADDRINUSE, and a file at `path` that is
 * not a socket one with ENOTSOCK.
 *
 * @example
 * ```ts
 * import { unixListen } from "./shim.ts";
 * const fd = unixListen("/run/user/1000/hotpotato/control.sock");
 * ```
 */
export function unixListen(path: string, mode = 0o600, backlog = 128): number {
  return check(`listen on ${path}`, shim().hp_unix_listen(cstr(path), backlog, mode));
}

/** A second fd for the same open socket (close-on-exec): what is sent to
 * another process while this one keeps its own. Throws {@linkcode SysError}.
 *
 * @example
 * ```ts
 * import { closeFd, duplicateFd, tcpListen } from "./shim.ts";
 * const fd = tcpListen("127.0.0.1", 0);
 * const copy = duplicateFd(fd);
 * closeFd(copy);
 * ```
 */
export function duplicateFd(fd: number): number {
  return check("dup", shim().hp_dup(fd));
}

/** Listen on a new Unix SOCK_SEQPACKET socket and rename it over `path`,
 * where a live socket may be (a gateway taking over from another): a process
 * connecting to `path` reaches one of the two, never nothing. Throws
 * {@linkcode SysError}.
 *
 * @example
 * ```ts
 * import { unixListenOver } from "./shim.ts";
 * const fd = unixListenOver("/run/user/1000/hotpotato/gateway.sock");
 * ```
 */
export function unixListenOver(path: string, mode = 0o600, backlog = 128): number {
  return check(`listen over ${path}`, shim().hp_unix_listen_over(cstr(path), backlog, mode));
}

const fileIdOut = new BigUint64Array(2);
const fileIdBytes = new Uint8Array(fileIdOut.buffer);

/** The identity of the file at `path` ("device:inode", not following a
 * symlink): a listener keeps its socket file's identity to learn later
 * whether the path still names its socket. Throws {@linkcode SysError}
 * (ENOENT when the file is gone).
 *
 * @example
 * ```ts
 * import { fileIdentity, unixListen } from "./shim.ts";
 * const path = "/run/user/1000/hotpotato/control.sock";
 * unixListen(path);
 * const mine = fileIdentity(path); // e.g. "64768:1837"
 * const stillMine = fileIdentity(path) === mine;
 * ```
 */
export function fileIdentity(path: string): string {
  check(path, shim().hp_file_id(cstr(path), fileIdBytes));
  return `${fileIdOut[0]}:${fileIdOut[1]}`;
}

/** An fd (non-blocking) that becomes readable when a name is created in,
 * or renamed into, directory `dir` (inotify); read it with
 * {@linkcode watchSaw}. Throws a {@linkcode SysError} when `dir` cannot be
 * watched (absent, not readable).
 *
 * @example
 * ```ts
 * import { closeFd, watchDirectory, watchSaw } from "./shim.ts";
 * const dir = Deno.makeTempDirSync();
 * const fd = watchDirectory(dir);
 * Deno.writeTextFileSync(`${dir}/gateway.sock`, "");
 * console.log(watchSaw(fd, "gateway.sock")); // true
 * closeFd(fd);
 * ```
 */
export function watchDirectory(dir: string): number {
  return check(`watch ${dir}`, shim().hp_watch_dir(cstr(dir)));
}

/** Read every event waiting on a {@linkcode watchDirectory} fd: whether
 * one of them named `name` (a file name, not a path).
 *
 * @example
 * ```ts
 * import { watchDirectory, watchSaw } from "./shim.ts";
 * const fd = watchDirectory(Deno.makeTempDirSync());
 * console.log(watchSaw(fd, "gateway.sock")); // false: nothing appeared
 * ```
 */
export function watchSaw(fd: number, name: string): boolean {
  return check("read inotify events", shim().hp_watch_saw(fd, cstr(name))) === 1;
}

/** Connect to a Unix SOCK_SEQPACKET socket; returns a non-blocking fd.
 *
 * @example
 * ```ts
 * import { unixConnect } from "./shim.ts";
 * const fd = unixConnect("/run/user/1000/hotpotato/control.sock");
 * ```
 */
export function unixConnect(path: string): number {
  return check(`connect to ${path}`, shim().hp_unix_connect(cstr(path)));
}

/** The uid and pid of the process at the other end of a Unix socket.
 *
 * @example
 * ```ts
 * import { peerCredentials } from "./shim.ts";
 * declare const fd: number;
 * const { uid, pid } = peerCredentials(fd);
 * ```
 */
export function peerCredentials(fd: number): { uid: number; pid: number } {
  const s = shim();
  return {
    uid: check("SO_PEERCRED", s.hp_peer_uid(fd)),
    pid: check("SO_PEERCRED", s.hp_peer_pid(fd)),
  };
}

/** Send one message, passing `fd` with SCM_RIGHTS when given. Returns the
 * byte count or `-errno` (-EAGAIN when the socket is full). Never blocks.
 *
 * @example
 * ```ts
 * import { sendMessage } from "./shim.ts";
 * declare const sock: number, connFd: number;
 * sendMessage(sock, new Uint8Array([1, 2, 3]), connFd);
 * ```
 */
export function sendMessage(sock: number, data: Uint8Array, fd = -1): number {
  return shim().hp_send_msg(sock, data, data.length, fd);
}

/** The `fd` of a received message whose fd could not be installed (the
 * receiver is at its fd limit; the kernel discarded it: MSG_CTRUNC).
 *
 * @example
 * ```ts
 * import { FD_LOST, receiveMessage } from "./shim.ts";
 * declare const sock: number;
 * const r = receiveMessage(sock, new Uint8Array(65536));
 * if (typeof r !== "number" && r.fd === FD_LOST) console.log("at the fd limit");
 * ```
 */
export const FD_LOST = -2;

/** Receive one message into buf. Returns `{ length, fd }` (fd -1 when none;
 * length 0 when the peer closed; fd {@linkcode FD_LOST} when one was sent but
 * could not be received) or `-errno` (-EAGAIN when nothing waits, -EMSGSIZE
 * when the message was larger than buf, -EBADMSG when it was empty: either
 * was dropped, its fds closed). A SOCK_SEQPACKET peer may send an empty
 * record; recvmsg returns 0 for it as for the end of the stream, and the
 * shim tells them apart (hotpotato.c `seqpacket_at_end`), so length 0 is
 * only ever the end.
 *
 * @example
 * ```ts
 * import { receiveMessage } from "./shim.ts";
 * declare const sock: number;
 * const r = receiveMessage(sock, new Uint8Array(65536));
 * ```
 */
export function receiveMessage(
  sock: number,
  buf: Uint8Array,
): { length: number; fd: number } | number {
  const n = shim().hp_recv_msg(sock, buf, buf.length, fdOutBytes);
  if (n < 0) return n;
  return { length: n, fd: fdOut[0] };
}

/** Most messages one {@linkcode MessageBatch} holds (the shim's HP_BATCH_MAX). */
export const MAX_BATCH = 64;

/**
 * Up to `capacity` messages of at most `each` bytes, received in one system
 * call (recvmmsg). Entry `i` is what {@linkcode receiveMessage} would have
 * returned for the i-th message: {@linkcode MessageBatch.length} (or
 * -EMSGSIZE, -EBADMSG; 0 for the end of the stream, after which every entry
 * reads 0), {@linkcode MessageBatch.fd} and {@linkcode MessageBatch.bytes}.
 * When fewer than `capacity` came, nothing more was queued: an
 * edge-triggered reader is done until the next edge ({@linkcode
 * MessageBatch.drained}), without the read that would say EAGAIN.
 *
 * @example
 * ```ts
 * import { MessageBatch } from "./shim.ts";
 * declare const sock: number;
 * const batch = new MessageBatch(8, 65536);
 * const n = batch.receive(sock);
 * for (let i = 0; i < n; i++) console.log(batch.length(i), batch.fd(i), batch.bytes(i));
 * ```
 */
export class MessageBatch {
  /** Most messages per receive. */
  readonly capacity: number;
  /** Bytes per message slot. */
  readonly each: number;
  #buf: Uint8Array;
  #out: Int32Array;
  #outBytes: Uint8Array;
  #count = 0;

  /** Room for `capacity` (1..{@linkcode MAX_BATCH}) messages of `each` bytes.
   *
   * @example
   * ```ts
   * import { MessageBatch } from "./shim.ts";
   * new MessageBatch(16, 131072);
   * ```
   */
  constructor(capacity: number, each: number) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_BATCH) {
      throw new RangeError(`a batch holds 1 to ${MAX_BATCH} messages`);
    }
    this.capacity = capacity;
    this.each = each;
    this.#buf = new Uint8Array(capacity * each);
    this.#out = new Int32Array(2 * capacity);
    this.#outBytes = new Uint8Array(this.#out.buffer);
  }

  /** Receive what is queued on `sock`, up to `capacity` messages: how many
   * entries were filled, or -errno (-EAGAIN when nothing waits).
   *
   * @example
   * ```ts
   * import { EAGAIN, MessageBatch } from "./shim.ts";
   * declare const sock: number;
   * const n = new MessageBatch(4, 4096).receive(sock);
   * if (n === -EAGAIN) console.log("nothing waits");
   * ```
   */
  receive(sock: number): number {
    const n = shim().hp_recv_batch(sock, this.#buf, this.each, this.capacity, this.#outBytes);
    this.#count = n < 0 ? 0 : n;
    return n;
  }

  /** Whether the last receive emptied the socket's queue (it filled fewer
   * entries than the batch holds).
   *
   * @example
   * ```ts
   * import { MessageBatch } from "./shim.ts";
   * declare const batch: MessageBatch, sock: number;
   * do batch.receive(sock); while (!batch.drained);
   * ```
   */
  get drained(): boolean {
    return this.#count < this.capacity;
  }

  /** Entry `i`'s length, or -errno (-EMSGSIZE, -EBADMSG).
   *
   * @example
   * ```ts
   * import type { MessageBatch } from "./shim.ts";
   * declare const batch: MessageBatch;
   * if (batch.length(0) === 0) console.log("the peer closed");
   * ```
   */
  length(i: number): number {
    return this.#out[2 * i];
  }

  /** Entry `i`'s passed fd: -1 when none, {@linkcode FD_LOST} when one was
   * sent but could not be received. Ours to close.
   *
   * @example
   * ```ts
   * import type { MessageBatch } from "./shim.ts";
   * declare const batch: MessageBatch;
   * console.log(batch.fd(0));
   * ```
   */
  fd(i: number): number {
    return this.#out[2 * i + 1];
  }

  /** Entry `i`'s bytes (a view of the batch's buffer, valid until the next
   * receive; empty for an entry that holds an error).
   *
   * @example
   * ```ts
   * import type { MessageBatch } from "./shim.ts";
   * declare const batch: MessageBatch;
   * const first = batch.bytes(0);
   * first.fill(0);
   * ```
   */
  bytes(i: number): Uint8Array {
    const start = i * this.each;
    return this.#buf.subarray(start, start + Math.max(0, this.length(i)));
  }

  /** Entry `i`'s whole slot (what a message too large for it filled, to be
   * zeroed).
   *
   * @example
   * ```ts
   * import type { MessageBatch } from "./shim.ts";
   * declare const batch: MessageBatch;
   * batch.slot(0).fill(0);
   * ```
   */
  slot(i: number): Uint8Array {
    return this.#buf.subarray(i * this.each, (i + 1) * this.each);
  }
}

/** The real uid of this process (no `--allow-sys` needed).
 *
 * @example
 * ```ts
 * import { processUid } from "./shim.ts";
 * console.log(processUid());
 * ```
 */
export function processUid(): number {
  return shim().hp_uid();
}

/** Make this process non-dumpable (PR_SET_DUMPABLE 0): processes of the same
 * user can then neither ptrace it nor read its memory, environment or fds
 * through /proc. Throws when that fails, or when a process is already
 * tracing this one (it attached before: the keys must not come).
 *
 * @example
 * ```ts
 * import { makeNonDumpable } from "./shim.ts";
 * makeNonDumpable(); // before any secret is read
 * ```
 */
export function makeNonDumpable(): void {
  const rc = shim().hp_nondumpable();
  if (rc > 0) throw new Error(`process ${rc} is tracing this one: refusing to go on`);
  check("PR_SET_DUMPABLE", rc);
}

/** The uid of a user given by name or as a number ("hotpotato-gw", "10001");
 * throws {@linkcode SysError} (ENOENT) when there is no such user name.
 *
 * @example
 * ```ts
 * import { userId } from "./shim.ts";
 * console.log(userId("root")); // 0
 * ```
 */
export function userId(user: string): number {
  if (/^\d{1,10}$/.test(user)) return Number(user);
  return check(`user ${user}`, shim().hp_user_uid(cstr(user)));
}

/** The primary gid of the user called `name`; throws {@linkcode SysError}
 * (ENOENT) when there is no such user.
 *
 * @example
 * ```ts
 * import { userGroupId } from "./shim.ts";
 * console.log(userGroupId("root")); // 0
 * ```
 */
export function userGroupId(name: string): number {
  return check(`user ${name}`, shim().hp_user_gid(cstr(name)));
}

/** The gid of a group given by name or as a number; throws
 * {@linkcode SysError} (ENOENT) when there is no such group name.
 *
 * @example
 * ```ts
 * import { groupId } from "./shim.ts";
 * console.log(groupId("root")); // 0
 * ```
 */
export function groupId(group: string): number {
  if (/^\d{1,10}$/.test(group)) return Number(group);
  return check(`group ${group}`, shim().hp_group_gid(cstr(group)));
}

/** Whether the process at the other end of the Unix socket `fd` has `gid`
 * among its groups (SO_PEERCRED and SO_PEERGROUPS, as the kernel reports them).
 *
 * @example
 * ```ts
 * import { peerInGroup } from "./shim.ts";
 * declare const fd: number;
 * if (!peerInGroup(fd, 10000)) console.log("not one of the roles");
 * ```
 */
export function peerInGroup(fd: number, gid: number): boolean {
  return check("SO_PEERGROUPS", shim().hp_peer_in_group(fd, gid)) === 1;
}

/** Create (or check) a directory the roles share through group `gid`, with
 * `mode` exactly (0o2750: its owner writes and the group enters; 0o3770: the
 * group writes, and the sticky bit keeps each member's files its own), owned
 * by this user, by root or by `owner` (the gateways' user), nothing for
 * others. Throws {@linkcode SysError}.
 *
 * @example
 * ```ts
 * import { sharedDirectory } from "./shim.ts";
 * sharedDirectory("/run/hotpotato/gateway", 10000, 0o2750);
 * ```
 */
export function sharedDirectory(path: string, gid: number, mode: number, owner = 0): void {
  check(`shared directory ${path}`, shim().hp_shared_dir(cstr(path), gid, mode, owner));
}

/** Create (or check) a directory only this uid can enter: mode 0700, owned
 * by us, not a symlink. Throws {@linkcode SysError} otherwise.
 *
 * @example
 * ```ts
 * import { privateDirectory } from "./shim.ts";
 * privateDirectory("/run/user/1000/hotpotato");
 * ```
 */
export function privateDirectory(path: string): void {
  check(`private directory ${path}`, shim().hp_private_dir(cstr(path)));
}

/** Remove a file (a socket path); a missing one is fine. Errors are ignored.
 *
 * @example
 * ```ts
 * import { removeFile } from "./shim.ts";
 * removeFile("/run/user/1000/hotpotato/gateway.sock");
 * ```
 */
export function removeFile(path: string): void {
  shim().hp_unlink(cstr(path));
}

/** Copy waiting bytes into buf without consuming them: the count, 0 at EOF,
 * or `-errno` (-EAGAIN when nothing waits).
 *
 * @example
 * ```ts
 * import { peek } from "./shim.ts";
 * declare const fd: number;
 * const first = new Uint8Array(8);
 * const n = peek(fd, first);
 * ```
 */
export function peek(fd: number, buf: Uint8Array): number {
  return shim().hp_peek(fd, buf, buf.length);
}

/** Read plain (unencrypted) bytes without blocking: the count, 0 at EOF, or
 * `-errno` (-EAGAIN when nothing waits).
 *
 * @example
 * ```ts
 * import { receivePlain } from "./shim.ts";
 * declare const fd: number;
 * const n = receivePlain(fd, new Uint8Array(4096));
 * ```
 */
export function receivePlain(fd: number, buf: Uint8Array): number {
  return shim().hp_recv(fd, buf, buf.length);
}

/** Write plain (unencrypted) bytes without blocking: the count or `-errno`.
 *
 * @example
 * ```ts
 * import { sendPlain } from "./shim.ts";
 * declare const fd: number;
 * sendPlain(fd, new TextEncoder().encode("HTTP/1.1 400 Bad Request\r\n\r\n"));
 * ```
 */
export function sendPlain(fd: number, data: Uint8Array): number {
  return shim().hp_send(fd, data, data.length);
}

/** Raise this process's soft open-file limit (RLIMIT_NOFILE) to its hard
 * limit. Returns the limit now in force and the soft limit before.
 *
 * @example
 * ```ts
 * import { raiseFileLimit } from "./shim.ts";
 * const { limit, before } = raiseFileLimit(); // e.g. { limit: 1048576, before: 1024 }
 * ```
 */
export function raiseFileLimit(): { limit: number; before: number } {
  const before = new Int32Array(1);
  const limit = check("RLIMIT_NOFILE", shim().hp_raise_nofile(new Uint8Array(before.buffer)));
  return { limit, before: before[0] };
}

/** Close a file descriptor; errors are ignored (the fd is gone either way).
 *
 * @example
 * ```ts
 * import { closeFd } from "./shim.ts";
 * declare const fd: number;
 * closeFd(fd);
 * ```
 */
export function closeFd(fd: number): void {
  if (fd >= 0) shim().hp_close(fd);
}

/** Stop sending on a socket (a FIN follows what is queued) while still
 * reading what the peer sends: `shutdown(fd, SHUT_WR)`. 0 or `-errno`.
 *
 * @example
 * ```ts
 * import { shutdownWrite } from "./shim.ts";
 * declare const fd: number;
 * shutdownWrite(fd);
 * ```
 */
export function shutdownWrite(fd: number): number {
  return shim().hp_shutdown_write(fd);
}

/** Open an fd that only holds a slot of the open-file table in reserve
 * (on /dev/null), or return -errno (at the limit already).
 *
 * @example
 * ```ts
 * import { closeFd, spareFd } from "./shim.ts";
 * const spare = spareFd();
 * closeFd(spare); // one fd free for what must not wait
 * ```
 */
export function spareFd(): number {
  return shim().hp_spare_fd();
}

/** Most ciphertext a {@linkcode RecordReader} buffers (and a handoff carries). */
export const MAX_READ_AHEAD = 20480;

/** The record reader's buffer size as the C shim defines it (RX_CAP); equal
 * to {@linkcode MAX_READ_AHEAD} (a test checks it).
 *
 * @example
 * ```ts
 * import { MAX_READ_AHEAD, shimReadAheadCapacity } from "./shim.ts";
 * console.log(shimReadAheadCapacity() === MAX_READ_AHEAD);
 * ```
 */
export function shimReadAheadCapacity(): number {
  return shim().hp_rx_capacity();
}

/**
 * Reads a TLS connection's socket for wolfSSL: one recv() takes all that has
 * arrived, and wolfSSL is given whole records only, so it is never left
 * holding part of one (see `shim/hotpotato.c`). Bytes read ahead of what
 * wolfSSL took travel with the connection ({@linkcode RecordReader.take},
 * {@linkcode RecordReader.put}). Only ffi/wolfssl.ts installs it.
 *
 * @example
 * ```ts
 * import { RecordReader } from "./shim.ts";
 * declare const fd: number;
 * const reader = new RecordReader(fd);
 * reader.readable(); // after each readable edge of fd
 * reader.free();
 * ```
 */
export class RecordReader {
  #rx: Deno.PointerObject | null;

  /** A reader for fd (it does not own fd).
   *
   * @example
   * ```ts
   * import { RecordReader } from "./shim.ts";
   * const reader = new RecordReader(7);
   * ```
   */
  constructor(fd: number) {
    rxPool ??= shim().hp_rx_pool_new();
    const rx = rxPool ? shim().hp_rx_new(rxPool, fd) : null;
    if (!rx) throw new SysError("record reader", -12 /* ENOMEM */);
    this.#rx = rx;
  }

  /** The C reader (`struct hp_rx*`) to hand to wolfSSL as its read context. */
  get pointer(): Deno.PointerObject {
    if (!this.#rx) throw new Error("record reader already freed");
    return this.#rx;
  }

  /** The receive callback to install with `wolfSSL_SSLSetIORecv`. */
  static get callback(): Deno.PointerObject {
    rxCallback ??= shim().hp_rx_callback()!;
    return rxCallback;
  }

  /** The socket had a new readable edge: the next read asks the kernel.
   * `peerClosed`: the edge reported the peer's FIN (RDHUP or HANGUP); reads
   * then go on until the kernel reports the end of the stream. */
  readable(peerClosed = false): void {
    if (this.#rx) shim().hp_rx_readable(this.#rx, peerClosed ? 1 : 0);
  }

  /** True when wolfSSL is between records. */
  get atBoundary(): boolean {
    return this.#rx !== null && shim().hp_rx_at_boundary(this.#rx) === 1;
  }

  /** Ciphertext read from the socket that wolfSSL has not taken. */
  get buffered(): number {
    return this.#rx ? shim().hp_rx_buffered(this.#rx) : 0;
  }

  /** Move the read-ahead ciphertext out (for a handoff); empty when none.
   *
   * @example
   * ```ts
   * import type { RecordReader } from "./shim.ts";
   * declare const reader: RecordReader;
   * const carried = reader.take();
   * ```
   */
  take(): Uint8Array {
    const n = this.buffered;
    if (n === 0) return EMPTY_BYTES;
    const out = new Uint8Array(n);
    check("read-ahead take", shim().hp_rx_take(this.pointer, out, n));
    return out;
  }

  /** Put back ciphertext another process read ahead (before any read).
   *
   * @example
   * ```ts
   * import { RecordReader } from "./shim.ts";
   * new RecordReader(7).put(new Uint8Array([0x17, 0x03, 0x03, 0x00, 0x00]));
   * ```
   */
  put(bytes: Uint8Array): void {
    if (bytes.length > 0) {
      check("read-ahead put", shim().hp_rx_put(this.pointer, bytes, bytes.length));
    }
  }

  /** Release the reader and its buffer. */
  free(): void {
    if (!this.#rx) return;
    shim().hp_rx_free(this.#rx);
    this.#rx = null;
  }
}
const EMPTY_BYTES = new Uint8Array(0);
/** The process's pool of reader buffers (lives as long as the process). */
let rxPool: Deno.PointerObject | null = null;
/** The receive callback's address (constant for the process). */
let rxCallback: Deno.PointerObject | undefined;

/** Readiness flags, as epoll spells them. EDGE asks for edge-triggered events. */
export const READABLE = 0x001,
  WRITABLE = 0x004,
  ERROR = 0x008,
  HANGUP = 0x010,
  RDHUP = 0x2000,
  EDGE = 0x80000000;

/** Called with each ready fd and its event flags. It must not throw. */
export type ReadyHandler = (fd: number, events: number) => void;

const EVENT_SIZE = 12; // struct epoll_event is packed on x86_64

/** Events the epoll thread may queue while JavaScript is busy. */
const RING_EVENTS = 8192;

/**
 * The process's event loop: a C thread waits in epoll_wait and queues the
 * ready fds; JavaScript takes them and calls `onReady` for each,
 * synchronously. The thread never waits for JavaScript to run: when
 * JavaScript is idle, the thread wakes it through a pipe that Deno's own
 * event loop watches (one wake of one thread); while JavaScript is busy, the
 * thread waits for it to go idle, so that what arrives meanwhile comes as one
 * batch, and JavaScript, before it goes idle, takes that batch from epoll
 * itself (hp_loop_idle). An event carries the generation its fd was watched with: one for a
 * closed fd whose number was reused meanwhile is dropped.
 *
 * @example
 * ```ts
 * import { Poller, READABLE } from "./shim.ts";
 * const poller = new Poller((fd, events) => console.log(fd, events));
 * poller.watch(0, READABLE);
 * ```
 */
export class Poller {
  #loop: Deno.PointerObject;
  #wake: net.Socket;
  #events: DataView;
  #onReady: ReadyHandler;
  #stopped = false;
  /** An idle step is queued. */
  #idling = false;
  /** The idle step (one closure for the loop's life, not one per wake). */
  #idle = (): void => {
    this.#idling = false;
    if (!this.#stopped && shim().hp_loop_idle(this.#loop) === 0) this.#dispatch();
  };
  /** Each watched fd's generation. */
  #gens = new Map<number, number>();
  #nextGen = 1;

  /** Start the epoll thread.
   *
   * @example
   * ```ts
   * import { Poller } from "./shim.ts";
   * const poller = new Poller(() => {});
   * ```
   */
  constructor(onReady: ReadyHandler, maxEvents = 256) {
    this.#onReady = onReady;
    const s = shim();
    const loop = s.hp_loop_new(maxEvents, Math.max(RING_EVENTS, maxEvents));
    if (!loop) throw new Error("cannot start the epoll thread");
    this.#loop = loop;
    const events = s.hp_loop_events(loop)!;
    this.#events = new DataView(
      Deno.UnsafePointerView.getArrayBuffer(events, maxEvents * EVENT_SIZE),
    );
    // The bytes mean nothing: each says "events are queued". One buffer for
    // every read.
    this.#wake = new net.Socket({
      fd: s.hp_loop_wake_fd(loop),
      readable: true,
      writable: false,
      onread: { buffer: new Uint8Array(64), callback: () => this.#dispatch() },
    } as net.SocketConstructorOpts);
    this.#wake.on("error", () => {}); // only at close
    this.#wake.resume();
  }

  #dispatch(): boolean {
    if (this.#stopped) return false;
    const s = shim();
    const view = this.#events, gens = this.#gens;
    for (;;) {
      const n = s.hp_loop_take(this.#loop);
      for (let i = 0; i < n; i++) {
        const off = i * EVENT_SIZE;
        const fd = view.getInt32(off + 4, true); // -1: the stop eventfd
        if (fd >= 0 && gens.get(fd) === view.getUint32(off + 8, true)) {
          try {
            this.#onReady(fd, view.getUint32(off, true));
          } catch (e) {
            // It must not throw; if it does, the other fds' events still run
            // and the loop still goes idle (else nothing would wake it again).
            console.error(`event loop: the handler of fd ${fd} threw: ${e}`);
          }
        }
        if (this.#stopped) return false;
      }
      if (n === 0) {
        // Idle once what these events started has run (the handlers'
        // promise continuations are microtasks queued ahead of this one).
        if (!this.#idling) {
          this.#idling = true;
          queueMicrotask(this.#idle);
        }
        return true;
      }
    }
  }

  /** Start watching fd for `events` (READABLE | WRITABLE).
   *
   * @example
   * ```ts
   * import { Poller, READABLE } from "./shim.ts";
   * declare const poller: Poller, fd: number;
   * poller.watch(fd, READABLE);
   * ```
   */
  watch(fd: number, events: number): void {
    const gen = this.#nextGen;
    this.#nextGen = (gen + 1) >>> 0 || 1;
    check("epoll add", shim().hp_loop_add(this.#loop, fd, events >>> 0, gen));
    this.#gens.set(fd, gen);
  }

  /** Change what fd is watched for.
   *
   * @example
   * ```ts
   * import { Poller, WRITABLE } from "./shim.ts";
   * declare const poller: Poller, fd: number;
   * poller.change(fd, WRITABLE);
   * ```
   */
  change(fd: number, events: number): void {
    check("epoll mod", shim().hp_loop_mod(this.#loop, fd, events >>> 0, this.#gens.get(fd) ?? 0));
  }

  /** Stop watching fd (call before closing it).
   *
   * @example
   * ```ts
   * import { Poller } from "./shim.ts";
   * declare const poller: Poller, fd: number;
   * poller.forget(fd);
   * ```
   */
  forget(fd: number): void {
    this.#gens.delete(fd);
    shim().hp_loop_del(this.#loop, fd);
  }

  /** Stop the thread and release it; resolves once the thread has left.
   *
   * @example
   * ```ts
   * import { Poller } from "./shim.ts";
   * declare const poller: Poller;
   * await poller.close();
   * ```
   */
  async close(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const s = shim();
    s.hp_loop_stop(this.#loop);
    while (!s.hp_loop_finished(this.#loop)) {
      await new Promise((r) => setTimeout(r, 1));
    }
    this.#wake.destroy(); // closes the pipe's read end
    s.hp_loop_free(this.#loop);
  }
}

/** Bytes of one ticket key entry: a 16-byte name, then a 32-byte key. */
export const TICKET_KEY_ENTRY = 48;
/** Most keys a ticket ring holds. */
export const TICKET_RING_KEYS = 4;

/**
 * TLS session-ticket keys shared by every gateway that is given the same
 * keys (shim/tickets.c): the first seals new tickets, all open them.
 *
 * @example
 * ```ts
 * import { TicketRing } from "./shim.ts";
 * import { wolfsslPath } from "./paths.ts";
 * import { TlsContext } from "./wolfssl.ts";
 * const ctx = TlsContext.forImport(); // loads wolfSSL
 * const ring = new TicketRing(wolfsslPath);
 * ring.set(crypto.getRandomValues(new Uint8Array(48)));
 * ring.free();
 * ```
 */
export class TicketRing {
  #ring: Deno.PointerValue;

  /** A ring bound to the wolfSSL loaded from `wolfssl` (already loaded).
   *
   * @example
   * ```ts
   * import { TicketRing } from "./shim.ts";
   * import { wolfsslPath } from "./paths.ts";
   * new TicketRing(wolfsslPath);
   * ```
   */
  constructor(wolfssl: string) {
    this.#ring = shim().hp_ticket_ring_new(cstr(wolfssl));
    if (!this.#ring) throw new Error("cannot make a ticket ring (is wolfSSL loaded?)");
  }

  /** Use `keys`: whole entries of {@linkcode TICKET_KEY_ENTRY} bytes, at
   * most {@linkcode TICKET_RING_KEYS}; the first seals new tickets.
   *
   * @example
   * ```ts
   * import type { TicketRing } from "./shim.ts";
   * declare const ring: TicketRing;
   * ring.set(crypto.getRandomValues(new Uint8Array(96))); // two keys
   * ```
   */
  set(keys: Uint8Array): void {
    const count = keys.length / TICKET_KEY_ENTRY;
    if (!Number.isInteger(count) || count > TICKET_RING_KEYS) throw new Error("bad ticket keys");
    check("ticket keys", shim().hp_ticket_ring_set(this.#ring, keys, count));
  }

  /** Seal and open the session tickets of the context `ctx` (a
   * WOLFSSL_CTX*; ffi/wolfssl.ts calls this).
   *
   * @example
   * ```ts
   * import { TicketRing } from "./shim.ts";
   * declare const ring: TicketRing, ctx: Deno.PointerObject;
   * ring.attach(ctx);
   * ```
   */
  attach(ctx: Deno.PointerObject): void {
    check("attach the ticket keys", shim().hp_ticket_ring_attach(this.#ring, ctx));
  }

  /** Forget the keys (no context may use the ring after this).
   *
   * @example
   * ```ts
   * import type { TicketRing } from "./shim.ts";
   * declare const ring: TicketRing;
   * ring.free();
   * ```
   */
  free(): void {
    if (this.#ring) shim().hp_ticket_ring_free(this.#ring);
    this.#ring = null;
  }
}

/** The bytes of a small secret file that others may not read (owned by
 * this user or by root, no permission bits for others: 0600, or 0640 with a
 * group as Kubernetes secret volumes have): the shim reads it, since the
 * gateway has no file permission. Throws {@linkcode SysError} (EPERM when
 * others may read it).
 *
 * @example
 * ```ts
 * import { readPrivateFile } from "./shim.ts";
 * const secret = readPrivateFile("/etc/hotpotato/ticket.key", 4096);
 * ```
 */
export function readPrivateFile(path: string, max: number): Uint8Array {
  const buf = new Uint8Array(max);
  const n = check(`read ${path}`, shim().hp_read_private_file(cstr(path), buf, max));
  return buf.subarray(0, n);
}

/** errno of hp_tls_import_check's "not this build's layout" (EPROTO). */
const IMPORT_LAYOUT = 71;

/** Why a received TLS state must not reach `wolfSSL_tls_import`, or null
 * when it may. wolfSSL trusts what it imports (sizes, algorithm ids, option
 * bytes: a forged blob corrupts memory during the import or at the next
 * read or write), so the blob must be one this build's own
 * `wolfSSL_tls_export` could have made for a TLS 1.2 or 1.3 session with
 * one of the AEAD suites of `DEFAULT_CIPHERS` (`version` is wolfSSL's
 * protocol id: 3 TLS 1.2, 4 TLS 1.3); only its keys, IVs, secrets and
 * sequence numbers are free (shim/import_check.c). The reason names the
 * kind of fault, never a byte of the blob.
 *
 * @example
 * ```ts
 * import { tlsImportRefusal } from "./shim.ts";
 * declare const state: { version: number; blob: Uint8Array };
 * const why = tlsImportRefusal(state.version, state.blob);
 * if (why) throw new Error(`refused TLS state: ${why}`);
 * ```
 */
export function tlsImportRefusal(version: number, blob: Uint8Array): string | null {
  const rc = shim().hp_tls_import_check(version, blob, blob.length);
  if (rc === 0) return null;
  if (rc === -IMPORT_LAYOUT) return "not laid out as this build exports a TLS session";
  return "a field holds a value this build never exports";
}
