/**
 * The body-size benchmark's "product" function (bench/sizes.ts): `/product?size=N`
 * answers N bytes (at most 1 MiB) of a buffer made at start, with `bytes()`.
 *
 * @module
 */

import { serveFunction } from "../../mod.ts";
import { blob } from "./functions.ts";

serveFunction({ name: "product", routes: ["/product"], methods: ["GET"] }, blob);
