import assert from "node:assert/strict";
import { covers, RouteTable } from "../src/routing/route_table.ts";
import { prng } from "./support/prng.ts";

Deno.test("a route covers itself and the paths below it at a '/' boundary", () => {
  assert.equal(covers("/sum", "/sum"), true);
  assert.equal(covers("/sum", "/sum/"), true);
  assert.equal(covers("/sum", "/sum/x/y"), true);
  assert.equal(covers("/sum", "/summary"), false);
  assert.equal(covers("/sum", "/su"), false);
  assert.equal(covers("/sum", "/other/sum"), false);
  assert.equal(covers("/sum/", "/sum/x"), true, "a trailing '/' covers what starts with it");
  assert.equal(covers("/sum/", "/sum"), false);
  assert.equal(covers("/", "/"), true);
  assert.equal(covers("/", "/anything/at/all"), true, "'/' covers every path");
  assert.equal(covers("/a/b", "/a"), false, "never upwards");
});

Deno.test("match: the longest covering route wins, never a mere string prefix", () => {
  const t = new RouteTable([["/a", "x"], ["/a/b", "y"], ["/sum", "sum"]]);
  assert.deepEqual(t.match("/a"), { route: "/a", value: "x" });
  assert.deepEqual(t.match("/a/x"), { route: "/a", value: "x" });
  assert.deepEqual(t.match("/a/b"), { route: "/a/b", value: "y" });
  assert.deepEqual(t.match("/a/b/c"), { route: "/a/b", value: "y" });
  assert.deepEqual(t.match("/a/bc"), { route: "/a", value: "x" });
  assert.deepEqual(t.match("/a//b"), { route: "/a", value: "x" });
  assert.equal(t.match("/summary"), undefined);
  assert.equal(t.match("/"), undefined);
  assert.equal(t.match(""), undefined);
  assert.equal(t.match("*"), undefined, "OPTIONS * has no route");
  assert.equal(t.match("/b/a"), undefined);
});

Deno.test("match: '/' is the fallback; a trailing '/' route beats its bare form below it", () => {
  const t = new RouteTable([["/", "root"], ["/a", "x"], ["/a/", "slash"]]);
  assert.equal(t.match("/")?.value, "root");
  assert.equal(t.match("/zzz")?.value, "root");
  assert.equal(t.match("/a")?.value, "x");
  assert.equal(t.match("/a/")?.value, "slash");
  assert.equal(t.match("/a/q")?.value, "slash");
  assert.equal(t.match("/ab")?.value, "root");
});

Deno.test("the table can change: set replaces, delete removes, entries lists", () => {
  const t = new RouteTable<string>();
  t.set("/a", "x");
  t.set("/a/b", "y");
  t.set("/a", "z");
  assert.equal(t.size, 2);
  assert.equal(t.get("/a"), "z");
  assert.equal(t.match("/a/q")?.value, "z");
  assert.equal(t.delete("/a/b"), true);
  assert.equal(t.delete("/a/b"), false);
  assert.equal(t.match("/a/b/c")?.value, "z");
  assert.deepEqual([...t.entries()], [{ route: "/a", value: "z" }]);
});

Deno.test("match agrees with the rule (longest route that covers) on random tables and paths", () => {
  const rnd = prng(0x7ab1e);
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  const segments = ["a", "b", "ab", "", "sum", "s"];
  const randomPath = () => {
    let p = "";
    for (let n = 1 + Math.floor(rnd() * 4); n > 0; n--) p += "/" + pick(segments);
    return p;
  };
  for (let round = 0; round < 300; round++) {
    const routes = new Set<string>();
    for (let n = Math.floor(rnd() * 8); n > 0; n--) routes.add(rnd() < 0.05 ? "/" : randomPath());
    const table = new RouteTable([...routes].map((r) => [r, r.toUpperCase()] as const));
    for (let k = 0; k < 40; k++) {
      const path = randomPath();
      const expected = [...routes].filter((r) => covers(r, path))
        .sort((x, y) => y.length - x.length)[0];
      const got = table.match(path);
      assert.equal(got?.route, expected, `${path} in ${[...routes].join(" ")}`);
      if (got) assert.equal(got.value, got.route.toUpperCase());
    }
  }
});
