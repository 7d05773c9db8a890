/**
 * The "sum" function: `GET /sum?a=10&b=20` answers
 * `{"op":"sum","a":"10","b":"20","result":"30"}`. Exact for integers of any
 * size and for decimals; a missing or malformed operand answers 400.
 *
 * Run it with `./hp sum` (the gateway must be running, or start later).
 *
 * @module
 */

import { json, serveFunction } from "../mod.ts";
import { add, format, operands } from "./decimal.ts";

serveFunction({ name: "sum", routes: ["/sum"], methods: ["GET"] }, (req) => {
  const { a, b, x, y } = operands(req);
  return json({ op: "sum", a, b, result: format(add(x, y)) });
});
