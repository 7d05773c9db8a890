/**
 * The autoscaler's decisions (src/operations/autoscaler.ts), the function
 * file (src/operations/function_file.ts) and the scaling settings
 * (src/operations/scaling.ts, the launcher's --scale): pure functions, fed
 * the demand a gateway reports.
 */

import assert from "node:assert/strict";
import { Autoscaler, type Pool } from "../src/operations/autoscaler.ts";
import type { Demand } from "../src/gateway/demand.ts";
import type { WorkerLoad } from "../src/gateway/workers.ts";
import {
  FunctionFileError,
  parseFunctionFile,
  stripJsonc,
} from "../src/operations/function_file.ts";
import { functionSpecs } from "../src/operations/roles.ts";
import { parseScalingJson, scalingJson } from "../src/operations/scaling.ts";

const SCALED = { min: 0, max: 4, idleMs: 10_000, target: 0.5, spare: 0 };

function pool(running: number[], over: Partial<Pool> = {}): Pool {
  return { fn: "f", scaling: SCALED, running, restarting: 0, reloading: false, ...over };
}

function worker(pid: number, over: Partial<WorkerLoad> = {}): WorkerLoad {
  return {
    name: "f",
    pid,
    generation: "1",
    state: "serving",
    conns: 1,
    cpuMs: 0,
    served: 10,
    idleMs: 0,
    ...over,
  };
}

function demand(waiting: number, workers: WorkerLoad[]): Demand {
  return { seq: 1, gatewayPid: 9, functions: { f: { waiting, workers } } };
}

Deno.test("a waiting request starts one worker of a function at zero; nothing waits, nothing starts", () => {
  const a = new Autoscaler();
  assert.deepEqual(a.decide(0, demand(0, []), [pool([])]), []);
  const [d] = a.decide(0, demand(3, []), [pool([])]);
  assert.equal(d.action, "start");
  assert.equal(d.action === "start" && d.count, 1);
  assert.equal(d.cause, "cold start");
  // Starting already (or in backoff after a failed start): not again.
  assert.deepEqual(a.decide(0, demand(3, []), [pool([42])]), []);
  assert.deepEqual(a.decide(0, demand(3, []), [pool([], { restarting: 1 })]), []);
  // During a reload of it: no decision.
  assert.deepEqual(a.decide(0, demand(3, []), [pool([], { reloading: true })]), []);
});

Deno.test("below the minimum the pool is filled; above the maximum one worker stops", () => {
  const a = new Autoscaler();
  const [up] = a.decide(0, demand(0, []), [pool([1], { scaling: { ...SCALED, min: 3 } })]);
  assert.equal(up.action === "start" && up.count, 2);
  assert.equal(up.cause, "minimum");
  const ws = [worker(1), worker(2), worker(3)];
  const [down] = a.decide(0, demand(0, ws), [pool([1, 2, 3], { scaling: { ...SCALED, max: 2 } })]);
  assert.equal(down.action === "stop" && down.pid, 3);
  assert.equal(down.cause, "above max");
});

Deno.test("the panic window grows a busy pool at once, up to max, once every worker has registered", () => {
  const a = new Autoscaler();
  // 1.8 cores over one worker at a 0.5 target: 4 wanted.
  const [d] = a.decide(0, demand(0, [worker(1, { cpuMs: 900 }), worker(2, { cpuMs: 900 })]), [
    pool([1, 2]),
  ]);
  assert.equal(d.action, "start");
  assert.equal(d.action === "start" && d.count, 2);
  assert.equal(d.cause, "busy");
  // One still starting (not in the demand yet): wait for it.
  const b = new Autoscaler();
  assert.deepEqual(b.decide(0, demand(0, [worker(1, { cpuMs: 1800 })]), [pool([1, 2])]), []);
  // Max 2: no more than that.
  const c = new Autoscaler();
  const capped = c.decide(0, demand(0, [worker(1, { cpuMs: 1000 })]), [
    pool([1], { scaling: { ...SCALED, max: 2 } }),
  ]);
  assert.equal(capped[0].action === "start" && capped[0].count, 1);
});

Deno.test("an idle worker stops above the minimum, the last one with its idle connections too", () => {
  const a = new Autoscaler();
  const idle = worker(2, { idleMs: 11_000, conns: 3, served: 0 });
  const [d] = a.decide(0, demand(0, [worker(1, { cpuMs: 100 }), idle]), [pool([1, 2])]);
  assert.equal(d.action === "stop" && d.pid, 2);
  assert.equal(d.cause, "idle");
  // The last worker, idle with a keep-alive connection: stopped too (the
  // gateway parks the connection); not before the idle time.
  const last = worker(1, { idleMs: 60_000, conns: 1, served: 0 });
  const [zero] = new Autoscaler().decide(0, demand(0, [last]), [pool([1])]);
  assert.equal(zero.action === "stop" && zero.pid, 1);
  const recent = { ...last, idleMs: 9_000 };
  assert.deepEqual(new Autoscaler().decide(0, demand(0, [recent]), [pool([1])]), []);
  // At the minimum: kept however idle.
  const min1 = pool([1], { scaling: { ...SCALED, min: 1 } });
  assert.deepEqual(new Autoscaler().decide(0, demand(0, [{ ...last, conns: 0 }]), [min1]), []);
});

Deno.test("a load one worker fewer could carry for the whole idle time stops one worker", () => {
  const a = new Autoscaler();
  const busy = (pid: number) => worker(pid, { cpuMs: 100 }); // 0.2 cores in all: 1 worker enough
  const ps = [pool([1, 2])];
  for (let t = 0; t < 10_000; t += 1000) {
    assert.deepEqual(a.decide(t, demand(0, [busy(1), busy(2)]), ps), [], `at ${t} ms`);
  }
  const [d] = a.decide(10_000, demand(0, [busy(1), busy(2)]), ps);
  assert.equal(d.action, "stop");
  assert.equal(d.cause, "low load");
  // A busy while (0.9 cores: both workers needed over the window) starts
  // the clock again: without it, 10 s of low load would be counted from 0.
  const b = new Autoscaler();
  const moderate = [worker(1, { cpuMs: 800 }), busy(2)];
  for (let t = 0; t <= 2000; t += 1000) b.decide(t, demand(0, [busy(1), busy(2)]), ps);
  for (let t = 3000; t <= 5000; t += 1000) {
    assert.deepEqual(b.decide(t, demand(0, moderate), ps), [], `busy at ${t} ms`);
  }
  for (let t = 6000; t <= 15_000; t += 1000) {
    assert.deepEqual(b.decide(t, demand(0, [busy(1), busy(2)]), ps), [], `at ${t} ms`);
  }
  const [later] = b.decide(16_000, demand(0, [busy(1), busy(2)]), ps);
  assert.equal(later?.cause, "low load");
});

Deno.test("the function file: JSON with comments and trailing commas; errors name the line", () => {
  assert.deepEqual(JSON.parse(stripJsonc('{ "a": "//x", /* c */ "b": [1,], } // end')), {
    a: "//x",
    b: [1],
  });
  const specs = parseFunctionFile(
    "f.jsonc",
    `{
  // comment
  "functions": {
    "sum": { "file": "workers/sum.ts", "workers": 2 },
    "hello": { "file": "examples/hello.ts", "min": 0, "max": 4, "idle": 30, "routes": ["/hello"] },
  },
}`,
  );
  assert.deepEqual(specs.map((s) => [s.name, s.scaling.min, s.scaling.max, s.scaling.idleMs]), [
    ["sum", 2, 2, 60_000],
    ["hello", 0, 4, 30_000],
  ]);
  assert.deepEqual(specs[1].routes, ["/hello"]);
  const withUser = parseFunctionFile(
    "f",
    '{ "functions": { "a": { "file": "a.ts", "user": "fn-a" } } }',
  );
  assert.equal(withUser[0].user, "fn-a");
  const bad: [string, RegExp][] = [
    [
      '{\n  "functions": {\n    "a": { "file": "a.ts", "min": 5, "max": 4 }\n  }\n}',
      /f:3: a: min 5 is above max 4/,
    ],
    [
      '{\n  "functions": {\n    "a": { "file": "a.txt" }\n  }\n}',
      /f:3: a: "file" must name a \.ts/,
    ],
    [
      '{\n  "functions": {\n    "a": { "file": "a.ts", "mni": 1 }\n  }\n}',
      /f:3: a: unknown key "mni"/,
    ],
    [
      '{\n  "functions": {\n    "a": { "file": "a.ts", "workers": 1, "max": 2 }\n  }\n}',
      /not both/,
    ],
    ['{\n  "functions": {\n    "a": { "file": "a.ts" }\n  ]\n}', /f:4: not JSON/],
    ['{ "function": {} }', /unknown key "function"/],
    [
      '{\n  "functions": {\n    "a": { "file": "a.ts", "user": "Root!" }\n  }\n}',
      /f:3: a: "user" must be a system user name or a uid/,
    ],
  ];
  for (const [text, why] of bad) {
    assert.throws(() => parseFunctionFile("f", text), (e: Error) => {
      assert.ok(e instanceof FunctionFileError, String(e));
      assert.match(e.message, why);
      return true;
    });
  }
});

Deno.test("--scale and --workers over the file's functions; --scaling round-trips", () => {
  const specs = functionSpecs({
    functions: ["hello=examples/hello.ts"],
    scale: ["hello=0..4", "sum=1..3"],
    idleSeconds: 5,
  });
  assert.deepEqual(specs.map((s) => [s.name, s.scaling.min, s.scaling.max, s.scaling.idleMs]), [
    ["sum", 1, 3, 5000],
    ["product", 1, 1, 60_000],
    ["hello", 0, 4, 5000],
  ]);
  assert.throws(() => functionSpecs({ scale: ["nope=0..1"] }), /no file for function nope/);
  assert.throws(() => functionSpecs({ scale: ["sum=3..1"] }), /min 3 is above max 1/);
  assert.throws(() => functionSpecs({ scale: ["sum=0"] }), /max must be at least 1/);
  assert.throws(() => functionSpecs({ scale: ["sum"] }), /is not NAME=MIN\.\.MAX/);
  const file = [{
    name: "a",
    file: "a.ts",
    scaling: { min: 0, max: 2, idleMs: 1000, target: 1, spare: 0 },
  }];
  assert.deepEqual(
    functionSpecs({ file }).map((s) => s.name),
    ["a"],
    "the file replaces the defaults",
  );
  const m = new Map(specs.map((s) => [s.name, s.scaling]));
  assert.deepEqual(parseScalingJson(scalingJson(m)), m);
  assert.throws(() => parseScalingJson('{"a":{"min":2,"max":1}}'), /min 2 is above max 1/);
});
