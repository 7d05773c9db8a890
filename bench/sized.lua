-- Keep-alive GETs of BENCH_SIZE-byte bodies: /sum?size=N on every request,
-- or, with BENCH_ALTERNATE=1, /sum and /product alternating on each
-- connection (patched wrk: bench/wrk/connection.patch). bench/sizes.ts.
package.path = package.path .. ";" .. (os.getenv("BENCH_DIR") or "bench") .. "/?.lua"
require("wrk_report")
local size = os.getenv("BENCH_SIZE") or "1024"
local alternate = os.getenv("BENCH_ALTERNATE") == "1"
local count = {}
request = function(conn)
  local n = (count[conn] or 0) + 1
  count[conn] = n
  if alternate and n % 2 == 0 then
    return wrk.format("GET", "/product?size=" .. size)
  end
  return wrk.format("GET", "/sum?size=" .. size)
end
done = report
