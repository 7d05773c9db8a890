/**
 * The launcher's client of the gateway's admin port (src/gateway/admin_routes.ts):
 * the registered workers, switching a function to its standby version, and
 * recording a reload's outcome. Plain HTTP on loopback, one request per
 * connection, each with a 3 s timeout; the bearer token never leaves this
 * object except in the Authorization header.
 *
 * @module
 */

/** A registered worker, as `GET /workers` lists it. */
export interface WorkerEntry {
  /** Function name. */
  name: string;
  /** Process id. */
  pid: number;
  /** Version label ("" when none). */
  generation: string;
  /** "serving", "standby", "draining" or "stuck". */
  state: string;
  /** Connections it holds. */
  held: number;
}

const TIMEOUT_MS = 3000;

/**
 * Talks to one gateway's admin port.
 *
 * @example
 * ```ts
 * import { AdminClient } from "./admin_client.ts";
 * const admin = new AdminClient("127.0.0.1", 8081, "secret-token");
 * try {
 *   console.log(await admin.workers());
 * } catch (e) {
 *   console.log(`no gateway: ${(e as Error).message}`);
 * }
 * ```
 */
export class AdminClient {
  #base: string;
  #token: string;

  /** A client of http://host:port with `token` for the POSTs.
   *
   * @example
   * ```ts
   * import { AdminClient } from "./admin_client.ts";
   * new AdminClient("127.0.0.1", 8081, crypto.randomUUID());
   * ```
   */
  constructor(host: string, port: number, token: string) {
    this.#base = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
    this.#token = token;
  }

  async #request(method: "GET" | "POST", path: string): Promise<{ status: number; body: string }> {
    const res = await fetch(`${this.#base}${path}`, {
      method,
      headers: method === "POST" ? { authorization: `Bearer ${this.#token}` } : {},
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    return { status: res.status, body: await res.text() };
  }

  /** The gateway's registered workers (throws when the gateway does not answer).
   *
   * @example
   * ```ts
   * import type { AdminClient } from "./admin_client.ts";
   * declare const admin: AdminClient;
   * const standby = (await admin.workers()).filter((w) => w.state === "standby");
   * ```
   */
  async workers(): Promise<WorkerEntry[]> {
    const { status, body } = await this.#request("GET", "/workers");
    if (status !== 200) throw new Error(`GET /workers: ${status}`);
    return JSON.parse(body) as WorkerEntry[];
  }

  /** Switch `fn` to its standby workers of `generation`: with `handover`
   * the old ones hand their connections over; without, they only stop
   * getting new ones. Returns the pids replaced, or throws with the
   * gateway's reason.
   *
   * @example
   * ```ts
   * import type { AdminClient } from "./admin_client.ts";
   * declare const admin: AdminClient;
   * const { replaced } = await admin.promote("sum", "2", true);
   * ```
   */
  async promote(
    fn: string,
    generation: string,
    handover: boolean,
  ): Promise<{ replaced: number[] }> {
    const q = new URLSearchParams({ function: fn, generation, handover: handover ? "on" : "off" });
    const { status, body } = await this.#request("POST", `/admin/promote?${q}`);
    let parsed: { ok?: boolean; error?: string; replaced?: number[] } = {};
    try {
      parsed = JSON.parse(body);
    } catch {
      // not JSON: reported below
    }
    if (status !== 200 || parsed.ok !== true) {
      throw new Error(parsed.error ?? `POST /admin/promote: ${status}`);
    }
    return { replaced: parsed.replaced ?? [] };
  }

  /** Record a reload's outcome in the gateway's /metrics (best effort).
   *
   * @example
   * ```ts
   * import type { AdminClient } from "./admin_client.ts";
   * declare const admin: AdminClient;
   * await admin.reloaded("sum", true, 0.42);
   * ```
   */
  async reloaded(fn: string, ok: boolean, seconds: number): Promise<void> {
    const q = new URLSearchParams({
      function: fn,
      result: ok ? "ok" : "failed",
      seconds: seconds.toFixed(3),
    });
    try {
      await this.#request("POST", `/admin/reloaded?${q}`);
    } catch {
      // the gateway is away: the launcher's log line still tells
    }
  }

  /** `hotpotato_connections_handed_over_total` for `fn` (0 when absent or
   * when the gateway does not answer).
   *
   * @example
   * ```ts
   * import type { AdminClient } from "./admin_client.ts";
   * declare const admin: AdminClient;
   * console.log(await admin.handedOver("sum"));
   * ```
   */
  async handedOver(fn: string): Promise<number> {
    try {
      const { body } = await this.#request("GET", "/metrics");
      const prefix = `hotpotato_connections_handed_over_total{function="${fn}"} `;
      const line = body.split("\n").find((l) => l.startsWith(prefix));
      return line ? Number(line.slice(prefix.length)) || 0 : 0;
    } catch {
      return 0;
    }
  }
}
