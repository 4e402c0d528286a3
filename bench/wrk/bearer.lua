-- GET of wrk's path with the bearer token BENCH_TOKEN.
local headers = { ["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "") }
request = function()
  return wrk.format("GET", nil, headers)
end
