/**
 * The gateway process: `./hp gateway [--port 8443] [--help]` (= `deno task gateway ...`).
 *
 * @module
 */

import { ConfigError, gatewayConfig, usage } from "./src/operations/config.ts";
import { EventLoop } from "./src/connection/event_loop.ts";
import { Gateway } from "./src/gateway/gateway_server.ts";
import { onShutdown, printStatsOnSignal } from "./src/operations/lifecycle.ts";
import { flushLogs, logger, printLine, setupLogging } from "./src/operations/log.ts";

if (import.meta.main) {
  let parsed;
  try {
    parsed = gatewayConfig(Deno.args);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    printLine(`gateway: ${e.message}`, "stderr");
    Deno.exit(2);
  }
  if (parsed.help) {
    console.log(usage("gateway"));
    Deno.exit(0);
  }
  setupLogging({ format: parsed.config.logFormat, level: parsed.config.logLevel });
  const gateway = new Gateway(parsed.config);
  try {
    if (parsed.config.takeover) await gateway.takeOver();
    else gateway.start();
  } catch (e) {
    printLine(`gateway: ${(e as Error).message}`, "stderr");
    Deno.exit(1);
  }
  printStatsOnSignal(() => ({ ...gateway.stats }));
  const exit = async () => {
    gateway.stop();
    await EventLoop.instance().close(); // stop the epoll thread before exit
    await flushLogs(); // every line out before exit (gives up after 2 s if nobody reads)
    Deno.exit(0);
  };
  onShutdown(async (reason) => {
    logger("gateway").info("draining ({reason})", { reason });
    await gateway.drain(parsed.config.drainTimeoutMs);
    await exit();
  });
  // A successor took everything over (./hp gateway --takeover on).
  gateway.retired.then(exit);
}
