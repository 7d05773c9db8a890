import assert from "node:assert/strict";
import { ConfigError, gatewayConfig, workerConfig } from "../src/operations/config.ts";
import {
  LAUNCHER_FLAGS,
  RoleError,
  rolesFor,
  SERVER_FLAGS,
  STANDALONE_GATEWAY_FLAGS,
} from "../src/operations/roles.ts";

Deno.test("deno.json tasks run the gateway and workers with exactly the role's flags", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)))
    .tasks as Record<string, string>;
  for (const name of ["gateway", "sum", "product", "worker"]) {
    const task = tasks[name];
    const flags = name === "gateway" ? STANDALONE_GATEWAY_FLAGS : SERVER_FLAGS;
    const prefix = `deno run ${flags.join(" ")}`;
    assert.ok(task === prefix || task.startsWith(`${prefix} `), `${name}: ${task}`);
  }
  for (const name of ["start", "dev"]) {
    const task = tasks[name];
    assert.ok(
      task.startsWith(`deno run ${LAUNCHER_FLAGS.join(" ")} src/operations/launcher.ts`),
      `${name}: ${task}`,
    );
  }
});

Deno.test("flags and defaults", () => {
  const { config } = gatewayConfig(["--port", "9443", "--idle-timeout", "1.5"]);
  assert.equal(config.port, 9443);
  assert.equal(config.idleTimeoutMs, 1500);
  assert.equal(config.handshakeTimeoutMs, 10_000);
  assert.equal(config.maxBody, 1048576);
  assert.equal(workerConfig([]).config.handlerTimeoutMs, 30_000);
});

Deno.test("--body-timeout / HOTPOTATO_BODY_TIMEOUT, for both roles", () => {
  assert.equal(gatewayConfig([]).config.bodyTimeoutMs, 60_000);
  assert.equal(workerConfig([]).config.bodyTimeoutMs, 60_000);
  assert.equal(workerConfig(["--body-timeout", "2.5"]).config.bodyTimeoutMs, 2500);
  Deno.env.set("HOTPOTATO_BODY_TIMEOUT", "7");
  try {
    assert.equal(gatewayConfig([]).config.bodyTimeoutMs, 7000);
    assert.equal(gatewayConfig(["--body-timeout", "1"]).config.bodyTimeoutMs, 1000);
    Deno.env.set("HOTPOTATO_BODY_TIMEOUT", "soon");
    assert.throws(() => workerConfig([]), /HOTPOTATO_BODY_TIMEOUT must be a number of seconds/);
  } finally {
    Deno.env.delete("HOTPOTATO_BODY_TIMEOUT");
  }
});

Deno.test("bad values are refused with a message naming the setting", () => {
  const bad: [string[], RegExp][] = [
    [["--port", "70000"], /--port must be an integer from 0 to 65535/],
    [["--port", "x"], /--port/],
    [["--idle-timeout=-1"], /--idle-timeout must be a number of seconds/],
    [["--idle-timeout", "-1"], /--idle-timeout/],
    [["--log-format", "xml"], /--log-format must be one of text, json/],
    [["--nope"], /nope/],
  ];
  for (const [args, re] of bad) {
    assert.throws(
      () => gatewayConfig(args),
      (e: unknown) => e instanceof ConfigError && re.test(e.message),
      args.join(" "),
    );
  }
});

Deno.test("launcher roles: pools, extra functions, and refused settings", () => {
  const names = (w: string[], f: string[]) => rolesFor(w, f).map((r) => `${r.name}:${r.file}`);
  assert.deepEqual(names([], []), [
    "gateway:gateway.ts",
    "sum:workers/sum.ts",
    "product:workers/product.ts",
  ]);
  assert.deepEqual(names(["sum=2,product=0"], ["hello=examples/hello.ts"]), [
    "gateway:gateway.ts",
    "sum.1:workers/sum.ts",
    "sum.2:workers/sum.ts",
    "hello:examples/hello.ts",
  ]);
  for (
    const [w, f, re] of [
      [["sum=x"], [], /the count must be 0 to 64/],
      [["nope=1"], [], /no file for function nope/],
      [["=1"], [], /is not NAME=VALUE/],
      [[], ["hello=hello.txt"], /must name a .ts or .js file/],
    ] as [string[], string[], RegExp][]
  ) {
    assert.throws(
      () => rolesFor(w, f),
      (e: unknown) => e instanceof RoleError && re.test(e.message),
    );
  }
});

Deno.test("importing mod.ts and the benchmark's servers' helpers needs no permission", async () => {
  // What a Deno.serve app (bench/servers/*) takes from hot potato must load
  // without --allow-ffi: no FFI call may run at import. (`deno run -` reads
  // the script from stdin, with no permission; `deno eval` would have all.)
  const root = new URL("..", import.meta.url).href;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(
    `await import("${root}mod.ts"); await import("${root}bench/servers/functions.ts"); ` +
      `console.log("loaded");`,
  ));
  await w.close();
  const out = await child.output();
  const err = new TextDecoder().decode(out.stderr);
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "loaded", err);
});
