local start_ms, cur, end_ms, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local desc = ARGV[5] == 'desc'
local cmd = desc and 'ZREVRANGEBYSCORE' or 'ZRANGEBYSCORE'
local out, n, offset, chunk = {}, 0, 0, math.min(limit, 5000) + 16
while n < limit do
  local got = redis.call(cmd, KEYS[1], start_ms, end_ms, 'WITHSCORES', 'LIMIT', offset, chunk)
  if #got == 0 then break end
  for i = 1, #got, 2 do
    local m, s = got[i], got[i + 1]
    local seen = cur ~= '' and s == start_ms and ((desc and m >= cur) or (not desc and m <= cur))
    if not seen and n < limit then
      local j = redis.call('HGET', KEYS[2], m)
      if j then out[#out + 1] = m; out[#out + 1] = s; out[#out + 1] = j; n = n + 1 end
    end
  end
  offset = offset + chunk
end
return out
