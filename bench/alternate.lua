-- Keep-alive, the route alternates on every request. wrk keeps one Lua state
-- per thread and does not say which connection request() writes to, so the
-- benchmark runs one connection per thread: alternation per thread is then
-- alternation per connection. The gateway's counters prove it (returned
-- connections ~= requests).
local n = 0
request = function()
  n = n + 1
  if n % 2 == 0 then
    return wrk.format("GET", "/product?a=" .. n .. "&b=2")
  end
  return wrk.format("GET", "/sum?a=" .. n .. "&b=1")
end
