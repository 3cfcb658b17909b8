-- Pipelined reads: each connection writes HR_DEPTH requests (default 16)
-- at once and waits for all the answers. wrk counts every answer; its
-- latency is per batch.
-- Environment: HR_IDS (seeded posts), HR_DEPTH.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local depth = tonumber(os.getenv("HR_DEPTH") or "16")

function init(args)
  hr.seed()
end

function request()
  local batch = {}
  for i = 1, depth do
    batch[i] = wrk.format("GET", "/post?id=" .. hr.random_id())
  end
  return table.concat(batch)
end
