/**
 * The gateway process: `./hp gateway [--port 8443] [--help]` (= `deno task gateway ...`).
 *
 * @module
 */

import { ConfigError, gatewayConfig, usage } from "./src/operations/config.ts";
import { EventLoop } from "./src/connection/event_loop.ts";
import { Gateway } from "./src/gateway/gateway_server.ts";
import { SatelliteGateway } from "./src/gateway/satellite.ts";
import { TicketKeys } from "./src/gateway/ticket_keys.ts";
import { onShutdown, printStatsOnSignal } from "./src/operations/lifecycle.ts";
import { flushLogs, logger, printLine, setupLogging } from "./src/operations/log.ts";
import { protectProcess, readLauncherSecret } from "./src/operations/privileges.ts";
import { configureTrust } from "./src/handoff/trust.ts";

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
  const c = parsed.config;
  try {
    // Before any key is read or made: no process of this user may read ours.
    protectProcess();
    const secret = await readLauncherSecret();
    configureTrust({
      socketGroup: c.socketGroup,
      gatewayUser: c.gatewayUser,
      functionUsers: c.functionUsers,
      functionRoutes: c.functionRoutes,
      secret,
    });
    secret?.fill(0);
  } catch (e) {
    printLine(`gateway: ${(e as Error).message}`, "stderr");
    Deno.exit(2);
  }
  const tickets = new TicketKeys(
    c.satellite
      ? { kind: "follower" }
      : c.ticketKeyFile
      ? { kind: "file", path: c.ticketKeyFile, rotationMs: c.ticketKeyRotationMs }
      : { kind: "memory", rotationMs: c.ticketKeyRotationMs },
  );
  const gateway = c.satellite ? new SatelliteGateway(c, tickets) : new Gateway(c, tickets);
  try {
    await tickets.start();
    if (gateway instanceof SatelliteGateway) gateway.start();
    else if (c.takeover) await gateway.takeOver();
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
  if (gateway instanceof Gateway) gateway.retired.then(exit);
}
