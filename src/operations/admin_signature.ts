/**
 * How the launcher and its gateway know each other on the admin port: every
 * request the launcher sends is signed, and every answer to a signed request
 * carries a proof, both with a key derived from the launcher's secret (which
 * only the launcher and its gateways have: src/operations/privileges.ts). No
 * token ever travels, so a local user who took the admin port first learns
 * nothing it could use, and cannot make the launcher believe a reload
 * happened: the launcher refuses any answer without the right proof.
 *
 * - request header `x-hotpotato-signature: v1 MS.NONCE.MAC`, MAC =
 *   HMAC-SHA256(key, "METHOD\nTARGET\nMS\nNONCE\nGATEWAY_PID"): bound to the
 *   request, the time (30 s either way) and the gateway process it is meant
 *   for; a nonce is accepted once.
 * - answer header `x-hotpotato-proof: MAC`, MAC = HMAC-SHA256(key,
 *   "answer\nNONCE\nSTATUS\nBODY").
 *
 * @module
 */

import { createHmac, randomBytes } from "node:crypto";
import { sameBytes } from "../handoff/bytes.ts";

/** The request header that carries the signature. */
export const SIGNATURE_HEADER = "x-hotpotato-signature";
/** The answer header that carries the proof. */
export const PROOF_HEADER = "x-hotpotato-proof";

const WINDOW_MS = 30_000;
const MAX_NONCES = 4096;
const SIGNATURE_RE = /^v1 (\d{1,15})\.([0-9a-f]{32})\.([0-9a-f]{64})$/;
const enc = new TextEncoder();

function mac(key: Uint8Array, text: string): string {
  return createHmac("sha256", key).update(text).digest("hex");
}

function sameText(a: string, b: string): boolean {
  return sameBytes(enc.encode(a), enc.encode(b));
}

/**
 * The signature header's value for `method target` sent to the gateway
 * process `gatewayPid`, and the nonce its answer's proof will name.
 *
 * @example
 * ```ts
 * import { signRequest } from "./admin_signature.ts";
 * const { header } = signRequest(new Uint8Array(32), "POST", "/admin/promote?function=sum", 4242);
 * ```
 */
export function signRequest(
  key: Uint8Array,
  method: string,
  target: string,
  gatewayPid: number,
  now = Date.now(),
): { header: string; nonce: string } {
  const nonce = randomBytes(16).toString("hex");
  const m = mac(key, `${method}\n${target}\n${now}\n${nonce}\n${gatewayPid}`);
  return { header: `v1 ${now}.${nonce}.${m}`, nonce };
}

/**
 * The proof for an answer to the signed request `nonce`.
 *
 * @example
 * ```ts
 * import { answerProof } from "./admin_signature.ts";
 * const proof = answerProof(new Uint8Array(32), "00".repeat(16), 200, '{"ok":true}\n');
 * ```
 */
export function answerProof(key: Uint8Array, nonce: string, status: number, body: string): string {
  return mac(key, `answer\n${nonce}\n${status}\n${body}`);
}

/**
 * Whether `proof` is the right one for that answer (constant time).
 *
 * @example
 * ```ts
 * import { answerProof, provesAnswer } from "./admin_signature.ts";
 * const key = new Uint8Array(32), nonce = "00".repeat(16);
 * console.log(provesAnswer(key, nonce, 200, "x", answerProof(key, nonce, 200, "x"))); // true
 * ```
 */
export function provesAnswer(
  key: Uint8Array,
  nonce: string,
  status: number,
  body: string,
  proof: string | null,
): boolean {
  return proof !== null && sameText(answerProof(key, nonce, status, body), proof);
}

/**
 * The gateway's side: checks signatures with its key and remembers the
 * nonces it accepted (each is good once, within the time window).
 *
 * @example
 * ```ts
 * import { SignatureCheck, signRequest } from "./admin_signature.ts";
 * const key = new Uint8Array(32);
 * const check = new SignatureCheck(key, 4242);
 * const { header } = signRequest(key, "GET", "/workers", 4242);
 * console.log(check.verify("GET", "/workers", header)); // the nonce: signed
 * console.log(check.verify("GET", "/workers", header)); // undefined: a replay
 * ```
 */
export class SignatureCheck {
  #key: Uint8Array;
  #pid: number;
  #seen = new Map<string, number>();

  /** Check with `key` signatures meant for the process `pid` (this gateway).
   *
   * @example
   * ```ts
   * import { SignatureCheck } from "./admin_signature.ts";
   * new SignatureCheck(new Uint8Array(32), Deno.pid);
   * ```
   */
  constructor(key: Uint8Array, pid: number) {
    this.#key = key.slice();
    this.#pid = pid;
  }

  /** The nonce of a good signature `header` for `method target`, or
   * undefined (missing, malformed, wrong, too old or too new, or seen before).
   *
   * @example
   * ```ts
   * import { SignatureCheck } from "./admin_signature.ts";
   * const check = new SignatureCheck(new Uint8Array(32), Deno.pid);
   * console.log(check.verify("POST", "/admin/promote", "v1 1.2.3")); // undefined
   * ```
   */
  verify(method: string, target: string, header: string | undefined, now = Date.now()):
    | string
    | undefined {
    const m = header?.match(SIGNATURE_RE);
    if (!m) return undefined;
    const [, ms, nonce, got] = m;
    if (Math.abs(now - Number(ms)) > WINDOW_MS) return undefined;
    const want = mac(this.#key, `${method}\n${target}\n${ms}\n${nonce}\n${this.#pid}`);
    if (!sameText(want, got)) return undefined;
    this.#forget(now);
    if (this.#seen.has(nonce) || this.#seen.size >= MAX_NONCES) return undefined;
    this.#seen.set(nonce, now + 2 * WINDOW_MS);
    return nonce;
  }

  /** The proof header's value for an answer to `nonce`.
   *
   * @example
   * ```ts
   * import { SignatureCheck } from "./admin_signature.ts";
   * new SignatureCheck(new Uint8Array(32), Deno.pid).proof("00".repeat(16), 200, "{}");
   * ```
   */
  proof(nonce: string, status: number, body: string): string {
    return answerProof(this.#key, nonce, status, body);
  }

  #forget(now: number): void {
    for (const [nonce, until] of this.#seen) {
      if (until > now) break; // in insertion order, so in expiry order
      this.#seen.delete(nonce);
    }
  }
}
