/**
 * Several hot potato hosts behind HAProxy, on one machine (issue 12): each
 * "host" is a network namespace with its own address on a private /24 (a
 * veth pair into a bridge), running `deno task start` (gateway and workers);
 * HAProxy, in TCP mode on loopback, spreads connections over the hosts with
 * the PROXY protocol v2 (`send-proxy-v2`) and health-checks each host's
 * `/healthz` on its admin port. The hosts share one session-ticket key file,
 * so a client that reconnects to another host resumes its TLS session.
 *
 *   make cluster                   (sudo when not root; Ctrl-C tears it all down)
 *   deno run -A scripts/cluster.ts [--hosts 3] [--port 9443]
 *
 * The test (tests/cluster_test.ts) runs the same layout. Everything it
 * creates (namespaces, links, the bridge, temp files) is removed on exit.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { projectRoot } from "../ffi/paths.ts";
import { DEFAULT_USERS, RoleUsers } from "../src/operations/users.ts";
import { processUid } from "../ffi/shim.ts";
import { forEachLine } from "../src/operations/lines.ts";

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

async function sh(cmd: string[], check = true): Promise<string> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  if (check && !out.success) {
    throw new Error(`${cmd.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return text;
}

/** One host: a namespace, its address, and the launcher running in it. */
export interface Host {
  /** 1, 2, ... */
  index: number;
  /** Network namespace name. */
  netns: string;
  /** Its address on the private /24. */
  address: string;
  /** The launcher (`deno task start`) inside it, while running. */
  process?: Deno.ChildProcess;
  /** Its output lines (prefixed by the launcher with each child's name). */
  lines: string[];
}

/** What a cluster is made of. */
export interface ClusterOptions {
  /** Hosts (2 or more). */
  hosts: number;
  /** HAProxy's port on 127.0.0.1. */
  port: number;
  /** Print the hosts' and HAProxy's lines as they come. */
  echo?: boolean;
}

/**
 * A cluster of hosts in network namespaces behind HAProxy.
 *
 * @example
 * ```ts
 * import { Cluster } from "./cluster.ts";
 * const cluster = await Cluster.up({ hosts: 2, port: 9443 });
 * try {
 *   console.log(`https://localhost:${cluster.port}/sum?a=1&b=2`);
 * } finally {
 *   await cluster.down();
 * }
 * ```
 */
export class Cluster {
  readonly hosts: Host[] = [];
  readonly port: number;
  readonly dir: string;
  /** HAProxy's bridge address (the hosts trust it to send PROXY headers). */
  readonly gatewayAddress: string;
  #bridge: string;
  #prefix: string;
  #haproxy: Deno.ChildProcess | undefined;
  #echo: boolean;
  haproxyLines: string[] = [];

  private constructor(opts: ClusterOptions, dir: string) {
    const tag = String(Deno.pid % 10000);
    const net = 20 + (Deno.pid % 200);
    this.port = opts.port;
    this.dir = dir;
    this.#echo = opts.echo === true;
    this.#prefix = `hp${tag}`;
    this.#bridge = `hp${tag}br`;
    this.gatewayAddress = `10.77.${net}.1`;
    for (let i = 1; i <= opts.hosts; i++) {
      this.hosts.push({
        index: i,
        netns: `hp${tag}h${i}`,
        address: `10.77.${net}.${10 + i}`,
        lines: [],
      });
    }
  }

  /** Create the namespaces and links, start every host and HAProxy, and
   * wait until HAProxy answers and every host serves. */
  static async up(opts: ClusterOptions): Promise<Cluster> {
    if (processUid() !== 0) {
      throw new Error("the cluster needs root (network namespaces): use sudo");
    }
    const dir = await Deno.makeTempDir({ prefix: "hotpotato-cluster-" });
    await Deno.chmod(dir, 0o755); // each host's launcher runs its roles as users of their own
    const c = new Cluster(opts, dir);
    try {
      await c.#network();
      await Deno.writeFile(`${dir}/ticket.key`, crypto.getRandomValues(new Uint8Array(32)), {
        mode: 0o600,
      });
      // The shared secret is the gateways' user's alone, as on a real host.
      const users = await RoleUsers.prepare(DEFAULT_USERS, []);
      if (users) await Deno.chown(`${dir}/ticket.key`, users.gateway.uid, users.gateway.gid);
      for (const h of c.hosts) await c.startHost(h);
      await c.#startHaproxy();
    } catch (e) {
      await c.down();
      throw e;
    }
    return c;
  }

  async #network(): Promise<void> {
    const br = this.#bridge;
    await sh(["ip", "link", "add", br, "type", "bridge"]);
    await sh(["ip", "addr", "add", `${this.gatewayAddress}/24`, "dev", br]);
    await sh(["ip", "link", "set", br, "up"]);
    for (const h of this.hosts) {
      const outside = `${this.#prefix}v${h.index}`, inside = `${this.#prefix}i${h.index}`;
      await sh(["ip", "netns", "add", h.netns]);
      await sh(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside]);
      await sh(["ip", "link", "set", outside, "master", br, "up"]);
      await sh(["ip", "link", "set", inside, "netns", h.netns]);
      const inNs = (...args: string[]) => sh(["ip", "netns", "exec", h.netns, "ip", ...args]);
      await inNs("addr", "add", `${h.address}/24`, "dev", inside);
      await inNs("link", "set", inside, "up");
      await inNs("link", "set", "lo", "up");
    }
  }

  /** Start (or restart) host `h`'s launcher; resolves once it serves. */
  async startHost(h: Host): Promise<void> {
    h.lines.length = 0;
    const env: Record<string, string> = {
      HOTPOTATO_HOST: h.address,
      HOTPOTATO_PORT: "8443",
      HOTPOTATO_ADMIN_HOST: h.address, // HAProxy checks /healthz from the bridge
      HOTPOTATO_ADMIN_PORT: "8081",
      HOTPOTATO_CONTROL: `${this.dir}/h${h.index}/gateway.sock`,
      HOTPOTATO_PROXY_PROTOCOL: "on",
      HOTPOTATO_PROXY_TRUSTED: `${this.gatewayAddress}/32`,
      HOTPOTATO_TICKET_KEY_FILE: `${this.dir}/ticket.key`,
      NO_COLOR: "1",
    };
    h.process = new Deno.Command("ip", {
      args: ["netns", "exec", h.netns, Deno.execPath(), "task", "start"],
      cwd: projectRoot,
      env,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const collect = (line: string) => {
      h.lines.push(line);
      if (this.#echo) console.log(`h${h.index} ${line}`);
    };
    forEachLine(h.process.stdout, collect);
    forEachLine(h.process.stderr, collect);
    for (let i = 0; i < 300; i++) {
      const text = h.lines.join("\n");
      if (/worker sum\/\d+ registered/.test(text) && /worker product\/\d+ registered/.test(text)) {
        return;
      }
      await sleep(50);
    }
    throw new Error(`host ${h.index} did not start:\n${h.lines.join("\n")}`);
  }

  /** Kill every process of host `h` at once (a host failure). */
  async killHost(h: Host): Promise<void> {
    const pids = (await sh(["ip", "netns", "pids", h.netns], false)).split("\n").filter(Boolean);
    for (const pid of pids) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch { /* gone */ }
    }
    await h.process?.status;
    h.process = undefined;
  }

  async #startHaproxy(): Promise<void> {
    const servers = this.hosts.map((h) =>
      `    server h${h.index} ${h.address}:8443 send-proxy-v2 check port 8081 inter 300 fall 2 rise 2`
    );
    const cfg = [
      "global",
      "    maxconn 4096",
      "defaults",
      "    mode tcp",
      "    timeout connect 2s",
      "    timeout client 60s",
      "    timeout server 60s",
      "    retries 3",
      "    option redispatch",
      "frontend hotpotato",
      `    bind 127.0.0.1:${this.port}`,
      "    default_backend hosts",
      "backend hosts",
      "    balance roundrobin",
      "    option httpchk",
      "    http-check send meth GET uri /healthz",
      "    http-check expect status 200",
      ...servers,
      "",
    ].join("\n");
    await Deno.writeTextFile(`${this.dir}/haproxy.cfg`, cfg);
    this.#haproxy = new Deno.Command("haproxy", {
      args: ["-db", "-f", `${this.dir}/haproxy.cfg`],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const collect = (line: string) => {
      this.haproxyLines.push(line);
      if (this.#echo) console.log(`haproxy ${line}`);
    };
    forEachLine(this.#haproxy.stdout, collect);
    forEachLine(this.#haproxy.stderr, collect);
    for (let i = 0; i < 100; i++) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port: this.port })).close();
        return;
      } catch {
        await sleep(50);
      }
    }
    throw new Error(`haproxy did not start:\n${this.haproxyLines.join("\n")}`);
  }

  /** A metric of host `h` (its gateway's /metrics, from inside its namespace). */
  async metric(h: Host, name: string, labels = ""): Promise<number> {
    const text = await sh(
      ["ip", "netns", "exec", h.netns, "curl", "-s", `http://${h.address}:8081/metrics`],
      false,
    );
    let sum = 0;
    for (const line of text.split("\n")) {
      if (!line.startsWith(name)) continue;
      if (labels && !line.includes(labels)) continue;
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
    return sum;
  }

  /** Stop HAProxy and every host; remove the namespaces, links and files. */
  async down(): Promise<void> {
    try {
      this.#haproxy?.kill("SIGTERM");
      await this.#haproxy?.status;
    } catch { /* gone */ }
    for (const h of this.hosts) {
      if (h.process) await this.killHost(h);
      await sh(["ip", "netns", "del", h.netns], false);
      await sh(["ip", "link", "del", `${this.#prefix}v${h.index}`], false);
    }
    await sh(["ip", "link", "del", this.#bridge], false);
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { hosts: { type: "string" }, port: { type: "string" } },
  });
  const cluster = await Cluster.up({
    hosts: Number(values.hosts ?? "2"),
    port: Number(values.port ?? "9443"),
    echo: true,
  });
  console.log(`
cluster up: HAProxy on https://localhost:${cluster.port} in front of ${cluster.hosts.length} hosts:
${cluster.hosts.map((h) => `  h${h.index}: ${h.address} (namespace ${h.netns})`).join("\n")}
try:
  curl --cacert .local/certs/ca.pem "https://localhost:${cluster.port}/sum?a=1&b=2" "https://localhost:${cluster.port}/product?a=3&b=4"
watch a host:
  sudo ip netns exec ${cluster.hosts[0].netns} curl -s http://${
    cluster.hosts[0].address
  }:8081/healthz
  sudo ip netns exec ${cluster.hosts[0].netns} curl -s http://${
    cluster.hosts[0].address
  }:8081/metrics | grep handshakes
kill a host (HAProxy sends its clients to the others, who resume their TLS sessions):
  sudo ip netns pids ${cluster.hosts[0].netns} | xargs kill -9
Ctrl-C stops everything and removes the namespaces.`);
  const stop = async () => {
    await cluster.down();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
}
