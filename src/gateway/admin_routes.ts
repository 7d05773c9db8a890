/**
 * What the gateway's admin port answers:
 * - `GET /metrics`: Prometheus text;
 * - `GET /healthz`: JSON, "ok", "draining" or "control socket lost", with the
 *   functions and their worker counts; 503 unless ok;
 * - `GET /workers`: JSON, every registered worker's function, pid,
 *   generation, state and connections held;
 * - `GET /functions`: JSON, each function's scaling settings (min, max,
 *   idle, target) and state (workers, requests waiting for it to start);
 * - `POST /admin/promote?function=F&generation=G[&handover=off]` and
 *   `POST /admin/reloaded?function=F&result=ok|failed&seconds=S` and
 *   `POST /admin/routes?function=F&routes=JSON` (the routes F may register
 *   from now on, `--function-routes`) and `POST /admin/user?function=F&uid=U`
 *   (the user a function added at a reload runs as): the launcher's reload
 *   (switch a function to its standby version; record the outcome in
 *   /metrics);
 * - `POST /admin/demand?after=SEQ&wait=MS&gateway=PID` (the
 *   demand on every function, at once when something new waits, else after
 *   MS), `POST /admin/retire?function=F&pid=P` (stop a worker: it hands its
 *   connections over), `POST /admin/scaling?function=F&scaling=JSON` and
 *   `POST /admin/scaled?function=F&direction=up|down|failed&reason=R`: the
 *   launcher's autoscaler. These need the launcher's signature
 *   (src/operations/admin_signature.ts: the gateway under the launcher has
 *   the key, and no token travels) or, for a gateway run by hand,
 *   `Authorization: Bearer TOKEN` with its HOTPOTATO_ADMIN_TOKEN; with
 *   neither configured they answer 403.
 *
 * @module
 */

import type { RequestHead } from "../http/http.ts";
import type { AdminResponse } from "./admin_server.ts";
import type { PromoteResult } from "./workers.ts";
import { sameBytes } from "../handoff/bytes.ts";
import type { Demand } from "./demand.ts";

const json = (status: number, body: unknown): AdminResponse => ({
  status,
  contentType: "application/json",
  body: JSON.stringify(body) + "\n",
});

const enc = new TextEncoder();

/** A bearer token that matches `token` (never an empty one). */
function authorized(head: RequestHead, token: string): boolean {
  if (!token) return false;
  const h = head.headers.find(([name]) => name === "authorization")?.[1] ?? "";
  return h.slice(0, 7).toLowerCase() === "bearer " &&
    sameBytes(enc.encode(h.slice(7).trim()), enc.encode(token));
}

/** What the admin routes read from the gateway. */
export interface AdminSource {
  /** The Prometheus text. */
  metrics(): string;
  /** Why the gateway is not healthy ("" when it is): it drains, or its
   * control socket is lost. */
  unhealthy(): { status: "ok" | "draining" | "control socket lost"; error?: string };
  /** The functions the gateway knows. */
  functions(): { name: string; routes: string[]; workers: number }[];
  /** Registered workers (GET /workers). */
  workers?(): { name: string; pid: number; generation: string; state: string; held: number }[];
  /** The token POST requests need ("" or absent: only signed ones pass). */
  token?: string;
  /** The request carries the launcher's good signature. */
  signed?: boolean;
  /** The gateway checks signatures (it has the launcher's key). */
  signatures?: boolean;
  /** Switch a function to its standby generation. */
  promote?(name: string, generation: string, handover: boolean): PromoteResult;
  /** Record a reload's outcome. */
  reloaded?(name: string, ok: boolean, seconds: number): void;
  /** Declare the routes a function may register; an error message, or "". */
  declareRoutes?(name: string, routes: unknown): string;
  /** Declare the user a function runs as (added after the gateway started);
   * an error message, or "". */
  declareUser?(name: string, uid: number): string;
  /** The demand on each function once its seq passes `after`, or after
   * `waitMs` (the launcher's autoscaler; src/gateway/demand.ts). */
  demand?(after: number, waitMs: number): Promise<Demand>;
  /** Stop a worker (the launcher scales down): it hands its connections over. */
  retire?(name: string, pid: number): { ok: true; held: number } | { ok: false; error: string };
  /** Replace a function's scaling (JSON as in `--scaling`); an error message, or "". */
  setScaling?(name: string, scaling: string): string;
  /** Count one of the launcher's scale events. */
  scaled?(name: string, direction: "up" | "down" | "failed", reason: string): void;
  /** Each function's scaling settings and state (GET /functions). */
  functionStates?(): unknown[];
}

/**
 * Answer one admin request.
 *
 * @example
 * ```ts
 * import { adminAnswer } from "./admin_routes.ts";
 * import { parseRequest } from "../http/http.ts";
 * const r = parseRequest(new TextEncoder().encode("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"));
 * if (r.kind === "request") {
 *   const answer = adminAnswer(r.head, {
 *     metrics: () => "",
 *     unhealthy: () => ({ status: "ok" }),
 *     functions: () => [],
 *   });
 *   console.log((await answer).status); // 200
 * }
 * ```
 */
export function adminAnswer(
  head: RequestHead,
  source: AdminSource,
): AdminResponse | Promise<AdminResponse> {
  if (head.method === "POST" && head.path.startsWith("/admin/")) return adminWrite(head, source);
  if (head.method !== "GET" && head.method !== "HEAD") {
    return { status: 405, contentType: "application/json", body: '{"error":"GET only"}\n' };
  }
  if (head.path === "/workers" && source.workers) return json(200, source.workers());
  if (head.path === "/functions" && source.functionStates) {
    return json(200, source.functionStates());
  }
  if (head.path === "/metrics") {
    return {
      status: 200,
      contentType: "text/plain; version=0.0.4; charset=utf-8",
      body: source.metrics(),
    };
  }
  if (head.path === "/healthz") {
    const { status, error } = source.unhealthy();
    const body = JSON.stringify({
      status,
      ...(error ? { error } : {}),
      functions: source.functions(),
    }) + "\n";
    return { status: status === "ok" ? 200 : 503, contentType: "application/json", body };
  }
  return { status: 404, contentType: "application/json", body: '{"error":"not found"}\n' };
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const GENERATION_RE = /^[A-Za-z0-9._-]{0,32}$/;

const WRITES = new Set([
  "/admin/promote",
  "/admin/reloaded",
  "/admin/routes",
  "/admin/user",
  "/admin/demand",
  "/admin/retire",
  "/admin/scaling",
  "/admin/scaled",
]);
const REASON_RE = /^[a-z][a-z -]{0,39}$/;

/** The token-guarded POSTs of the launcher's reloads and autoscaler. */
function adminWrite(
  head: RequestHead,
  source: AdminSource,
): AdminResponse | Promise<AdminResponse> {
  if (!source.token && !source.signatures) {
    return json(403, { error: "admin writes are off (the gateway has no HOTPOTATO_ADMIN_TOKEN)" });
  }
  if (!source.signed && !authorized(head, source.token ?? "")) {
    const what = source.signatures ? "signature or bearer token" : "bearer token";
    return json(401, { error: `bad or missing ${what}` });
  }
  if (!WRITES.has(head.path)) return json(404, { error: "not found" });
  const q = new URLSearchParams(head.query);
  if (head.path === "/admin/demand" && source.demand) {
    const after = Number(q.get("after") ?? "0");
    const wait = Number(q.get("wait") ?? "0");
    if (!Number.isSafeInteger(after) || !Number.isSafeInteger(wait) || wait < 0) {
      return json(400, { error: "after, wait: integers" });
    }
    // Asked of another gateway (this one restarted): its seq means nothing here.
    const mine = q.get("gateway") === null || q.get("gateway") === String(Deno.pid);
    return source.demand(mine ? after : -1, wait).then((d) => json(200, d));
  }
  const name = q.get("function") ?? "";
  if (!NAME_RE.test(name)) return json(400, { error: "function: a function name is needed" });
  if (head.path === "/admin/promote" && source.promote) {
    const generation = q.get("generation") ?? "";
    if (!GENERATION_RE.test(generation)) return json(400, { error: "generation: bad label" });
    const handover = q.get("handover") ?? "on";
    if (handover !== "on" && handover !== "off") {
      return json(400, { error: "handover: on or off" });
    }
    const r = source.promote(name, generation, handover === "on");
    return json(r.ok ? 200 : 409, r);
  }
  if (head.path === "/admin/routes" && source.declareRoutes) {
    let routes: unknown;
    try {
      routes = JSON.parse(q.get("routes") ?? "");
    } catch {
      return json(400, { error: "routes: a JSON list of paths" });
    }
    const error = source.declareRoutes(name, routes);
    return error ? json(400, { error }) : json(200, { ok: true });
  }
  if (head.path === "/admin/user" && source.declareUser) {
    const uid = Number(q.get("uid"));
    const error = source.declareUser(name, uid);
    return error ? json(400, { error }) : json(200, { ok: true });
  }
  if (head.path === "/admin/retire" && source.retire) {
    const pid = Number(q.get("pid"));
    if (!Number.isSafeInteger(pid) || pid <= 0) return json(400, { error: "pid: a process id" });
    const r = source.retire(name, pid);
    return json(r.ok ? 200 : 409, r);
  }
  if (head.path === "/admin/scaling" && source.setScaling) {
    const error = source.setScaling(name, q.get("scaling") ?? "");
    return error ? json(400, { error }) : json(200, { ok: true });
  }
  if (head.path === "/admin/scaled" && source.scaled) {
    const direction = q.get("direction");
    const reason = q.get("reason") ?? "";
    if (direction !== "up" && direction !== "down" && direction !== "failed") {
      return json(400, { error: "direction: up, down or failed" });
    }
    if (!REASON_RE.test(reason)) return json(400, { error: "reason: a few lowercase words" });
    source.scaled(name, direction, reason);
    return json(200, { ok: true });
  }
  if (head.path === "/admin/reloaded" && source.reloaded) {
    const result = q.get("result");
    const seconds = Number(q.get("seconds"));
    if (result !== "ok" && result !== "failed") return json(400, { error: "result: ok or failed" });
    if (!Number.isFinite(seconds) || seconds < 0 || seconds > 86400) {
      return json(400, { error: "seconds: 0 to 86400" });
    }
    source.reloaded(name, result === "ok", seconds);
    return json(200, { ok: true });
  }
  return json(404, { error: "not found" });
}
