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
  CACHE_ROOT,
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
import type { FunctionSpec } from "./function_file.ts";
import { poolRoles } from "./roles.ts";
import { fixedPool, scales, scalingJson } from "./scaling.ts";
import { Scaler } from "./scaler.ts";
import type { Pool } from "./autoscaler.ts";
import { AdminClient } from "./admin_client.ts";

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
  /** The functions the roles run, with their scaling (default: a fixed
   * pool of each function's roles). */
  specs?: readonly FunctionSpec[];
}

/** A stopped worker that has not exited after this long is killed, ms. */
const RETIRE_KILL_MS = 30_000;

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
  /** Each function's file and scaling. */
  #specs = new Map<string, FunctionSpec>();
  /** The autoscaling loop, while some pool can change. */
  #scaler: Scaler | undefined;

  /** Prepare to run `roles`.
   *
   * @example
   * ```ts
   * import { Launcher } from "./launcher.ts";
   * new Launcher([{ name: "gateway", fn: "", file: "gateway.ts", args: [] }]);
   * ```
   */
  constructor(roles: readonly Role[], options: LauncherOptions = {}) {
    for (const spec of options.specs ?? specsOf(roles)) this.#specs.set(spec.name, spec);
    this.#children = roles.map((role) => this.#child(role));
    this.#width = Math.max(8, ...roles.map((r) => r.name.length));
    this.#options = options;
    this.#routes = new DeclaredRoutes(
      (role, start) => this.#run(role, start),
      (fn) => this.#specs.get(fn)?.routes,
    );
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
      repark: (child) => {
        if (!child.process || !child.parked || child.retiring) return;
        child.retiring = { reason: "a reload: parked again with the new version", removed: false };
        signal(child.process, "SIGTERM");
      },
    };
    this.#reloads = new Reloads(this.#supervision, this.#routes, options);
  }

  /** A new child for `role`: dormant when it is a worker beyond its
   * function's minimum. */
  #child(role: Role): Child {
    const min = this.#specs.get(role.fn)?.scaling.min;
    const dormant = role.fn !== "" && min !== undefined && (role.slot ?? 1) > min;
    return { role, backoffMs: BACKOFF_MIN_MS, restarts: 0, generation: 1, dormant };
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
    for (const child of this.#children) if (!child.dormant) this.#spawn(child);
    this.#park();
    this.#autoscale();
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
      const adminPort = Number(this.#options.gatewayEnv?.HOTPOTATO_ADMIN_PORT ?? -1);
      for (const role of gateways) {
        let fd = tcpListen(config.host, port, 4096, group);
        // Port 0 may give back the admin port the launcher picked and let
        // go of (the gateway binds it later): never that one.
        for (let i = 0; i < 5 && port === 0 && localPort(fd) === adminPort; i++) {
          const other = tcpListen(config.host, 0, 4096, group);
          closeFd(fd);
          fd = other;
        }
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
      workers: this.#children.filter((c) => c.role.fn && !c.dormant && !c.parked).length,
      declared: this.#routes.declared(),
      scaling: this.#scaling(),
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

  /** Start `child`'s process; `restart`: after its previous one died (a
   * scaled worker is then not started again when nothing waits for it). */
  #spawn(child: Child, restart = false): void {
    if (this.#stopping || child.process || child.reloading || child.dormant) return;
    if (restart && this.#unwanted(child)) {
      child.dormant = true; // a scaled worker whose start failed, and nothing waits now
      child.restartAt = undefined;
      this.#say(`${child.role.name}: not started again (nothing waits for ${child.role.fn} now)`);
      this.#changed();
      return;
    }
    child.restartAt = undefined;
    const started = Date.now();
    let proc: Deno.ChildProcess;
    try {
      proc = this.#run(child.role, {
        generation: child.generation,
        standby: false,
        restarted: child.restarts > 0,
        exits: child.exits,
        extraEnv: child.parked ? { HOTPOTATO_PARKED: "on" } : undefined,
      });
    } catch (e) {
      this.#say(`cannot start ${child.role.name}: ${(e as Error).message}`);
      this.#scheduleRestart(child, started);
      return;
    }
    child.process = proc;
    if (child.parked) {
      // It registers when told: "go" on its stdin (the pipe stays ours).
      const writer = proc.stdin.getWriter();
      child.wake = () => {
        writer.write(new TextEncoder().encode("go\n")).catch(() => {});
        child.wake = undefined;
      };
    }
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
      const retired = child.retiring;
      child.wake = undefined;
      if (retired) {
        child.retiring = undefined;
        child.dormant = true;
        child.parked = false;
        const ms = Date.now() - (child.stoppedAt ?? Date.now());
        this.#say(`${child.role.name} stopped in ${ms} ms (${retired.reason})`);
        if (retired.removed) this.#forget(child);
        this.#park(); // a pool below its maximum keeps its spares
        return;
      }
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
      if (this.#scaler && child.role.fn && Date.now() - started < HEALTHY_MS) {
        // A pool's start that failed (or a crash soon after): counted like a failed reload.
        const admin = this.#options.admin;
        if (admin instanceof AdminClient) admin.scaled(child.role.fn, "failed", "start failed");
      }
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
    setTimeout(() => this.#spawn(child, true), delay); // unless a reload gave it a process
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
      if (c.process && c.retiring) return { ...base, pid: c.process.pid, state: "stopping" };
      if (c.process && c.parked) return { ...base, pid: c.process.pid, state: "parked" };
      if (c.process) return { ...base, pid: c.process.pid, state: "running", since: c.startedAt };
      if (c.dormant && !this.#stopping) return { ...base, state: "idle" };
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
   * Make the running set what `specs` says (the function file read again
   * on SIGHUP): a function added is declared and its minimum started, a
   * function removed stops (and its routes are forgotten), a pool rescaled
   * gets its new bounds (workers beyond a lowered maximum stop, a raised
   * minimum starts more), a new file is what the next start (and the
   * reload that follows) runs. The gateway is told each function's scaling.
   *
   * @example
   * ```ts
   * import type { Launcher } from "./launcher.ts";
   * import { fixedPool } from "./scaling.ts";
   * declare const launcher: Launcher;
   * await launcher.reconfigure([{ name: "sum", file: "workers/sum.ts", scaling: fixedPool(2) }]);
   * ```
   */
  reconfigure(specs: readonly FunctionSpec[]): Promise<void> {
    // Never beside a reload or an upgrade: they work on the same children.
    return this.#exclusive(() => this.#reconfigure(specs));
  }

  async #reconfigure(specs: readonly FunctionSpec[]): Promise<void> {
    const admin = this.#options.admin instanceof AdminClient ? this.#options.admin : undefined;
    const tell = async (fn: string) => {
      try {
        await admin?.setScaling(fn, this.#specs.get(fn)?.scaling);
      } catch (e) {
        this.#say(`${fn}: the gateway did not take its scaling: ${(e as Error).message}`);
      }
    };
    const next = new Map(specs.map((s) => [s.name, s]));
    for (const fn of [...this.#specs.keys()]) {
      if (next.has(fn)) continue;
      this.#specs.delete(fn);
      const mine = this.#children.filter((c) => c.role.fn === fn);
      for (const c of mine) await this.#retire(c, "removed from the function list", true);
      await this.#routes.forget(admin, fn);
      await tell(fn);
      this.#say(`${fn}: removed (${mine.filter((c) => c.process).length} worker(s) stop)`);
    }
    // A function now on demand: the gateway must know every function's
    // routes before its workers are gone (declared for all, as at start).
    if (specs.some((s) => s.scaling.min === 0 && this.#specs.has(s.name))) {
      const problem = await this.#routes.add(
        admin,
        undefined,
        this.#children.map((c) => c.role),
      );
      if (problem) this.#say(`the functions' routes cannot be declared: ${problem}`);
    }
    for (const spec of specs) {
      const old = this.#specs.get(spec.name);
      const fn = spec.name;
      if (!old) {
        const problem = await this.#add(spec, admin);
        if (problem) this.#say(`${fn}: NOT added: ${problem}`);
        else await tell(fn);
        continue;
      }
      if ((old.user ?? "") !== (spec.user ?? "") && this.#options.users) {
        this.#say(`${fn}: a new user takes a restart of the launcher; it runs as before`);
      }
      this.#specs.set(fn, spec);
      const mine = this.#children.filter((c) => c.role.fn === fn && !c.retiring?.removed);
      if (old.file !== spec.file) { for (const c of mine) c.role.file = spec.file; }
      const slots = Math.max(0, ...mine.map((c) => c.role.slot ?? 1));
      if (spec.scaling.max > slots) {
        for (const r of poolRoles(spec, slots + 1, spec.scaling.max)) {
          if (r.name === fn) r.name = `${fn}.1`; // a pool of one growing: NAME stays, the new ones NAME.N
          this.#children.push(this.#child(r));
        }
      }
      for (const c of mine) {
        const slot = c.role.slot ?? 1;
        if (slot > spec.scaling.max) {
          await this.#retire(c, `max lowered to ${spec.scaling.max}`, true);
        } else if (c.dormant && slot <= spec.scaling.min) {
          c.dormant = false;
          this.#spawn(c);
        }
      }
      if (JSON.stringify(old.scaling) !== JSON.stringify(spec.scaling) || old.file !== spec.file) {
        await tell(fn);
        this.#say(`${fn}: ${describeSpec(spec)}`);
      }
    }
    this.#changed();
    this.#park();
    this.#autoscale();
  }

  /** Add function `spec` to the running set: its user (separate users),
   * its routes declared, its pool's children, its minimum started. */
  async #add(spec: FunctionSpec, admin: AdminClient | undefined): Promise<string> {
    const users = this.#options.users;
    try {
      const account = await users?.ensure(spec.name, spec.user);
      users?.makeCaches(CACHE_ROOT);
      // The running gateway knew the functions' users when it started.
      if (account) await admin?.declareUser(spec.name, account.uid);
    } catch (e) {
      return (e as Error).message;
    }
    this.#specs.set(spec.name, spec);
    const roles = poolRoles(spec, 1, spec.scaling.max);
    const all = [...this.#children.map((c) => c.role), ...roles];
    const problem = await this.#routes.add(admin, roles[0], all);
    if (problem) {
      this.#specs.delete(spec.name);
      return problem;
    }
    for (const r of roles) {
      const c = this.#child(r);
      this.#children.push(c);
      this.#spawn(c);
    }
    this.#say(`${spec.name}: added (${describeSpec(spec)})`);
    return "";
  }

  /** Each function's scaling, as the gateways get it (`--scaling`). */
  #scaling(): string {
    return scalingJson(new Map([...this.#specs].map(([fn, spec]) => [fn, spec.scaling])));
  }

  /** Whether a pool can change (min 0, or max above min): then the
   * autoscaler runs. */
  #scales(): boolean {
    return [...this.#specs.values()].some((s) => scales(s.scaling));
  }

  /** Run the autoscaler while some pool can change (it needs the admin port). */
  #autoscale(): void {
    const admin = this.#options.admin;
    if (!this.#scales() || this.#scaler) return;
    if (!(admin instanceof AdminClient)) {
      this.#say(`autoscaling is off: ${admin?.problem ?? "no admin port"}`);
      return;
    }
    this.#scaler = new Scaler(admin, {
      pools: () => this.pools(),
      start: (fn, count, reason) => this.#scaleUp(fn, count, reason),
      stop: (fn, pid, reason) => this.#scaleDown(fn, pid, reason),
      stopping: () => this.#stopping,
      say: (message) => this.#say(message),
    });
    this.#scaler.start();
  }

  /**
   * Each function's pool as the autoscaler sees it: its settings, its
   * running processes, those waiting to be restarted, and whether a reload
   * of it is under way.
   *
   * @example
   * ```ts
   * import type { Launcher } from "./launcher.ts";
   * declare const launcher: Launcher;
   * for (const p of launcher.pools()) console.log(p.fn, p.running.length, p.scaling.max);
   * ```
   */
  pools(): Pool[] {
    return [...this.#specs.values()].map((spec) => {
      const mine = this.#children.filter((c) => c.role.fn === spec.name);
      return {
        fn: spec.name,
        scaling: spec.scaling,
        running: mine.filter((c) => c.process && !c.retiring && !c.parked).map((c) =>
          c.process!.pid
        ),
        restarting: mine.filter((c) => !c.process && !c.dormant && !c.reloading && !c.parked)
          .length,
        reloading: mine.some((c) => c.reloading),
      };
    });
  }

  /** Start up to `count` more workers of `fn`: its parked spares first
   * (told to register), then dormant ones (a process start); how many. */
  #scaleUp(fn: string, count: number, reason: string): number {
    const mine = this.#children.filter((c) => c.role.fn === fn);
    const spares = mine.filter((c) => c.parked && c.wake && !c.retiring).slice(0, count);
    for (const c of spares) {
      c.parked = false;
      c.startedAt = Date.now();
      c.wake!();
    }
    const dormant = mine.filter((c) => c.dormant && !c.process && !c.retiring);
    const started = dormant.slice(0, count - spares.length).filter((c) => {
      c.dormant = false;
      c.backoffMs = BACKOFF_MIN_MS;
      this.#spawn(c);
      // Not started (cannot be spawned): its restart is scheduled, it counts as restarting.
      return c.process !== undefined || c.restartAt !== undefined;
    });
    const picked = [...spares, ...started];
    if (picked.length > 0) {
      const running = this.pools().find((p) => p.fn === fn)?.running.length ?? 0;
      this.#say(
        `${fn}: ${picked.length} more worker(s) (${reason}): ` +
          `${
            spares.map((c) => `${c.role.name} (a parked spare)`).concat(
              started.map((c) => c.role.name),
            ).join(" ")
          }; ${running} running`,
      );
      this.#changed();
      this.#park();
    }
    return picked.length;
  }

  /** Keep each pool's spares parked (`spare`; while it has slots left):
   * processes started ahead with HOTPOTATO_PARKED=on, their module loaded,
   * registering only when woken. */
  #park(): void {
    if (this.#stopping) return;
    for (const spec of this.#specs.values()) {
      if (spec.scaling.spare === 0) continue;
      const mine = this.#children.filter((c) => c.role.fn === spec.name);
      let parked = mine.filter((c) => c.parked && !c.retiring).length;
      for (const c of mine) {
        if (parked >= spec.scaling.spare) break;
        if (!c.dormant || c.process || c.reloading || c.retiring) continue;
        c.dormant = false;
        c.parked = true;
        parked++;
        this.#spawn(c);
      }
    }
  }

  /** Stop `fn`'s worker `pid` (it hands its connections over); false when
   * it is not one of ours. */
  async #scaleDown(fn: string, pid: number, reason: string): Promise<boolean> {
    const child = this.#children.find((c) => c.role.fn === fn && c.process?.pid === pid);
    if (!child || child.retiring) return false;
    await this.#retire(child, reason, false);
    return true;
  }

  /** Stop `child`'s process: told through the gateway (HANDOVER: it hands
   * every connection over and exits), else SIGTERM; killed when it has not
   * exited after RETIRE_KILL_MS. `removed`: its role goes (a function
   * removed, or its maximum lowered). */
  async #retire(child: Child, reason: string, removed: boolean): Promise<void> {
    if (child.retiring) {
      child.retiring.removed ||= removed; // stopping already: its role may go too
      return;
    }
    const proc = child.process;
    if (!proc) {
      child.dormant = true;
      child.restartAt = undefined;
      if (removed) this.#forget(child);
      return;
    }
    child.retiring = { reason, removed };
    child.stoppedAt = Date.now();
    this.#changed();
    this.#say(`${child.role.name} (pid ${proc.pid}) stops: ${reason}`);
    const admin = this.#options.admin;
    try {
      if (!(admin instanceof AdminClient)) throw new Error("no admin port");
      await admin.retire(child.role.fn, proc.pid);
    } catch {
      signal(proc, "SIGTERM"); // not registered (yet), or the gateway is away: it drains
    }
    const killer = setTimeout(
      () => signal(proc, "SIGKILL"),
      Math.max(RETIRE_KILL_MS, stopGraceMs() + 5000),
    );
    proc.status.finally(() => clearTimeout(killer));
  }

  /** Drop `child` from supervision (its role was removed). */
  #forget(child: Child): void {
    const i = this.#children.indexOf(child);
    if (i >= 0) this.#children.splice(i, 1);
  }

  /** A scaled worker (beyond its function's minimum) whose start failed
   * while nothing waits for its function any more: not worth a restart. */
  #unwanted(child: Child): boolean {
    const spec = this.#specs.get(child.role.fn);
    if (!spec || child.parked || child.restarts === 0) return false;
    if ((child.role.slot ?? 1) <= spec.scaling.min) return false;
    return (this.#scaler?.waiting(child.role.fn) ?? 1) === 0;
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
    this.#scaler?.stop();
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

/** A function's file and pool in words, for the launcher's lines. */
function describeSpec(spec: FunctionSpec): string {
  const s = spec.scaling;
  const pool = s.min === s.max
    ? `${s.min} worker(s)`
    : `${s.min} to ${s.max} workers, idle ${s.idleMs / 1000} s, target ${s.target} core`;
  return `${spec.file}, ${pool}`;
}

/** Each function of `roles` as a fixed pool of its roles (what a launcher
 * given no specs runs). */
function specsOf(roles: readonly Role[]): FunctionSpec[] {
  const specs = new Map<string, FunctionSpec>();
  for (const r of roles) {
    if (!r.fn) continue;
    const n = (specs.get(r.fn)?.scaling.max ?? 0) + 1;
    specs.set(r.fn, { name: r.fn, file: r.file, scaling: fixedPool(n) });
  }
  return [...specs.values()];
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
async function usersOrExit(
  roles: Role[],
  specs: readonly FunctionSpec[],
): Promise<SeparateUsers | undefined> {
  const fileUsers = new Map(specs.filter((s) => s.user).map((s) => [s.name, s.user!]));
  try {
    return await separateUsers(roles, fileUsers);
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

/** SIGINT and SIGTERM stop all, SIGHUP reloads (reading the function file
 * again first: `reread`), SIGUSR1 upgrades the gateway. */
function onSignals(launcher: Launcher, reread: () => FunctionSpec[]): void {
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
  Deno.addSignalListener("SIGHUP", async () => {
    if (stopping) return;
    let specs: FunctionSpec[];
    try {
      specs = reread();
    } catch (e) {
      say(`reload refused: ${(e as Error).message}; the running functions are kept`);
      return;
    }
    try {
      await launcher.reconfigure(specs);
      await launcher.reload();
    } catch (e) {
      console.error(`launcher: reload: ${e}`);
    }
  });
  Deno.addSignalListener("SIGUSR1", () => {
    if (!stopping) launcher.upgradeGateway().catch((e) => console.error(`launcher: upgrade: ${e}`));
  });
}

/** The program: read the command line, protect the process, make the
 * secret, set up users and the admin port, then run the roles until a
 * signal stops them. */
async function main(): Promise<void> {
  const { roles, specs, reread, handover, dev } = commandLine();
  // Before the secret exists: no process of this user may read our memory.
  try {
    protectProcess();
  } catch (e) {
    console.error(`launcher: ${(e as Error).message}`);
    Deno.exit(1);
  }
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const separate = await usersOrExit(roles, specs);
  if (!separate && specs.some((s) => s.user)) {
    say("the function file's users are not used: every role runs as this launcher's user");
  }
  let launcher: Launcher | undefined = undefined;
  const admin = adminFor(secret, () => launcher?.gatewayPid());
  shareGatewayPort(roles);
  const scaled = specs.filter((s) => scales(s.scaling));
  if (scaled.length > 0 && !(admin.admin instanceof AdminClient)) {
    console.error(
      `launcher: ${scaled.map((s) => s.name).join(", ")} scale, which needs the gateway's ` +
        `admin port: ${admin.admin?.problem ?? "no admin port"}`,
    );
    Deno.exit(2);
  }
  launcher = new Launcher(roles, {
    ...admin,
    gatewaysEnv: separate?.gatewaysEnv,
    users: separate?.users,
    childEnv: separate?.childEnv,
    secret,
    handover,
    statusFile: new StatusFile(),
    specs,
  });
  const users = separate?.users;
  // The gateway must know the routes of a function started on demand
  // before its first worker: declared for every function then (and always
  // with separate users, which bound what each may register).
  if (users || specs.some((s) => s.scaling.min === 0)) {
    const problems = await launcher.declareRoutes();
    if (problems.length) {
      console.error(
        `launcher: the functions' routes cannot be declared:\n  ${problems.join("\n  ")}`,
      );
      Deno.exit(2);
    }
    if (users) say(usersSummary(users, roles));
  }
  onSignals(launcher, reread);
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
