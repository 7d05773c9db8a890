/**
 * Reading a child process's output line by line (the tests and the
 * benchmark collect them). A line longer than
 * `maxLine` characters is passed on in pieces rather than held forever.
 *
 * @module
 */

/**
 * Call `onLine` with each line of `stream` (without its newline), the last
 * one too when it has no newline.
 *
 * @example
 * ```ts
 * import { forEachLine } from "./lines.ts";
 * const child = new Deno.Command("ls", { stdout: "piped" }).spawn();
 * await forEachLine(child.stdout, (line) => console.log(`> ${line}`));
 * ```
 */
export async function forEachLine(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
  maxLine = 65536,
): Promise<void> {
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    let nl;
    while ((nl = pending.indexOf("\n")) >= 0) {
      onLine(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
    if (pending.length > maxLine) {
      onLine(pending);
      pending = "";
    }
  }
  if (pending) onLine(pending);
}
