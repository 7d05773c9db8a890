/**
 * Response bodies the worker can serialize without reading a stream.
 *
 * A `Response` hides its body behind a stream: reading it back
 * (`await res.arrayBuffer()`) costs a promise chain and a stream per request,
 * which on a small answer is as much as serializing the whole response. The
 * helpers here (`json()`, `bytes()`) remember what they put in the Response, and the
 * worker takes it straight from {@linkcode knownBody} while the body is
 * unread (the serializer encodes it into the response, or, over 16 KiB, has
 * it written after the head as it is). Any other Response is read the
 * standard way.
 *
 * @module
 */

const known = new WeakMap<Response, string | Uint8Array>();
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
 * A response whose body is `data` as it is: not copied (a `Response` built
 * from bytes copies them at construction, which on a large body costs more
 * than encrypting it), sent with its length. The bytes must not change until
 * the response is sent. `content-type` defaults to
 * `application/octet-stream`.
 *
 * @example
 * ```ts
 * import { bytes } from "./response_body.ts";
 * const page = new TextEncoder().encode("<h1>hi</h1>");
 * const res = bytes(page, { headers: { "content-type": "text/html" } });
 * ```
 */
export function bytes(data: Uint8Array, init: ResponseInit = {}): Response {
  const headers = new Headers(init.headers);
  if (!headers.has("content-type")) headers.set("content-type", "application/octet-stream");
  // A stream that gives the same bytes if someone reads the body (middleware).
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      c.enqueue(data);
      c.close();
    },
  });
  const res = new Response(body, { ...init, headers });
  known.set(res, data);
  return res;
}

/**
 * The body of a Response made by {@linkcode json} (its text) or
 * {@linkcode bytes} (its bytes), while its body has not been read; otherwise
 * undefined (read it with `arrayBuffer()`).
 *
 * @example
 * ```ts
 * import { json, knownBody } from "./response_body.ts";
 * knownBody(json(1)); // "1\n"
 * knownBody(new Response("x")); // undefined
 * ```
 */
export function knownBody(res: Response): string | Uint8Array | undefined {
  const bytes = known.get(res);
  return bytes !== undefined && !res.bodyUsed ? bytes : undefined;
}
