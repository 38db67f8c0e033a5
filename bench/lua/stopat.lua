-- stopat.lua - each thread stops after BENCH_LIMIT responses
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
local limit = tonumber(os.getenv("BENCH_LIMIT") or "500000")
local n = 0
function response(status, headers, body)
  n = n + 1
  if n >= limit then wrk.thread:stop() end
end
