-- randpath.lua - GET /r/<k>, k cycling through BENCH_DISTINCT distinct
-- values in a scrambled order ((offset + i * 7919) mod N: a permutation,
-- since 7919 is prime), so N consecutive requests hit N distinct URIs.
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
local distinct = tonumber(os.getenv("BENCH_DISTINCT") or "5000")
local i = 0
local offset = 0
local head = "GET /r/"
local tail = " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
function init(args)
  math.randomseed(os.time())
  offset = math.random(0, distinct - 1)
end
function request()
  i = i + 1
  return head .. ((offset + i * 7919) % distinct) .. tail
end
