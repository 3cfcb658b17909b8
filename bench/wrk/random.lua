-- GET /post?id=post-N with N uniform over the seeded set (keep-alive).
-- Environment: HR_IDS (number of seeded posts, default 100000).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

function init(args)
  hr.seed()
end

function request()
  return wrk.format("GET", "/post?id=" .. hr.random_id())
end
