-- alternate.lua, plus one line on stdout for every answer other than 200
-- (its status and the start of its body), so a benchmark can say which
-- errors the live connections saw (bench/gateway_kill.sh counts them).
dofile((os.getenv("BENCH_DIR") or "bench") .. "/alternate.lua")
response = function(status, _, body)
  if status ~= 200 then
    io.write("not-200 " .. status .. " " .. string.sub(body or "", 1, 100) .. "\n")
  end
end
