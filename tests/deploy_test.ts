/**
 * The deployment files people run (issue 12), checked with what can check
 * them here: the systemd units with `systemd-analyze verify` (paths pointed
 * at this checkout), the Kubernetes manifests against the Kubernetes schemas
 * (npm kubernetes-models, generated from the OpenAPI definitions). Neither
 * is run on a real init system or cluster by this test.
 */

import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { Deployment } from "kubernetes-models/apps/v1";
import { Service } from "kubernetes-models/v1";
import { projectRoot } from "../ffi/paths.ts";
import { SERVER_FLAGS } from "../src/operations/roles.ts";

const UNITS = [
  "hotpotato-gateway.service",
  "hotpotato-function@.service",
  "hotpotato-function-next@.service",
  "hotpotato.target",
];

Deno.test("systemd units: systemd-analyze verify finds nothing; each role has its task's permissions", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hotpotato-units-" });
  try {
    for (const unit of UNITS) {
      const text = await Deno.readTextFile(`${projectRoot}/deploy/systemd/${unit}`);
      if (unit.endsWith(".service")) {
        const exec = text.match(/^ExecStart=\S+ (.*)$/m)?.[1] ?? "";
        assert.ok(exec.startsWith(`run ${SERVER_FLAGS.join(" ")} `), `${unit}: ${exec}`);
      }
      await Deno.writeTextFile(`${dir}/${unit}`, text.replaceAll("/opt/hotpotato", projectRoot));
    }
    const out = await new Deno.Command("systemd-analyze", {
      args: [
        "verify",
        "--man=no",
        `${dir}/hotpotato-gateway.service`,
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

Deno.test("Kubernetes manifests: valid against the schemas; one uid for every container", async () => {
  const text = await Deno.readTextFile(`${projectRoot}/deploy/kubernetes/hotpotato.yaml`);
  const docs = parseAllDocuments(text).map((d) => d.toJS());
  assert.deepEqual(docs.map((d) => d.kind), ["Deployment", "Service"]);
  const deployment = new Deployment(docs[0]);
  deployment.validate(); // throws with the schema's complaint
  new Service(docs[1]).validate();
  const pod = deployment.spec!.template.spec!;
  assert.equal(pod.securityContext?.runAsUser, 10001);
  assert.ok(pod.containers.every((c) => c.securityContext?.runAsUser === undefined));
  // Every container shares the control socket's emptyDir and runs its role's flags.
  for (const c of pod.containers) {
    assert.ok(c.volumeMounts?.some((m) => m.name === "run" && m.mountPath === "/run/hotpotato"));
    assert.deepEqual(c.command!.slice(0, 5), ["deno", "run", ...SERVER_FLAGS]);
  }
  // A broken manifest is caught (the check is real).
  assert.throws(() =>
    new Deployment({ ...docs[0], spec: { ...docs[0].spec, replicas: "two" } }).validate()
  );
});
