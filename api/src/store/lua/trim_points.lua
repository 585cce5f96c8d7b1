-- Deletes up to ARGV[2] points with time <= ARGV[1], oldest first, with their P:roundidx
-- entries. KEYS: time, rec, roundidx. Returns the count.
local ms = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
if #ms == 0 then return 0 end
local members = {}
for i = 1, #ms, 2 do members[#members + 1] = ms[i] end
redis.call('HDEL', KEYS[2], unpack(members))
redis.call('ZREM', KEYS[1], unpack(members))
-- The batch is a prefix of the time order: drop the index entries up to its last point.
local last_member, last_ms = ms[#ms - 1], tonumber(ms[#ms])
redis.call('ZREMRANGEBYLEX', KEYS[3], '-', '(' .. enc(last_ms) .. ' ' .. last_member .. '!')
return #members
