local ms = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ms == 0 then return 0 end
redis.call('HDEL', KEYS[2], unpack(ms))
redis.call('ZREM', KEYS[1], unpack(ms))
return #ms
