/**
 * Settings for every role: each one a command-line flag and an environment
 * variable (`--idle-timeout` / `HOTPOTATO_IDLE_TIMEOUT`), the flag winning.
 * Values are checked at start; a bad one stops the process with a one-line
 * error that names the setting.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseCidr } from "./cidr.ts";
import { projectRoot } from "../../ffi/paths.ts";
import type { LogFormat } from "./log.ts";
import { LOG_LEVELS } from "./log.ts";
import { DEFAULT_BODY_TIMEOUT_MS } from "../http/http.ts";
import type { LogLevel } from "@logtape/logtape";
import { parseScalingJson, type Scaling } from "./scaling.ts";

/** A setting that could not be used. */
export class ConfigError extends Error {
  /** Create an error naming the setting.
   *
   * @example
   * ```ts
   * import { ConfigError } from "./config.ts";
   * throw new ConfigError("--port must be an integer from 0 to 65535 (got \"x\")");
   * ```
   */
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

type Kind = "string" | "integer" | "seconds" | "choice" | "port-or-off";

interface Spec {
  kind: Kind;
  default: string;
  help: string;
  min?: number;
  max?: number;
  choices?: readonly string[];
}

const common = {
  "control": {
    kind: "string",
    default: "",
    help: "control socket path (default: $XDG_RUNTIME_DIR/hotpotato/gateway.sock, " +
      "else .local/run/gateway.sock)",
  },
  "socket-group": {
    kind: "string",
    default: "",
    help: "the group through which the roles, each running as a user of its own, reach each " +
      "other's sockets (name or gid; empty: every role runs as one user, sockets 0600)",
  },
  "gateway-user": {
    kind: "string",
    default: "",
    help: "the user the gateways run as (name or uid; empty: this process's own): the " +
      "control socket must belong to it",
  },
  "log-format": { kind: "choice", default: "text", choices: ["text", "json"], help: "log format" },
  "log-level": {
    kind: "choice",
    default: "info",
    choices: LOG_LEVELS,
    help: "lowest level logged",
  },
  "idle-timeout": {
    kind: "seconds",
    default: "30",
    min: 0.01,
    max: 86400,
    help: "close a keep-alive connection idle this long",
  },
  "header-timeout": {
    kind: "seconds",
    default: "10",
    min: 0.01,
    max: 3600,
    help: "a request head must arrive within this time of its first byte",
  },
  "body-timeout": {
    kind: "seconds",
    default: String(DEFAULT_BODY_TIMEOUT_MS / 1000),
    min: 0.01,
    max: 3600,
    help: "a request body must arrive within this time of the end of its head",
  },
  "write-timeout": {
    kind: "seconds",
    default: "30",
    min: 0.01,
    max: 3600,
    help: "give up on a client that does not read its response for this long",
  },
  "drain-timeout": {
    kind: "seconds",
    default: "10",
    min: 0,
    max: 3600,
    help: "on SIGTERM, finish requests in flight for at most this long, then exit",
  },
  "max-body": {
    kind: "integer",
    default: "1048576",
    min: 0,
    max: 1073741824,
    help: "largest request body accepted, in bytes",
  },
} as const satisfies Record<string, Spec>;

const gatewaySpecs = {
  ...common,
  "function-routes": {
    kind: "string",
    default: "",
    help: 'the only routes each function may register, JSON {"NAME": ["/route", ...]} ' +
      "(the launcher declares what each function's file says when it runs the roles as users " +
      "of their own)",
  },
  "expect-workers": {
    kind: "integer",
    default: "0",
    min: 0,
    max: 100000,
    help: "workers that register with this gateway right after it starts (the launcher says " +
      "how many it runs): until they have, for at most 5 s, a route no worker registered yet " +
      "gets 503 with Retry-After, not 404",
  },
  "function-users": {
    kind: "string",
    default: "",
    help: "the user of each function: NAME=USER,... (user names or uids) or *=PREFIX*SUFFIX " +
      "(function NAME runs as user PREFIXNAMESUFFIX); only that user may register NAME",
  },
  "host": { kind: "string", default: "127.0.0.1", help: "address to listen on" },
  "port": { kind: "integer", default: "8443", min: 0, max: 65535, help: "HTTPS port (0: any)" },
  "cert": {
    kind: "string",
    default: `${projectRoot}/.local/certs/cert.pem`,
    help: "PEM certificate chain",
  },
  "key": {
    kind: "string",
    default: `${projectRoot}/.local/certs/key.pem`,
    help: "PEM private key",
  },
  "handshake-timeout": {
    kind: "seconds",
    default: "10",
    min: 0.01,
    max: 3600,
    help: "a TLS handshake must finish within this time",
  },
  "admin-host": {
    kind: "string",
    default: "127.0.0.1",
    help: "address of the plain-HTTP admin port (/metrics, /healthz); keep it on loopback",
  },
  "admin-port": {
    kind: "port-or-off",
    default: "8081",
    help: "admin port (0: any free port; off: no admin port)",
  },
  "vacant-grace": {
    kind: "seconds",
    default: "30",
    min: 0,
    max: 86400,
    help: "after a function's last worker leaves, answer 503 this long, then 404",
  },
  "worker-timeout": {
    kind: "seconds",
    default: "5",
    min: 1,
    max: 3600,
    help: "a worker silent this long (it reports every second) gets no new connections",
  },
  "tls-resumption": {
    kind: "choice",
    default: "on",
    choices: ["on", "off"],
    help: "offer TLS session resumption (tickets and session cache)",
  },
  "satellite": {
    kind: "choice",
    default: "off",
    choices: ["on", "off"],
    help: "on: a satellite gateway: share --port with the primary gateway on --control " +
      "(SO_REUSEPORT) and hand connections straight to its workers (the launcher's --gateways)",
  },
  "reuse-port": {
    kind: "choice",
    default: "off",
    choices: ["on", "off"],
    help: "on: listen with SO_REUSEPORT, so satellite gateways can share the port",
  },
  "ticket-key-rotation": {
    kind: "seconds",
    default: "43200",
    min: 1,
    max: 604800,
    help: "make a new TLS session-ticket key this often; the previous one is accepted one " +
      "period more",
  },
  "ticket-key-file": {
    kind: "string",
    default: "",
    help: "a secret (32+ bytes) the ticket keys are derived from, the same on every host, so " +
      "tickets resume across hosts (default: random keys in memory); readable by the gateway's " +
      "user only: mode 0600 or 0400, 0640/0440 only when no function's user is in its group",
  },
  "proxy-protocol": {
    kind: "choice",
    default: "off",
    choices: ["on", "off"],
    help: "on: every connection must come from --proxy-trusted and start with a PROXY v2 " +
      "header, whose client address is used",
  },
  "proxy-trusted": {
    kind: "string",
    default: "127.0.0.1/32,::1/128",
    help: "address ranges allowed to send the PROXY header (comma-separated)",
  },
  "takeover": {
    kind: "choice",
    default: "off",
    choices: ["on", "off"],
    help: "on: take over from the gateway running on --control (its listening sockets, its " +
      "workers, what it holds) without refusing a connection; it then exits",
  },
  "scaling": {
    kind: "string",
    default: "",
    help: 'each function\'s scaling, JSON {"NAME": {"min": 0, "max": 4, "idle": 60, ' +
      '"target": 0.6}} (the launcher sets it): a request for a function with min 0 and no ' +
      "worker is held while the launcher starts one",
  },
  "cold-start-timeout": {
    kind: "seconds",
    default: "10",
    min: 0.1,
    max: 300,
    help: "a request held for a function starting on demand gets 503 with Retry-After after " +
      "this long",
  },
  "cold-hold-max": {
    kind: "integer",
    default: "100",
    min: 1,
    max: 100000,
    help: "connections held per function while it starts on demand; more get 503 with " +
      "Retry-After at once",
  },
  "handoff": {
    kind: "choice",
    default: "direct",
    choices: ["direct", "gateway"],
    help: "route changes: direct (worker to worker, one hop) or gateway (worker to gateway " +
      "to worker)",
  },
} as const satisfies Record<string, Spec>;

const workerSpecs = {
  ...common,
  "handler-timeout": {
    kind: "seconds",
    default: "30",
    min: 0.01,
    max: 3600,
    help: "answer 504 when the function takes longer than this",
  },
  "replace": {
    kind: "choice",
    default: "off",
    choices: ["on", "off"],
    help: "on: a new version; the function's running workers hand their connections to it and exit",
  },
  "generation": {
    kind: "string",
    default: "",
    help: "this version's label in logs and /metrics (0-32 letters, digits, '.', '_', '-'; " +
      "the launcher numbers its reloads)",
  },
  "standby": {
    kind: "choice",
    default: "off",
    choices: ["on", "off"],
    help: "on: register but take no connection until the gateway promotes this generation " +
      "(the launcher's reload)",
  },
} as const satisfies Record<string, Spec>;

/** Settings shared by the gateway and the workers. */
export interface CommonConfig {
  /** Control socket path. */
  control: string;
  /** Log output format. */
  logFormat: LogFormat;
  /** Lowest level logged. */
  logLevel: LogLevel;
  /** Keep-alive idle timeout, ms. */
  idleTimeoutMs: number;
  /** Request-head timeout from its first byte, ms. */
  headerTimeoutMs: number;
  /** Whole-body timeout from the end of its head, ms. */
  bodyTimeoutMs: number;
  /** Timeout for a client to take a response, ms. */
  writeTimeoutMs: number;
  /** Largest request body, bytes. */
  maxBody: number;
  /** Longest graceful drain, ms. */
  drainTimeoutMs: number;
  /** The roles' shared socket group ("" = one user for every role). */
  socketGroup: string;
  /** The gateways' user ("" = this process's own). */
  gatewayUser: string;
}

/** The gateway's settings. */
export interface GatewayConfig extends CommonConfig {
  /** Listen address. */
  host: string;
  /** Listen port. */
  port: number;
  /** Certificate chain file. */
  cert: string;
  /** Private key file. */
  key: string;
  /** Handshake timeout, ms. */
  handshakeTimeoutMs: number;
  /** Offer TLS session resumption. */
  resumption: boolean;
  /** How long a function without workers answers 503 before 404, ms. */
  vacantGraceMs: number;
  /** Admin listen address. */
  adminHost: string;
  /** Admin port; -1 when off. */
  adminPort: number;
  /** A worker silent this long gets no new connections, ms. */
  workerTimeoutMs: number;
  /** How a connection changes worker: straight between workers, or through
   * the gateway. */
  handoff: "direct" | "gateway";
  /** The bearer token of the admin port's POSTs (HOTPOTATO_ADMIN_TOKEN,
   * from the environment only, never a flag: flags show in `ps`); "" = no
   * admin writes. Never logged. */
  adminToken: string;
  /** The launcher's restarts of this gateway role so far, by the cause of
   * the exit before each ("signal SIGKILL": 2), for /metrics
   * (HOTPOTATO_GATEWAY_EXITS, from the launcher only; empty otherwise). */
  gatewayExits: Map<string, number>;
  /** Take over from the running gateway (`--takeover on`). */
  takeover: boolean;
  /** A satellite gateway (`--satellite on`). */
  satellite: boolean;
  /** Listen with SO_REUSEPORT. */
  reusePort: boolean;
  /** Session-ticket key rotation period, ms. */
  ticketKeyRotationMs: number;
  /** Secret file the ticket keys are derived from ("" = random keys in memory). */
  ticketKeyFile: string;
  /** Require a PROXY v2 header from a trusted peer. */
  proxyProtocol: boolean;
  /** Address ranges trusted to send it. */
  proxyTrusted: string[];
  /** Which user runs each function (`--function-users`; "" = not declared). */
  functionUsers: string;
  /** The routes each function may register (`--function-routes`, JSON; "" = any). */
  functionRoutes: string;
  /** Workers expected to register right after start (`--expect-workers`). */
  expectWorkers: number;
  /** Each function's scaling (`--scaling`; empty: none starts on demand). */
  scaling: Map<string, Scaling>;
  /** How long a request waits for a function starting on demand, ms. */
  coldStartTimeoutMs: number;
  /** Connections held per function while it starts on demand. */
  coldHoldMax: number;
}

/** A worker's settings. */
export interface WorkerConfig extends CommonConfig {
  /** Time a handler may take before the client gets 504, ms. */
  handlerTimeoutMs: number;
  /** A new version: the function's running workers hand over to it (`--replace on`). */
  replace: boolean;
  /** This version's label. */
  generation: string;
  /** Register on standby until promoted (`--standby on`). */
  standby: boolean;
}

const envName = (flag: string) => `HOTPOTATO_${flag.toUpperCase().replaceAll("-", "_")}`;

function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // not granted: treat as unset
  }
}

function convert(flag: string, spec: Spec, raw: string, from: string): string | number {
  const bad = (why: string) =>
    new ConfigError(`${from} ${why} (got ${JSON.stringify(raw.slice(0, 60))})`);
  switch (spec.kind) {
    case "string":
      if (raw.length > 4096) throw bad("is too long");
      return raw;
    case "choice":
      if (!spec.choices!.includes(raw)) throw bad(`must be one of ${spec.choices!.join(", ")}`);
      return raw;
    case "integer": {
      if (!/^\d{1,12}$/.test(raw)) throw bad(`must be an integer from ${spec.min} to ${spec.max}`);
      const n = Number(raw);
      if (n < spec.min! || n > spec.max!) {
        throw bad(`must be an integer from ${spec.min} to ${spec.max}`);
      }
      return n;
    }
    case "port-or-off": {
      if (raw === "off") return -1;
      if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) {
        throw bad("must be a port from 0 to 65535, or off");
      }
      return Number(raw);
    }
    case "seconds": {
      if (!/^\d{1,9}(\.\d{1,6})?$/.test(raw)) {
        throw bad(`must be a number of seconds from ${spec.min} to ${spec.max}`);
      }
      const n = Number(raw);
      if (n < spec.min! || n > spec.max!) {
        throw bad(`must be a number of seconds from ${spec.min} to ${spec.max}`);
      }
      return Math.round(n * 1000);
    }
  }
  throw new ConfigError(`${flag}: unknown kind`);
}

function load<S extends Record<string, Spec>>(
  specs: S,
  args: string[],
): { values: Record<string, string | number>; positionals: string[]; help: boolean } {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const flag of Object.keys(specs)) options[flag] = { type: "string" };
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new ConfigError((e as Error).message.split("\n")[0]);
  }
  const values: Record<string, string | number> = {};
  for (const [flag, spec] of Object.entries(specs)) {
    const fromFlag = parsed.values[flag] as string | undefined;
    const fromEnv = readEnv(envName(flag));
    const raw = fromFlag ?? fromEnv ?? spec.default;
    const from = fromFlag !== undefined
      ? `--${flag}`
      : fromEnv !== undefined
      ? envName(flag)
      : `default of --${flag}`;
    values[flag] = convert(flag, spec, raw, from);
  }
  return { values, positionals: parsed.positionals, help: parsed.values.help === true };
}

/** The directory that holds the control socket by default. */
export function defaultRunDir(): string {
  const xdg = readEnv("XDG_RUNTIME_DIR");
  return xdg ? `${xdg}/hotpotato` : `${projectRoot}/.local/run`;
}

function commonOf(v: Record<string, string | number>): CommonConfig {
  return {
    control: (v["control"] as string) || `${defaultRunDir()}/gateway.sock`,
    logFormat: v["log-format"] as LogFormat,
    logLevel: v["log-level"] as LogLevel,
    idleTimeoutMs: v["idle-timeout"] as number,
    headerTimeoutMs: v["header-timeout"] as number,
    bodyTimeoutMs: v["body-timeout"] as number,
    writeTimeoutMs: v["write-timeout"] as number,
    maxBody: v["max-body"] as number,
    drainTimeoutMs: v["drain-timeout"] as number,
    socketGroup: v["socket-group"] as string,
    gatewayUser: v["gateway-user"] as string,
  };
}

/**
 * Every setting's environment variable, for both roles
 * (`HOTPOTATO_IDLE_TIMEOUT`, ...): what the launcher passes on to its
 * children, and nothing else of its environment beyond a few basics.
 *
 * @example
 * ```ts
 * import { settingVariables } from "./config.ts";
 * console.log(settingVariables().includes("HOTPOTATO_PORT")); // true
 * ```
 */
export function settingVariables(): string[] {
  const flags = new Set([...Object.keys(gatewaySpecs), ...Object.keys(workerSpecs)]);
  return [...flags].map(envName);
}

/** Usage text listing every setting with its variable and default.
 *
 * @example
 * ```ts
 * import { usage } from "./config.ts";
 * console.log(usage("gateway"));
 * ```
 */
export function usage(role: "gateway" | "worker"): string {
  const specs: Record<string, Spec> = role === "gateway" ? gatewaySpecs : workerSpecs;
  const lines = [
    role === "gateway"
      ? "Usage: ./hp gateway [options]"
      : "Usage: ./hp worker <function.ts> [options]   (or ./hp sum, ./hp product)",
    "",
    "Every option can also be set with the environment variable shown.",
    "",
  ];
  for (const [flag, spec] of Object.entries(specs)) {
    const unit = spec.kind === "seconds" ? " (seconds)" : "";
    lines.push(`  --${flag.padEnd(18)} ${envName(flag).padEnd(28)} ${spec.help}${unit}`);
    if (spec.default) lines.push(`  ${"".padEnd(48)} default: ${spec.default}`);
  }
  return lines.join("\n");
}

/** Parse the gateway's flags and environment.
 *
 * @example
 * ```ts
 * import { gatewayConfig } from "./config.ts";
 * const { config } = gatewayConfig(["--port", "9443"]);
 * ```
 */
export function gatewayConfig(args: string[]): { config: GatewayConfig; help: boolean } {
  const { values: v, help, positionals } = load(gatewaySpecs, args);
  if (positionals.length) throw new ConfigError(`unexpected argument ${positionals[0]}`);
  return {
    help,
    config: {
      ...commonOf(v),
      host: v["host"] as string,
      port: v["port"] as number,
      cert: v["cert"] as string,
      key: v["key"] as string,
      handshakeTimeoutMs: v["handshake-timeout"] as number,
      resumption: v["tls-resumption"] === "on",
      vacantGraceMs: v["vacant-grace"] as number,
      adminHost: v["admin-host"] as string,
      adminPort: v["admin-port"] as number,
      workerTimeoutMs: v["worker-timeout"] as number,
      handoff: v["handoff"] as "direct" | "gateway",
      adminToken: readEnv("HOTPOTATO_ADMIN_TOKEN") ?? "",
      gatewayExits: exitCounts(readEnv("HOTPOTATO_GATEWAY_EXITS")),
      takeover: v["takeover"] === "on",
      satellite: v["satellite"] === "on",
      reusePort: v["reuse-port"] === "on" || v["satellite"] === "on",
      ticketKeyRotationMs: v["ticket-key-rotation"] as number,
      ticketKeyFile: v["ticket-key-file"] as string,
      proxyProtocol: v["proxy-protocol"] === "on",
      proxyTrusted: trustedRanges(v["proxy-trusted"] as string),
      functionUsers: v["function-users"] as string,
      functionRoutes: v["function-routes"] as string,
      expectWorkers: v["expect-workers"] as number,
      scaling: scalingOf(v["scaling"] as string),
      coldStartTimeoutMs: v["cold-start-timeout"] as number,
      coldHoldMax: v["cold-hold-max"] as number,
    },
  };
}

/** HOTPOTATO_GATEWAY_EXITS (JSON: cause to count, as the launcher writes
 * it): at most 32 causes of up to 40 characters with positive integer
 * counts; anything else is left out. */
function exitCounts(text: string | undefined): Map<string, number> {
  const counts = new Map<string, number>();
  if (!text || text.length > 4096) return counts;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return counts;
  }
  if (typeof parsed !== "object" || parsed === null) return counts;
  for (const [cause, n] of Object.entries(parsed).slice(0, 32)) {
    if (typeof n === "number" && Number.isInteger(n) && n > 0 && cause.length <= 40) {
      counts.set(cause, n);
    }
  }
  return counts;
}

function scalingOf(text: string): Map<string, Scaling> {
  try {
    return parseScalingJson(text);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
}

function trustedRanges(list: string): string[] {
  const ranges = list.split(",").map((r) => r.trim()).filter(Boolean);
  try {
    for (const r of ranges) parseCidr(r);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  return ranges;
}

function generationLabel(label: string): string {
  if (!/^[A-Za-z0-9._-]{0,32}$/.test(label)) {
    throw new ConfigError(
      `--generation: ${
        JSON.stringify(label.slice(0, 40))
      } is not 0-32 letters, digits, '.', '_' or '-'`,
    );
  }
  return label;
}

/** Parse a worker's flags and environment.
 *
 * @example
 * ```ts
 * import { workerConfig } from "./config.ts";
 * const { config } = workerConfig(["--idle-timeout", "5"]);
 * ```
 */
export function workerConfig(
  args: string[],
): { config: WorkerConfig; help: boolean; positionals: string[] } {
  const { values: v, help, positionals } = load(workerSpecs, args);
  return {
    help,
    positionals,
    config: {
      ...commonOf(v),
      handlerTimeoutMs: v["handler-timeout"] as number,
      replace: v["replace"] === "on",
      generation: generationLabel(v["generation"] as string),
      standby: v["standby"] === "on",
    },
  };
}
