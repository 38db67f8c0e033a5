-- mixed.lua - the soak's HTTP mix, paced by delay(): static file, return,
-- 404, one group by id, the group list, the dashboard JSON (basic auth)
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
local token = os.getenv("BENCH_TOKEN")
local basic = os.getenv("BENCH_BASIC")
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "2")
local groups = {}
for line in io.lines(os.getenv("BENCH_GROUPS")) do
  if #line > 0 then groups[#groups + 1] = line end
end
local auth = { ["Authorization"] = "Bearer " .. token }
local i = 0
function request()
  i = i + 1
  local k = i % 20
  local g = groups[(i % #groups) + 1]
  if k < 8 then return wrk.format("GET", "/bench/static") end
  if k < 14 then return wrk.format("GET", "/bench/return") end
  if k < 16 then return wrk.format("GET", "/no/such/path/" .. (i % 1000)) end
  if k < 18 then return wrk.format("GET", "/api/chat/groups/" .. g, auth) end
  if k < 19 then return wrk.format("GET", "/api/chat/groups", auth) end
  if i % 200 == 19 then
    return wrk.format("GET", "/dashboard/api/data", { ["Authorization"] = basic })
  end
  return wrk.format("GET", "/bench/static")
end
function delay() return pause end
