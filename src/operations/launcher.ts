/**
 * The launcher (`./hp start`, `make start`, `deno task start`): runs the gateway and the workers as
 * child processes with their minimal permissions, restarts a child that dies
 * (with exponential backoff), and stops them all on SIGINT or SIGTERM (each
 * drains first). Children write to the launcher's own stdout and stderr
 * (inherited), each line prefixed with the child's name: the launcher passes
 * the prefix in HOTPOTATO_LOG_PREFIX and src/operations/log.ts writes it, so no line
 * passes through the launcher. Each child's stdin is a pipe from the
 * launcher; children exit when it closes, so a killed launcher leaves no
 * orphans.
 *
 * This module holds the supervision ({@linkcode Launcher}) and the program;
 * the rest is beside it: each child's environment (child_env.ts), the
 * declared routes (declared_routes.ts), reloads (reload.ts), gateway
 * upgrades (upgrade.ts), separate users (separate_users.ts), the admin port
 * (admin_port.ts) and the command line (launcher_cli.ts).
 *
 *   ./hp start [--workers sum=2,product=2] [--function hello=examples/hello.ts]
 *   make start ARGS="--workers sum=2,product=2 --function hello=examples/hello.ts"
 *
 * @module
 */

import { projectRoot } from "../../ffi/paths.ts";
import { protectProcess } from "./privileges.ts";
import { TrustError } from "../handoff/trust.ts";
import { watchModule } from "./dev_watch.ts";
import { type Role, SERVER_FLAGS } from "./roles.ts";
import { gatewayConfig } from "./config.ts";
import { givenListener, LISTEN_FD_VARIABLE } from "../connection/given_listener.ts";
import { closeFd, localPort, setInheritable, tcpListen } from "../../ffi/shim.ts";
import { UsersError } from "./users.ts";
import {
  childEnv,
  type ChildEnvOptions,
  type ChildStart,
  readEnv,
  secretFor,
} from "./child_env.ts";
import { DeclaredRoutes } from "./declared_routes.ts";
import { type ReloadOptions, type ReloadResult, Reloads } from "./reload.ts";
import { upgradeGateway } from "./upgrade.ts";
import { reap, signal, stopGraceMs } from "./processes.ts";
import type { Child, Supervision } from "./supervision.ts";
import { type SeparateUsers, separateUsers, usersSummary } from "./separate_users.ts";
import { adminFor } from "./admin_port.ts";
import { LAUNCHER_USAGE, type LauncherArgs, launcherArgs } from "./launcher_cli.ts";
import {
  type LauncherStatus,
  type RoleStatus,
  STATUS_EVERY_MS,
  StatusFile,
} from "./launcher_status.ts";

const BACKOFF_MIN_MS = 200;
const BACKOFF_MAX_MS = 10_000;
/** A child that ran this long is healthy again: its backoff resets. */
const HEALTHY_MS = 10_000;

/** The Launcher's options: what goes into its children's environment and
 * how it reloads.
 *
 * @example
 * ```ts
 * import { Launcher, type LauncherOptions } from "./launcher.ts";
 * import { rolesFor } from "./roles.ts";
 * const options: LauncherOptions = { admin: { problem: "no admin port" }, handover: true };
 * new Launcher(rolesFor([], []), options);
 * ```
 */
export interface LauncherOptions extends ChildEnvOptions, ReloadOptions {
  /** Where `./hp status` reads this launcher's status (rewritten at each
   * change); none when absent. */
  statusFile?: StatusFile;
}

/**
 * Runs and supervises a set of roles, and reloads the functions without
 * dropping a connection ({@linkcode Launcher.reload}).
 *
 * @example
 * ```ts
 * import { Launcher } from "./launcher.ts";
 * import { rolesFor } from "./roles.ts";
 * const launcher = new Launcher(rolesFor(["sum=2"], [])); // gateway, sum.1, sum.2, product
 * launcher.start();
 * // later: await launcher.stop();
 * ```
 */
export class Launcher {
  #children: Child[];
  #stopping = false;
  #width: number;
  #options: LauncherOptions;
  /** Processes outside #children: a reload's new ones before the switch,
   * old ones after it, an upgrade's successor (stopped with the rest). */
  #others = new Set<Deno.ChildProcess>();
  /** Reloads and gateway upgrades run one at a time. */
  #lock: Promise<void> = Promise.resolve();
  /** The routes each function's file declared (separate users), given to
   * the gateways as --function-routes. */
  #routes: DeclaredRoutes;
  #supervision: Supervision;
  #reloads: Reloads;
  /** The public listening socket of each gateway role, bound (or taken
   * from systemd) here and inherited by that role's every process: it
   * outlives them, so while a gateway is restarted new clients wait in its
   * queue instead of being refused. One socket for one gateway; with
   * several, one each in a SO_REUSEPORT group (the kernel spreads clients
   * over them; a dead gateway's share waits for its restart). Empty when
   * there is no gateway, or binding failed (each gateway then binds its own,
   * as before). */
  #publicFds = new Map<Role, number>();
  #statusQueued = false;
  #statusTimer: ReturnType<typeof setInterval> | undefined;
  #statusFailed = false;

  /** Prepare to run `roles`.
   *
   * @example
   * ```ts
   * import { Launcher } from "./launcher.ts";
   * new Launcher([{ name: "gateway", fn: "", file: "gateway.ts", args: [] }]);
   * ```
   */
  constructor(roles: readonly Role[], options: LauncherOptions = {}) {
    this.#children = roles.map((role) => ({
      role,
      backoffMs: BACKOFF_MIN_MS,
      restarts: 0,
      generation: 1,
    }));
    this.#width = Math.max(8, ...roles.map((r) => r.name.length));
    this.#options = options;
    this.#routes = new DeclaredRoutes((role, start) => this.#run(role, start));
    this.#supervision = {
      children: this.#children,
      others: this.#others,
      stopping: () => this.#stopping,
      say: (message) => this.#say(message),
      primaryGateway: () => this.#primaryGateway(),
      run: (role, start) => this.#run(role, start),
      adopt: (child, proc, generation) => this.#adopt(child, proc, generation),
      scheduleRestart: (child, started) => this.#scheduleRestart(child, started),
      exclusive: (f) => this.#exclusive(f),
    };
    this.#reloads = new Reloads(this.#supervision, this.#routes, options);
  }

  #say(message: string): void {
    console.log(`${"launcher".padEnd(this.#width)} | ${message}`);
  }

  #primaryGateway(): Child | undefined {
    return this.#children.find((c) => !c.role.fn && c.role.env?.HOTPOTATO_SATELLITE !== "on");
  }

  /** The pid of the primary gateway's process (what the admin port's
   * signatures are bound to), undefined while none runs.
   *
   * @example
   * ```ts
   * import type { Launcher } from "./launcher.ts";
   * declare const launcher: Launcher;
   * console.log(launcher.gatewayPid());
   * ```
   */
  gatewayPid(): number | undefined {
    return this.#primaryGateway()?.process?.pid;
  }

  /** Ask each function's file what it serves (as its own user) and check
   * the set (src/operations/declarations.ts); from then on the gateways let
   * each function register those routes only. Returns the problems (none:
   * declared).
   *
   * @example
   * ```ts
   * import type { Launcher } from "./launcher.ts";
   * declare const launcher: Launcher;
   * const problems = await launcher.declareRoutes();
   * if (problems.length === 0) launcher.start();
   * ```
   */
  declareRoutes(): Promise<string[]> {
    return this.#routes.declare(this.#children.map((c) => c.role));
  }

  /** Start every child.
   *
   * @example
   * ```ts
   * import type { Launcher } from "./launcher.ts";
   * declare const launcher: Launcher;
   * launcher.start();
   * ```
   */
  start(): void {
    this.#bindPublic();
    for (const child of this.#children) this.#spawn(child);
    if (this.#options.statusFile) {
      // Fresh while we run: `./hp status` takes an old file for a killed launcher's.
      this.#statusTimer = setInterval(() => this.#changed(), STATUS_EVERY_MS);
    }
  }

  /** The public sockets the gateways inherit: systemd's (socket activation,
   * shared by all), or bound here on the primary gateway's --host and
   * --port. */
  #bindPublic(): void {
    const gateways = this.#children.filter((c) => !c.role.fn).map((c) => c.role);
    if (gateways.length === 0) return;
    try {
      const given = givenListener();
      if (given) {
        // Passed without close-on-exec: no function may inherit it.
        setInheritable(given.fd, false);
        for (const role of gateways) this.#publicFds.set(role, given.fd);
        this.#say(`public port: the ${given.from}'s socket (fd ${given.fd})`);
        return;
      }
      const { config } = gatewayConfig(gateways[0].args);
      const group = gateways.length > 1;
      let port = config.port;
      for (const role of gateways) {
        const fd = tcpListen(config.host, port, 4096, group);
        port = localPort(fd); // port 0: the others join the first one's
        this.#publicFds.set(role, fd);
      }
      this.#say(
        `public port ${config.host}:${port}: kept here, inherited by the gateway` +
          (group ? `s (${gateways.length} sockets, SO_REUSEPORT)` : ""),
      );
    } catch (e) {
      for (const fd of new Set(this.#publicFds.values())) closeFd(fd);
      this.#publicFds.clear();
      this.#say(
        `cannot hold the public port (${(e as Error).message}); each gateway binds its own`,
      );
    }
  }

  /** Start `role`'s process (throws when it cannot be started). */
  #run(role: Role, start: ChildStart): Deno.ChildProcess {
    const users = this.#options.users;
    const env = childEnv(role, start, {
      width: this.#width,
      workers: this.#children.filter((c) => c.role.fn).length,
      declared: this.#routes.declared(),
      options: this.#options,
    });
    // The project's config by path: a function file outside the project
    // still gets its import map (mod.ts's "@logtape/logtape").
    const argv = [
      Deno.execPath(),
      "run",
      ...SERVER_FLAGS,
      "--config",
      `${projectRoot}/deno.json`,
      role.file,
      ...role.args,
    ];
    const [cmd, ...args] = users ? users.command(role.fn, argv) : argv;
    // A gateway inherits the public socket: made inheritable for this one
    // spawn only (the JavaScript thread is the only one that spawns), so no
    // function ever gets it.
    const share = this.#publicFds.get(role);
    if (share !== undefined) {
      env[LISTEN_FD_VARIABLE] = String(share);
      setInheritable(share, true);
    }
    let proc: Deno.ChildProcess;
    try {
      proc = this.#command(cmd, args, env, start);
    } finally {
      if (share !== undefined) setInheritable(share, false);
    }
    const secret = secretFor(role, start, this.#options);
    if (secret) {
      const hex = Array.from(secret, (b) => b.toString(16).padStart(2, "0")).join("");
      const writer = proc.stdin.getWriter();
      // The pipe stays open (and locked) until the launcher exits.
      writer.write(new TextEncoder().encode(hex + "\n")).catch(() => {});
    }
    return proc;
  }

  #command(cmd: string, args: string[], env: Record<string, string>, start: ChildStart) {
    return new Deno.Command(cmd, {
      args,
      cwd: projectRoot,
      env,
      clearEnv: true,
      // Its EOF tells the child the launcher is gone; a gateway reads the
      // secret from its first line (never the environment: /proc/PID/environ).
      stdin: start.describe ? "null" : "piped",
      stdout: start.describe ? "piped" : "inherit",
      stderr: "inherit",
    }).spawn();
  }

  #spawn(child: Child): void {
    if (this.#stopping || child.process || child.reloading) return;
    child.restartAt = undefined;
    const started = Date.now();
    let proc: Deno.ChildProcess;
    try {
      proc = this.#run(child.role, {
        generation: child.generation,
        standby: false,
        restarted: child.restarts > 0,
        exits: child.exits,
      });
    } catch (e) {
      this.#say(`cannot start ${child.role.name}: ${(e as Error).message}`);
      this.#scheduleRestart(child, started);
      return;
    }
    child.process = proc;
    this.#watch(child, proc, started);
  }

  /** Restart `child` when `proc`, its current process, exits (a process a
   * reload replaced is not its current one any more). */
  #watch(child: Child, proc: Deno.ChildProcess, started: number): void {
    child.startedAt = started;
    this.#changed();
    proc.status.then((status) => {
      if (child.process !== proc) return;
      child.process = undefined;
      this.#changed();
      if (this.#stopping) return;
      const next = child.successor;
      child.successor = undefined;
      if (next && status.success) {
        // Upgraded (upgrade.ts): the new gateway took everything over, and this one left.
        child.process = next;
        this.#others.delete(next);
        this.#watch(child, next, Date.now());
        return;
      }
      if (next) {
        // It crashed during the upgrade: start afresh (the new one may hold nothing usable).
        signal(next, "SIGTERM");
      }
      const how = status.signal ? `signal ${status.signal}` : `code ${status.code}`;
      this.#say(`${child.role.name} exited (${how})`);
      child.exits ??= new Map();
      child.exits.set(how, (child.exits.get(how) ?? 0) + 1);
      // During a reload, its end decides: the new process, or a restart.
      if (!child.reloading) this.#scheduleRestart(child, started);
    });
  }

  /** A reload switched `child` to `proc`, running `generation`. */
  #adopt(child: Child, proc: Deno.ChildProcess, generation: number): void {
    child.process = proc;
    child.generation = generation;
    child.backoffMs = BACKOFF_MIN_MS;
    this.#others.delete(proc);
    this.#watch(child, proc, Date.now());
  }

  #scheduleRestart(child: Child, started: number): void {
    // After a healthy run, at once (clients wait in the public socket's
    // queue meanwhile); in a crash loop, after a growing backoff.
    const healthy = Date.now() - started >= HEALTHY_MS;
    if (healthy) child.backoffMs = BACKOFF_MIN_MS;
    const delay = healthy ? 0 : child.backoffMs;
    if (!healthy) child.backoffMs = Math.min(child.backoffMs * 2, BACKOFF_MAX_MS);
    child.restarts++;
    child.restartAt = Date.now() + delay;
    this.#changed();
    this.#say(`restarting ${child.role.name} in ${delay} ms (restart ${child.restarts})`);
    setTimeout(() => this.#spawn(child), delay); // unless a reload gave it a process
  }

  /**
   * Each role's process and state: running, or waiting for a restart (in
   * backoff after a crash loop, or at once after a healthy run), with its
   * restarts and exits by cause (what `./hp status` prints).
   *
   * @example
   * ```ts
   * import type { Launcher } from "./launcher.ts";
   * declare const launcher: Launcher;
   * for (const r of launcher.status().roles) console.log(r.role, r.state, r.restarts);
   * ```
   */
  status(): LauncherStatus {
    const at = Date.now();
    const roles = this.#children.map((c): RoleStatus => {
      const exits = Object.fromEntries(c.exits ?? []);
      const base = { role: c.role.name, restarts: c.restarts, exits };
      if (c.process) return { ...base, pid: c.process.pid, state: "running", since: c.startedAt };
      if (c.reloading) return { ...base, state: "reloading" };
      if (c.restartAt === undefined || this.#stopping) return { ...base, state: "stopped" };
      const restartInMs = Math.max(0, c.restartAt - at);
      return { ...base, state: restartInMs > 0 ? "backoff" : "restarting", restartInMs };
    });
    return { pid: Deno.pid, at, roles };
  }

  /** A child's state changed: rewrite the status file (once per turn). */
  #changed(): void {
    const file = this.#options.statusFile;
    if (!file || this.#statusQueued) return;
    this.#statusQueued = true;
    queueMicrotask(() => {
      this.#statusQueued = false;
      try {
        if (this.#stopping) file.remove();
        else file.write(this.status());
      } catch (e) {
        if (!this.#statusFailed) this.#say(`cannot write ${file.path}: ${(e as Error).message}`);
        this.#statusFailed = true;
      }
    });
  }

  /**
   * Reload every function (SIGHUP), or `only` that one (`./hp dev`): for
   * each, start the new version's workers on standby, wait until they have
   * all registered, then switch the gateway to them; the old workers hand
   * every connection over at its next request boundary and exit. A version
   * that fails to start or to register within 30 s is not switched to: its
   * processes are stopped and the old version keeps serving. Functions
   * reload side by side; a reload asked for during one runs once after it
   * (src/operations/reload.ts).
   *
   * @example
   * ```ts
   * import type { Launcher } from "./launcher.ts";
   * declare const launcher: Launcher;
   * for (const r of await launcher.reload()) console.log(r.fn, r.ok ? "ok" : r.error);
   * ```
   */
  reload(only?: string): Promise<ReloadResult[]> {
    return this.#reloads.reload(only);
  }

  /**
   * Upgrade the gateway (SIGUSR1): start a new gateway process with
   * `--takeover on`; it takes the listening sockets, the workers and what
   * the running one holds, without a connection attempt refused, and the old
   * one exits. Resolves true once the old one is gone; false (the old one
   * serving on) when the new one exits first (src/operations/upgrade.ts).
   *
   * @example
   * ```ts
   * import type { Launcher } from "./launcher.ts";
   * declare const launcher: Launcher;
   * console.log(await launcher.upgradeGateway() ? "upgraded" : "not upgraded");
   * ```
   */
  upgradeGateway(): Promise<boolean> {
    return this.#exclusive(() => upgradeGateway(this.#supervision));
  }

  /** Run `f` when no reload or upgrade runs (they never overlap). */
  async #exclusive<T>(f: () => Promise<T>): Promise<T> {
    const before = this.#lock;
    let release!: () => void;
    this.#lock = new Promise<void>((ok) => release = ok);
    await before;
    try {
      return await f();
    } finally {
      release();
    }
  }

  /** Stop every child: SIGTERM, then SIGKILL after a grace period.
   *
   * @example
   * ```ts
   * import type { Launcher } from "./launcher.ts";
   * declare const launcher: Launcher;
   * await launcher.stop();
   * ```
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#statusTimer);
    this.#options.statusFile?.remove();
    const running = [
      ...this.#children.map((c) => c.process).filter((p) => p !== undefined),
      ...this.#others,
    ];
    for (const p of running) signal(p, "SIGTERM");
    await reap(running, stopGraceMs());
  }
}

/** One line of the launcher program's own (before the Launcher's width is known). */
function say(message: string): void {
  console.log(`${"launcher".padEnd(8)} | ${message}`);
}

/** The command line's roles and modes; on --help the usage, on a bad
 * option its first line: the program exits. */
function commandLine(): Exclude<LauncherArgs, { help: true }> {
  let args: LauncherArgs;
  try {
    args = launcherArgs(Deno.args);
  } catch (e) {
    console.error(`launcher: ${(e as Error).message.split("\n")[0]}`);
    Deno.exit(2);
  }
  if (args.help) {
    console.log(LAUNCHER_USAGE);
    Deno.exit(0);
  }
  return args;
}

/** Separate users when the launcher runs as root (exits with what to
 * change when they cannot be set up). */
async function usersOrExit(roles: Role[]): Promise<SeparateUsers | undefined> {
  try {
    return await separateUsers(roles);
  } catch (e) {
    const expected = e instanceof UsersError || e instanceof TrustError ||
      e instanceof Deno.errors.NotFound;
    if (!expected) throw e;
    console.error(`launcher: ${(e as Error).message}`);
    Deno.exit(2);
  }
}

/** Gateways sharing a port must share one number: with HOTPOTATO_PORT=0,
 * pick it now. */
function shareGatewayPort(roles: Role[]): void {
  if (roles.filter((r) => !r.fn).length > 1 && (readEnv("HOTPOTATO_PORT") ?? "8443") === "0") {
    const l = Deno.listen({ hostname: readEnv("HOTPOTATO_HOST") || "127.0.0.1", port: 0 });
    const port = String((l.addr as Deno.NetAddr).port);
    l.close();
    for (const r of roles) if (!r.fn) r.env = { ...r.env, HOTPOTATO_PORT: port };
  }
}

/** SIGINT and SIGTERM stop all, SIGHUP reloads, SIGUSR1 upgrades the gateway. */
function onSignals(launcher: Launcher): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    say(`${signal}: stopping all`);
    await launcher.stop();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
  Deno.addSignalListener("SIGHUP", () => {
    if (!stopping) launcher.reload().catch((e) => console.error(`launcher: reload: ${e}`));
  });
  Deno.addSignalListener("SIGUSR1", () => {
    if (!stopping) launcher.upgradeGateway().catch((e) => console.error(`launcher: upgrade: ${e}`));
  });
}

/** The program: read the command line, protect the process, make the
 * secret, set up users and the admin port, then run the roles until a
 * signal stops them. */
async function main(): Promise<void> {
  const { roles, handover, dev } = commandLine();
  // Before the secret exists: no process of this user may read our memory.
  try {
    protectProcess();
  } catch (e) {
    console.error(`launcher: ${(e as Error).message}`);
    Deno.exit(1);
  }
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const separate = await usersOrExit(roles);
  let launcher: Launcher | undefined = undefined;
  const admin = adminFor(secret, () => launcher?.gatewayPid());
  shareGatewayPort(roles);
  launcher = new Launcher(roles, {
    ...admin,
    gatewaysEnv: separate?.gatewaysEnv,
    users: separate?.users,
    childEnv: separate?.childEnv,
    secret,
    handover,
    statusFile: new StatusFile(),
  });
  const users = separate?.users;
  if (users) {
    const problems = await launcher.declareRoutes();
    if (problems.length) {
      console.error(
        `launcher: the functions' routes cannot be declared:\n  ${problems.join("\n  ")}`,
      );
      Deno.exit(2);
    }
    say(usersSummary(users, roles));
  }
  onSignals(launcher);
  say(
    `pid ${Deno.pid}: kill -HUP ${Deno.pid} (./hp reload) reloads every function, kill -USR1 ${Deno.pid} (./hp reload --gateway) upgrades the gateway`,
  );
  launcher.start();
  if (dev) {
    const { file, fn } = dev;
    const running = launcher;
    watchModule(file, (changed) => {
      say(`${changed} changed: reloading ${fn}`);
      running.reload(fn);
    }, (message) => say(message));
  }
}

if (import.meta.main) await main();
