-- Password sign-in through to the code: POST /login (form, CSRF cookie and field) answers 303
-- to the authorization request with a session cookie; following it answers the redirect to the
-- client with a code. Users rotate over BENCH_USERS seeded accounts.
local users = tonumber(os.getenv("BENCH_USERS") or "1")
local password = os.getenv("BENCH_PASSWORD_ENC")
local return_to = os.getenv("BENCH_RETURN_TO_ENC")
local csrf = string.rep("c", 43)
local pending = {}
local i = 0
codes = 0
request = function()
  local follow = table.remove(pending)
  if follow then
    return wrk.format("GET", follow.path, { ["Cookie"] = follow.cookie })
  end
  i = i + 1
  local email = string.format("bench-%05d%%40bench.example", i % users)
  local body = "email=" .. email .. "&password=" .. password .. "&csrf_token=" .. csrf .. "&return_to=" .. return_to
  return wrk.format("POST", "/login", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Cookie"] = "ot_csrf=" .. csrf,
  }, body)
end
response = function(status, headers, body)
  local location = headers["location"] or headers["Location"] or ""
  if string.find(location, "code=", 1, true) then
    codes = codes + 1
  elseif string.sub(location, 1, 17) == "/oauth2/authorize" then
    local set = headers["set-cookie"] or headers["Set-Cookie"] or ""
    local session = string.match(set, "(ot_session=[^;]+)")
    if session then
      pending[#pending + 1] = { path = location, cookie = session }
    end
  end
end

local threads = {}
setup = function(thread)
  threads[#threads + 1] = thread
end
done = function(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do
    total = total + t:get("codes")
  end
  io.write(string.format("Codes: %d in %.3f s\n", total, summary.duration / 1e6))
end
