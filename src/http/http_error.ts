/**
 * The error a handler throws to answer with a status and a short JSON error
 * body, as do the server's own checks of a request (a streamed body over its
 * limit, a bad WebSocket handshake). The responder
 * (src/connection/responder.ts) turns it into the answer.
 *
 * @module
 */

/**
 * Throw this from a handler to answer with `status` and a short JSON error
 * body (`{"error": message, "status": status}`), as the gateway's own errors.
 *
 * @example
 * ```ts
 * import { HttpError } from "./http_error.ts";
 * throw new HttpError(400, "missing operand 'a'");
 * ```
 */
export class HttpError extends Error {
  /** HTTP status to answer with. */
  readonly status: number;
  /** Headers the answer carries besides hot potato's. */
  readonly headers: [string, string][];
  /** Create an error answered with `status` (and `headers`).
   *
   * @example
   * ```ts
   * import { HttpError } from "./http_error.ts";
   * const e = new HttpError(404, "no such item");
   * const v = new HttpError(426, "use version 13", [["sec-websocket-version", "13"]]);
   * ```
   */
  constructor(status: number, message: string, headers: [string, string][] = []) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.headers = headers;
  }
}
