/**
 * Response bodies the worker can serialize without reading a stream.
 *
 * A `Response` hides its body behind a stream: reading it back
 * (`await res.arrayBuffer()`) costs a promise chain and a stream per request,
 * which on a small answer is as much as serializing the whole response. The
 * helpers here (`json()`) remember the text they put in the Response, and the
 * worker takes it straight from {@linkcode knownBody} while the body is
 * unread (the serializer encodes it into the response). Any other Response is
 * read the standard way.
 *
 * @module
 */

const known = new WeakMap<Response, string>();
const JSON_HEADERS: [string, string][] = [["content-type", "application/json"]];

/**
 * A JSON response: the value serialized, a newline, and
 * `content-type: application/json`.
 *
 * @example
 * ```ts
 * import { json } from "./response_body.ts";
 * const res = json({ ok: true }); // body: {"ok":true}\n
 * const missing = json({ error: "not found" }, { status: 404 });
 * ```
 */
export function json(value: unknown, init: ResponseInit = {}): Response {
  const text = JSON.stringify(value) + "\n";
  let headers: HeadersInit = JSON_HEADERS;
  if (init.headers !== undefined) {
    const merged = new Headers(init.headers);
    merged.set("content-type", "application/json");
    headers = merged;
  }
  const res = new Response(text, { ...init, headers });
  known.set(res, text);
  return res;
}

/**
 * The body text of a Response made by {@linkcode json}, while its body has
 * not been read; otherwise undefined (read it with `arrayBuffer()`).
 *
 * @example
 * ```ts
 * import { json, knownBody } from "./response_body.ts";
 * knownBody(json(1)); // "1\n"
 * knownBody(new Response("x")); // undefined
 * ```
 */
export function knownBody(res: Response): string | undefined {
  const bytes = known.get(res);
  return bytes !== undefined && !res.bodyUsed ? bytes : undefined;
}
