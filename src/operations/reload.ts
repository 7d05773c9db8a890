/**
 * The launcher's reloads (SIGHUP, `./hp reload`; `./hp dev` on every edit):
 * for each function, start the new version's workers on standby (a new
 * generation), wait until they have all registered, then switch the gateway
 * to them through its admin port; the old workers hand their connections
 * over and exit. A version that fails is not switched to, and the old one
 * keeps serving.
 *
 * @module
 */

import { AdminClient, ImpostorError } from "./admin_client.ts";
import type { DeclaredRoutes } from "./declared_routes.ts";
import { reap, signal, stopGraceMs } from "./processes.ts";
import type { Child, Supervision } from "./supervision.ts";

/** A reload's new workers must register (on standby) within this time. */
const REGISTER_TIMEOUT_MS = 30_000;

const sleep = (ms: number) => new Promise<void>((ok) => setTimeout(ok, ms));

/** How the launcher reloads.
 *
 * @example
 * ```ts
 * import type { ReloadOptions } from "./reload.ts";
 * // Old workers close their connections, as other proxies' reloads do.
 * const options: ReloadOptions = { admin: { problem: "no admin port" }, handover: false };
 * console.log(options);
 * ```
 */
export interface ReloadOptions {
  /** The admin port's client, or why there is none (reloads then fail). */
  admin?: AdminClient | { problem: string };
  /** true (default): a reload's old workers hand their connections over;
   * false: they close them, as other proxies' reloads do (for comparison). */
  handover?: boolean;
}

/** What a reload did for one function.
 *
 * @example
 * ```ts
 * import type { ReloadResult } from "./reload.ts";
 * declare const r: ReloadResult;
 * console.log(r.ok ? `${r.fn}: ${r.handedOver} handed over in ${r.doneMs} ms` : r.error);
 * ```
 */
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
 * The reloads of a launcher's functions, one at a time; a reload asked for
 * during one runs once after it.
 *
 * @example
 * ```ts
 * import { Reloads } from "./reload.ts";
 * import type { DeclaredRoutes } from "./declared_routes.ts";
 * import type { Supervision } from "./supervision.ts";
 * declare const supervision: Supervision;
 * declare const routes: DeclaredRoutes;
 * const reloads = new Reloads(supervision, routes, { admin: { problem: "no admin port" } });
 * console.log(await reloads.reload("sum")); // [{ fn: "sum", ok: false, error: "no admin port" }]
 * ```
 */
export class Reloads {
  readonly #s: Supervision;
  readonly #routes: DeclaredRoutes;
  readonly #options: ReloadOptions;
  #generation = 1;
  #reloading: Promise<ReloadResult[]> | undefined;
  /** A reload was asked for during one: run once more, for `#againOnly`. */
  #reloadAgain = false;
  #againOnly: string | undefined;

  /** Reload the children of `supervision`, declaring each new version's
   * routes with `routes` first.
   *
   * @example
   * ```ts
   * import { Reloads } from "./reload.ts";
   * import type { DeclaredRoutes } from "./declared_routes.ts";
   * import type { Supervision } from "./supervision.ts";
   * import type { AdminClient } from "./admin_client.ts";
   * declare const supervision: Supervision;
   * declare const routes: DeclaredRoutes;
   * declare const admin: AdminClient;
   * new Reloads(supervision, routes, { admin, handover: true });
   * ```
   */
  constructor(supervision: Supervision, routes: DeclaredRoutes, options: ReloadOptions) {
    this.#s = supervision;
    this.#routes = routes;
    this.#options = options;
  }

  /** Reload every function, or `only` that one (see `Launcher.reload`).
   *
   * @example
   * ```ts
   * import type { Reloads } from "./reload.ts";
   * declare const reloads: Reloads;
   * for (const r of await reloads.reload()) console.log(r.fn, r.ok ? "ok" : r.error);
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
        let results = await this.#s.exclusive(() => this.#reloadAll(only));
        while (this.#reloadAgain && !this.#s.stopping()) {
          this.#reloadAgain = false;
          results = await this.#s.exclusive(() => this.#reloadAll(this.#againOnly));
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
    /** Workers not running now (a scaled pool's), and parked spares: their
     * next start runs the new version. */
    const idle: Child[] = [];
    for (const c of this.#s.children) {
      if (!c.role.fn || (only && c.role.fn !== only) || c.retiring) continue;
      if (c.dormant || c.parked) idle.push(c);
      else byFn.set(c.role.fn, [...(byFn.get(c.role.fn) ?? []), c]);
    }
    for (const c of idle) {
      c.generation = generation;
      if (c.parked) this.#s.repark(c); // a spare of the old version: parked anew
    }
    const cold = [...new Set(idle.map((c) => c.role.fn))].filter((fn) => !byFn.has(fn));
    if (!admin || !(admin instanceof AdminClient)) {
      const problem = admin?.problem ?? "no admin port";
      this.#s.say(`reload ${generation}: cannot reload: ${problem}`);
      return [...byFn.keys()].map((fn) => ({ fn, ok: false, error: problem }));
    }
    this.#s.say(`reload ${generation}: starting ${[...byFn.keys(), ...cold].join(", ")}`);
    const t0 = performance.now();
    const results = await Promise.all([
      ...[...byFn].map(([fn, children]) => this.#reloadFunction(admin, fn, children, generation)),
      ...cold.map((fn) => this.#reloadCold(admin, fn, idle.find((c) => c.role.fn === fn)!)),
    ]);
    const failed = results.filter((r) => !r.ok);
    this.#s.say(
      `reload ${generation}: ${
        failed.length ? `${failed.length} of ${results.length} failed` : "done"
      }` +
        ` in ${Math.round(performance.now() - t0)} ms`,
    );
    return results;
  }

  /** A function with no worker running: its routes are declared anew (its
   * file may have changed); its next start loads the new version. */
  async #reloadCold(admin: AdminClient, fn: string, child: Child): Promise<ReloadResult> {
    const problem = await this.#routes.redeclare(admin, fn, child.role);
    if (problem) {
      this.#s.say(`reload: ${fn} NOT reloaded: ${problem}`);
      await admin.reloaded(fn, false, 0);
      return { fn, ok: false, error: problem };
    }
    this.#s.say(`reload: ${fn} has no worker running: its next start loads the new version`);
    return { fn, ok: true, switchMs: 0, doneMs: 0, handedOver: 0 };
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
        if (!c.process) this.#s.scheduleRestart(c, 0); // it died meanwhile and was not replaced
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
      for (const p of fresh) this.#s.others.delete(p);
      const kept = children.map((c) => c.generation).filter((g, i, a) => a.indexOf(g) === i);
      this.#s.say(
        `reload ${generation}: ${fn} NOT switched: ${error}; generation ${
          kept.join(",")
        } keeps serving`,
      );
      await admin.reloaded(fn, false, (performance.now() - t0) / 1000);
      return { fn, ok: false, error };
    };
    const undeclared = await this.#routes.redeclare(admin, fn, children[0].role);
    if (undeclared) return await fail(undeclared);
    let exited: string | undefined;
    for (const c of children) {
      try {
        const p = this.#s.run(c.role, { generation, standby: true, restarted: false });
        fresh.push(p);
        this.#s.others.add(p);
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
    const standby = await this.#standby(admin, pids, t0, () => exited);
    if ("error" in standby) return await fail(standby.error);
    const { name } = standby;
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
    const olds = this.#adopt(children, fresh, generation);
    for (const p of olds) {
      // Told HANDOVER, an old worker leaves by itself. One the gateway did
      // not replace (it registered after the switch) or --reload-mode
      // close: SIGTERM, it drains (closing what it holds, as other proxies do).
      if (this.#options.handover !== false && replaced.includes(p.pid)) continue;
      signal(p, "SIGTERM");
    }
    this.#promoteStragglers(admin, name, generation, pids);
    await reap(olds, stopGraceMs());
    for (const p of olds) this.#s.others.delete(p);
    const doneMs = performance.now() - t0;
    const handedOver = (await admin.handedOver(name)) - before;
    this.#s.say(
      `reload ${generation}: ${name} is generation ${generation} (pid ${[...pids].join(" ")}): ` +
        `switched in ${Math.round(switchMs)} ms, ${replaced.length} old worker(s) gone in ` +
        `${Math.round(doneMs)} ms, ${handedOver} connection(s) handed over`,
    );
    await admin.reloaded(name, true, doneMs / 1000);
    return { fn, ok: true, switchMs, doneMs, handedOver };
  }

  /** Wait until every one of `pids` (started at `t0`) has registered on
   * standby: the function's name, or why not (`exited()`: one exited). */
  async #standby(
    admin: AdminClient,
    pids: Set<number>,
    t0: number,
    exited: () => string | undefined,
  ): Promise<{ name: string } | { error: string }> {
    let lastError = "";
    for (;;) {
      if (this.#s.stopping()) return { error: "the launcher is stopping" };
      const gone = exited();
      if (gone) return { error: gone };
      if (performance.now() - t0 > REGISTER_TIMEOUT_MS) {
        return {
          error: `the new workers did not all register within ${REGISTER_TIMEOUT_MS / 1000} s` +
            (lastError ? ` (admin port: ${lastError})` : ""),
        };
      }
      try {
        const ready = (await admin.workers()).filter((w) =>
          pids.has(w.pid) && w.state === "standby"
        );
        if (ready.length === pids.size) return { name: ready[0].name };
      } catch (e) {
        if (
          e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied ||
          e instanceof ImpostorError
        ) {
          return { error: `cannot reach the admin port: ${(e as Error).message}` };
        }
        lastError = (e as Error).message;
      }
      await sleep(50);
    }
  }

  /** The new processes are the children's now (`generation`); returns the
   * old ones, which leave (stopped with the rest until they have). */
  #adopt(
    children: Child[],
    fresh: Deno.ChildProcess[],
    generation: number,
  ): Deno.ChildProcess[] {
    const olds: Deno.ChildProcess[] = [];
    children.forEach((c, i) => {
      const old = c.process;
      this.#s.adopt(c, fresh[i], generation);
      if (old) {
        olds.push(old);
        this.#s.others.add(old);
      }
    });
    return olds;
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
    for (let i = 0; i < 10 && !this.#s.stopping(); i++) {
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
}
