-- Deletes up to ARGV[2] points with time <= ARGV[1], oldest first, with their P:roundidx2
-- entries. KEYS: time, rec, roundidx2. Returns the count.
local ms = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
if #ms == 0 then return 0 end
local members = {}
for i = 1, #ms, 2 do members[#members + 1] = ms[i] end
redis.call('HDEL', KEYS[2], unpack(members))
redis.call('ZREM', KEYS[1], unpack(members))
-- The batch is a prefix of the time order: in the range of each cluster it touched, drop
-- the index entries up to its last point (P:time and each cluster's range order points
-- alike: by time, then by member).
local last_member, last_ms = ms[#ms - 1], tonumber(ms[#ms])
local done = {}
for i = 1, #members do
  local m = members[i]
  if string.sub(m, 1, 2) == 'r:' then
    local cluster = cluster_of(m)
    if not done[cluster] then
      done[cluster] = true
      redis.call('ZREMRANGEBYLEX', KEYS[3], '[' .. cluster .. ' ',
        '(' .. cluster .. ' ' .. enc(last_ms) .. ' ' .. last_member .. '!')
    end
  end
end
return #members
