-- Refresh with rotation: a pool of refresh tokens (file BENCH_REFRESH); each request takes one,
-- each answer puts its successor back, so every token is spent exactly once.
local pool = {}
for line in io.lines(os.getenv("BENCH_REFRESH")) do
  pool[#pool + 1] = line
end
local headers = {
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Authorization"] = "Basic " .. os.getenv("BENCH_BASIC"),
}
request = function()
  local token = table.remove(pool) or "exhausted"
  return wrk.format("POST", nil, headers, "grant_type=refresh_token&refresh_token=" .. token)
end
response = function(status, headers, body)
  local next = string.match(body, '"refresh_token":"([^"]+)"')
  if next then
    pool[#pool + 1] = next
  end
end
dofile("bench/wrk/pace.lua")
