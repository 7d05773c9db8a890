/**
 * Who may talk to whom (src/handoff/trust.ts) and the admin port's
 * signatures (src/operations/admin_signature.ts), in process, with real
 * sockets for the kernel's credentials.
 */

import assert from "node:assert/strict";
import { closeFd, processUid, unixConnect, unixListen } from "../ffi/shim.ts";
import { functionUserOf, Trust, TrustError } from "../src/handoff/trust.ts";
import {
  answerProof,
  provesAnswer,
  SignatureCheck,
  signRequest,
} from "../src/operations/admin_signature.ts";
import { logger } from "../src/operations/log.ts";
import { declarationProblems, parseDeclaration } from "../src/operations/declarations.ts";

Deno.test("--function-users: an entry of its own first, then the pattern; bad lists refused", () => {
  assert.equal(functionUserOf("*=hotpotato-fn-*", "sum"), "hotpotato-fn-sum");
  assert.equal(functionUserOf("*=fn-*-x,decimal=61003", "decimal"), "61003");
  assert.equal(functionUserOf("*=fn-*-x,decimal=61003", "sum"), "fn-sum-x");
  assert.equal(functionUserOf("sum=61001", "product"), undefined);
  for (const bad of ["sum", "=x", "*=a*b*c", "*=a*,*=b*", "*=nostar"]) {
    assert.throws(() => functionUserOf(bad, "sum"), TrustError, bad);
  }
});

Deno.test("one user: everyone may register anything; JOIN needs the proof only with a secret", () => {
  const open = new Trust({ socketGroup: "", gatewayUser: "" });
  assert.equal(open.separateUsers, false);
  assert.equal(open.socketMode, 0o600);
  assert.equal(open.registerRefusal("product", processUid()), "");
  assert.equal(open.proves("JOIN", 1, 2, undefined), true, "no secret: the uid check only");
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const gw = new Trust({ socketGroup: "", gatewayUser: "", secret });
  const proof = gw.proof("JOIN", 100, 200)!;
  assert.match(proof, /^[0-9a-f]{64}$/);
  assert.equal(gw.proves("JOIN", 100, 200, proof), true);
  assert.equal(gw.proves("JOIN", 100, 201, proof), false, "another client pid");
  assert.equal(gw.proves("JOIN", 101, 200, proof), false, "another server pid (a fake gateway)");
  assert.equal(gw.proves("TAKEOVER", 100, 200, proof), false, "another message type");
  assert.equal(gw.proves("JOIN", 100, 200, undefined), false);
  const other = new Trust({ socketGroup: "", gatewayUser: "", secret: new Uint8Array(32) });
  assert.equal(gw.proves("JOIN", 100, 200, other.proof("JOIN", 100, 200)), false);
});

Deno.test("separate users: REGISTER of a name only from its user, never from the gateways'", () => {
  const t = new Trust({
    socketGroup: "0",
    gatewayUser: "61000",
    functionUsers: "sum=61001,*=nosuchuser-fn-*",
  });
  assert.equal(t.separateUsers, true);
  assert.equal(t.socketMode, 0o660);
  assert.equal(t.registerRefusal("sum", 61001), "");
  assert.match(t.registerRefusal("sum", 61002), /runs as user 61001, not uid 61002/);
  assert.match(t.registerRefusal("sum", 61000), /not run as the gateways' user/);
  assert.match(
    t.registerRefusal("product", 61001),
    /user nosuchuser-fn-product, which does not exist/,
  );
  assert.equal(t.isGateway(61000), true);
  assert.equal(t.isGateway(61001), false);
  assert.throws(
    () => new Trust({ socketGroup: "", gatewayUser: "", functionUsers: "sum=1" }),
    /needs --socket-group/,
  );
  assert.throws(() => new Trust({ socketGroup: "no-such-group-x", gatewayUser: "" }), TrustError);
});

Deno.test("admit: the kernel's uid decides; refused sockets are closed and counted", () => {
  const dir = Deno.makeTempDirSync();
  const listen = unixListen(`${dir}/s.sock`);
  const log = logger("test");
  try {
    const me = new Trust({ socketGroup: "", gatewayUser: "" });
    const fd = unixConnect(`${dir}/s.sock`);
    assert.equal(me.admit(fd, "gateway", "test", log)?.pid, Deno.pid);
    closeFd(fd);
    // A process whose gateways run as another user refuses us as a gateway.
    const elsewhere = new Trust({ socketGroup: "0", gatewayUser: String(processUid() + 1) });
    const refused: string[] = [];
    elsewhere.onRefused((r) => refused.push(r));
    const fd2 = unixConnect(`${dir}/s.sock`);
    assert.equal(elsewhere.admit(fd2, "gateway", "test", log), undefined);
    assert.deepEqual(refused, ["not the gateway user"]);
    assert.throws(() => Deno.readLinkSync(`/proc/self/fd/${fd2}`), "the refused socket is closed");
    // As a role it passes: our own uid.
    const fd3 = unixConnect(`${dir}/s.sock`);
    assert.ok(elsewhere.admit(fd3, "role", "test", log));
    closeFd(fd3);
  } finally {
    closeFd(listen);
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("admin signatures: bound to the request, the gateway's pid and the time; once each", () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const check = new SignatureCheck(key, 4242);
  const now = Date.now();
  const { header, nonce } = signRequest(key, "POST", "/admin/promote?function=sum", 4242, now);
  assert.equal(check.verify("POST", "/admin/promote?function=product", header, now), undefined);
  assert.equal(check.verify("GET", "/admin/promote?function=sum", header, now), undefined);
  assert.equal(check.verify("POST", "/admin/promote?function=sum", header, now), nonce);
  assert.equal(
    check.verify("POST", "/admin/promote?function=sum", header, now),
    undefined,
    "replay",
  );
  const forOther = signRequest(key, "GET", "/workers", 4243, now).header;
  assert.equal(check.verify("GET", "/workers", forOther, now), undefined, "another gateway's");
  const old = signRequest(key, "GET", "/workers", 4242, now - 31_000).header;
  assert.equal(check.verify("GET", "/workers", old, now), undefined, "too old");
  const wrongKey = signRequest(new Uint8Array(32), "GET", "/workers", 4242, now).header;
  assert.equal(check.verify("GET", "/workers", wrongKey, now), undefined);
  assert.equal(check.verify("GET", "/workers", undefined, now), undefined);
  assert.equal(check.verify("GET", "/workers", "Bearer x", now), undefined);
  // The answer's proof covers the nonce, the status and the body.
  const proof = check.proof(nonce, 200, '{"ok":true}\n');
  assert.equal(proof, answerProof(key, nonce, 200, '{"ok":true}\n'));
  assert.equal(provesAnswer(key, nonce, 200, '{"ok":true}\n', proof), true);
  assert.equal(provesAnswer(key, nonce, 409, '{"ok":true}\n', proof), false);
  assert.equal(provesAnswer(key, nonce, 200, '{"ok":false}\n', proof), false);
  assert.equal(provesAnswer(key, nonce, 200, '{"ok":true}\n', null), false);
});

Deno.test("declared routes: a function registers what its file declared, nothing else", () => {
  const t = new Trust({
    socketGroup: "",
    gatewayUser: "",
    functionRoutes: '{"sum":["/sum"],"product":["/product"]}',
  });
  assert.equal(t.registerRefusal("sum", processUid(), ["/sum"]), "");
  assert.match(t.registerRefusal("sum", processUid(), ["/sum", "/product/x"]), /not one declared/);
  assert.match(t.registerRefusal("evil", processUid(), ["/evil"]), /no routes are declared/);
  t.declareRoutes("sum", ["/sum", "/add"]); // a reload's new version
  assert.equal(t.registerRefusal("sum", processUid(), ["/add"]), "");
  assert.throws(() => t.declareRoutes("sum", "/sum"), TrustError);
  assert.throws(() => new Trust({ socketGroup: "", gatewayUser: "", functionRoutes: "{" }));
});

Deno.test("the launcher's checks of what the functions' files declare", () => {
  const d = (fn: string, routes: string[], nestedRoutes = false, name = fn) => ({
    fn,
    name,
    routes,
    nestedRoutes,
  });
  assert.deepEqual(
    declarationProblems([d("sum", ["/sum"]), d("product", ["/product"])], new Set()),
    [],
  );
  assert.match(
    declarationProblems([d("sum", ["/sum"]), d("x", ["/sum"])], new Set())[0],
    /both claim \/sum/,
  );
  assert.match(
    declarationProblems([d("a", ["/a"], true), d("a-b", ["/a/b"], true)], new Set())[0],
    /a-b's \/a\/b is under a's \/a: nesting needs both to allow it and HOTPOTATO_ALLOW_NESTED=a-b/,
  );
  assert.deepEqual(
    declarationProblems([d("a", ["/a"], true), d("a-b", ["/a/b"], true)], new Set(["a-b"])),
    [],
  );
  assert.equal(
    declarationProblems([d("a", ["/a"]), d("a-b", ["/a/b"], true)], new Set(["a-b"])).length,
    1,
    "the outer function must allow nesting too",
  );
  assert.match(
    declarationProblems([d("sum", ["/sum"], false, "other")], new Set())[0],
    /registers as "other"/,
  );
  const parsed = parseDeclaration(
    "sum",
    'x\nhotpotato-describe {"name":"sum","routes":["/sum"]}\n',
  );
  assert.deepEqual(parsed, d("sum", ["/sum"]));
  assert.match(parseDeclaration("sum", "nothing") as string, /did not say/);
  assert.match(parseDeclaration("sum", 'hotpotato-describe {"name":1}') as string, /not a name/);
});
