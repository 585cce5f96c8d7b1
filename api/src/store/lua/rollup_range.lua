local starts = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2])
local out = {}
-- HMGET in chunks: Lua's unpack() fails beyond a few thousand values.
for c = 1, #starts, 1000 do
  local last = math.min(c + 999, #starts)
  local aggs = redis.call('HMGET', KEYS[2], unpack(starts, c, last))
  for i = c, last do
    local a = aggs[i - c + 1]
    if a then out[#out + 1] = starts[i]; out[#out + 1] = a end
  end
end
return out
