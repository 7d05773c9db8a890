/**
 * Hot Potato's public API: write a function as a fetch-style handler (web
 * `Request` in, `Response` out, the shape of a `Deno.serve` handler) and
 * serve it behind the gateway. The gateway hands each client connection to
 * the process that serves the requested route; the TLS handshake happens
 * once, in the gateway.
 *
 * @example
 * ```ts
 * // hello.ts, beside mod.ts — run with: ./hp worker hello.ts
 * import { serveFunction } from "./mod.ts";
 *
 * serveFunction({ name: "hello", routes: ["/hello"] }, (req) => {
 *   const name = new URL(req.url).searchParams.get("name") ?? "world";
 *   return Response.json({ hello: name });
 * });
 * ```
 *
 * @module
 */

import { ConfigError, usage, workerConfig } from "./src/operations/config.ts";
import {
  type FunctionOptions,
  FunctionServer,
  type Handler,
  HttpError,
  type RequestInfo,
} from "./src/worker/function_server.ts";
import { EventLoop } from "./src/connection/event_loop.ts";
import { onLauncherLine, onShutdown, printStatsOnSignal } from "./src/operations/lifecycle.ts";
import { flushLogs, logger, printLine, setupLogging } from "./src/operations/log.ts";
import { protectProcess } from "./src/operations/privileges.ts";
import { configureTrust } from "./src/handoff/trust.ts";

export type { FunctionOptions, Handler, RequestInfo };
export { FunctionServer, HttpError };
export { bytes, json } from "./src/http/response_body.ts";
export {
  upgradeWebSocket,
  type UpgradeWebSocketOptions,
  type WebSocketUpgrade,
} from "./src/connection/websocket.ts";

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** Options of {@linkcode serveFunction}. */
export interface ServeFunctionOptions extends FunctionOptions {
  /** Command-line arguments to read settings from (default: `Deno.args`). */
  args?: string[];
}

/**
 * Serve `handler` as the function `name` on `routes`: read the settings from
 * the command line and `HOTPOTATO_*` environment variables, register with
 * the gateway (waiting for it if it is not up yet), and answer requests
 * until SIGINT/SIGTERM.
 *
 * @example
 * ```ts
 * import { serveFunction } from "./mod.ts";
 * serveFunction({ name: "echo", routes: ["/echo"] }, async (req) => {
 *   return new Response(await req.text());
 * });
 * ```
 */
export function serveFunction(options: ServeFunctionOptions, handler: Handler): FunctionServer {
  let parsed;
  try {
    parsed = workerConfig(options.args ?? Deno.args);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    printLine(`${options.name}: ${e.message}`, "stderr");
    Deno.exit(2);
  }
  if (parsed.help) {
    console.log(usage("worker"));
    Deno.exit(0);
  }
  if (env("HOTPOTATO_DESCRIBE") === "1") {
    // The launcher asks what this function claims before it runs it: its
    // routes are then the only ones the gateway lets it register.
    console.log(`hotpotato-describe ${
      JSON.stringify({
        name: options.name,
        routes: options.routes,
        nestedRoutes: options.nestedRoutes === true,
      })
    }`);
    Deno.exit(0);
  }
  setupLogging({ format: parsed.config.logFormat, level: parsed.config.logLevel });
  try {
    // Another function of the same user may not read what this one holds.
    protectProcess();
    configureTrust({
      socketGroup: parsed.config.socketGroup,
      gatewayUser: parsed.config.gatewayUser,
    });
  } catch (e) {
    printLine(`${options.name}: ${(e as Error).message}`, "stderr");
    Deno.exit(2);
  }
  const server = new FunctionServer(
    {
      name: options.name,
      routes: options.routes,
      methods: options.methods,
      nestedRoutes: options.nestedRoutes,
      restarted: env("HOTPOTATO_RESTARTED") === "1",
    },
    handler,
    parsed.config,
  );
  if (env("HOTPOTATO_PARKED") === "on") {
    // A spare the launcher started ahead (its module loaded, its file run):
    // it registers when the launcher says "go", a cold start away.
    server.park();
    let going = false;
    onLauncherLine((line) => {
      if (line !== "go" || going) return;
      going = true;
      server.start();
    });
  } else server.start();
  printStatsOnSignal(() => ({ held: server.held, registered: server.registered }));
  onShutdown(async (reason) => {
    logger("worker").info("{name} draining ({reason})", { name: options.name, reason });
    await server.drain(parsed.config.drainTimeoutMs);
    await EventLoop.instance().close(); // stop the epoll thread before exit
    await flushLogs(); // every line out before exit (gives up after 2 s if nobody reads)
    Deno.exit(0);
  });
  return server;
}
