-- Keep-alive, the same route on every request: no handoff after the first.
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/sum?a=" .. n .. "&b=1")
end
