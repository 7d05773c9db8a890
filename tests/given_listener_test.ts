/**
 * A gateway serves on the listening socket it is given instead of binding
 * one: systemd's socket activation (LISTEN_FDS, LISTEN_PID, the socket as fd
 * 3), tried with a harness that passes an inherited socket the way systemd
 * does, and the launcher's HOTPOTATO_LISTEN_FD. Real gateway, worker and TLS
 * client.
 */

import assert from "node:assert/strict";
import { closeFd, localPort, setInheritable, tcpListen } from "../ffi/shim.ts";
import { STANDALONE_GATEWAY_FLAGS } from "../src/operations/roles.ts";
import { Client, Proc } from "./support/system.ts";

/** A gateway (run as the systemd unit runs it) whose `--port` names a port
 * held elsewhere, so binding one would fail. */
function gateway(
  busyPort: number,
  control: string,
  env: Record<string, string> = {},
  wrapper: string[] = [],
): Proc {
  const args = ["--port", String(busyPort), "--admin-port", "off", "--control", control];
  return new Proc("gateway", "gateway.ts", args, env, [], wrapper, STANDALONE_GATEWAY_FLAGS);
}

/** A gateway started through bash, which moves `fd` to fd 3 and sets
 * systemd's variables for its own pid (the one deno then has), as systemd
 * does. */
function activated(fd: number, busyPort: number, control: string): Proc {
  const script = fd === 3
    ? `export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"`
    : `exec 3<&${fd} ${fd}<&-; export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"`;
  setInheritable(fd, true);
  try {
    return gateway(busyPort, control, {}, ["bash", "-c", script]);
  } finally {
    setInheritable(fd, false);
  }
}

Deno.test("systemd socket activation: the gateway serves on fd 3 (LISTEN_FDS) and binds nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-activated-" });
  const given = tcpListen("127.0.0.1", 0);
  const port = localPort(given);
  const busy = tcpListen("127.0.0.1", 0);
  const gw = activated(given, localPort(busy), `${dir}/gateway.sock`);
  closeFd(given); // the gateway's copy is the only one now
  let worker: Proc | undefined;
  try {
    await gw.waitFor(/listening on the systemd's socket/);
    const m = await gw.waitFor(/listening on https:\/\/[^:]+:(\d+)/);
    assert.equal(Number(m[1]), port, "the port of the socket it was given");
    worker = new Proc("sum", "workers/sum.ts", ["--control", `${dir}/gateway.sock`]);
    await worker.waitFor(/registered\W{0,3}sum\W{0,3} for/);
    const c = await Client.connect(port);
    const res = await c.get("/sum?a=2&b=3");
    c.close();
    assert.equal(res.status, 200);
    assert.match(res.body, /"result":"5"/);
  } finally {
    await worker?.stop();
    await gw.stop();
    closeFd(busy);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a socket variable that names no listening socket stops the gateway with the reason", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-activated-" });
  const busy = tcpListen("127.0.0.1", 0);
  // fd 0 is the stdin pipe: not a listening socket.
  const gw = gateway(localPort(busy), `${dir}/gateway.sock`, { HOTPOTATO_LISTEN_FD: "0" });
  try {
    await gw.waitFor(/HOTPOTATO_LISTEN_FD=0: not a listening TCP socket/);
    assert.notEqual((await gw.child.status).code, 0);
  } finally {
    await gw.stop("SIGKILL");
    closeFd(busy);
    await Deno.remove(dir, { recursive: true });
  }
});
