/**
 * The routes the launcher lets each function register (separate users): it
 * asks each function's file what it serves (a describe run, as the
 * function's own user), checks the set (src/operations/declarations.ts) and
 * gives the gateways the result (`--function-routes`); before a reload it
 * asks the new version, and declares its routes to the running gateway too.
 *
 * @module
 */

import type { AdminClient } from "./admin_client.ts";
import { type ChildStart, readEnv } from "./child_env.ts";
import { type Declaration, declarationProblems, parseDeclaration } from "./declarations.ts";
import { signal } from "./processes.ts";
import type { Role } from "./roles.ts";

/** A describe run: the function's file says what it serves and exits. */
const DESCRIBE: ChildStart = { generation: 0, standby: false, restarted: false, describe: true };

/** Functions the operator lets nest their routes under another's. */
const ALLOW_NESTED = () =>
  new Set(
    (readEnv("HOTPOTATO_ALLOW_NESTED") ?? "").split(",").map((s) => s.trim()).filter(Boolean),
  );

/**
 * What the functions declared, and the routes the gateways let each
 * register.
 *
 * @example
 * ```ts
 * import { DeclaredRoutes } from "./declared_routes.ts";
 * import type { ChildStart } from "./child_env.ts";
 * import type { Role } from "./roles.ts";
 * declare function run(role: Role, start: ChildStart): Deno.ChildProcess;
 * const routes = new DeclaredRoutes(run);
 * const sum = { name: "sum", fn: "sum", file: "workers/sum.ts", args: [] };
 * const problems = await routes.declare([sum]);
 * console.log(problems.length ? problems : routes.declared());
 * ```
 */
export class DeclaredRoutes {
  readonly #run: (role: Role, start: ChildStart) => Deno.ChildProcess;
  /** The routes the function file gives a function (no describe run then). */
  readonly #given: (fn: string) => readonly string[] | undefined;
  /** The routes each function may register, once declared. */
  #declared: Map<string, string[]> | undefined;
  #declarations = new Map<string, Declaration>();

  /** Ask the functions' files with `run` (which starts a role's process).
   *
   * @example
   * ```ts
   * import { DeclaredRoutes } from "./declared_routes.ts";
   * const routes = new DeclaredRoutes((role) =>
   *   new Deno.Command(Deno.execPath(), { args: ["run", role.file], stdout: "piped" }).spawn()
   * );
   * console.log(routes.declared()); // undefined: nothing declared yet
   * ```
   */
  constructor(
    run: (role: Role, start: ChildStart) => Deno.ChildProcess,
    given: (fn: string) => readonly string[] | undefined = () => undefined,
  ) {
    this.#run = run;
    this.#given = given;
  }

  /** The routes each function may register (what the gateways get), or
   * undefined when they were not declared (one user).
   *
   * @example
   * ```ts
   * import type { DeclaredRoutes } from "./declared_routes.ts";
   * declare const routes: DeclaredRoutes;
   * for (const [fn, paths] of routes.declared() ?? []) console.log(fn, paths.join(" "));
   * ```
   */
  declared(): ReadonlyMap<string, readonly string[]> | undefined {
    return this.#declared;
  }

  /** Ask the file of each function of `roles` what it serves (as its own
   * user) and check the set; from then on the gateways let each function
   * register those routes only. Returns the problems (none: declared).
   *
   * @example
   * ```ts
   * import type { DeclaredRoutes } from "./declared_routes.ts";
   * import { rolesFor } from "./roles.ts";
   * declare const routes: DeclaredRoutes;
   * const problems = await routes.declare(rolesFor(["sum=2"], []));
   * if (problems.length) console.error(problems.join("\n"));
   * ```
   */
  async declare(roles: readonly Role[]): Promise<string[]> {
    const seen = new Set<string>();
    const problems: string[] = [];
    await Promise.all(roles.map(async (role) => {
      if (!role.fn || seen.has(role.fn)) return;
      seen.add(role.fn);
      const d = await this.#describe(role);
      if (typeof d === "string") problems.push(`${role.fn}: ${d}`);
      else this.#declarations.set(role.fn, d);
    }));
    problems.push(...declarationProblems([...this.#declarations.values()], ALLOW_NESTED()));
    if (problems.length === 0) {
      this.#declared = new Map([...this.#declarations].map(([fn, d]) => [fn, d.routes]));
    }
    return problems;
  }

  /** Before a reload of `fn` (its file may have changed): declare what the
   * new version, run as `role`, claims, to the gateway too (it lets both
   * versions' routes be registered until the switch). "" or why not.
   *
   * @example
   * ```ts
   * import type { DeclaredRoutes } from "./declared_routes.ts";
   * import type { AdminClient } from "./admin_client.ts";
   * declare const routes: DeclaredRoutes;
   * declare const admin: AdminClient;
   * const sum = { name: "sum", fn: "sum", file: "workers/sum.ts", args: [] };
   * const problem = await routes.redeclare(admin, "sum", sum);
   * if (problem) console.error(`sum NOT switched: ${problem}`);
   * ```
   */
  async redeclare(admin: AdminClient, fn: string, role: Role): Promise<string> {
    if (!this.#declared) return "";
    const d = await this.#checked(role);
    if (typeof d === "string") return d;
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

  /** A function added to the running set (`role`, one of its workers, or
   * none: only make sure every function's routes are declared; `all`, every
   * function's role now, the new one's included): its routes
   * declared like the others', and told to the running gateway. When routes
   * were not declared before (one user, nothing on demand), every
   * function's are now: the gateway then knows the new function's routes
   * before its first worker starts. "" or why not.
   *
   * @example
   * ```ts
   * import type { DeclaredRoutes } from "./declared_routes.ts";
   * import type { AdminClient } from "./admin_client.ts";
   * declare const routes: DeclaredRoutes, admin: AdminClient;
   * const hello = { name: "hello", fn: "hello", file: "examples/hello.ts", args: [] };
   * const problem = await routes.add(admin, hello, [hello]);
   * if (problem) console.error(`hello not added: ${problem}`);
   * ```
   */
  async add(
    admin: AdminClient | undefined,
    role: Role | undefined,
    all: readonly Role[],
  ): Promise<string> {
    if (!this.#declared) {
      const problems = await this.declare(all);
      if (problems.length) return problems.join("; ");
      if (!admin) return "";
      try {
        for (const [fn, routes] of this.#declared!) await admin.declareRoutes(fn, [...routes]);
      } catch (e) {
        return `the gateway did not take the routes: ${(e as Error).message}`;
      }
      return "";
    }
    if (!role) return ""; // declared already
    const d = await this.#checked(role);
    if (typeof d === "string") return d;
    try {
      await admin?.declareRoutes(role.fn, d.routes);
    } catch (e) {
      return `the gateway did not take its routes: ${(e as Error).message}`;
    }
    this.#declarations.set(role.fn, d);
    this.#declared.set(role.fn, d.routes);
    return "";
  }

  /** A function removed from the running set: the gateway stops expecting
   * it (no routes declared; its paths answer 404 once its workers are gone).
   *
   * @example
   * ```ts
   * import type { DeclaredRoutes } from "./declared_routes.ts";
   * import type { AdminClient } from "./admin_client.ts";
   * declare const routes: DeclaredRoutes, admin: AdminClient;
   * await routes.forget(admin, "hello");
   * ```
   */
  async forget(admin: AdminClient | undefined, fn: string): Promise<void> {
    if (!this.#declared?.has(fn)) return;
    this.#declarations.delete(fn);
    this.#declared.delete(fn);
    try {
      await admin?.declareRoutes(fn, []);
    } catch {
      // the gateway is away: a new one gets the set without it
    }
  }

  /** What `role`'s file declares, checked against the other functions'
   * declarations (it replaces its own function's), or why not. */
  async #checked(role: Role): Promise<Declaration | string> {
    const d = await this.#describe(role);
    if (typeof d === "string") return d;
    const others = [...this.#declarations.values()].filter((x) => x.fn !== role.fn);
    const problems = declarationProblems([...others, d], ALLOW_NESTED());
    return problems.length ? problems.join("; ") : d;
  }

  /** What `role`'s file declares (a describe run, 30 s at most; the
   * function file's routes when it gives them), or why not. */
  async #describe(role: Role): Promise<Declaration | string> {
    const given = this.#given(role.fn);
    if (given) return { fn: role.fn, name: role.fn, routes: [...given], nestedRoutes: false };
    let proc: Deno.ChildProcess;
    try {
      proc = this.#run(role, DESCRIBE);
    } catch (e) {
      return `cannot start it: ${(e as Error).message}`;
    }
    const timer = setTimeout(() => signal(proc, "SIGKILL"), 30_000);
    const out = await proc.output();
    clearTimeout(timer);
    if (!out.success) return `its describe run exited with code ${out.code}`;
    return parseDeclaration(role.fn, new TextDecoder().decode(out.stdout));
  }
}
