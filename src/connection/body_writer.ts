/**
 * Writing a response body as it is produced: each chunk the handler's stream
 * gives is encrypted and sent before the next one is pulled, so a client that
 * reads slowly pauses the producer and a connection holds one chunk at a
 * time, whatever the response's size. `--write-timeout` bounds each write
 * (progress), not the whole response, so a stream may run for hours (Server-
 * Sent Events) as long as the client keeps reading.
 *
 * Framing: chunked, a declared length (checked: a body shorter or longer than
 * its `content-length` ends the connection, so the client cannot mistake it
 * for a complete one), or the end of the connection (HTTP/1.0). When the
 * client goes away or the handler's stream fails, the stream is cancelled,
 * the request's signal aborted, and the connection closed without the
 * chunked terminator.
 *
 * @module
 */

import type { StreamedBody } from "./responder.ts";
import type { TlsConnection } from "./tls_connection.ts";

const ENCODER = new TextEncoder();
const CRLF = 2;
/** The last chunk of a chunked body (no trailers). */
const LAST_CHUNK = ENCODER.encode("0\r\n\r\n");
/** Largest piece written at once: a chunk is cut into records of this size
 * at most, so a huge chunk from the handler never needs a huge copy. */
const MAX_PIECE = 64 * 1024;

/** Why a streamed body ended early (for the log), or "" when it completed. */
export type BodyEnd = "" | "client gone" | "handler failed" | "length mismatch";

/** A chunk's framing: hex size, CRLF, data, CRLF, in `scratch` (one per
 * response, reused: a write completes before the next chunk is framed). */
function chunk(data: Uint8Array, scratch: Uint8Array): Uint8Array {
  const size = data.length.toString(16);
  const out = scratch.subarray(0, size.length + CRLF + data.length + CRLF);
  ENCODER.encodeInto(size, out);
  out[size.length] = 13;
  out[size.length + 1] = 10;
  out.set(data, size.length + CRLF);
  out[out.length - 2] = 13;
  out[out.length - 1] = 10;
  return out;
}

async function send(conn: TlsConnection, bytes: Uint8Array, writeTimeoutMs: number) {
  const w = conn.write(bytes, Date.now() + writeTimeoutMs);
  return typeof w === "boolean" ? w : await w;
}

/**
 * Write `body` to `conn` (its head already sent). Resolves with "" when the
 * whole body was sent and the connection can carry a next response, or why
 * it ended early: the caller must then close the connection (without
 * close_notify when the client is gone, since a truncated body must not
 * look complete).
 *
 * @example
 * ```ts
 * import { writeBody } from "./body_writer.ts";
 * import type { TlsConnection } from "./tls_connection.ts";
 * declare const conn: TlsConnection;
 * const stream = ReadableStream.from([new TextEncoder().encode("data: 1\n\n")]);
 * const end = await writeBody(conn, { stream, framing: "chunked", abort: () => {} }, 30_000);
 * if (end) conn.close(false);
 * ```
 */
export async function writeBody(
  conn: TlsConnection,
  body: StreamedBody,
  writeTimeoutMs: number,
): Promise<BodyEnd> {
  const reader = body.stream.getReader();
  const scratch = body.framing === "chunked" ? new Uint8Array(MAX_PIECE + 32) : undefined;
  const declared = typeof body.framing === "number" ? body.framing : -1;
  let sent = 0;
  let end: BodyEnd = "";
  try {
    for (;;) {
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch {
        end = "handler failed";
        break;
      }
      if (r.done) break;
      const data = r.value;
      if (!(data instanceof Uint8Array)) {
        end = "handler failed"; // a stream of strings, say: not bytes
        break;
      }
      if (data.length === 0) continue;
      if (declared >= 0 && sent + data.length > declared) {
        end = "length mismatch";
        break;
      }
      sent += data.length;
      for (let off = 0; off < data.length; off += MAX_PIECE) {
        const piece = data.subarray(off, Math.min(off + MAX_PIECE, data.length));
        const bytes = scratch ? chunk(piece, scratch) : piece;
        if (!await send(conn, bytes, writeTimeoutMs)) {
          end = "client gone";
          break;
        }
      }
      if (end) break;
    }
    if (!end && declared >= 0 && sent !== declared) end = "length mismatch";
    if (!end && body.framing === "chunked" && !await send(conn, LAST_CHUNK, writeTimeoutMs)) {
      end = "client gone";
    }
  } finally {
    if (end) {
      body.abort(end);
      reader.cancel(end).catch(() => {});
    } else {
      reader.releaseLock();
    }
  }
  return end;
}
