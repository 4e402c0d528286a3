-- Fixed-rate pacing, loaded by the scripts that take it: with BENCH_RATE set, the k-th answered
-- request of this thread is followed by the next one no earlier than k / BENCH_RATE seconds
-- after the first answer, so the latencies are those at that rate rather than at saturation.
-- When the server falls behind, requests go out late and the achieved rate shows it.
local rate = tonumber(os.getenv("BENCH_RATE") or "")
if rate then
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock, bench_timespec *ts);
  ]]
  local ts = ffi.new("bench_timespec")
  local CLOCK_MONOTONIC = 1
  local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local first, slots = nil, 0
  delay = function()
    local t = now_ms()
    first = first or t
    slots = slots + 1
    return math.max(0, math.floor(first + slots * 1000 / rate - t))
  end
end
