local st = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #st == 0 then return 0 end
redis.call('HDEL', KEYS[2], unpack(st))
redis.call('ZREM', KEYS[1], unpack(st))
return #st
