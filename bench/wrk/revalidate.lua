-- A revalidation mix: a share of requests carries the current ETag in
-- If-None-Match (and gets 304), the rest are plain GETs.
-- Environment: HR_IDS (seeded posts), HR_ETAGS (file of `id "etag"` lines,
-- as written by `heavyread-bench export`), HR_REVALIDATE (share 0..1,
-- default 0.8).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local share = tonumber(os.getenv("HR_REVALIDATE") or "0.8")
local etags = {}

function init(args)
  hr.seed()
  local path = os.getenv("HR_ETAGS")
  if path then
    for line in io.lines(path) do
      local id, tag = line:match("^(%S+)%s+(%S+)$")
      if id then etags[id] = tag end
    end
  end
end

function request()
  local id = hr.random_id()
  local tag = etags[id]
  if tag and math.random() < share then
    return wrk.format("GET", "/post?id=" .. id, { ["If-None-Match"] = tag })
  end
  return wrk.format("GET", "/post?id=" .. id)
end
