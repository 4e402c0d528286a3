-- POST of the form BENCH_BODY to wrk's path, with HTTP Basic BENCH_BASIC ("id:secret",
-- already base64) when given.
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
local basic = os.getenv("BENCH_BASIC")
if basic and basic ~= "" then
  headers["Authorization"] = "Basic " .. basic
end
local body = os.getenv("BENCH_BODY") or ""
request = function()
  return wrk.format("POST", nil, headers, body)
end
