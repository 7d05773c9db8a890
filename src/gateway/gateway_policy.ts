/**
 * What the gateway does with each request on a connection it holds: a
 * request whose route a worker serves moves the connection to that worker
 * (the head alone decides); anything else is answered here: 404 when no
 * function serves the route, 503 with `Retry-After` when its function has
 * no worker right now, or when the connection could not be placed.
 *
 * @module
 */

import type { TlsConnection } from "../connection/tls_connection.ts";
import type { Answered, HoldPolicy, RoutedAnswer } from "../connection/holder.ts";
import { errorResponse, type RequestHead } from "../http/http.ts";
import type { GatewayMetrics } from "./gateway_metrics.ts";
import type { Forwarder } from "./forwarder.ts";
import type { Router, RouteStatus } from "../routing/router.ts";
import type { Worker } from "./workers.ts";
import type { ColdStarts } from "./cold_starts.ts";

/** What a {@linkcode GatewayPolicy} decides with. */
export interface GatewayPolicyOptions {
  /** Which function serves a path. */
  router: Router<Worker>;
  /** Moves connections to workers. */
  forwarder: Forwarder;
  /** Metrics to bump. */
  metrics: GatewayMetrics;
  /** "gateway/pid", sent as `x-hotpotato-worker`. */
  label: string;
  /** True while the gateway drains. */
  draining(): boolean;
  /** True while a gateway that took over from this one accepts: what this
   * one holds goes to it. */
  handingOver?(): boolean;
  /** Pass an idle connection to that gateway; false closes it. */
  handOver?(conn: TlsConnection): boolean;
  /** Whether a function may yet serve `path` though none registered it:
   * the gateway has just started or taken over (its workers are
   * registering), or the launcher declared a function that serves it. Such
   * a path gets 503 with Retry-After, not a cacheable 404. */
  expected?(path: string): boolean;
  /** Whether the gateway has just started or taken over and its workers are
   * registering: a request for a route none registered yet is held (up to
   * {@linkcode HOLD_MS}) for one, not answered 503 at once. */
  settling?(): boolean;
  /** Functions started on demand: a request for one with no worker waits
   * while it starts (src/gateway/cold_starts.ts). */
  cold?: ColdStarts;
}

/** The longest a request waits for a worker of its route to register with
 * a gateway that has just started; then it gets 503 with Retry-After. */
export const HOLD_MS = 5000;

/**
 * What a gateway (the primary or a satellite) answers itself: 503 with
 * `Retry-After` for a request no worker could take (`unplaced`) or whose
 * function has no worker right now (`vacant`), 404 when no function serves
 * the route (`unknown`); a short JSON body (`message`, when given, says why
 * instead: a function that could not start in time), and
 * `x-hotpotato-worker: label`.
 *
 * @example
 * ```ts
 * import { gatewayAnswer } from "./gateway_policy.ts";
 * import { parseRequest } from "../http/http.ts";
 * const r = parseRequest(new TextEncoder().encode("GET /nope HTTP/1.1\r\nhost: x\r\n\r\n"));
 * if (r.kind === "request") console.log(gatewayAnswer(r.head, "unknown", "gateway/1", true).status); // 404
 * ```
 */
export function gatewayAnswer(
  head: RequestHead,
  why: "unplaced" | "vacant" | "unknown",
  label: string,
  keepAlive: boolean,
  message?: string,
): RoutedAnswer {
  const path = head.path.slice(0, 200);
  const status = why === "unknown" ? 404 : 503;
  message ??= why === "unplaced"
    ? `no worker could take ${path} right now`
    : why === "vacant"
    ? `no worker for ${path} right now`
    : `no function serves ${path}`;
  const extraHeaders: [string, string][] = status === 503
    ? [["retry-after", "1"], ["x-hotpotato-worker", label]]
    : [["x-hotpotato-worker", label]];
  return {
    route: "-",
    status,
    keepAlive,
    bytes: errorResponse(status, message, {
      keepAlive,
      headOnly: head.method === "HEAD",
      extraHeaders,
    }),
  };
}

/**
 * The gateway's {@linkcode HoldPolicy}.
 *
 * @example
 * ```ts
 * import { GatewayPolicy, type GatewayPolicyOptions } from "./gateway_policy.ts";
 * declare const options: GatewayPolicyOptions;
 * const policy = new GatewayPolicy(options);
 * ```
 */
export class GatewayPolicy implements HoldPolicy {
  #o: GatewayPolicyOptions;
  /** Why a held request could not wait for its function to start. */
  #refused = new WeakMap<TlsConnection, string>();

  /** A policy over these parts.
   *
   * @example
   * ```ts
   * import { GatewayPolicy, type GatewayPolicyOptions } from "./gateway_policy.ts";
   * declare const options: GatewayPolicyOptions;
   * new GatewayPolicy(options);
   * ```
   */
  constructor(options: GatewayPolicyOptions) {
    this.#o = options;
  }

  /** Answered here unless a worker serves the path. (status(), not a pick:
   * asking must not advance a pool's rotation.)
   *
   * @example
   * ```ts
   * import type { GatewayPolicy } from "./gateway_policy.ts";
   * import type { RequestHead } from "../http/http.ts";
   * declare const policy: GatewayPolicy, head: RequestHead;
   * policy.answersHere(head);
   * ```
   */
  answersHere(head: RequestHead): boolean {
    const status = this.#o.router.status(head.path);
    return status !== "served" && !this.#holds(status) &&
      this.#o.cold?.coldFunction(head.path) === undefined;
  }

  /** A route no worker registered yet, while the gateway's expected workers
   * are registering: worth a wait. */
  #holds(status: RouteStatus): boolean {
    return status === "unknown" && this.#o.settling?.() === true;
  }

  /** For a request whose route no worker has registered yet while the
   * gateway's workers are registering: a wait until one does, the gateway
   * settles, or {@linkcode HOLD_MS} pass (checked every 20 ms). The request
   * then moves, or gets 503 with Retry-After, never 404.
   *
   * @example
   * ```ts
   * import type { GatewayPolicy } from "./gateway_policy.ts";
   * import type { RequestHead } from "../http/http.ts";
   * declare const policy: GatewayPolicy, head: RequestHead;
   * await policy.held(head);
   * ```
   */
  held(head: RequestHead, conn?: TlsConnection): Promise<void> | undefined {
    const cold = this.#o.cold?.coldFunction(head.path);
    if (cold !== undefined) return this.#coldStart(cold, conn);
    // Settling first: after its first seconds a gateway never is, and the
    // usual request (its route served) then costs no second route lookup.
    if (this.#o.settling?.() !== true) return undefined;
    if (this.#o.router.status(head.path) !== "unknown") return undefined;
    const until = Date.now() + HOLD_MS;
    return new Promise((done) => {
      const check = () => {
        const status = this.#o.router.status(head.path);
        if (!this.#holds(status) || Date.now() >= until) done();
        else setTimeout(check, 20);
      };
      setTimeout(check, 20);
    });
  }

  /** Wait while function `fn` starts on demand; when it cannot (too many
   * wait already, or it did not start in time) the request is answered 503
   * saying so. */
  #coldStart(fn: string, conn: TlsConnection | undefined): Promise<void> | undefined {
    const wait = this.#o.cold!.hold(fn);
    if (wait === "full") {
      if (conn) {
        this.#refused.set(conn, `function ${fn} is starting; too many requests wait for it`);
      }
      return undefined;
    }
    return wait.then((outcome) => {
      if (outcome === "timeout" && conn) {
        this.#refused.set(conn, `function ${fn} did not start in time`);
      }
    });
  }

  /** Hand the connection to a worker of the path's route.
   *
   * @example
   * ```ts
   * import type { GatewayPolicy } from "./gateway_policy.ts";
   * import type { RequestHead } from "../http/http.ts";
   * import type { TlsConnection } from "../connection/tls_connection.ts";
   * declare const policy: GatewayPolicy, conn: TlsConnection, head: RequestHead;
   * policy.move(conn, head);
   * ```
   */
  move(conn: TlsConnection, head: RequestHead): boolean {
    return this.#o.forwarder.handOff(conn, head.path);
  }

  /** 503 for a request no worker could take (`unplaced`) or whose function
   * has no worker right now (it is likely being restarted, or has not
   * registered with a gateway that has just started), 404 when no function
   * serves the route.
   *
   * @example
   * ```ts
   * import type { GatewayPolicy } from "./gateway_policy.ts";
   * import type { RequestHead } from "../http/http.ts";
   * import type { TlsConnection } from "../connection/tls_connection.ts";
   * declare const policy: GatewayPolicy, conn: TlsConnection, head: RequestHead;
   * const { status } = policy.answer(conn, head, new Uint8Array(0), false);
   * ```
   */
  answer(
    conn: TlsConnection,
    head: RequestHead,
    _body: Uint8Array,
    unplaced: boolean,
  ): RoutedAnswer {
    const refused = this.#refused.get(conn);
    if (refused) {
      this.#refused.delete(conn);
      const keepAlive = head.keepAlive && !this.#o.draining();
      return gatewayAnswer(head, "vacant", this.#o.label, keepAlive, refused);
    }
    const status = this.#o.router.status(head.path);
    const why = unplaced
      ? "unplaced"
      : status === "vacant" || (status === "unknown" && this.#o.expected?.(head.path))
      ? "vacant"
      : "unknown";
    return gatewayAnswer(head, why, this.#o.label, head.keepAlive && !this.#o.draining());
  }

  /** The gateway answers here only what no worker takes (404, 503): a
   * request that expects 100-continue gets that answer at once, not
   * `100 Continue`.
   *
   * @example
   * ```ts
   * import type { GatewayPolicy } from "./gateway_policy.ts";
   * import type { RequestHead } from "../http/http.ts";
   * declare const policy: GatewayPolicy, head: RequestHead;
   * policy.continues(head); // false
   * ```
   */
  continues(_head: RequestHead): boolean {
    return false;
  }

  /** Count a request the gateway answered itself.
   *
   * @example
   * ```ts
   * import type { GatewayPolicy } from "./gateway_policy.ts";
   * declare const policy: GatewayPolicy;
   * policy.count({ method: "GET", path: "/nope", route: "-", status: 404, ms: 0.1 });
   * ```
   */
  count(a: Answered): void {
    this.#o.metrics.requests.labels("gateway", "", a.status).inc();
  }

  /** True while a successor gateway takes what this one holds.
   *
   * @example
   * ```ts
   * import type { GatewayPolicy } from "./gateway_policy.ts";
   * declare const policy: GatewayPolicy;
   * policy.handingOver();
   * ```
   */
  handingOver(): boolean {
    return this.#o.handingOver?.() === true;
  }

  /** Pass an idle connection on to the successor gateway.
   *
   * @example
   * ```ts
   * import type { GatewayPolicy } from "./gateway_policy.ts";
   * import type { TlsConnection } from "../connection/tls_connection.ts";
   * declare const policy: GatewayPolicy, conn: TlsConnection;
   * policy.handOver(conn);
   * ```
   */
  handOver(conn: TlsConnection): boolean {
    return this.#o.handOver?.(conn) === true;
  }

  /** True while the gateway drains.
   *
   * @example
   * ```ts
   * import type { GatewayPolicy } from "./gateway_policy.ts";
   * declare const policy: GatewayPolicy;
   * policy.draining();
   * ```
   */
  draining(): boolean {
    return this.#o.draining();
  }
}
