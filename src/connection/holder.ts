/**
 * The connection holder: the one loop that serves a held connection, for
 * the gateway, for a worker and for the benchmark's single-process bound.
 * It reads each request (with the timeouts of request_reader.ts), asks the
 * holder's {@linkcode HoldPolicy} whether the request is answered here or
 * the connection moves, writes the answer, and counts and logs every answer
 * it writes, its own 4xx answers to bad or late requests included, exactly
 * once.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { DEFAULT_BODY_TIMEOUT_MS, type RequestHead } from "../http/http.ts";
import type { Answer } from "./responder.ts";
import { LogLine } from "../operations/log.ts";
import { writeBody } from "./body_writer.ts";
import { type HolderOptions, LINGER_BYTES, LINGER_MS, nextRequest } from "./request_reader.ts";
import { RequestBody, streamsBody } from "./request_body.ts";
import type { TlsConnection } from "./tls_connection.ts";

/** The interim answer to `Expect: 100-continue`. */
const CONTINUE = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");
const EMPTY = new Uint8Array(0);
/** Most bytes of an unread request body dropped to keep a connection. */
const DISCARD_LIMIT = 64 * 1024;

/** One answer a holder wrote: what its request log line and counters get. */
export interface Answered {
  /** Request method, "-" when the request could not be read. */
  method: string;
  /** Request target, "-" when the request could not be read. */
  path: string;
  /** The route that answered, "-" when none did (the holder's own answers). */
  route: string;
  /** HTTP status written. */
  status: number;
  /** Time from the complete request to the written answer, ms. */
  ms: number;
}

/** The answer to a request answered here, and the route it counts under. */
export interface RoutedAnswer extends Answer {
  /** The route that answered ("-" for the holder's own answers). */
  route: string;
}

/**
 * A responder's answer (sync or not) labelled with the route it counts
 * under. The answer object is labelled in place (a responder makes a new one
 * per request), so the per-request path allocates no copy.
 *
 * @example
 * ```ts
 * import { routed } from "./holder.ts";
 * import { errorResponse } from "../http/http.ts";
 * const answer = routed({ status: 404, keepAlive: true, bytes: errorResponse(404, "no", { keepAlive: true }) }, "-");
 * ```
 */
export function routed(
  answer: Answer | Promise<Answer>,
  route: string,
): RoutedAnswer | Promise<RoutedAnswer> {
  if (answer instanceof Promise) return answer.then((a) => routed(a, route) as RoutedAnswer);
  (answer as RoutedAnswer).route = route;
  return answer as RoutedAnswer;
}

/** What decides, per request, between answering here and moving the connection. */
export interface HoldPolicy {
  /** Whether a request with this head is answered here (its body is read
   * first) rather than moved to another process. */
  answersHere(head: RequestHead): boolean;
  /** Move the connection, whose next request is `head`, to whoever serves
   * it. True when it left (it is no longer ours: the holder stops); false
   * when it cannot move now (the request is then answered here, with
   * `unplaced` set). */
  move(conn: TlsConnection, head: RequestHead): boolean;
  /** The answer to a request answered here. `unplaced`: the connection
   * could not move (or just came back unplaced): answer it 503, say. */
  answer(
    conn: TlsConnection,
    head: RequestHead,
    body: Uint8Array | ReadableStream<Uint8Array>,
    unplaced: boolean,
  ): RoutedAnswer | Promise<RoutedAnswer>;
  /** Whether a large or chunked request body is streamed to `answer` as it
   * arrives (the handler reads `req.body`), rather than read whole first.
   * Default: read whole. */
  streamsBody?(head: RequestHead): boolean;
  /** Whether a request answered here that asks `Expect: 100-continue` gets
   * `100 Continue` (its body is wanted), rather than its final answer at
   * once without its body (a 405, say). Default: it does. */
  continues?(head: RequestHead): boolean;
  /** True while the process hands its connections over to a new version
   * of its function; see {@linkcode HoldPolicy.handOver}. */
  handingOver?(): boolean;
  /** Hand an idle connection (nothing buffered) over to the new version.
   * True when it left; false closes it. */
  handOver?(conn: TlsConnection): boolean;
  /** A request whose route no worker serves yet, though one is expected
   * soon (a gateway that has just started, its workers registering): a wait
   * for it (bounded), after which the request moves or is answered here.
   * Undefined: no wait. */
  held?(head: RequestHead, conn: TlsConnection): Promise<void> | undefined;
  /** Count an answer written (once per answer, the holder's 4xx included). */
  count(answered: Answered): void;
  /** True while the process drains: no next request is read. */
  draining(): boolean;
}

/** How a holder reads requests and logs its answers. */
export interface HoldOptions extends Omit<HolderOptions, "wantBody" | "draining" | "onError"> {
  /** The process's request log line ({@linkcode requestLogLine}). */
  requestLog: LogLine;
  /** Who answers, "name/pid", for the log line. */
  label: string;
}

/**
 * A holder's options from a role's settings (the gateway's or a worker's:
 * both have the read and write timeouts and --max-body).
 *
 * @example
 * ```ts
 * import { holdOptions, requestLogLine } from "./holder.ts";
 * import { workerConfig } from "../operations/config.ts";
 * import { logger } from "../operations/log.ts";
 * const opts = holdOptions(workerConfig([]).config, requestLogLine(logger("worker")), "sum/1");
 * ```
 */
export function holdOptions(
  config: Omit<HoldOptions, "requestLog" | "label" | "bodyTimeoutMs"> & {
    bodyTimeoutMs: number;
  },
  requestLog: LogLine,
  label: string,
): HoldOptions {
  return {
    maxBody: config.maxBody,
    idleTimeoutMs: config.idleTimeoutMs,
    headerTimeoutMs: config.headerTimeoutMs,
    bodyTimeoutMs: config.bodyTimeoutMs,
    writeTimeoutMs: config.writeTimeoutMs,
    requestLog,
    label,
  };
}

/**
 * The request log line of a process (one per process, made once: a
 * {@linkcode LogLine} formats only what is written).
 *
 * @example
 * ```ts
 * import { requestLogLine } from "./holder.ts";
 * import { logger } from "../operations/log.ts";
 * const line = requestLogLine(logger("worker"));
 * ```
 */
export function requestLogLine(log: Logger): LogLine {
  return new LogLine(
    log,
    "info",
    "{method} {path} {status} {ms}ms worker {worker} conn {conn} handoffs {handoffs}",
  );
}

/**
 * Serve `conn` until it closes or moves. `unplaced`: its next request could
 * not be placed when it arrived here (a move failed): the policy answers it
 * here as unplaced instead of trying to move it again. `stay`: its next
 * request came with it from a holder that routed it here: answered here
 * (as unplaced when it is not this holder's) rather than moved back.
 *
 * @example
 * ```ts
 * import { hold, requestLogLine } from "./holder.ts";
 * import { errorResponse } from "../http/http.ts";
 * import { logger } from "../operations/log.ts";
 * import type { TlsConnection } from "./tls_connection.ts";
 * declare const conn: TlsConnection; // a connection after its handshake
 * await hold(conn, {
 *   maxBody: 1 << 20, idleTimeoutMs: 30_000, headerTimeoutMs: 10_000,
 *   bodyTimeoutMs: 60_000, writeTimeoutMs: 30_000,
 *   requestLog: requestLogLine(logger("worker")), label: `teapot/${Deno.pid}`,
 * }, {
 *   answersHere: () => true,
 *   move: () => false,
 *   answer: (_conn, head) => ({
 *     route: "/", status: 418, keepAlive: head.keepAlive,
 *     bytes: errorResponse(418, "short and stout", { keepAlive: head.keepAlive }),
 *   }),
 *   count: () => {},
 *   draining: () => false,
 * });
 * ```
 */
export async function hold(
  conn: TlsConnection,
  opts: HoldOptions,
  policy: HoldPolicy,
  unplaced = false,
  stay = false,
): Promise<void> {
  const written = (a: Answered) => {
    policy.count(a);
    opts.requestLog.log(() => ({
      method: a.method,
      path: a.path.length > 200 ? a.path.slice(0, 200) : a.path,
      route: a.route,
      status: a.status,
      ms: a.ms,
      worker: opts.label,
      conn: conn.info.connId,
      handoffs: conn.info.handoffs,
    }));
  };
  const readOpts: HolderOptions = {
    maxBody: opts.maxBody,
    idleTimeoutMs: opts.idleTimeoutMs,
    headerTimeoutMs: opts.headerTimeoutMs,
    bodyTimeoutMs: opts.bodyTimeoutMs,
    writeTimeoutMs: opts.writeTimeoutMs,
    wantBody: (head) => unplaced || policy.answersHere(head),
    draining: () => policy.draining(),
    handingOver: policy.handingOver && (() => policy.handingOver!()),
    onError: (status) => written({ method: "-", path: "-", route: "-", status, ms: 0 }),
    streamBody: (head) => !unplaced && policy.streamsBody?.(head) === true && streamsBody(head),
    expectContinue: (head) => {
      if (unplaced || (policy.continues && !policy.continues(head))) return false;
      const w = conn.write(CONTINUE, Date.now() + opts.writeTimeoutMs);
      // A failed write shows as a closed connection at the next read.
      return typeof w === "boolean" ? true : w.then(() => true);
    },
  };
  for (;;) {
    const r = await nextRequest(conn, readOpts);
    if (!r) return;
    if (r.kind === "handover") {
      if (!policy.handOver?.(conn)) conn.close();
      return;
    }
    if (!unplaced && !policy.answersHere(r.head)) {
      const hold = policy.held?.(r.head, conn);
      if (hold) await hold;
      if (!stay && conn.isOpen && policy.move(conn, r.head)) return;
      unplaced = true; // it cannot move: answer it here, with its body read
    }
    // Read without its body, but answered here after all (a move failed,
    // or the route table changed meanwhile): read it again, body included.
    if (r.kind === "head") continue;
    // Expect: 100-continue refused: the final answer now, without the body
    // (which the client may still send): the connection closes after it.
    const expected = r.kind === "expect";
    let head = expected ? { ...r.head, keepAlive: false } : r.head;
    let streamed: RequestBody | undefined;
    if (r.kind === "streaming") {
      conn.consume(r.head.headLength);
      const body = new RequestBody(conn, r.head, {
        maxBody: opts.maxBody,
        idleTimeoutMs: opts.idleTimeoutMs,
        bodyTimeoutMs: opts.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS,
      });
      streamed = body;
      // Asked when the answer is serialized: a body that failed (413, 408)
      // closes the connection, and the answer must say so.
      const asked = r.head;
      head = Object.create(asked, {
        keepAlive: { get: () => asked.keepAlive && !body.failed, enumerable: true },
      });
    }
    const started = performance.now();
    const pending = policy.answer(
      conn,
      head,
      r.kind === "request" ? r.body : streamed ? streamed.stream : EMPTY,
      unplaced,
    );
    unplaced = stay = false;
    const { route, status, bytes, keepAlive, body, tail, upgrade } = pending instanceof Promise
      ? await pending
      : pending;
    if (r.kind === "request") conn.consume(r.length);
    const w = conn.write(bytes, Date.now() + opts.writeTimeoutMs);
    let ok = typeof w === "boolean" ? w : await w;
    if (ok && tail) {
      const t = conn.write(tail, Date.now() + opts.writeTimeoutMs);
      ok = typeof t === "boolean" ? t : await t;
    }
    if (body) {
      // Streamed: written as produced; an early end closes the connection
      // without close_notify, so the truncated body cannot look complete.
      const end = ok ? await writeBody(conn, body, opts.writeTimeoutMs) : "client gone";
      if (!ok) {
        body.abort(end);
        body.stream.cancel(end).catch(() => {});
      }
      ok = end === "";
    }
    // A streamed request body the handler left unread: dropped if small,
    // else the connection closes (it is never buffered).
    const bodyLeft = streamed !== undefined && !(ok && await streamed.discard(DISCARD_LIMIT, 1000));
    written({
      method: r.head.method,
      path: r.head.path,
      route,
      status,
      ms: Math.round((performance.now() - started) * 100) / 100,
    });
    if (upgrade) {
      // A 101 (a WebSocket): the connection carries the new protocol until
      // it closes, here; it never moves. The upgrade closes it.
      await upgrade(conn, ok, opts.writeTimeoutMs);
      return;
    }
    if (!ok) {
      conn.close(false);
      return;
    }
    if (expected || bodyLeft) {
      // The client may still be sending the body: let it read the answer.
      await conn.closeLingering(LINGER_MS, LINGER_BYTES);
      return;
    }
    if (!keepAlive) {
      conn.close();
      return;
    }
  }
}

/**
 * {@linkcode hold} `conn` as one of `held` (a role's connections, which its
 * drain waits for) until it leaves or closes; a failure is logged on the
 * role's logger and closes the connection.
 *
 * @example
 * ```ts
 * import { holdAmong, type HoldOptions, type HoldPolicy } from "./holder.ts";
 * import type { TlsConnection } from "./tls_connection.ts";
 * declare const conn: TlsConnection, opts: HoldOptions, policy: HoldPolicy;
 * const held = new Set<TlsConnection>();
 * await holdAmong(held, conn, opts, policy);
 * ```
 */
export async function holdAmong(
  held: Set<TlsConnection>,
  conn: TlsConnection,
  opts: HoldOptions,
  policy: HoldPolicy,
  unplaced = false,
  stay = false,
): Promise<void> {
  held.add(conn);
  try {
    await hold(conn, opts, policy, unplaced, stay);
  } catch (e) {
    opts.requestLog.logger.error("conn {conn}: {error}", {
      conn: conn.info.connId,
      error: String(e),
    });
    conn.close(false);
  } finally {
    held.delete(conn);
  }
}
