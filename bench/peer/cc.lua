-- wrk script: POST client_credentials to the token endpoint, count non-200s.
-- usage: wrk -t1 -c16 -d5s -s cc.lua http://127.0.0.1:3100/token
wrk.method = "POST"
wrk.headers["Authorization"] = "Basic YmVuY2g6YmVuY2gtc2VjcmV0" -- bench:bench-secret
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=client_credentials&scope=api"

local threads = {}

function setup(thread)
  thread:set("non200", 0)
  table.insert(threads, thread)
end

function init(args)
  non200 = 0
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do
    total = total + (t:get("non200") or 0)
  end
  io.write(string.format("requests: %d, non-200: %d\n", summary.requests, total))
end
