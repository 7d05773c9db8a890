/**
 * Exact decimal arithmetic for the `sum` and `product` functions.
 *
 * This module owns parsing of decimal operands from query strings, exact addition and
 * multiplication on `bigint` significands, and canonical formatting of the result
 * (no exponent, no trailing fractional zeros, no negative zero).
 *
 * @module
 */

import { HttpError } from "../mod.ts";

/** A decimal number: `value = digits / 10 ** scale`, with `scale >= 0`.
 *
 * @example
 * ```ts
 * import { type Decimal, format } from "./decimal.ts";
 * const d: Decimal = { digits: -15n, scale: 1 };
 * format(d); // "-1.5"
 * ```
 */
export interface Decimal {
  /** Significand (signed). */
  digits: bigint;
  /** Number of fractional decimal digits (non-negative integer). */
  scale: number;
}

/** Longest accepted operand, in characters. */
const MAX_OPERAND_LENGTH = 1000;
/** Longest prefix of a rejected operand echoed in the error message. */
const MAX_ECHO_LENGTH = 40;
/** Optional sign, then digits with an optional dot: "1", "1.5", "1.", ".5". */
const DECIMAL_RE = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$/;

/** An operand is missing, too long or not a decimal number.
 *
 * @example
 * ```ts
 * import { OperandError, parseOperand } from "./decimal.ts";
 * try {
 *   parseOperand("a", "1e3");
 * } catch (e) {
 *   if (e instanceof OperandError) console.log(e.operand, e.message);
 *   // a operand 'a' is not a decimal number: "1e3"
 * }
 * ```
 */
export class OperandError extends HttpError {
  /** Name of the offending operand, e.g. `"a"`. */
  readonly operand: string;

  /** Create an error about operand `name`; a handler that throws it answers 400.
   *
   * @example
   * ```ts
   * import { OperandError } from "./decimal.ts";
   * const e = new OperandError("a", "missing operand 'a'");
   * ```
   */
  constructor(name: string, message: string) {
    super(400, message);
    this.name = "OperandError";
    this.operand = name;
  }
}

/**
 * Parse operand `name` from its query-string value (`null` when absent).
 *
 * Accepts an optional sign, digits and an optional fractional part (`"5."` and `".5"`
 * included); rejects exponents, hex, `NaN`, `Infinity`, whitespace and anything else with an
 * {@linkcode OperandError} whose message is safe to embed in JSON.
 *
 * @example
 * ```ts
 * import { parseOperand } from "./decimal.ts";
 * parseOperand("a", "-1.50"); // { digits: -150n, scale: 2 }
 * // parseOperand("b", null) throws OperandError("b", "missing operand 'b'")
 * ```
 */
export function parseOperand(name: string, value: string | null): Decimal {
  if (value === null || value === "") throw new OperandError(name, `missing operand '${name}'`);
  if (value.length > MAX_OPERAND_LENGTH) {
    throw new OperandError(
      name,
      `operand '${name}' is too long (max ${MAX_OPERAND_LENGTH} characters)`,
    );
  }
  if (!DECIMAL_RE.test(value)) {
    const echo = value.length > MAX_ECHO_LENGTH
      ? JSON.stringify(value.slice(0, MAX_ECHO_LENGTH)) + "..."
      : JSON.stringify(value);
    throw new OperandError(name, `operand '${name}' is not a decimal number: ${echo}`);
  }
  const negative = value.charCodeAt(0) === 45; // "-"
  const unsigned = value[0] === "+" || negative ? value.slice(1) : value;
  const dot = unsigned.indexOf(".");
  let digits: bigint;
  let scale = 0;
  if (dot === -1) {
    digits = BigInt(unsigned);
  } else {
    const frac = unsigned.slice(dot + 1);
    scale = frac.length;
    digits = BigInt((unsigned.slice(0, dot) || "0") + frac);
  }
  return { digits: negative ? -digits : digits, scale };
}

/** Remove trailing fractional zeros (the canonical form of `d`). */
function normalize(d: Decimal): Decimal {
  let { digits, scale } = d;
  if (digits === 0n) return { digits: 0n, scale: 0 };
  if (scale < 0) return { digits: digits * 10n ** BigInt(-scale), scale: 0 };
  while (scale > 0 && digits % 10n === 0n) {
    digits /= 10n;
    scale--;
  }
  return { digits, scale };
}

/** Two operands read from a request's query string, as written and as numbers. */
export interface Operands {
  /** `a` as the client wrote it. */
  a: string;
  /** `b` as the client wrote it. */
  b: string;
  /** `a` as a number. */
  x: Decimal;
  /** `b` as a number. */
  y: Decimal;
}

/**
 * Read the operands `a` and `b` from a request's query string. Throws
 * {@linkcode OperandError} (answered 400) when one is missing, repeated or not
 * a decimal number.
 *
 * @example
 * ```ts
 * import { operands } from "./decimal.ts";
 * const { a, x } = operands(new Request("https://h/sum?a=1.5&b=2"));
 * // a === "1.5", x = { digits: 15n, scale: 1 }
 * ```
 */
export function operands(req: Request): Operands {
  const query = new URL(req.url).searchParams;
  const read = (name: string) => {
    const all = query.getAll(name);
    if (all.length > 1) throw new OperandError(name, `operand '${name}' is given more than once`);
    return all[0] ?? null;
  };
  const a = read("a"), b = read("b");
  return { a: a ?? "", b: b ?? "", x: parseOperand("a", a), y: parseOperand("b", b) };
}

/**
 * Exact sum `a + b`, normalized.
 *
 * @example
 * ```ts
 * import { add, format, parseOperand } from "./decimal.ts";
 * format(add(parseOperand("a", "0.1"), parseOperand("b", "0.2"))); // "0.3"
 * ```
 */
export function add(a: Decimal, b: Decimal): Decimal {
  if (a.scale === b.scale) return normalize({ digits: a.digits + b.digits, scale: a.scale });
  if (a.scale < b.scale) {
    return normalize({
      digits: a.digits * 10n ** BigInt(b.scale - a.scale) + b.digits,
      scale: b.scale,
    });
  }
  return normalize({
    digits: a.digits + b.digits * 10n ** BigInt(a.scale - b.scale),
    scale: a.scale,
  });
}

/**
 * Exact product `a * b` (scale is the sum of the scales), normalized.
 *
 * @example
 * ```ts
 * import { format, multiply, parseOperand } from "./decimal.ts";
 * format(multiply(parseOperand("a", "1.50"), parseOperand("b", "2"))); // "3"
 * ```
 */
export function multiply(a: Decimal, b: Decimal): Decimal {
  return normalize({ digits: a.digits * b.digits, scale: a.scale + b.scale });
}

/**
 * Format `d` in plain decimal notation: no exponent, no trailing fractional zeros, no dot
 * without fraction digits, and zero is always `"0"` (never `"-0"`).
 *
 * @example
 * ```ts
 * import { format } from "./decimal.ts";
 * format({ digits: 1500n, scale: 3 }); // "1.5"
 * format({ digits: -5n, scale: 1 }); // "-0.5"
 * ```
 */
export function format(d: Decimal): string {
  const { digits, scale } = normalize(d);
  const negative = digits < 0n;
  let s = (negative ? -digits : digits).toString();
  if (scale > 0) {
    if (s.length <= scale) s = "0".repeat(scale - s.length + 1) + s;
    s = s.slice(0, s.length - scale) + "." + s.slice(s.length - scale);
  }
  return negative ? "-" + s : s;
}
