/**
 * The body-size benchmark's "sum" function (bench/sizes.ts): `/sum?size=N`
 * answers N bytes (at most 1 MiB) of a buffer made at start, with `bytes()`.
 *
 * @module
 */

import { serveFunction } from "../../mod.ts";
import { blob } from "./functions.ts";

serveFunction({ name: "sum", routes: ["/sum"], methods: ["GET"] }, blob);
