-- A new TLS connection for every request (Connection: close), the route
-- alternating per connection slot as in alternate.lua: every request changes
-- route, and without migration a route change is a new connection. Run with
-- WRK_LATENCY_FROM_CONNECT=1 so latency includes TCP connect + handshake.
-- The gateway's counters prove what was measured: handshakes ~= requests;
-- resumed = 0 with --tls-resumption off, resumed ~= handshakes with it on.
package.path = package.path .. ";" .. (os.getenv("BENCH_DIR") or "bench") .. "/?.lua"
require("wrk_report")
local count = {}
local close = { ["Connection"] = "close" }
request = function(conn)
  local n = (count[conn] or 0) + 1
  count[conn] = n
  if n % 2 == 0 then
    return wrk.format("GET", "/product?a=" .. n .. "&b=2", close)
  end
  return wrk.format("GET", "/sum?a=" .. n .. "&b=1", close)
end
done = report
