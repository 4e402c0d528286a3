-- Authorization-code exchange: each request redeems the next pre-issued code of the file
-- BENCH_CODES (one per line) with the PKCE verifier BENCH_VERIFIER. Each code is used once;
-- when the file runs out the requests fail and count as errors.
local codes, n = {}, 0
for line in io.lines(os.getenv("BENCH_CODES")) do
  n = n + 1
  codes[n] = line
end
local offset = tonumber(os.getenv("BENCH_OFFSET") or "0")
local i = 0
local headers = {
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Authorization"] = "Basic " .. os.getenv("BENCH_BASIC"),
}
local tail = "&redirect_uri=" .. os.getenv("BENCH_REDIRECT") .. "&code_verifier=" .. os.getenv("BENCH_VERIFIER")
request = function()
  i = i + 1
  local code = codes[offset + i] or "exhausted"
  return wrk.format("POST", nil, headers, "grant_type=authorization_code&code=" .. code .. tail)
end
dofile("bench/wrk/pace.lua")
