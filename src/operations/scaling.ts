/**
 * A function's scaling settings, in one place: the bounds of its pool
 * (`min` 0 means it starts on demand), how long a worker above the minimum
 * may stay idle, and the CPU share per worker the pool grows at. The
 * launcher reads them from its flags and the function file, passes them to
 * the gateway (`--scaling`, JSON) and decides with them
 * (src/operations/autoscaler.ts); the gateway holds a request for a function
 * at zero workers while one starts, and shows them on `GET /functions`.
 *
 * @module
 */

/** How one function's pool follows its load. */
export interface Scaling {
  /** Workers always running (0: started on demand, stopped when idle). */
  min: number;
  /** Most workers at once. */
  max: number;
  /** A worker above the minimum that answered nothing this long is stopped, ms. */
  idleMs: number;
  /** The CPU share (of one core) per worker above which the pool grows. */
  target: number;
  /** Spares kept parked while the pool is below its maximum: processes
   * started ahead (module loaded, not registered) that a cold start or a
   * scale-up wakes instead of starting a process. */
  spare: number;
}

/** The bounds on each setting. */
export const SCALING_LIMITS = {
  /** Most workers of one function. */
  maxWorkers: 64,
  /** Shortest idle time, s. */
  minIdleSeconds: 1,
  /** Longest idle time, s. */
  maxIdleSeconds: 86400,
  /** Default idle time, s. */
  idleSeconds: 60,
  /** Default CPU share per worker. */
  target: 0.6,
} as const;

/** A setting that cannot be used. */
export class ScalingError extends Error {
  /** An error naming the setting.
   *
   * @example
   * ```ts
   * import { ScalingError } from "./scaling.ts";
   * throw new ScalingError("hello: min 5 is above max 4");
   * ```
   */
  constructor(message: string) {
    super(message);
    this.name = "ScalingError";
  }
}

/**
 * A fixed pool of `n` workers, never stopped: what `--workers NAME=N` (and
 * every function without scaling settings) gets.
 *
 * @example
 * ```ts
 * import { fixedPool } from "./scaling.ts";
 * console.log(fixedPool(2)); // { min: 2, max: 2, idleMs: 60000, target: 0.6, spare: 0 }
 * ```
 */
export function fixedPool(n: number): Scaling {
  return {
    min: n,
    max: n,
    idleMs: SCALING_LIMITS.idleSeconds * 1000,
    target: SCALING_LIMITS.target,
    spare: 0,
  };
}

/**
 * Whether a pool can change (started on demand, or room above its
 * minimum): the launcher then runs its autoscaler, which needs the admin
 * port.
 *
 * @example
 * ```ts
 * import { fixedPool, scales } from "./scaling.ts";
 * console.log(scales(fixedPool(2)), scales({ ...fixedPool(1), min: 0 })); // false true
 * ```
 */
export function scales(s: Scaling): boolean {
  return s.min === 0 || s.max > s.min;
}

/**
 * Check raw settings for function `fn` (`where` names their source in the
 * error): `min` and `max` integers with 0 ≤ min ≤ max ≤ 64 and max ≥ 1,
 * `idle` seconds from 1 to 86400, `target` from 0.1 to 1, `spare` from 0 to
 * max. Absent ones take `base`'s value.
 *
 * @example
 * ```ts
 * import { checkScaling, fixedPool } from "./scaling.ts";
 * const s = checkScaling("hello", { min: 0, max: 4, idle: 30 }, fixedPool(1), "--scale");
 * console.log(s.idleMs); // 30000
 * ```
 */
export function checkScaling(
  fn: string,
  raw: { min?: unknown; max?: unknown; idle?: unknown; target?: unknown; spare?: unknown },
  base: Scaling,
  where: string,
): Scaling {
  const bad = (why: string) => new ScalingError(`${where}: ${fn}: ${why}`);
  const int = (v: unknown, name: string, fallback: number): number => {
    if (v === undefined) return fallback;
    if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > SCALING_LIMITS.maxWorkers) {
      throw bad(`${name} must be an integer from 0 to ${SCALING_LIMITS.maxWorkers}`);
    }
    return v as number;
  };
  const min = int(raw.min, "min", base.min);
  // A new minimum above the old maximum raises the maximum with it.
  const max = int(raw.max, "max", raw.max === undefined ? Math.max(base.max, min) : base.max);
  if (max < 1) throw bad("max must be at least 1");
  if (min > max) throw bad(`min ${min} is above max ${max}`);
  let idleMs = base.idleMs;
  if (raw.idle !== undefined) {
    const { minIdleSeconds: lo, maxIdleSeconds: hi } = SCALING_LIMITS;
    if (typeof raw.idle !== "number" || !(raw.idle >= lo && raw.idle <= hi)) {
      throw bad(`idle must be a number of seconds from ${lo} to ${hi}`);
    }
    idleMs = Math.round(raw.idle * 1000);
  }
  let target = base.target;
  if (raw.target !== undefined) {
    if (typeof raw.target !== "number" || !(raw.target >= 0.1 && raw.target <= 1)) {
      throw bad("target must be a CPU share from 0.1 to 1");
    }
    target = raw.target;
  }
  const spare = int(raw.spare, "spare", Math.min(base.spare, max));
  if (spare > max) throw bad(`spare ${spare} is above max ${max}`);
  return { min, max, idleMs, target, spare };
}

/**
 * Parse `--scale` values: `NAME=MIN..MAX` (or `NAME=N`, a fixed pool),
 * comma-separated, over `base` settings per function.
 *
 * @example
 * ```ts
 * import { fixedPool, parseScaleFlag } from "./scaling.ts";
 * const m = parseScaleFlag(["hello=0..4"], () => fixedPool(1));
 * console.log(m.get("hello")); // { min: 0, max: 4, idleMs: 60000, target: 0.6, spare: 0 }
 * ```
 */
export function parseScaleFlag(
  values: readonly string[],
  base: (fn: string) => Scaling,
): Map<string, Scaling> {
  const out = new Map<string, Scaling>();
  for (const item of values.flatMap((v) => v.split(",")).map((x) => x.trim()).filter(Boolean)) {
    const m = item.match(/^([A-Za-z0-9][A-Za-z0-9._-]{0,63})=(\d{1,3})(?:\.\.(\d{1,3}))?$/);
    if (!m) throw new ScalingError(`--scale: ${JSON.stringify(item)} is not NAME=MIN..MAX`);
    const min = Number(m[2]);
    const max = m[3] === undefined ? min : Number(m[3]);
    out.set(m[1], checkScaling(m[1], { min, max }, base(m[1]), "--scale"));
  }
  return out;
}

/**
 * The settings as the gateway gets them (`--scaling`): JSON, idle in
 * seconds.
 *
 * @example
 * ```ts
 * import { fixedPool, scalingJson } from "./scaling.ts";
 * console.log(scalingJson(new Map([["sum", fixedPool(1)]])));
 * ```
 */
export function scalingJson(settings: ReadonlyMap<string, Scaling>): string {
  const o: Record<
    string,
    { min: number; max: number; idle: number; target: number; spare: number }
  > = {};
  for (const [fn, s] of settings) {
    o[fn] = { min: s.min, max: s.max, idle: s.idleMs / 1000, target: s.target, spare: s.spare };
  }
  return JSON.stringify(o);
}

/**
 * Parse `--spare` values: `NAME=N` (N spares parked), comma-separated,
 * over `base` settings per function.
 *
 * @example
 * ```ts
 * import { fixedPool, parseSpareFlag } from "./scaling.ts";
 * const m = parseSpareFlag(["hello=1"], () => ({ ...fixedPool(1), min: 0 }));
 * console.log(m.get("hello")?.spare); // 1
 * ```
 */
export function parseSpareFlag(
  values: readonly string[],
  base: (fn: string) => Scaling,
): Map<string, Scaling> {
  const out = new Map<string, Scaling>();
  for (const item of values.flatMap((v) => v.split(",")).map((x) => x.trim()).filter(Boolean)) {
    const m = item.match(/^([A-Za-z0-9][A-Za-z0-9._-]{0,63})=(\d{1,2})$/);
    if (!m) throw new ScalingError(`--spare: ${JSON.stringify(item)} is not NAME=COUNT`);
    out.set(m[1], checkScaling(m[1], { spare: Number(m[2]) }, base(m[1]), "--spare"));
  }
  return out;
}

/**
 * Read `--scaling` (what {@linkcode scalingJson} wrote); throws
 * {@linkcode ScalingError} naming what is wrong.
 *
 * @example
 * ```ts
 * import { parseScalingJson } from "./scaling.ts";
 * const m = parseScalingJson('{"hello":{"min":0,"max":4,"idle":30}}');
 * console.log(m.get("hello")?.max); // 4
 * ```
 */
export function parseScalingJson(text: string): Map<string, Scaling> {
  const out = new Map<string, Scaling>();
  if (!text) return out;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ScalingError("--scaling: not JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ScalingError("--scaling: not an object of functions");
  }
  const entries = Object.entries(parsed);
  if (entries.length > 1024) throw new ScalingError("--scaling: more than 1024 functions");
  for (const [fn, raw] of entries) {
    if (typeof raw !== "object" || raw === null) {
      throw new ScalingError(`--scaling: ${fn}: not an object`);
    }
    out.set(fn, checkScaling(fn, raw, fixedPool(1), "--scaling"));
  }
  return out;
}
