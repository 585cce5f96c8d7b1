-- Deletes up to ARGV[2] rollup buckets of one level with start <= ARGV[1].
-- KEYS: rollidx, roll (pre-upgrade hash of the level), rollup. ARGV[3]: the level's step.
local st = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #st == 0 then return 0 end
local fields = {}
for i = 1, #st do fields[i] = ARGV[3] .. ':' .. st[i] end
redis.call('HDEL', KEYS[2], unpack(st))
redis.call('HDEL', KEYS[3], unpack(fields))
redis.call('ZREM', KEYS[1], unpack(st))
return #st
