/**
 * The launcher's side of its gateway's admin port, which its reloads go
 * through: the address the gateway will listen on (HOTPOTATO_ADMIN_HOST,
 * HOTPOTATO_ADMIN_PORT: 0 picks a free one, off disables reloads), a client
 * for it that signs with a key derived from the launcher's secret, and the
 * gateway's environment when the launcher picked the port.
 *
 * @module
 */

import { deriveKey } from "../handoff/trust.ts";
import { AdminClient } from "./admin_client.ts";
import { readEnv } from "./child_env.ts";

/** The admin port the gateway will listen on, a client for it (signing
 * with a key derived from `secret`, for the gateway process `gatewayPid()`
 * names), and the environment that tells the gateway the port when the
 * launcher picked it; or, as `admin`, why there is no client (reloads then
 * fail).
 *
 * @example
 * ```ts
 * import { adminFor } from "./admin_port.ts";
 * const secret = crypto.getRandomValues(new Uint8Array(32));
 * const { admin, gatewayEnv } = adminFor(secret, () => undefined);
 * console.log("problem" in admin ? admin.problem : "reloads go through the admin port", gatewayEnv);
 * ```
 */
export function adminFor(
  secret: Uint8Array,
  gatewayPid: () => number | undefined,
): { admin: AdminClient | { problem: string }; gatewayEnv?: Record<string, string> } {
  const listen = readEnv("HOTPOTATO_ADMIN_HOST") || "127.0.0.1";
  // A wildcard address is reached on loopback (the token never leaves the host).
  const host = listen === "0.0.0.0" ? "127.0.0.1" : listen === "::" ? "::1" : listen;
  const setting = readEnv("HOTPOTATO_ADMIN_PORT") || "8081";
  if (setting === "off") {
    return { admin: { problem: "the gateway's admin port is off (HOTPOTATO_ADMIN_PORT=off)" } };
  }
  let port = Number(setting);
  const gatewayEnv: Record<string, string> = {};
  if (setting === "0") {
    try {
      // Pick a free port now: the launcher must know it.
      const l = Deno.listen({ hostname: host, port: 0 });
      port = (l.addr as Deno.NetAddr).port;
      l.close();
      gatewayEnv.HOTPOTATO_ADMIN_PORT = String(port);
    } catch (e) {
      return { admin: { problem: `cannot pick an admin port: ${(e as Error).message}` } };
    }
  }
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    return { admin: { problem: `HOTPOTATO_ADMIN_PORT=${setting} is not a port` } };
  }
  const key = deriveKey(secret, "admin");
  const admin = new AdminClient(host, port, key, gatewayPid);
  key.fill(0);
  return { admin, gatewayEnv };
}
