/**
 * The "product" function: `GET /product?a=5&b=6` answers
 * `{"op":"product","a":"5","b":"6","result":"30"}`. Exact for integers of any
 * size and for decimals; a missing or malformed operand answers 400.
 *
 * Run it with `./hp product` (the gateway must be running, or start later).
 *
 * @module
 */

import { json, serveFunction } from "../mod.ts";
import { format, multiply, operands } from "./decimal.ts";

serveFunction({ name: "product", routes: ["/product"], methods: ["GET"] }, (req) => {
  const { a, b, x, y } = operands(req);
  return json({ op: "product", a, b, result: format(multiply(x, y)) });
});
