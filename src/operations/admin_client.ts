/**
 * The launcher's client of the gateway's admin port (src/gateway/admin_routes.ts):
 * the registered workers, switching a function to its standby version,
 * recording a reload's outcome, and the autoscaler's demand, retirements and
 * scale events. Plain HTTP on loopback, one request per
 * connection, each with a 3 s timeout. Every request is signed and every
 * answer must prove it comes from the launcher's own gateway
 * (src/operations/admin_signature.ts): no token travels, and an answer
 * without the proof (someone else took the port) is an error.
 *
 * @module
 */

import { PROOF_HEADER, provesAnswer, SIGNATURE_HEADER, signRequest } from "./admin_signature.ts";
import type { Demand } from "../gateway/demand.ts";
import { type Scaling, scalingJson } from "./scaling.ts";

export type { Demand } from "../gateway/demand.ts";

/** The admin port answered without the gateway's proof: another process
 * holds it (retrying does not help until it lets go).
 *
 * @example
 * ```ts
 * import { ImpostorError } from "./admin_client.ts";
 * throw new ImpostorError("127.0.0.1:8081 did not prove it is this launcher's gateway");
 * ```
 */
export class ImpostorError extends Error {
  /** Create the error.
   *
   * @example
   * ```ts
   * import { ImpostorError } from "./admin_client.ts";
   * new ImpostorError("no proof");
   * ```
   */
  constructor(message: string) {
    super(message);
    this.name = "ImpostorError";
  }
}

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
 * const admin = new AdminClient("127.0.0.1", 8081, crypto.getRandomValues(new Uint8Array(32)), () => 4242);
 * try {
 *   console.log(await admin.workers());
 * } catch (e) {
 *   console.log(`no gateway: ${(e as Error).message}`);
 * }
 * ```
 */
export class AdminClient {
  #base: string;
  #key: Uint8Array;
  #gatewayPid: () => number | undefined;

  /** A client of http://host:port that signs with `key` (derived from the
   * launcher's secret) for the gateway process `gatewayPid()` names.
   *
   * @example
   * ```ts
   * import { AdminClient } from "./admin_client.ts";
   * new AdminClient("127.0.0.1", 8081, new Uint8Array(32), () => 4242);
   * ```
   */
  constructor(host: string, port: number, key: Uint8Array, gatewayPid: () => number | undefined) {
    this.#base = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
    this.#key = key.slice();
    this.#gatewayPid = gatewayPid;
  }

  async #request(method: "GET" | "POST", path: string): Promise<{ status: number; body: string }> {
    const pid = this.#gatewayPid();
    if (pid === undefined) throw new Error("no gateway runs");
    const { header, nonce } = signRequest(this.#key, method, path, pid);
    const res = await fetch(`${this.#base}${path}`, {
      method,
      headers: { [SIGNATURE_HEADER]: header },
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    const body = await res.text();
    if (!provesAnswer(this.#key, nonce, res.status, body, res.headers.get(PROOF_HEADER))) {
      throw new ImpostorError(
        `${this.#base} did not prove it is this launcher's gateway (pid ${pid}): ` +
          "another process may hold the admin port",
      );
    }
    return { status: res.status, body };
  }

  /** Declare the routes function `fn` may register (before a reload whose
   * new version changes them). Throws when the gateway refuses.
   *
   * @example
   * ```ts
   * import type { AdminClient } from "./admin_client.ts";
   * declare const admin: AdminClient;
   * await admin.declareRoutes("sum", ["/sum", "/add"]);
   * ```
   */
  async declareRoutes(fn: string, routes: string[]): Promise<void> {
    const q = new URLSearchParams({ function: fn, routes: JSON.stringify(routes) });
    const { status, body } = await this.#request("POST", `/admin/routes?${q}`);
    if (status !== 200) throw new Error(`POST /admin/routes: ${status} ${body.trim()}`);
  }

  /** Declare that function `fn` runs as `uid` (a function added after the
   * gateway started, separate users). Throws when the gateway refuses.
   *
   * @example
   * ```ts
   * import type { AdminClient } from "./admin_client.ts";
   * declare const admin: AdminClient;
   * await admin.declareUser("hello", 990);
   * ```
   */
  async declareUser(fn: string, uid: number): Promise<void> {
    const q = new URLSearchParams({ function: fn, uid: String(uid) });
    const { status, body } = await this.#request("POST", `/admin/user?${q}`);
    if (status !== 200) throw new Error(`POST /admin/user: ${status} ${body.trim()}`);
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

  /** The demand on every function (src/gateway/demand.ts): at once when a
   * function got its first waiting request since `after` (on gateway
   * `gatewayPid`), else after `waitMs`. Throws when the gateway does not
   * answer.
   *
   * @example
   * ```ts
   * import type { AdminClient } from "./admin_client.ts";
   * declare const admin: AdminClient;
   * const d = await admin.demand(0, 0, 1000);
   * for (const [fn, f] of Object.entries(d.functions)) console.log(fn, f.waiting, f.workers.length);
   * ```
   */
  async demand(after: number, gatewayPid: number, waitMs: number): Promise<Demand> {
    const q = new URLSearchParams({
      after: String(after),
      gateway: String(gatewayPid),
      wait: String(waitMs),
    });
    const { status, body } = await this.#request("POST", `/admin/demand?${q}`);
    if (status !== 200) throw new Error(`POST /admin/demand: ${status} ${body.trim()}`);
    return JSON.parse(body) as Demand;
  }

  /** Stop worker `pid` of `fn`: it hands its connections over and exits.
   * Throws with the gateway's reason when it does not.
   *
   * @example
   * ```ts
   * import type { AdminClient } from "./admin_client.ts";
   * declare const admin: AdminClient;
   * await admin.retire("hello", 4242);
   * ```
   */
  async retire(fn: string, pid: number): Promise<void> {
    const q = new URLSearchParams({ function: fn, pid: String(pid) });
    const { status, body } = await this.#request("POST", `/admin/retire?${q}`);
    if (status !== 200) throw new Error(`POST /admin/retire: ${status} ${body.trim()}`);
  }

  /** Tell the gateway `fn`'s scaling (undefined: forget it). Throws when
   * it refuses.
   *
   * @example
   * ```ts
   * import type { AdminClient } from "./admin_client.ts";
   * declare const admin: AdminClient;
   * await admin.setScaling("hello", { min: 0, max: 4, idleMs: 30_000, target: 0.6, spare: 0 });
   * ```
   */
  async setScaling(fn: string, scaling: Scaling | undefined): Promise<void> {
    const text = scaling
      ? JSON.stringify(JSON.parse(scalingJson(new Map([[fn, scaling]])))[fn])
      : "";
    const q = new URLSearchParams({ function: fn, scaling: text });
    const { status, body } = await this.#request("POST", `/admin/scaling?${q}`);
    if (status !== 200) throw new Error(`POST /admin/scaling: ${status} ${body.trim()}`);
  }

  /** Count a scale event in the gateway's /metrics (best effort).
   *
   * @example
   * ```ts
   * import type { AdminClient } from "./admin_client.ts";
   * declare const admin: AdminClient;
   * await admin.scaled("hello", "up", "cold start");
   * ```
   */
  async scaled(fn: string, direction: "up" | "down" | "failed", reason: string): Promise<void> {
    const q = new URLSearchParams({ function: fn, direction, reason });
    try {
      await this.#request("POST", `/admin/scaled?${q}`);
    } catch {
      // the gateway is away: the launcher's log line still tells
    }
  }
}
