-- A new TLS connection for every request (Connection: close). The gateway
-- runs with --tls-resumption off, so each one is a full handshake; the
-- gateway's counters prove it (handshakes ~= requests, resumed = 0).
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/sum?a=" .. n .. "&b=1", { ["Connection"] = "close" })
end
