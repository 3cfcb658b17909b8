-- GET /post?id=post-N with skewed popularity: the post of rank k (k = 1 ..
-- HR_IDS) is asked with probability proportional to 1 / k^s (Zipf), the
-- access pattern a bounded reader (--max-memory) is meant to serve well.
-- Environment: HR_IDS (number of seeded posts, default 100000), HR_ZIPF_S
-- (skew s >= 0, default 0.99; 0 is uniform).
--
-- init() builds the cumulative distribution once per thread, with a guide
-- table that narrows each binary search to one slice of it; a request costs
-- one math.random(), a few search steps and a table read (each id's request
-- is formatted on its first draw and kept).
-- Ranks map to ids through a fixed permutation, n = ((k - 1) * A + B) mod
-- HR_IDS with A coprime to HR_IDS, the same in every thread (wrk runs one Lua
-- state per thread, and they must agree on which ids are hot), so the hot
-- ids are spread over the set instead of being post-0, post-1, ...
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local floor, random = math.floor, math.random

local skew = tonumber(os.getenv("HR_ZIPF_S") or "0.99")
if not skew or skew < 0 then
  error("HR_ZIPF_S must be a number >= 0, not " .. tostring(os.getenv("HR_ZIPF_S")))
end
local ids = hr.ids
if not ids or ids < 1 or ids ~= floor(ids) then
  error("HR_IDS must be a positive integer, not " .. tostring(os.getenv("HR_IDS")))
end

-- cdf[k]: probability that the drawn rank is <= k; cdf[ids] is exactly 1.
local cdf = {}
-- guide[j] (j = 0 .. GUIDE): the smallest k with cdf[k] > j / GUIDE, so a
-- draw u in [j, j + 1) / GUIDE has its rank in guide[j] .. guide[j + 1].
local GUIDE = 65536
local guide = {}
-- Formatted requests by rank, filled on first use.
local requests = {}
local mult, offset

local function gcd(a, b)
  while b ~= 0 do a, b = b, a % b end
  return a
end

-- The permutation's multiplier: near ids / golden ratio (neighbouring ranks
-- land far apart), bumped until coprime with ids (so it is a bijection).
local function multiplier(n)
  local a = math.max(1, floor(n * 0.6180339887498949))
  while gcd(a, n) ~= 1 do a = a + 1 end
  return a
end

-- The id of rank k, as in common.lua (ids post-0 .. post-(HR_IDS-1)).
function hr.zipf_id(k)
  return "post-" .. string.format("%d", ((k - 1) * mult + offset) % ids)
end

-- A rank drawn from the distribution: the smallest k with cdf[k] > u.
function hr.zipf_rank()
  local u = random()
  local j = floor(u * GUIDE)
  local lo, hi = guide[j], guide[j + 1]
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if cdf[mid] > u then hi = mid else lo = mid + 1 end
  end
  return lo
end

function init(args)
  hr.seed()
  local sum = 0
  for k = 1, ids do
    sum = sum + k ^ -skew
    cdf[k] = sum
  end
  for k = 1, ids do cdf[k] = cdf[k] / sum end
  cdf[ids] = 1
  local k = 1
  for j = 0, GUIDE - 1 do
    while cdf[k] <= j / GUIDE do k = k + 1 end
    guide[j] = k
  end
  guide[GUIDE] = ids
  mult, offset = multiplier(ids), floor(ids / 3)
end

function request()
  local k = hr.zipf_rank()
  local r = requests[k]
  if not r then
    r = wrk.format("GET", "/post?id=" .. hr.zipf_id(k))
    requests[k] = r
  end
  return r
end
