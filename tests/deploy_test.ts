/**
 * The deployment files people run (issues 12 and 18), checked with what can
 * check them here: the systemd units with `systemd-analyze verify` (paths
 * pointed at this checkout), the sysusers.d and tmpfiles.d files applied to
 * a scratch root by systemd-sysusers and systemd-tmpfiles, the Kubernetes
 * manifests against the Kubernetes schemas (npm kubernetes-models, generated
 * from the OpenAPI definitions) and the kubelet's exec probe against a real
 * admin port. Then the rules of separate users: who runs as whom, who can
 * reach the keys, that the settings every role reads agree across files.
 * Neither file set is run on a real init system or cluster by this test.
 */

import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { Deployment } from "kubernetes-models/apps/v1";
import { Service } from "kubernetes-models/v1";
import type { IContainer } from "kubernetes-models/v1";
import { projectRoot } from "../ffi/paths.ts";
import { SERVER_FLAGS, STANDALONE_GATEWAY_FLAGS } from "../src/operations/roles.ts";
import { AdminServer } from "../src/gateway/admin_server.ts";
import { adminAnswer } from "../src/gateway/admin_routes.ts";
import { EventLoop } from "../src/connection/event_loop.ts";
import { functionUserOf, Trust } from "../src/handoff/trust.ts";

const SYSTEMD = `${projectRoot}/deploy/systemd`;
const GATEWAY = "hotpotato-gateway.service";
const FUNCTIONS = ["hotpotato-function@.service", "hotpotato-function-next@.service"];
const UNITS = [GATEWAY, ...FUNCTIONS, "hotpotato.target", "hotpotato-gateway.socket"];

/** The [Service] settings of a unit: every value of each key, in order. */
async function serviceSettings(unit: string): Promise<Map<string, string[]>> {
  const text = await Deno.readTextFile(`${SYSTEMD}/${unit}`);
  const settings = new Map<string, string[]>();
  let section = "";
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const header = line.match(/^\[(.+)\]$/);
    if (header) {
      section = header[1];
      continue;
    }
    const eq = line.indexOf("=");
    if (section !== "Service" || eq < 0) continue;
    const key = line.slice(0, eq);
    settings.set(key, [...settings.get(key) ?? [], line.slice(eq + 1)]);
  }
  return settings;
}

/** The one value of `key` ("" when unset; two values fail). */
function one(settings: Map<string, string[]>, key: string): string {
  const values = settings.get(key) ?? [];
  assert.ok(values.length <= 1, `${key} set ${values.length} times`);
  return values[0] ?? "";
}

/** A unit's Environment= lines as a record. */
function environment(settings: Map<string, string[]>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of settings.get("Environment") ?? []) {
    const eq = line.indexOf("=");
    env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

/** The user HOTPOTATO_FUNCTION_USERS names for function `name` (the
 * gateway's own reading of the setting). */
const functionUser = functionUserOf;

/** Whether this test runs as root (chown in the scratch root needs it). */
const asRoot = new TextDecoder().decode(
  (await new Deno.Command("id", { args: ["-u"], stdout: "piped" }).output()).stdout,
).trim() === "0";

Deno.test("systemd units: systemd-analyze verify finds nothing; each role has its task's permissions", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-units-" });
  try {
    for (const unit of UNITS) {
      const text = await Deno.readTextFile(`${SYSTEMD}/${unit}`);
      if (unit.endsWith(".service")) {
        const exec = text.match(/^ExecStart=\S+ (.*)$/m)?.[1] ?? "";
        const flags = unit === GATEWAY ? STANDALONE_GATEWAY_FLAGS : SERVER_FLAGS;
        assert.ok(exec.startsWith(`run ${flags.join(" ")} `), `${unit}: ${exec}`);
      }
      await Deno.writeTextFile(`${dir}/${unit}`, text.replaceAll("/opt/hotpotato", projectRoot));
    }
    const out = await new Deno.Command("systemd-analyze", {
      args: [
        "verify",
        "--man=no",
        `${dir}/${GATEWAY}`,
        `${dir}/hotpotato-gateway.socket`,
        `${dir}/hotpotato-function@sum.service`,
        `${dir}/hotpotato-function-next@sum.service`,
        `${dir}/hotpotato.target`,
      ],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, said);
    assert.equal(said.trim(), "", said);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("systemd units: the gateway and each function run as users of their own; functions cannot reach /etc/hotpotato; the settings agree", async () => {
  const gateway = await serviceSettings(GATEWAY);
  const gatewayEnv = environment(gateway);
  const gatewayUser = one(gateway, "User");
  const socketGroup = gatewayEnv.HOTPOTATO_SOCKET_GROUP;
  assert.equal(gatewayUser, "hotpotato-gw");
  assert.equal(one(gateway, "Group"), "hotpotato-gw");
  assert.equal(one(gateway, "DynamicUser"), "", "the gateway's user is static (it owns the keys)");
  assert.equal(socketGroup, "hotpotato");
  assert.deepEqual(one(gateway, "SupplementaryGroups").split(/\s+/), [socketGroup]);
  assert.equal(gatewayEnv.HOTPOTATO_GATEWAY_USER, gatewayUser);
  // The admin port on loopback, said explicitly; no trusted PROXY range by default.
  assert.equal(gatewayEnv.HOTPOTATO_ADMIN_HOST, "127.0.0.1");
  assert.equal(gatewayEnv.HOTPOTATO_PROXY_TRUSTED, undefined);
  // The keys are under /etc/hotpotato, which the function units cannot see.
  for (const key of ["HOTPOTATO_KEY", "HOTPOTATO_TICKET_KEY_FILE"]) {
    assert.ok(gatewayEnv[key].startsWith("/etc/hotpotato/"), `${key}=${gatewayEnv[key]}`);
  }

  const control = gatewayEnv.HOTPOTATO_CONTROL;
  const socketDir = control.slice(0, control.lastIndexOf("/"));
  for (const unit of FUNCTIONS) {
    const fn = await serviceSettings(unit);
    const env = environment(fn);
    // A user per function, allocated by systemd, never the gateway's.
    assert.equal(one(fn, "DynamicUser"), "yes", unit);
    const user = one(fn, "User");
    assert.equal(user, "hotpotato-fn-%i", unit);
    assert.equal(one(fn, "Group"), "", `${unit}: a group of its own, as DynamicUser= makes it`);
    assert.notEqual(user.replaceAll("%i", "sum"), gatewayUser);
    // The gateway takes function sum's registration from exactly this user.
    assert.equal(
      functionUser(gatewayEnv.HOTPOTATO_FUNCTION_USERS, "sum"),
      user.replaceAll("%i", "sum"),
    );
    assert.deepEqual(one(fn, "SupplementaryGroups").split(/\s+/), [socketGroup], unit);
    assert.equal(env.HOTPOTATO_SOCKET_GROUP, socketGroup, unit);
    assert.equal(env.HOTPOTATO_GATEWAY_USER, gatewayUser, unit);
    assert.equal(env.HOTPOTATO_CONTROL, control, unit);
    // No way to /etc/hotpotato: hidden (no "-": the unit fails rather than
    // run without it), nothing mounted back, no key setting.
    const hidden = (fn.get("InaccessiblePaths") ?? []).flatMap((v) => v.split(/\s+/));
    assert.ok(hidden.includes("/etc/hotpotato"), `${unit}: InaccessiblePaths=${hidden}`);
    for (const key of ["BindPaths", "BindReadOnlyPaths", "ReadOnlyPaths"]) {
      assert.equal(fn.get(key), undefined, `${unit}: ${key}`);
    }
    for (const key of ["HOTPOTATO_KEY", "HOTPOTATO_TICKET_KEY_FILE", "HOTPOTATO_CERT"]) {
      assert.equal(env[key], undefined, `${unit}: ${key}`);
    }
  }
  // Every service writes only the socket directory, made by tmpfiles.d, not
  // a RuntimeDirectory= of its own.
  for (const unit of [GATEWAY, ...FUNCTIONS]) {
    const s = await serviceSettings(unit);
    assert.deepEqual(s.get("ReadWritePaths"), [socketDir], unit);
    assert.equal(s.get("RuntimeDirectory"), undefined, unit);
    assert.equal(one(s, "ProtectSystem"), "strict", unit);
  }
  // The rule is real: a "*" entry that maps to another prefix is caught.
  assert.notEqual(functionUser("*=fn-*", "sum"), "hotpotato-fn-sum");
  assert.equal(functionUser("sum=10002,*=fn-*", "sum"), "10002");
});

Deno.test({
  name:
    "systemd: sysusers.d and tmpfiles.d make the users and the socket directories the units use",
  ignore: !asRoot,
  async fn() {
    const gatewayEnv = environment(await serviceSettings(GATEWAY));
    const control = gatewayEnv.HOTPOTATO_CONTROL;
    const socketDir = control.slice(0, control.lastIndexOf("/"));
    const root = await Deno.makeTempDir({ prefix: "hotpotato-root-" });
    try {
      await Deno.mkdir(`${root}/etc`);
      for (
        const [tool, file] of [
          ["systemd-sysusers", `${SYSTEMD}/hotpotato.sysusers.conf`],
          ["systemd-tmpfiles", `${SYSTEMD}/hotpotato.tmpfiles.conf`],
        ]
      ) {
        const out = await new Deno.Command(tool, {
          args: [`--root=${root}`, ...tool === "systemd-tmpfiles" ? ["--create"] : [], file],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.equal(out.code, 0, `${tool}: ${new TextDecoder().decode(out.stderr)}`);
      }
      const lines = async (f: string) =>
        (await Deno.readTextFile(`${root}/etc/${f}`)).trim().split("\n").map((l) => l.split(":"));
      const passwd = await lines("passwd");
      const group = await lines("group");
      const gw = passwd.find((p) => p[0] === gatewayEnv.HOTPOTATO_GATEWAY_USER);
      const sockets = group.find((g) => g[0] === gatewayEnv.HOTPOTATO_SOCKET_GROUP);
      assert.ok(gw && sockets, JSON.stringify({ passwd, group }));
      assert.equal(gw[6], "/usr/sbin/nologin");
      assert.deepEqual(sockets[3].split(","), [gw[0]], "the gateway's user is in the socket group");
      assert.notEqual(gw[3], sockets[2], "the gateway's primary group is its own");
      // /run/hotpotato: the gateway's, 02750; peers/: root's, 03770; both of the socket group.
      const dir = await Deno.stat(`${root}${socketDir}`);
      const peers = await Deno.stat(`${root}${socketDir}/peers`);
      assert.deepEqual(
        [dir.mode! & 0o7777, dir.uid, dir.gid],
        [0o2750, Number(gw[2]), Number(sockets[2])],
      );
      assert.deepEqual([peers.mode! & 0o7777, peers.uid, peers.gid], [
        0o3770,
        0,
        Number(sockets[2]),
      ]);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

/** A container's environment as a record. */
function env(c: IContainer): Record<string, string> {
  return Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? ""]));
}

const manifest = await Deno.readTextFile(`${projectRoot}/deploy/kubernetes/hotpotato.yaml`);
/** The manifest's documents as kubectl reads them (YAML 1.1: `0440` is
 * octal, an unquoted `on` is true). */
const manifestDocs = () => parseAllDocuments(manifest, { version: "1.1" }).map((d) => d.toJS());

Deno.test("Kubernetes manifests: valid against the schemas; a uid for each container; the keys in the gateway's only", () => {
  const docs = manifestDocs();
  assert.deepEqual(docs.map((d) => d.kind), ["Deployment", "Service"]);
  const deployment = new Deployment(docs[0]);
  deployment.validate(); // throws with the schema's complaint
  new Service(docs[1]).validate();
  const pod = deployment.spec!.template.spec!;
  const [gateway, ...functions] = pod.containers;
  assert.equal(gateway.name, "gateway");
  assert.deepEqual(functions.map((c) => c.name), ["sum", "product"]);

  // Users: one per container, none root; the pod's fsGroup is the socket group.
  assert.equal(pod.securityContext?.runAsNonRoot, true);
  assert.equal(pod.securityContext?.runAsUser, undefined);
  const uids = pod.containers.map((c) => c.securityContext?.runAsUser);
  assert.deepEqual(uids, [10001, 10002, 10003]);
  for (const c of pod.containers) {
    assert.equal(c.securityContext?.runAsNonRoot, true, c.name);
    assert.equal(c.securityContext?.runAsGroup, c.securityContext?.runAsUser, c.name);
    assert.equal(c.securityContext?.allowPrivilegeEscalation, false, c.name);
  }
  const fsGroup = pod.securityContext?.fsGroup;
  assert.equal(fsGroup, 10000);
  // One pid namespace: peer sockets are named by pid, and SO_PEERCRED reads
  // 0 for a process in another container's namespace.
  assert.equal(pod.shareProcessNamespace, true);
  assert.equal(pod.automountServiceAccountToken, false);

  // The settings every role reads agree with those users.
  const control = env(gateway).HOTPOTATO_CONTROL;
  for (const c of pod.containers) {
    const e = env(c);
    assert.equal(e.HOTPOTATO_SOCKET_GROUP, String(fsGroup), c.name);
    assert.equal(e.HOTPOTATO_GATEWAY_USER, String(gateway.securityContext!.runAsUser), c.name);
    assert.equal(e.HOTPOTATO_CONTROL, control, c.name);
    assert.equal(e.HOTPOTATO_PROXY_TRUSTED, undefined, `${c.name}: no default trusted range`);
    // Every container shares the sockets' emptyDir and runs its role's flags.
    assert.ok(c.volumeMounts?.some((m) => m.name === "run" && m.mountPath === "/run/hotpotato"));
    assert.deepEqual(c.command!.slice(0, 5), ["deno", "run", ...SERVER_FLAGS]);
  }
  const functionUsers = env(gateway).HOTPOTATO_FUNCTION_USERS;
  assert.deepEqual(
    functionUsers.split(",").sort(),
    functions.map((c) => `${c.name}=${c.securityContext!.runAsUser}`).sort(),
  );
  // Each function's routes are declared: it registers those or none.
  const routes = new Trust({
    socketGroup: "",
    gatewayUser: "",
    functionRoutes: env(gateway).HOTPOTATO_FUNCTION_ROUTES,
  });
  for (const c of functions) {
    assert.equal(routes.registerRefusal(c.name!, 1, [`/${c.name}`]), "", c.name);
    assert.match(routes.registerRefusal(c.name!, 1, ["/other"]), /not one declared/);
  }
  // The control socket's directory is the gateway's own, below the volume's root.
  assert.match(control, /^\/run\/hotpotato\/[^/]+\/[^/]+$/);

  // Secrets: mounted in the gateway's container only; the key settings point into them.
  const secrets = pod.volumes!.filter((v) => v.secret);
  assert.deepEqual(secrets.map((v) => v.name).sort(), ["ticket-key", "tls"]);
  for (const v of secrets) assert.equal(v.secret!.defaultMode, 0o440, v.name);
  const mountedBy = (volume: string) =>
    pod.containers.filter((c) => c.volumeMounts?.some((m) => m.name === volume)).map((c) => c.name);
  for (const v of secrets) assert.deepEqual(mountedBy(v.name), ["gateway"], v.name);
  const secretMounts = gateway.volumeMounts!.filter((m) => secrets.some((v) => v.name === m.name));
  for (const key of ["HOTPOTATO_KEY", "HOTPOTATO_TICKET_KEY_FILE"]) {
    const path = env(gateway)[key];
    assert.ok(secretMounts.some((m) => path.startsWith(`${m.mountPath}/`)), `${key}=${path}`);
  }
  // Nothing else writable is shared: each container has its own /tmp.
  for (const v of pod.volumes!) {
    if (v.name !== "run") assert.ok(mountedBy(v.name).length <= 1, `${v.name}: shared`);
  }
  // The PROXY ranges are the operator's to set: the header says how.
  assert.match(
    manifest,
    /kubectl set env deployment\/hotpotato -c gateway \\\n#\s+HOTPOTATO_PROXY_TRUSTED=/,
  );

  // A broken manifest is caught (the check is real).
  assert.throws(() =>
    new Deployment({ ...docs[0], spec: { ...docs[0].spec, replicas: "two" } }).validate()
  );
});

Deno.test({
  name:
    "Kubernetes: the admin port is on loopback, and the exec probe reads /healthz there (200 passes, 503 and no answer fail)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const pod = new Deployment(manifestDocs()[0]).spec!.template.spec!;
    const gateway = pod.containers[0];
    const e = env(gateway);
    assert.equal(e.HOTPOTATO_ADMIN_HOST, "127.0.0.1");
    // No probe over the pod's address: the admin port is not there.
    for (const c of pod.containers) {
      for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
        assert.ok(!probe?.httpGet && !probe?.tcpSocket && !probe?.grpc, c.name);
      }
      assert.ok(!c.ports?.some((p) => p.containerPort === Number(e.HOTPOTATO_ADMIN_PORT)));
    }
    const command = gateway.readinessProbe!.exec!.command!;
    assert.deepEqual(gateway.livenessProbe!.exec!.command, command);
    const target = `/dev/tcp/127.0.0.1/${e.HOTPOTATO_ADMIN_PORT}`;
    assert.ok(command[2].includes(target), command[2]);

    let health: "ok" | "draining" = "ok";
    const admin = new AdminServer("127.0.0.1", 0, (head) =>
      adminAnswer(head, {
        metrics: () => "",
        unhealthy: () => ({ status: health }),
        functions: () => [{ name: "sum", routes: ["/sum"], workers: 1 }],
      }));
    const port = admin.start();
    const probe = async () => {
      const [shell, ...args] = command;
      const out = await new Deno.Command(shell, {
        args: args.map((a) => a.replace(target, `/dev/tcp/127.0.0.1/${port}`)),
        stdout: "piped",
        stderr: "piped",
      }).output();
      return out.code;
    };
    try {
      assert.equal(await probe(), 0);
      health = "draining"; // 503
      assert.notEqual(await probe(), 0);
      health = "ok";
      assert.equal(await probe(), 0);
    } finally {
      admin.stop();
    }
    assert.notEqual(await probe(), 0, "nothing listening");
    await EventLoop.instance().close();
  },
});
