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
 *   ./hp start [--workers sum=2,product=2] [--function hello=examples/hello.ts]
 *   make start ARGS="--workers sum=2,product=2 --function hello=examples/hello.ts"
 *
 * @module
 */

import { projectRoot } from "../../ffi/paths.ts";
import { parseArgs } from "node:util";
import { protectProcess } from "./privileges.ts";
import { deriveKey, TrustError } from "../handoff/trust.ts";
import { AdminClient, ImpostorError } from "./admin_client.ts";
import { watchModule } from "./dev_watch.ts";
import { type Role, RoleError, rolesFor, SERVER_FLAGS } from "./roles.ts";
import { DEFAULT_USERS, RoleUsers, UsersError } from "./users.ts";
import { settingVariables } from "./config.ts";
import { type Declaration, declarationProblems, parseDeclaration } from "./declarations.ts";

/** Each role user's own Deno cache (separate users). */
const CACHE_ROOT = `${projectRoot}/.local/deno-cache`;
const BACKOFF_MIN_MS = 200;
const BACKOFF_MAX_MS = 10_000;
/** A child that ran this long is healthy again: its backoff resets. */
const HEALTHY_MS = 10_000;
/** A reload's new workers must register (on standby) within this time. */
const REGISTER_TIMEOUT_MS = 30_000;
/** How long children may drain on stop before SIGKILL: their drain timeout
 * (HOTPOTATO_DRAIN_TIMEOUT, default 10 s) plus a margin. */
function stopGraceMs(): number {
  let drain = 10;
  try {
    drain = Number(Deno.env.get("HOTPOTATO_DRAIN_TIMEOUT") ?? "10") || 10;
  } catch {
    // no env access: the default
  }
  return drain * 1000 + 5000;
}

const sleep = (ms: number) => new Promise<void>((ok) => setTimeout(ok, ms));

/** What a child gets of the launcher's environment: the settings'
 * variables that are set, the wolfSSL build's location, and a few basics. */
const PASSED_ON = [
  ...settingVariables(),
  "HOTPOTATO_WOLFSSL_PREFIX",
  "HOTPOTATO_DUMPABLE",
  "XDG_RUNTIME_DIR",
  "PATH",
  "HOME",
  "LANG",
  "LC_ALL",
  "TZ",
  "NO_COLOR",
  "TERM",
  "DENO_DIR",
];

/** Functions the operator lets nest their routes under another's. */
const ALLOW_NESTED = () =>
  new Set((env("HOTPOTATO_ALLOW_NESTED") ?? "").split(",").map((s) => s.trim()).filter(Boolean));

function inheritedEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of PASSED_ON) {
    const v = env(name);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/** Send `signal` to a process that may be gone already. */
function signal(p: Deno.ChildProcess, sig: Deno.Signal): void {
  try {
    p.kill(sig);
  } catch {
    // already gone
  }
}

/** Wait until every one of `procs` has exited, SIGKILLing those still
 * there after `graceMs`. */
async function reap(procs: Deno.ChildProcess[], graceMs: number): Promise<void> {
  const killer = setTimeout(() => procs.forEach((p) => signal(p, "SIGKILL")), graceMs);
  await Promise.all(procs.map((p) => p.status));
  clearTimeout(killer);
}

interface Child {
  role: Role;
  process?: Deno.ChildProcess;
  backoffMs: number;
  restarts: number;
  /** The generation its process runs (workers; the launcher numbers reloads). */
  generation: number;
  /** The gateway taking over from this child's process (an upgrade): it
   * becomes the child's process when the old one exits. */
  successor?: Deno.ChildProcess;
  /** A reload of its function is under way: its process's exit is not a
   * crash to restart from now (the reload's outcome decides). */
  reloading?: boolean;
}

/** How the launcher reaches its gateway's admin port for reloads. */
export interface LauncherOptions {
  /** The launcher's secret for this run: each gateway gets it on the first
   * line of its stdin (JOIN, TAKEOVER and the admin port's signatures). */
  secret?: Uint8Array;
  /** Separate users: how each role is started (undefined: one user). */
  users?: RoleUsers;
  /** Environment for every child (the control socket path with separate users). */
  childEnv?: Record<string, string>;
  /** Environment for every gateway process, primary, satellite or successor
   * (the key files' paths with separate users). */
  gatewaysEnv?: Record<string, string>;
  /** The admin port's client, or why there is none (reloads then fail). */
  admin?: AdminClient | { problem: string };
  /** Extra environment for the gateway (the admin token, a chosen port). */
  gatewayEnv?: Record<string, string>;
  /** true (default): a reload's old workers hand their connections over;
   * false: they close them, as other proxies' reloads do (for comparison). */
  handover?: boolean;
}

/** What a reload did for one function. */
export interface ReloadResult {
  /** The function. */
  fn: string;
  /** It switched to the new version. */
  ok: boolean;
  /** Why not. */
  error?: string;
  /** ms from the reload's start to the switch. */
  switchMs?: number;
  /** ms from the reload's start to the last old worker gone. */
  doneMs?: number;
  /** Connections the old version handed over. */
  handedOver?: number;
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
  #generation = 1;
  /** Processes outside #children: a reload's new ones before the switch,
   * old ones after it (stopped with the rest). */
  #others = new Set<Deno.ChildProcess>();
  #reloading: Promise<ReloadResult[]> | undefined;
  /** A reload was asked for during one: run once more, for `#againOnly`. */
  #reloadAgain = false;
  #againOnly: string | undefined;
  /** Reloads and gateway upgrades run one at a time. */
  #lock: Promise<void> = Promise.resolve();
  /** The routes each function's file declared (separate users), given to
   * the gateways as --function-routes. */
  #declared: Map<string, string[]> | undefined;
  #declarations = new Map<string, Declaration>();

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
  }

  #say(message: string): void {
    console.log(`${"launcher".padEnd(this.#width)} | ${message}`);
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
    return this.#children.find((c) => !c.role.fn && c.role.env?.HOTPOTATO_SATELLITE !== "on")
      ?.process?.pid;
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
  async declareRoutes(): Promise<string[]> {
    const seen = new Set<string>();
    const problems: string[] = [];
    await Promise.all(this.#children.map(async (c) => {
      if (!c.role.fn || seen.has(c.role.fn)) return;
      seen.add(c.role.fn);
      const d = await this.#describe(c.role);
      if (typeof d === "string") problems.push(`${c.role.fn}: ${d}`);
      else this.#declarations.set(c.role.fn, d);
    }));
    problems.push(...declarationProblems([...this.#declarations.values()], ALLOW_NESTED()));
    if (problems.length === 0) {
      this.#declared = new Map([...this.#declarations].map(([fn, d]) => [fn, d.routes]));
    }
    return problems;
  }

  /** What `role`'s file declares (a describe run, 30 s at most), or why not. */
  async #describe(role: Role): Promise<Declaration | string> {
    let proc: Deno.ChildProcess;
    try {
      proc = this.#run(role, 0, false, false, {}, true);
    } catch (e) {
      return `cannot start it: ${(e as Error).message}`;
    }
    const timer = setTimeout(() => signal(proc, "SIGKILL"), 30_000);
    const out = await proc.output();
    clearTimeout(timer);
    if (!out.success) return `its describe run exited with code ${out.code}`;
    return parseDeclaration(role.fn, new TextDecoder().decode(out.stdout));
  }

  /** Before a reload of `fn` (its file may have changed): declare what the
   * new version claims, to the gateway too. "" or why not. */
  async #redeclare(admin: AdminClient, fn: string, role: Role): Promise<string> {
    if (!this.#declared) return "";
    const d = await this.#describe(role);
    if (typeof d === "string") return d;
    const others = [...this.#declarations.values()].filter((x) => x.fn !== fn);
    const problems = declarationProblems([...others, d], ALLOW_NESTED());
    if (problems.length) return problems.join("; ");
    const before = this.#declared.get(fn) ?? [];
    // The gateway lets both versions' routes be registered until the switch.
    const both = [...new Set([...before, ...d.routes])];
    if (both.length !== before.length) {
      try {
        await admin.declareRoutes(fn, both);
      } catch (e) {
        return `the gateway did not take its routes: ${(e as Error).message}`;
      }
    }
    this.#declarations.set(fn, d);
    this.#declared.set(fn, both);
    return "";
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
    for (const child of this.#children) this.#spawn(child);
  }

  /** Start `role`'s process (throws when it cannot be started). */
  #run(
    role: Role,
    generation: number,
    standby: boolean,
    restarted: boolean,
    extraEnv: Record<string, string> = {},
    describe = false,
  ): Deno.ChildProcess {
    // Nothing of the launcher's environment but the settings and a few
    // basics (as root it may hold credentials a function must not see).
    const env: Record<string, string> = {
      ...inheritedEnv(),
      HOTPOTATO_SUPERVISED: "1",
      HOTPOTATO_RESTARTED: restarted ? "1" : "0",
      HOTPOTATO_LOG_PREFIX: `${role.name.padEnd(this.#width)} | `,
    };
    if (role.fn) {
      // The launcher's own workers never replace each other (a pool would
      // take turns replacing and restarting); --replace is for a worker
      // started by hand beside them. A reload starts them on standby.
      env.HOTPOTATO_REPLACE = "off";
      env.HOTPOTATO_GENERATION = String(generation);
      env.HOTPOTATO_STANDBY = standby ? "on" : "off";
    } else if (role.env?.HOTPOTATO_SATELLITE === "on") {
      env.HOTPOTATO_TAKEOVER = "off";
      Object.assign(env, role.env);
    } else {
      env.HOTPOTATO_TAKEOVER = "off"; // an upgrade says on
      env.HOTPOTATO_SATELLITE = "off";
      Object.assign(env, role.env ?? {}, this.#options.gatewayEnv ?? {});
    }
    Object.assign(env, this.#options.childEnv ?? {});
    if (!role.fn) Object.assign(env, this.#options.gatewaysEnv ?? {});
    if (!role.fn && role.env?.HOTPOTATO_SATELLITE !== "on") {
      // The primary answers 503, not 404, for routes of workers it waits for.
      env.HOTPOTATO_EXPECT_WORKERS = String(this.#children.filter((c) => c.role.fn).length);
    }
    if (!role.fn && this.#declared) {
      env.HOTPOTATO_FUNCTION_ROUTES = JSON.stringify(Object.fromEntries(this.#declared));
    }
    Object.assign(env, extraEnv);
    if (describe) env.HOTPOTATO_DESCRIBE = "1";
    const secret = !role.fn && !describe ? this.#options.secret : undefined;
    if (secret) env.HOTPOTATO_SECRET = "stdin";
    const users = this.#options.users;
    if (users) Object.assign(env, users.env(role.fn, CACHE_ROOT));
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
    const proc = new Deno.Command(cmd, {
      args,
      cwd: projectRoot,
      env,
      clearEnv: true,
      // Its EOF tells the child the launcher is gone; a gateway reads the
      // secret from its first line (never the environment: /proc/PID/environ).
      stdin: describe ? "null" : "piped",
      stdout: describe ? "piped" : "inherit",
      stderr: "inherit",
    }).spawn();
    if (secret) {
      const hex = Array.from(secret, (b) => b.toString(16).padStart(2, "0")).join("");
      const writer = proc.stdin.getWriter();
      // The pipe stays open (and locked) until the launcher exits.
      writer.write(new TextEncoder().encode(hex + "\n")).catch(() => {});
    }
    return proc;
  }

  #spawn(child: Child): void {
    if (this.#stopping || child.process || child.reloading) return;
    const started = Date.now();
    let proc: Deno.ChildProcess;
    try {
      proc = this.#run(child.role, child.generation, false, child.restarts > 0);
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
    proc.status.then((status) => {
      if (child.process !== proc) return;
      child.process = undefined;
      if (this.#stopping) return;
      const next = child.successor;
      child.successor = undefined;
      if (next && status.success) {
        // Upgraded: the new gateway took everything over, and this one left.
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
      // During a reload, its end decides: the new process, or a restart.
      if (!child.reloading) this.#scheduleRestart(child, started);
    });
  }

  #scheduleRestart(child: Child, started: number): void {
    if (Date.now() - started >= HEALTHY_MS) child.backoffMs = BACKOFF_MIN_MS;
    const delay = child.backoffMs;
    child.backoffMs = Math.min(child.backoffMs * 2, BACKOFF_MAX_MS);
    child.restarts++;
    this.#say(`restarting ${child.role.name} in ${delay} ms (restart ${child.restarts})`);
    setTimeout(() => this.#spawn(child), delay); // unless a reload gave it a process
  }

  /**
   * Reload every function (SIGHUP): for each, start the new version's
   * workers on standby, wait until they have all registered, then switch
   * the gateway to them; the old workers hand every connection over at its
   * next request boundary and exit. A version that fails to start or to
   * register within 30 s is not switched to: its processes are stopped and
   * the old version keeps serving. Functions reload side by side; a reload
   * asked for during one runs once after it.
   *
   * @example
   * ```ts
   * import type { Launcher } from "./launcher.ts";
   * declare const launcher: Launcher;
   * for (const r of await launcher.reload()) console.log(r.fn, r.ok ? "ok" : r.error);
   * ```
   */
  reload(only?: string): Promise<ReloadResult[]> {
    if (this.#reloading) {
      // One more after this one: for every function unless both name the same.
      this.#againOnly = !this.#reloadAgain || this.#againOnly === only ? only : undefined;
      this.#reloadAgain = true;
      return this.#reloading;
    }
    const run = async (): Promise<ReloadResult[]> => {
      try {
        let results = await this.#exclusive(() => this.#reloadAll(only));
        while (this.#reloadAgain && !this.#stopping) {
          this.#reloadAgain = false;
          results = await this.#exclusive(() => this.#reloadAll(this.#againOnly));
        }
        return results;
      } finally {
        this.#reloading = undefined;
      }
    };
    this.#reloading = run();
    return this.#reloading;
  }

  async #reloadAll(only?: string): Promise<ReloadResult[]> {
    const admin = this.#options.admin;
    const generation = ++this.#generation;
    const byFn = new Map<string, Child[]>();
    for (const c of this.#children) {
      if (c.role.fn && (!only || c.role.fn === only)) {
        byFn.set(c.role.fn, [...(byFn.get(c.role.fn) ?? []), c]);
      }
    }
    if (!admin || !(admin instanceof AdminClient)) {
      const problem = admin?.problem ?? "no admin port";
      this.#say(`reload ${generation}: cannot reload: ${problem}`);
      return [...byFn.keys()].map((fn) => ({ fn, ok: false, error: problem }));
    }
    this.#say(`reload ${generation}: starting ${[...byFn.keys()].join(", ")}`);
    const t0 = performance.now();
    const results = await Promise.all(
      [...byFn].map(([fn, children]) => this.#reloadFunction(admin, fn, children, generation)),
    );
    const failed = results.filter((r) => !r.ok);
    this.#say(
      `reload ${generation}: ${
        failed.length ? `${failed.length} of ${results.length} failed` : "done"
      }` +
        ` in ${Math.round(performance.now() - t0)} ms`,
    );
    return results;
  }

  async #reloadFunction(
    admin: AdminClient,
    fn: string,
    children: Child[],
    generation: number,
  ): Promise<ReloadResult> {
    for (const c of children) c.reloading = true;
    try {
      return await this.#switchFunction(admin, fn, children, generation);
    } finally {
      for (const c of children) {
        c.reloading = false;
        if (!c.process) this.#scheduleRestart(c, 0); // it died meanwhile and was not replaced
      }
    }
  }

  async #switchFunction(
    admin: AdminClient,
    fn: string,
    children: Child[],
    generation: number,
  ): Promise<ReloadResult> {
    const t0 = performance.now();
    const fresh: Deno.ChildProcess[] = [];
    const fail = async (error: string): Promise<ReloadResult> => {
      for (const p of fresh) signal(p, "SIGTERM"); // on standby: it holds nothing
      await reap(fresh, 5000);
      for (const p of fresh) this.#others.delete(p);
      const kept = children.map((c) => c.generation).filter((g, i, a) => a.indexOf(g) === i);
      this.#say(
        `reload ${generation}: ${fn} NOT switched: ${error}; generation ${
          kept.join(",")
        } keeps serving`,
      );
      await admin.reloaded(fn, false, (performance.now() - t0) / 1000);
      return { fn, ok: false, error };
    };
    const undeclared = await this.#redeclare(admin, fn, children[0].role);
    if (undeclared) return await fail(undeclared);
    let exited: string | undefined;
    for (const c of children) {
      try {
        const p = this.#run(c.role, generation, true, false);
        fresh.push(p);
        this.#others.add(p);
        p.status.then((s) => {
          exited ??= `${c.role.name} (pid ${p.pid}) exited with ${
            s.signal ? `signal ${s.signal}` : `code ${s.code}`
          } before it registered`;
        });
      } catch (e) {
        return await fail(`cannot start ${c.role.name}: ${(e as Error).message}`);
      }
    }
    const pids = new Set(fresh.map((p) => p.pid));
    // Wait until every new process has registered on standby.
    let name = "";
    let lastError = "";
    for (;;) {
      if (this.#stopping) return await fail("the launcher is stopping");
      if (exited) return await fail(exited);
      if (performance.now() - t0 > REGISTER_TIMEOUT_MS) {
        return await fail(
          `the new workers did not all register within ${REGISTER_TIMEOUT_MS / 1000} s` +
            (lastError ? ` (admin port: ${lastError})` : ""),
        );
      }
      try {
        const ready = (await admin.workers()).filter((w) =>
          pids.has(w.pid) && w.state === "standby"
        );
        if (ready.length === pids.size) {
          name = ready[0].name;
          break;
        }
      } catch (e) {
        if (
          e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied ||
          e instanceof ImpostorError
        ) {
          return await fail(`cannot reach the admin port: ${(e as Error).message}`);
        }
        lastError = (e as Error).message;
      }
      await sleep(50);
    }
    const before = await admin.handedOver(name);
    let replaced: number[];
    try {
      ({ replaced } = await admin.promote(
        name,
        String(generation),
        this.#options.handover !== false,
      ));
    } catch (e) {
      return await fail(`the gateway did not switch: ${(e as Error).message}`);
    }
    const switchMs = performance.now() - t0;
    // The new processes are the children's now; the old ones leave.
    const olds: Deno.ChildProcess[] = [];
    children.forEach((c, i) => {
      const old = c.process;
      c.process = fresh[i];
      c.generation = generation;
      c.backoffMs = BACKOFF_MIN_MS;
      this.#others.delete(fresh[i]);
      this.#watch(c, fresh[i], Date.now());
      if (old) {
        olds.push(old);
        this.#others.add(old);
      }
    });
    for (const p of olds) {
      // Told HANDOVER, an old worker leaves by itself. One the gateway did
      // not replace (it registered after the switch) or --reload-mode
      // close: SIGTERM, it drains (closing what it holds, as other proxies do).
      if (this.#options.handover !== false && replaced.includes(p.pid)) continue;
      signal(p, "SIGTERM");
    }
    this.#promoteStragglers(admin, name, generation, pids);
    await reap(olds, stopGraceMs());
    for (const p of olds) this.#others.delete(p);
    const doneMs = performance.now() - t0;
    const handedOver = (await admin.handedOver(name)) - before;
    this.#say(
      `reload ${generation}: ${name} is generation ${generation} (pid ${[...pids].join(" ")}): ` +
        `switched in ${Math.round(switchMs)} ms, ${replaced.length} old worker(s) gone in ` +
        `${Math.round(doneMs)} ms, ${handedOver} connection(s) handed over`,
    );
    await admin.reloaded(name, true, doneMs / 1000);
    return { fn, ok: true, switchMs, doneMs, handedOver };
  }

  /** After a switch, for two seconds: a new worker that is on standby
   * again (the gateway restarted before it heard PROMOTED, and it
   * registered anew on standby) is promoted again. */
  async #promoteStragglers(
    admin: AdminClient,
    name: string,
    generation: number,
    pids: Set<number>,
  ): Promise<void> {
    for (let i = 0; i < 10 && !this.#stopping; i++) {
      await sleep(200);
      try {
        const waiting = (await admin.workers()).some((w) =>
          pids.has(w.pid) && w.state === "standby"
        );
        if (waiting) {
          await admin.promote(name, String(generation), this.#options.handover !== false);
        }
      } catch {
        // the gateway is away: try again
      }
    }
  }

  /**
   * Upgrade the gateway (SIGUSR1): start a new gateway process with
   * `--takeover on`; it takes the listening sockets, the workers and what
   * the running one holds, without a connection attempt refused, and the old
   * one exits. Resolves true once the old one is gone; false (the old one
   * serving on) when the new one exits first.
   *
   * @example
   * ```ts
   * import type { Launcher } from "./launcher.ts";
   * declare const launcher: Launcher;
   * console.log(await launcher.upgradeGateway() ? "upgraded" : "not upgraded");
   * ```
   */
  upgradeGateway(): Promise<boolean> {
    return this.#exclusive(() => this.#upgradeGateway());
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

  async #upgradeGateway(): Promise<boolean> {
    const child = this.#children.find((c) =>
      !c.role.fn && c.role.env?.HOTPOTATO_SATELLITE !== "on"
    );
    const old = child?.process;
    if (!child || !old || child.successor) {
      this.#say(`gateway upgrade: ${child?.successor ? "one is under way" : "no gateway running"}`);
      return false;
    }
    const t0 = performance.now();
    let next: Deno.ChildProcess;
    try {
      next = this.#run(child.role, 0, false, false, { HOTPOTATO_TAKEOVER: "on" });
    } catch (e) {
      this.#say(`gateway upgrade failed: ${(e as Error).message}`);
      return false;
    }
    this.#others.add(next);
    child.successor = next;
    this.#say(`gateway upgrade: pid ${next.pid} takes over from pid ${old.pid}`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const first = await Promise.race([
      old.status.then(() => "old" as const),
      next.status.then(() => "new" as const),
      new Promise<"late">((ok) => timer = setTimeout(() => ok("late"), stopGraceMs() + 15_000)),
    ]);
    clearTimeout(timer);
    if (first === "late" && child.successor === next) {
      child.successor = undefined;
      this.#others.delete(next);
      signal(next, "SIGKILL");
      this.#say(
        `gateway upgrade failed: pid ${old.pid} did not hand over in time; it keeps serving`,
      );
      return false;
    }
    if (first === "new" && child.successor === next) {
      child.successor = undefined;
      this.#others.delete(next);
      const s = await next.status;
      this.#say(
        `gateway upgrade failed: pid ${next.pid} exited with ${
          s.signal ? `signal ${s.signal}` : `code ${s.code}`
        }; pid ${old.pid} keeps serving`,
      );
      return false;
    }
    await Promise.resolve(); // the old one's exit handler has run: it adopted the new one, or not
    if (child.process !== next) {
      this.#say(`gateway upgrade failed: pid ${old.pid} exited with an error; starting afresh`);
      return false;
    }
    this.#say(
      `gateway upgrade: done in ${Math.round(performance.now() - t0)} ms; pid ${next.pid} serves`,
    );
    return true;
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
    const running = [
      ...this.#children.map((c) => c.process).filter((p) => p !== undefined),
      ...this.#others,
    ];
    for (const p of running) signal(p, "SIGTERM");
    await reap(running, stopGraceMs());
  }
}

const USAGE = `Usage: ./hp start [options]
       make start ARGS="[options]"
       ./hp dev FILE.ts

Runs the gateway and the function workers, restarts any that die, stops all on Ctrl-C,
reloads every function on SIGHUP (./hp reload) and upgrades the gateway on SIGUSR1
(./hp reload --gateway), without dropping a connection.

  --workers NAME=COUNT,...   workers per function (default sum=1,product=1)   HOTPOTATO_WORKERS
  --function NAME=FILE       another function to run (repeatable)            HOTPOTATO_FUNCTIONS
  --gateways N|auto          gateway processes sharing the port (default 1;   HOTPOTATO_GATEWAYS
                             auto: one per CPU); the first is the primary
  --reload-mode MODE         handover (default): old workers hand their      HOTPOTATO_RELOAD_MODE
                             connections to the new version; close: they
                             close them (what other proxies do; to compare)
  --dev FILE                 development: run the gateway and FILE's function
                             only, and reload it whenever FILE or a local
                             module it imports changes
  -h, --help                 this text

Reloads talk to the gateway's admin port (HOTPOTATO_ADMIN_HOST, HOTPOTATO_ADMIN_PORT:
0 picks a free one, off disables reloads) with a token made for this run.
The gateway and workers read their own settings from HOTPOTATO_* variables
(./hp gateway --help and ./hp sum --help list them).`;

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

function envList(name: string): string[] {
  const v = env(name);
  return v ? [v] : [];
}

/** The admin port the gateway will listen on, a client for it (signing
 * with a key derived from `secret`, for the gateway process `gatewayPid()`
 * names), and the environment that tells the gateway the port when the
 * launcher picked it. */
function adminFor(
  secret: Uint8Array,
  gatewayPid: () => number | undefined,
): Pick<LauncherOptions, "admin" | "gatewayEnv"> {
  const listen = env("HOTPOTATO_ADMIN_HOST") || "127.0.0.1";
  // A wildcard address is reached on loopback (the token never leaves the host).
  const host = listen === "0.0.0.0" ? "127.0.0.1" : listen === "::" ? "::1" : listen;
  const setting = env("HOTPOTATO_ADMIN_PORT") || "8081";
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

/** Separate users (as root): the accounts, the sockets' directories, the
 * gateway's key files and the environment every child gets. Throws
 * {@linkcode UsersError} with what to change. */
async function separateUsers(
  roles: Role[],
): Promise<Pick<LauncherOptions, "users" | "childEnv" | "gatewaysEnv"> | undefined> {
  const settings = {
    mode: env("HOTPOTATO_USERS") || DEFAULT_USERS.mode,
    gatewayUser: env("HOTPOTATO_GATEWAY_USER") || DEFAULT_USERS.gatewayUser,
    socketGroup: env("HOTPOTATO_SOCKET_GROUP") || DEFAULT_USERS.socketGroup,
    functionUsers: env("HOTPOTATO_FUNCTION_USERS") || DEFAULT_USERS.functionUsers,
  };
  const fns = [...new Set(roles.filter((r) => r.fn).map((r) => r.fn))];
  const users = await RoleUsers.prepare(settings, fns);
  if (!users) return undefined;
  users.reachable(`${projectRoot}/deno.json`, "the project");
  for (const r of roles) {
    if (r.fn && r.file.startsWith("/")) users.reachable(r.file, `function ${r.fn}'s file`);
  }
  users.makeCaches(CACHE_ROOT);
  const control = env("HOTPOTATO_CONTROL") || "/run/hotpotato/gateway.sock";
  users.prepareSockets(control);
  const gatewaysEnv: Record<string, string> = {};
  const devKey = `${projectRoot}/.local/certs/key.pem`;
  const key = env("HOTPOTATO_KEY") || devKey;
  if (key === devKey) {
    // The development key stays root's where make wrote it (beside the
    // dev CA's key): the gateways get a copy of their own.
    const dir = `${projectRoot}/.local/gateway`;
    gatewaysEnv.HOTPOTATO_KEY = users.giveGateway(key, dir);
    if (!env("HOTPOTATO_CERT")) {
      gatewaysEnv.HOTPOTATO_CERT = users.giveGateway(`${projectRoot}/.local/certs/cert.pem`, dir);
    }
  } else users.checkSecretFile(key, "HOTPOTATO_KEY");
  const ticketFile = env("HOTPOTATO_TICKET_KEY_FILE");
  if (ticketFile) users.checkSecretFile(ticketFile, "HOTPOTATO_TICKET_KEY_FILE");
  return { users, childEnv: { HOTPOTATO_CONTROL: control }, gatewaysEnv };
}

if (import.meta.main) {
  let roles: Role[];
  let handover = true;
  let dev: { file: string; fn: string } | undefined;
  try {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        workers: { type: "string", multiple: true },
        function: { type: "string", multiple: true },
        gateways: { type: "string" },
        "reload-mode": { type: "string" },
        dev: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    });
    if (values.help) {
      console.log(USAGE);
      Deno.exit(0);
    }
    const mode = values["reload-mode"] ?? env("HOTPOTATO_RELOAD_MODE") ?? "handover";
    if (mode !== "handover" && mode !== "close") {
      throw new RoleError(`--reload-mode: ${JSON.stringify(mode)} is not handover or close`);
    }
    handover = mode === "handover";
    if (values.dev !== undefined) {
      const fn = values.dev.replace(/^.*\//, "").replace(/\.(ts|js)$/, "");
      dev = { file: values.dev, fn };
      const others = ["sum", "product"].filter((n) => n !== fn).map((n) => `${n}=0`);
      roles = rolesFor(others, [`${fn}=${values.dev}`]);
    } else {
      const g = values.gateways ?? env("HOTPOTATO_GATEWAYS") ?? "1";
      const gateways = g === "auto" ? Math.min(64, navigator.hardwareConcurrency) : Number(g);
      roles = rolesFor(
        values.workers ?? envList("HOTPOTATO_WORKERS"),
        values.function ?? envList("HOTPOTATO_FUNCTIONS"),
        gateways,
      );
    }
  } catch (e) {
    console.error(`launcher: ${(e as Error).message.split("\n")[0]}`);
    Deno.exit(2);
  }
  // Before the secret exists: no process of this user may read our memory.
  try {
    protectProcess();
  } catch (e) {
    console.error(`launcher: ${(e as Error).message}`);
    Deno.exit(1);
  }
  const secret = crypto.getRandomValues(new Uint8Array(32));
  let separate: Awaited<ReturnType<typeof separateUsers>>;
  try {
    separate = await separateUsers(roles);
  } catch (e) {
    const expected = e instanceof UsersError || e instanceof TrustError ||
      e instanceof Deno.errors.NotFound;
    if (!expected) throw e;
    console.error(`launcher: ${(e as Error).message}`);
    Deno.exit(2);
  }
  let launcher: Launcher | undefined = undefined;
  const admin = adminFor(secret, () => launcher?.gatewayPid());
  if (roles.filter((r) => !r.fn).length > 1 && (env("HOTPOTATO_PORT") ?? "8443") === "0") {
    // Gateways sharing a port must share one number: pick it now.
    const l = Deno.listen({ hostname: env("HOTPOTATO_HOST") || "127.0.0.1", port: 0 });
    const port = String((l.addr as Deno.NetAddr).port);
    l.close();
    for (const r of roles) if (!r.fn) r.env = { ...r.env, HOTPOTATO_PORT: port };
  }
  launcher = new Launcher(roles, {
    ...admin,
    gatewaysEnv: separate?.gatewaysEnv,
    users: separate?.users,
    childEnv: separate?.childEnv,
    secret,
    handover,
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
    console.log(
      `${
        "launcher".padEnd(8)
      } | separate users: gateway ${users.gateway.name} (uid ${users.gateway.uid}), ${
        [...new Set(roles.filter((r) => r.fn).map((r) => r.fn))]
          .map((fn) => `${fn} ${users.of(fn).name} (uid ${users.of(fn).uid})`).join(", ")
      }; socket group ${users.socketGid}`,
    );
  }
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${"launcher".padEnd(8)} | ${signal}: stopping all`);
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
  console.log(
    `${
      "launcher".padEnd(8)
    } | pid ${Deno.pid}: kill -HUP ${Deno.pid} (./hp reload) reloads every function, kill -USR1 ${Deno.pid} (./hp reload --gateway) upgrades the gateway`,
  );
  launcher.start();
  if (dev) {
    const { file, fn } = dev;
    watchModule(file, (changed) => {
      console.log(`${"launcher".padEnd(8)} | ${changed} changed: reloading ${fn}`);
      launcher.reload(fn);
    }, (message) => console.log(`${"launcher".padEnd(8)} | ${message}`));
  }
}
