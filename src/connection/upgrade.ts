/**
 * Responses that switch protocols: a handler returns one (made by
 * `upgradeWebSocket()`), the responder recognizes it and answers `101
 * Switching Protocols`, and the connection holder then hands the connection
 * to the new protocol instead of reading a next request. The connection
 * stays in this process until that protocol closes it: it never moves.
 *
 * @module
 */

import type { TlsConnection } from "./tls_connection.ts";

/** Runs the new protocol on `conn` once the 101 is out (`written`; when
 * false the 101 could not be written and `conn` is only to be closed), and
 * resolves when the connection is closed. Never rejects. */
export type Upgrade = (
  conn: TlsConnection,
  written: boolean,
  writeTimeoutMs: number,
) => Promise<void>;

/** An upgrading response's protocol and runner. */
export interface PendingUpgrade {
  /** The `Upgrade` token, e.g. "websocket". */
  protocol: string;
  /** What runs on the connection after the 101. */
  run: Upgrade;
}

const pending = new WeakMap<Response, PendingUpgrade>();

/**
 * A response that upgrades the connection to `protocol` with `headers`. Its
 * `status` reads 101, as `Deno.upgradeWebSocket`'s does (a `Response` cannot
 * be constructed with a 1xx status, so it is one with the status set after).
 *
 * @example
 * ```ts
 * import { upgradingResponse } from "./upgrade.ts";
 * const res = upgradingResponse("websocket", [["sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]],
 *   async (conn) => conn.close());
 * console.log(res.status); // 101
 * ```
 */
export function upgradingResponse(
  protocol: string,
  headers: [string, string][],
  run: Upgrade,
): Response {
  const res = new Response(null, {
    headers: [["upgrade", protocol], ["connection", "Upgrade"], ...headers],
  });
  Object.defineProperty(res, "status", { value: 101 });
  Object.defineProperty(res, "statusText", { value: "Switching Protocols" });
  Object.defineProperty(res, "ok", { value: false });
  pending.set(res, { protocol, run });
  return res;
}

/**
 * The upgrade `res` was made for, taken (a response upgrades one
 * connection), or undefined for any other response.
 *
 * @example
 * ```ts
 * import { upgradeOf } from "./upgrade.ts";
 * upgradeOf(new Response("hi")); // undefined
 * ```
 */
export function upgradeOf(res: Response): PendingUpgrade | undefined {
  const up = pending.get(res);
  pending.delete(res);
  return up;
}
