/**
 * A gateway serves on the listening socket it is given instead of binding
 * one: systemd's socket activation (LISTEN_FDS, LISTEN_PID, the socket as fd
 * 3), tried with a harness that passes an inherited socket the way systemd
 * does, and the launcher's HOTPOTATO_LISTEN_FD. Real gateway, worker and TLS
 * client.
 */

import assert from "node:assert/strict";
import { closeFd, localPort, setInheritable, tcpListen } from "../ffi/shim.ts";
import { projectRoot } from "../ffi/paths.ts";
import { STANDALONE_GATEWAY_FLAGS } from "../src/operations/roles.ts";
import { forEachLine } from "../src/operations/lines.ts";
import { Client, Proc } from "./support/system.ts";

/** A gateway started through `bash`, which moves `fd` to fd 3 and sets
 * systemd's variables for its own pid (the one deno then has), as systemd
 * does; `--port` names a port held elsewhere, so binding one would fail. */
function activated(fd: number, busyPort: number, control: string, env: Record<string, string>) {
  const script = fd === 3
    ? `export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"`
    : `exec 3<&${fd} ${fd}<&-; export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"`;
  setInheritable(fd, true);
  try {
    return new Deno.Command("bash", {
      args: [
        "-c",
        script,
        Deno.execPath(),
        "run",
        ...STANDALONE_GATEWAY_FLAGS,
        "gateway.ts",
        "--port",
        String(busyPort),
        "--admin-port",
        "off",
        "--control",
        control,
      ],
      cwd: projectRoot,
      env: { HOTPOTATO_SUPERVISED: "1", ...env },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } finally {
    setInheritable(fd, false);
  }
}

/** The child's output lines as they come, and a wait for one. */
function lines(child: Deno.ChildProcess) {
  const seen: string[] = [];
  const done = Promise.all([
    forEachLine(child.stdout, (l) => void seen.push(l)),
    forEachLine(child.stderr, (l) => void seen.push(l)),
  ]);
  const wait = async (re: RegExp): Promise<RegExpMatchArray> => {
    for (let i = 0; i < 600; i++) {
      for (const l of seen) {
        const m = l.match(re);
        if (m) return m;
      }
      await new Promise((ok) => setTimeout(ok, 25));
    }
    throw new Error(`no line matching ${re}:\n${seen.slice(-15).join("\n")}`);
  };
  return { seen, done, wait };
}

Deno.test("systemd socket activation: the gateway serves on fd 3 (LISTEN_FDS) and binds nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-activated-" });
  const given = tcpListen("127.0.0.1", 0);
  const port = localPort(given);
  const busy = tcpListen("127.0.0.1", 0);
  const gateway = activated(given, localPort(busy), `${dir}/gateway.sock`, {});
  closeFd(given); // the gateway's copy is the only one now
  const out = lines(gateway);
  let worker: Proc | undefined;
  try {
    await out.wait(/listening on the systemd's socket/);
    const m = await out.wait(/listening on https:\/\/[^:]+:(\d+)/);
    assert.equal(Number(m[1]), port, "the port of the socket it was given");
    worker = new Proc("sum", "workers/sum.ts", ["--control", `${dir}/gateway.sock`]);
    await worker.waitFor(/registered\W{0,3}sum\W{0,3} for/);
    const c = await Client.connect(port);
    const res = await c.get("/sum?a=2&b=3");
    c.close();
    assert.equal(res.status, 200);
    assert.match(res.body, /"result":"5"/);
  } finally {
    if (worker && !worker.exited) worker.child.kill("SIGTERM");
    try {
      gateway.kill("SIGTERM");
    } catch {
      // it has exited already
    }
    await gateway.status;
    await out.done;
    await worker?.done;
    closeFd(busy);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a socket variable that names no listening socket stops the gateway with the reason", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-activated-" });
  const busy = tcpListen("127.0.0.1", 0);
  // fd 0 is the stdin pipe: not a listening socket.
  const gateway = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...STANDALONE_GATEWAY_FLAGS,
      "gateway.ts",
      "--port",
      String(localPort(busy)),
      "--admin-port",
      "off",
      "--control",
      `${dir}/gateway.sock`,
    ],
    cwd: projectRoot,
    env: { HOTPOTATO_SUPERVISED: "1", HOTPOTATO_LISTEN_FD: "0" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = lines(gateway);
  try {
    await out.wait(/HOTPOTATO_LISTEN_FD=0: not a listening TCP socket/);
    const status = await gateway.status;
    assert.notEqual(status.code, 0);
  } finally {
    try {
      gateway.kill("SIGKILL");
    } catch {
      // already gone
    }
    await gateway.status;
    await out.done;
    closeFd(busy);
    await Deno.remove(dir, { recursive: true });
  }
});
