/**
 * `./hp status` (`deno task status`): every running launcher of this user
 * and checkout, each role's process and state, restarts and exits: a role
 * in a crash loop shows its backoff and when it is started next. `--json`
 * prints the launchers' status files as JSON instead.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { formatStatus, readStatuses } from "./launcher_status.ts";

if (import.meta.main) {
  const { values } = parseArgs({ options: { json: { type: "boolean" } }, strict: true });
  const statuses = readStatuses();
  if (values.json) console.log(JSON.stringify(statuses, null, 2));
  else if (statuses.length === 0) {
    console.error("status: no launcher of yours is running (start one with make start)");
    Deno.exit(1);
  } else console.log(statuses.map((s) => formatStatus(s)).join("\n\n"));
}
