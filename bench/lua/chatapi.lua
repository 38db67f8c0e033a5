-- chatapi.lua - the chat API: BENCH_OP=get (a page of messages) or
-- post (a new message), over the groups in BENCH_GROUPS (a file of ids),
-- with the bearer token BENCH_TOKEN.
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
local op = os.getenv("BENCH_OP") or "get"
local token = os.getenv("BENCH_TOKEN")
local groups = {}
for line in io.lines(os.getenv("BENCH_GROUPS")) do
  if #line > 0 then groups[#groups + 1] = line end
end
local i = 0
local hdr = { ["Authorization"] = "Bearer " .. token,
              ["Content-Type"] = "application/json" }
function request()
  i = i + 1
  local g = groups[(i % #groups) + 1]
  if op == "post" then
    return wrk.format("POST", "/api/chat/groups/" .. g .. "/messages", hdr,
                      '{"content":"bench message ' .. i .. '"}')
  end
  return wrk.format("GET", "/api/chat/groups/" .. g .. "/messages?limit=50",
                    hdr)
end
