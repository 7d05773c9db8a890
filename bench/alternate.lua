-- Keep-alive, the route alternates on every request OF EACH CONNECTION
-- (/sum, /product, /sum, ...): a handoff per request for hot potato. Needs
-- the patched wrk (bench/wrk/connection.patch), which tells request() the
-- connection it writes to; stock wrk would alternate per thread. The
-- gateway's counters prove it (returned ~= requests).
package.path = package.path .. ";" .. (os.getenv("BENCH_DIR") or "bench") .. "/?.lua"
require("wrk_report")
local count = {}
request = function(conn)
  local n = (count[conn] or 0) + 1
  count[conn] = n
  if n % 2 == 0 then
    return wrk.format("GET", "/product?a=" .. n .. "&b=2")
  end
  return wrk.format("GET", "/sum?a=" .. n .. "&b=1")
end
done = report
