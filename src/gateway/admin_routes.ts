/**
 * What the gateway's admin port answers: `/metrics` (Prometheus text) and
 * `/healthz` (JSON: "ok", "draining" or "control socket lost", with the
 * functions and their worker counts; 503 unless ok). GET and HEAD only.
 *
 * @module
 */

import type { RequestHead } from "../http/http.ts";
import type { AdminResponse } from "./admin_server.ts";

/** What the admin routes read from the gateway. */
export interface AdminSource {
  /** The Prometheus text. */
  metrics(): string;
  /** Why the gateway is not healthy ("" when it is): it drains, or its
   * control socket is lost. */
  unhealthy(): { status: "ok" | "draining" | "control socket lost"; error?: string };
  /** The functions the gateway knows. */
  functions(): { name: string; routes: string[]; workers: number }[];
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
 *   console.log(answer.status); // 200
 * }
 * ```
 */
export function adminAnswer(head: RequestHead, source: AdminSource): AdminResponse {
  if (head.method !== "GET" && head.method !== "HEAD") {
    return { status: 405, contentType: "application/json", body: '{"error":"GET only"}\n' };
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
