-- GET of wrk's path with the cookie BENCH_COOKIE.
local headers = { ["Cookie"] = os.getenv("BENCH_COOKIE") or "" }
request = function()
  return wrk.format("GET", nil, headers)
end
