-- Shared by the heavyread wrk scripts (loaded with dofile from each).
--
-- Environment: HR_IDS (number of seeded posts, ids post-0 .. post-(N-1)).
-- done() prints exact figures for heavyread-bench to parse:
--   HR_SUMMARY requests=.. duration_us=.. bytes=.. connect=.. read=.. write=.. status=.. timeout=..
--   HR_LATENCY <percentile> <microseconds>   (one line per point of the curve)

hr = {}
hr.ids = tonumber(os.getenv("HR_IDS") or "100000")

-- The same points as heavyread-bench's stats::CURVE.
hr.points = { 0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96, 97,
              98, 99, 99.25, 99.5, 99.75, 99.9, 99.95, 99.99, 99.999, 100 }

function hr.seed()
  -- Each thread has its own Lua state: mix in a per-state address.
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000003)
end

function hr.random_id()
  return "post-" .. math.random(0, hr.ids - 1)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "HR_SUMMARY requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout))
  for _, p in ipairs(hr.points) do
    local us
    if p <= 0 then us = latency.min elseif p >= 100 then us = latency.max else us = latency:percentile(p) end
    io.write(string.format("HR_LATENCY %s %d\n", tostring(p), us))
  end
end
