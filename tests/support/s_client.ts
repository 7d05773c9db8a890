/**
 * Test support: one `openssl s_client` connection (a real OpenSSL client)
 * with a pinned TLS version, optional session in/out files for resumption,
 * and pipelined GETs.
 *
 * @module
 */

import { CA_CERT } from "./system.ts";

const dec = new TextDecoder();

/** What one `openssl s_client` connection did. */
export interface Outcome {
  code: number;
  /** "TLSv1.2", "TLSv1.3" or "" when the handshake failed. */
  protocol: string;
  cipher: string;
  reused: boolean;
  /** The JSON bodies of the answers, in order. */
  bodies: { op: string; result: string }[];
  stdout: string;
  stderr: string;
}

export interface Offer {
  version: "1.2" | "1.3";
  /** One TLS 1.3 suite (`-ciphersuites`) or TLS 1.2 suite list (`-cipher`). */
  cipher?: string;
  sessIn?: string;
  sessOut?: string;
  /** TLS 1.2: ask for no ticket, so resumption uses the session id. */
  noTicket?: boolean;
}

/** One connection: the given GETs pipelined (the last one closes), answered
 * in order. */
export async function connect(port: number, offer: Offer, paths: string[]): Promise<Outcome> {
  const args = [
    "s_client",
    "-connect",
    `127.0.0.1:${port}`,
    "-servername",
    "localhost",
    "-CAfile",
    CA_CERT,
    "-verify_return_error",
    "-ign_eof",
    offer.version === "1.2" ? "-tls1_2" : "-tls1_3",
  ];
  if (offer.cipher) args.push(offer.version === "1.2" ? "-cipher" : "-ciphersuites", offer.cipher);
  if (offer.sessIn) args.push("-sess_in", offer.sessIn);
  if (offer.sessOut) args.push("-sess_out", offer.sessOut);
  if (offer.noTicket) args.push("-no_ticket");
  const requests = paths.map((p, i) =>
    `GET ${p} HTTP/1.1\r\nHost: localhost\r\n${
      i === paths.length - 1 ? "Connection: close\r\n" : ""
    }\r\n`
  ).join("");
  const child = new Deno.Command("openssl", {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(requests));
  await w.close();
  const timer = setTimeout(() => child.kill(), 10_000);
  const out = await child.output();
  clearTimeout(timer);
  const stdout = dec.decode(out.stdout);
  const m = stdout.match(/^(New|Reused), (TLSv1\.[23]), Cipher is (\S+)/m);
  const bodies = [...stdout.matchAll(/^\{"op":"(\w+)".*"result":"(-?\d+)"\}/gm)].map((b) => ({
    op: b[1],
    result: b[2],
  }));
  return {
    code: out.code,
    protocol: m && m[3] !== "(NONE)" ? m[2] : "",
    cipher: m ? m[3] : "",
    reused: m?.[1] === "Reused",
    bodies,
    stdout,
    stderr: dec.decode(out.stderr),
  };
}
