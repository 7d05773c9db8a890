-- Keep-alive, the route changes every k requests OF EACH CONNECTION, k from
-- BENCH_RUN_LENGTH (default 1): k × /sum, k × /product, k × /sum, ... For
-- hot potato, a handoff every k requests (k = 1 is alternate.lua). Needs the
-- patched wrk (bench/wrk/connection.patch), which tells request() the
-- connection it writes to. The gateway's counters prove it (route changes ~=
-- requests / k).
package.path = package.path .. ";" .. (os.getenv("BENCH_DIR") or "bench") .. "/?.lua"
require("wrk_report")
local k = tonumber(os.getenv("BENCH_RUN_LENGTH") or "1")
if not k or k < 1 or k ~= math.floor(k) then
  error("BENCH_RUN_LENGTH must be a whole number >= 1, got " .. tostring(os.getenv("BENCH_RUN_LENGTH")))
end
local count = {}
request = function(conn)
  local n = (count[conn] or 0) + 1
  count[conn] = n
  if math.floor((n - 1) / k) % 2 == 1 then
    return wrk.format("GET", "/product?a=" .. n .. "&b=2")
  end
  return wrk.format("GET", "/sum?a=" .. n .. "&b=1")
end
done = report
