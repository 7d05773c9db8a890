-- Keep-alive, the same route (/sum) on every request: no handoff after the
-- first. request(conn) takes the connection number from the patched wrk
-- (bench/wrk/connection.patch); this script does not need it.
package.path = package.path .. ";" .. (os.getenv("BENCH_DIR") or "bench") .. "/?.lua"
require("wrk_report")
local n = 0
request = function(conn)
  n = n + 1
  return wrk.format("GET", "/sum?a=" .. n .. "&b=1")
end
done = report
