/**
 * Tests for workers/decimal.ts: parsing, exact add/multiply, formatting, rejections.
 *
 * @module
 */

import assert from "node:assert/strict";
import { add, format, multiply, OperandError, parseOperand } from "../workers/decimal.ts";

function sum(a: string, b: string): string {
  return format(add(parseOperand("a", a), parseOperand("b", b)));
}

function product(a: string, b: string): string {
  return format(multiply(parseOperand("a", a), parseOperand("b", b)));
}

function rejects(value: string | null, message: string, name = "a"): void {
  assert.throws(() => parseOperand(name, value), (e: unknown) => {
    assert.ok(e instanceof OperandError);
    assert.ok(e instanceof Error);
    assert.equal(e.operand, name);
    assert.equal(e.name, "OperandError");
    assert.equal(e.message, message);
    return true;
  });
}

Deno.test("add is exact beyond 2^53", () => {
  assert.equal(sum("9007199254740993", "1"), "9007199254740994");
  assert.equal(
    sum("123456789012345678901234567890.123456789", "0.000000001"),
    "123456789012345678901234567890.12345679",
  );
});

Deno.test("add of decimal fractions has no binary rounding", () => {
  assert.equal(sum("0.1", "0.2"), "0.3");
  assert.equal(sum("-1.5", "1"), "-0.5");
  assert.equal(sum("1", "-1.5"), "-0.5");
  assert.equal(sum("0.5", "0.5"), "1");
  assert.equal(sum("-0.1", "0.1"), "0");
  assert.equal(sum("1.25", "2.125"), "3.375");
  assert.equal(sum("-2", "-3.5"), "-5.5");
});

Deno.test("multiply adds scales and normalizes", () => {
  assert.equal(product("1.50", "2"), "3");
  assert.equal(product("0.1", "0.2"), "0.02");
  assert.equal(product("-1.5", "1.5"), "-2.25");
  assert.equal(product("-2", "-0.5"), "1");
  assert.equal(product("0", "-5"), "0");
  assert.equal(product("9007199254740993", "3"), "27021597764222979");
  const m = multiply(parseOperand("a", "1.50"), parseOperand("b", "2.0"));
  assert.deepEqual(m, { digits: 3n, scale: 0 });
});

Deno.test("format strips trailing zeros, the lone dot and the sign of zero", () => {
  assert.equal(format(parseOperand("a", "-0")), "0");
  assert.equal(format(parseOperand("a", "-0.000")), "0");
  assert.equal(format(parseOperand("a", "+0")), "0");
  assert.equal(format(parseOperand("a", "1.500")), "1.5");
  assert.equal(format(parseOperand("a", "1.")), "1");
  assert.equal(format(parseOperand("a", ".5")), "0.5");
  assert.equal(format(parseOperand("a", "-.5")), "-0.5");
  assert.equal(format(parseOperand("a", "+7")), "7");
  assert.equal(format(parseOperand("a", "007.0100")), "7.01");
  assert.equal(format(parseOperand("a", "0.001")), "0.001");
  assert.equal(format({ digits: 100n, scale: 0 }), "100");
  assert.equal(format({ digits: -12345n, scale: 7 }), "-0.0012345");
});

Deno.test("parseOperand keeps digits and scale", () => {
  assert.deepEqual(parseOperand("a", "-1.50"), { digits: -150n, scale: 2 });
  assert.deepEqual(parseOperand("a", "42"), { digits: 42n, scale: 0 });
  assert.deepEqual(parseOperand("a", "5."), { digits: 5n, scale: 0 });
  assert.deepEqual(parseOperand("a", ".25"), { digits: 25n, scale: 2 });
});

Deno.test("parseOperand accepts up to 1000 characters", () => {
  const big = "9".repeat(1000);
  assert.equal(format(parseOperand("a", big)), big);
  assert.equal(sum(big, "1"), "1" + "0".repeat(1000));
  const frac = "0." + "0".repeat(997) + "1";
  assert.equal(frac.length, 1000);
  assert.equal(format(parseOperand("a", frac)), frac);
});

Deno.test("parseOperand rejects missing operands", () => {
  rejects(null, "missing operand 'a'");
  rejects("", "missing operand 'a'");
  rejects(null, "missing operand 'b'", "b");
});

Deno.test("parseOperand rejects operands over 1000 characters", () => {
  rejects("1".repeat(1001), "operand 'a' is too long (max 1000 characters)");
});

Deno.test("parseOperand rejects non-decimal syntax", () => {
  for (
    const v of [
      "NaN",
      "Infinity",
      "-Infinity",
      "0x10",
      "1e3",
      "1E3",
      "1.5e-3",
      " 1",
      "1 ",
      "1\n",
      "\t1",
      "1.2.3",
      "--1",
      "+-1",
      "-",
      "+",
      ".",
      "-.",
      "1,5",
      "0b101",
      "1_000",
      "١٢",
      "abc",
    ]
  ) {
    rejects(v, `operand 'a' is not a decimal number: ${JSON.stringify(v)}`);
  }
});

Deno.test("rejection messages truncate the echo and stay JSON-safe", () => {
  const long = "x".repeat(100);
  rejects(long, `operand 'a' is not a decimal number: "${"x".repeat(40)}"...`);
  rejects('1"}', 'operand \'a\' is not a decimal number: "1\\"}"');
  const e = (() => {
    try {
      parseOperand("a", 'a"\\\n\u0000');
    } catch (e) {
      return e as OperandError;
    }
    throw new Error("expected an OperandError");
  })();
  const round = JSON.parse(JSON.stringify({ error: e.message }));
  assert.equal(round.error, e.message);
  assert.ok(!e.message.includes("\n"));
});
