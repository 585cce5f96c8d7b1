-- Rollup buckets of one level with start in [lo, hi]. KEYS: rollidx, roll (the level's
-- pre-upgrade hash), rollup (every level, fields `<step>:<start>`). ARGV: lo, hi, step.
-- Returns flat [start, aggregate in roll or '', aggregate in rollup or '', ...].
local starts = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2])
local out = {}
-- HMGET in chunks: Lua's unpack() fails beyond a few thousand values.
for c = 1, #starts, 1000 do
  local last = math.min(c + 999, #starts)
  local fields = {}
  for i = c, last do fields[#fields + 1] = ARGV[3] .. ':' .. starts[i] end
  local old = redis.call('HMGET', KEYS[2], unpack(starts, c, last))
  local new = redis.call('HMGET', KEYS[3], unpack(fields))
  for i = c, last do
    local a, b = old[i - c + 1], new[i - c + 1]
    if a or b then
      out[#out + 1] = starts[i]; out[#out + 1] = a or ''; out[#out + 1] = b or ''
    end
  end
end
return out
