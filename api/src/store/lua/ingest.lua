local nlevels = tonumber(ARGV[1])
local steps = {}
for i = 1, nlevels do steps[i] = tonumber(ARGV[1 + i]) end
local base = 2 + nlevels
local nitems = tonumber(ARGV[base])
local fence = redis.call('GET', KEYS[3]) or '00000000000000000000'
local statuses = {}
local pending = {}
local rejected = false
local W = 8
local cluster = ARGV[base + nitems * W + 1]
local suffix = ''
if cluster ~= 'default' then suffix = ':' .. cluster end
for i = 0, nitems - 1 do
  local o = base + i * W
  local kind = ARGV[o + 1]
  if kind == 'r' then
    local member = 'r:' .. ARGV[o + 2] .. suffix
    local value = tonumber(ARGV[o + 3])
    local fencing = ARGV[o + 4]
    local prev = pending[member]
    if prev == nil then
      local stored = redis.call('HGET', KEYS[1], member)
      if stored then prev = cjson.decode(stored).value end
    end
    if prev ~= nil then
      if prev == value then statuses[i + 1] = 'duplicate' else statuses[i + 1] = 'conflict'; rejected = true end
    elseif fencing < fence then
      statuses[i + 1] = 'stale_leader'; rejected = true
    else
      statuses[i + 1] = 'stored'
      pending[member] = value
      fence = fencing
    end
  else
    statuses[i + 1] = 'stored'
  end
end
local out = {}
if rejected then
  for i = 1, nitems do
    local s = statuses[i]
    if s == 'stored' then s = 'not_applied' end
    out[#out + 1] = s
    out[#out + 1] = ''
  end
  return out
end
local function num(x) return string.format('%.17g', x) end
local function roll(level, ms, value, samples)
  local step = steps[level]
  local start = math.floor(ms / step) * step
  local field = num(start)
  local hkey = KEYS[4 + level * 2]
  local agg = redis.call('HGET', hkey, field)
  local c, s, mn, mx, last, last_ms, smp
  if agg then
    local t = {}
    for w in string.gmatch(agg, '%S+') do t[#t + 1] = tonumber(w) end
    c, s, mn, mx, last, last_ms, smp = t[1] + 1, t[2] + value, t[3], t[4], t[5], t[6], t[7] + samples
    if value < mn then mn = value end
    if value > mx then mx = value end
    if ms >= last_ms then last = value; last_ms = ms end
  else
    c, s, mn, mx, last, last_ms, smp = 1, value, value, value, value, ms, samples
    redis.call('ZADD', KEYS[5 + level * 2], start, field)
  end
  redis.call('HSET', hkey, field, num(c) .. ' ' .. num(s) .. ' ' .. num(mn) .. ' ' .. num(mx) .. ' ' .. num(last) .. ' ' .. num(last_ms) .. ' ' .. num(smp))
end
local LK = KEYS[6 + nlevels * 2]
-- Leaders of the rounds this call stored: in a batch of consecutive rounds the
-- predecessor is usually the previous item, which then needs no HGET and JSON decode.
local batch_leaders = {}
local function leader_of(member)
  local cached = batch_leaders[member]
  if cached then return cached[1], cached[2] end
  local j = redis.call('HGET', KEYS[1], member)
  if not j then return nil, '0' end
  return cjson.decode(j).leader, (string.match(j, '"fencing":(%d+)') or '0')
end
-- Nearest node round strictly before (dir < 0) or after (dir > 0) the position
-- (ms, member) in time order, skipping legacy points; returns member and score text.
local function neighbour(ms, member, dir)
  local offset, chunk = 0, 2
  while true do
    local got
    if dir < 0 then
      got = redis.call('ZREVRANGEBYSCORE', KEYS[2], ms, '-inf', 'WITHSCORES', 'LIMIT', offset, chunk)
    else
      got = redis.call('ZRANGEBYSCORE', KEYS[2], ms, '+inf', 'WITHSCORES', 'LIMIT', offset, chunk)
    end
    if #got == 0 then return nil, nil end
    for i = 1, #got, 2 do
      local m, s = got[i], tonumber(got[i + 1])
      local beyond
      if dir < 0 then beyond = (s < ms) or (m < member) else beyond = (s > ms) or (m > member) end
      if beyond and string.sub(m, 1, 2) == 'r:' then return m, got[i + 1] end
    end
    offset = offset + chunk
    if chunk < 4096 then chunk = chunk * 2 end
  end
end
local function change(round20, fencing, prev, leader)
  return round20 .. ' ' .. fencing .. ' ' .. cjson.encode({prev, leader})
end
-- Keeps P:leaders exact after storing node round `member`: its own entry, and the entry
-- of the next node round (whose predecessor it now is).
local function track_leader(member, ms, leader, fencing)
  batch_leaders[member] = {leader, fencing}
  local round20 = string.sub(member, 3, 22)
  local p = neighbour(ms, member, -1)
  if p then
    local pl = leader_of(p)
    if pl ~= leader then redis.call('ZADD', LK, ms, change(round20, fencing, pl, leader)) end
  end
  local n, nms = neighbour(ms, member, 1)
  if n then
    local n20 = string.sub(n, 3, 22)
    for _, e in ipairs(redis.call('ZRANGEBYSCORE', LK, nms, nms)) do
      if string.sub(e, 1, 20) == n20 then redis.call('ZREM', LK, e) end
    end
    local nl, nf = leader_of(n)
    if nl ~= leader then redis.call('ZADD', LK, nms, change(n20, nf, leader, nl)) end
  end
end
local stored_round = false
for i = 0, nitems - 1 do
  local o = base + i * W
  local kind = ARGV[o + 1]
  local member = ''
  if statuses[i + 1] == 'stored' then
    if kind == 'r' then
      member = 'r:' .. ARGV[o + 2] .. suffix
      stored_round = true
      local lr = redis.call('GET', KEYS[4])
      if (not lr) or ARGV[o + 2] > lr then redis.call('SET', KEYS[4], ARGV[o + 2]) end
    else
      member = 'l:' .. string.format('%020d', redis.call('INCR', KEYS[5]))
    end
    local value = tonumber(ARGV[o + 3])
    local ms = tonumber(ARGV[o + 5])
    local samples = tonumber(ARGV[o + 6])
    local json = ARGV[o + 7]
    redis.call('HSET', KEYS[1], member, json)
    redis.call('ZADD', KEYS[2], ms, member)
    for level = 1, nlevels do roll(level, ms, value, samples) end
    if kind == 'r' then track_leader(member, ms, ARGV[o + 8], ARGV[o + 4]) end
  end
  out[#out + 1] = statuses[i + 1]
  out[#out + 1] = member
end
redis.call('SET', KEYS[3], fence)
if stored_round then redis.call('SADD', KEYS[7 + nlevels * 2], cluster) end
return out
