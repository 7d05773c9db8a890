/**
 * The path a request is routed by. Every router (the gateway's hold policy
 * and forwarder, a worker deciding whether a request on a connection it
 * holds is its own, a satellite) reads `RequestHead.path`, which the request
 * parser (src/http/http.ts) sets with {@linkcode routedPath}; the handler's
 * `new URL(req.url).pathname` comes from the same target through the same
 * WHATWG URL parser (src/connection/responder.ts builds `https://host` + target).
 * So the path the router matched is the pathname the function sees, for
 * every input: `GET /sum/%2e%2e/product` is routed, and seen, as `/product`.
 *
 * The WHATWG parser, for an https URL's path: removes `.` and `..` segments,
 * counting `%2e` / `%2E` as a dot (`.%2e`, `%2e%2e`, `%2e` too); treats `\`
 * as `/`; keeps empty segments (`//sum` stays `//sum`, which `/sum` does not
 * cover); percent-encodes `"`, `<`, `>`, `` ` ``, `{` and `}`; and decodes
 * nothing else. Encoded slashes are kept as they are: `%2F` is a character of
 * its segment, not a separator, so `/sum%2Fx` is the one segment `sum%2Fx`
 * (not under `/sum`) and `/sum/..%2fproduct` stays under `/sum`, as the
 * handler sees it. Other percent-encodings are not decoded either
 * (`/%73um` is not `/sum`).
 *
 * @module
 */

/** What can make the WHATWG parser change a visible-ASCII path: a segment
 * starting with a dot, a percent-encoded dot, a backslash, or a character of
 * the path percent-encode set. A path with none of them is its own pathname
 * (no `new URL()` for it: tests/request_path_test.ts checks the shortcut
 * against the parser over random paths). */
const MAY_CHANGE = /\/\.|%2[eE]|[\\"<>`{}]/;

/**
 * The path to route `path` (an origin-form request-target before `?`:
 * starts with "/", visible ASCII, no "#") by: the `pathname` the WHATWG URL
 * parser gives `https://host` + `path`. Undefined when `path` does not start
 * with "/" or the parser refuses it (the caller answers 400).
 *
 * @example
 * ```ts
 * import { routedPath } from "./request_path.ts";
 * routedPath("/sum"); // "/sum" (no parsing: nothing in it can change)
 * routedPath("/sum/%2e%2e/product"); // "/product"
 * routedPath("/sum\\..\\product"); // "/product"
 * routedPath("/sum/..%2fproduct"); // "/sum/..%2fproduct" (one segment)
 * routedPath("sum"); // undefined
 * ```
 */
export function routedPath(path: string): string | undefined {
  if (path.charCodeAt(0) !== 47) return undefined; // "/"
  if (!MAY_CHANGE.test(path)) return path;
  try {
    // The host is fixed: a path starting "//" or "/\" must not become an authority.
    return new URL(`https://h${path}`).pathname;
  } catch {
    return undefined;
  }
}
