-- Check-and-store of a group of independent batches (see store/ingest.rs for KEYS and
-- ARGV). Each batch is checked and, unless one of its items is rejected, stored before
-- the next batch is checked (its writes may be applied in bulk later in the call, but
-- every check and search sees them): the group answers exactly what the batches would
-- have answered one call each, in this order. A refused batch writes nothing and does not
-- affect its neighbours.
local nlevels = tonumber(ARGV[1])
local steps = {}
for i = 1, nlevels do steps[i] = tonumber(ARGV[1 + i]) end
local nbatches = tonumber(ARGV[2 + nlevels])
local REC, TIME, SEQ, ROLLUP, LK, CLUSTERS, IDX, IDXSTATE =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
-- The index of earlier versions, deleted once P:roundidx2 is complete.
local OLDIDX = KEYS[9 + nlevels]
local NSHARED = 9 + nlevels
local W = 8

-- Per-cluster fence and last round, read once per call and written once at its end.
local fence_was, fence_now, last_was, last_top, last_cluster = {}, {}, {}, {}, {}
local function fence_of(key)
  local f = fence_now[key]
  if f == nil then
    f = redis.call('GET', key) or '00000000000000000000'
    fence_was[key] = f
    fence_now[key] = f
  end
  return f
end

-- This call's writes of records (P:rec), times (P:time) and index entries (P:roundidx2),
-- applied in bulk, one command per structure (a command from Lua costs several times what
-- one more element of it costs). Every read below that could see them (the index range
-- searches, the pre-migration scans) flushes them first, so reads always see this call's
-- earlier writes; the rest is flushed at the end.
local w_rec, w_time, w_idx = {}, {}, {}
-- HMGET of any number of fields (Lua's unpack() fails beyond a few thousand values):
-- the values in the order of `fields`, false where absent.
local function hmget_all(key, fields)
  local values = {}
  for c = 1, #fields, 1000 do
    local got = redis.call('HMGET', key, unpack(fields, c, math.min(c + 999, #fields)))
    for i = 1, #got do values[c + i - 1] = got[i] end
  end
  return values
end
local function bulk(cmd, key, list)
  for c = 1, #list, 2000 do
    redis.call(cmd, key, unpack(list, c, math.min(c + 1999, #list)))
  end
end
local function flush_writes()
  if #w_rec > 0 then bulk('HSET', REC, w_rec); w_rec = {} end
  if #w_time > 0 then bulk('ZADD', TIME, w_time); w_time = {} end
  if #w_idx > 0 then bulk('ZADD', IDX, w_idx); w_idx = {} end
end

-- One-time migration of a deployment from before P:roundidx2 (in-script, incremental; a
-- deployment with the earlier P:roundidx, whose entries lack the cluster, is indexed anew):
-- while IDXSTATE is not 'ready' it holds how many points of P:time, newest first, have
-- been indexed; each call indexes the node rounds among the next BACKFILL of them. Walking
-- by rank from the newest never skips a point: new points only shift ranks up (a point is
-- then indexed twice, harmlessly: the entry is the same text) and retention removes the
-- oldest. Until the index is complete, neighbours are found by the old scan of P:time.
local indexed = nil
local function ensure_index()
  if indexed ~= nil then return end
  local BACKFILL = 1000
  local state = redis.call('GET', IDXSTATE)
  if state ~= 'ready' then
    flush_writes()
    local from = tonumber(state or '0')
    local got = redis.call('ZREVRANGE', TIME, from, from + BACKFILL - 1, 'WITHSCORES')
    local members, scores = {}, {}
    for i = 1, #got, 2 do
      if string.sub(got[i], 1, 2) == 'r:' then
        members[#members + 1] = got[i]
        scores[#scores + 1] = tonumber(got[i + 1])
      end
    end
    local recs = hmget_all(REC, members)
    for i = 1, #members do
      local j = recs[i]
      if j then
        local a = cjson.decode(j)
        local f = string.match(j, '"fencing":(%d+)') or '0'
        f = string.rep('0', 20 - #f) .. f
        redis.call('ZADD', IDX, 0, cluster_of(members[i]) .. ' ' .. enc(scores[i]) .. ' ' .. members[i] .. ' ' .. f .. ' ' .. a.leader)
      end
    end
    if #got < BACKFILL * 2 then
      redis.call('SET', IDXSTATE, 'ready')
      -- The index of earlier versions (one time order for every cluster) is superseded.
      redis.call('UNLINK', OLDIDX)
      state = 'ready'
    else
      redis.call('SET', IDXSTATE, from + BACKFILL)
    end
  end
  indexed = state == 'ready'
end

-- Rollups: every item's contribution is merged into its finest bucket here; at the end of
-- the call each finest bucket is merged whole into the buckets of the coarser levels
-- holding it (every step is a multiple of the finest, so a finest bucket lies in exactly
-- one bucket of each level, and buckets cover disjoint times, so merging them gives what
-- merging their points one by one gives, at one update per level per finest bucket
-- instead of per item). Then each touched bucket is read once (HMGET) and written once
-- (HSET) for the whole call (every batch of the group). Buckets are found by number
-- (level, start); a bucket's field name is formatted once per call.
local roll, touched = {}, {}
for level = 1, nlevels do roll[level] = {} end
-- Aggregates are {count, sum, min, max, last, last_ms, samples, level, start}.
local function add_roll(ms, value, samples)
  local start = ms - ms % steps[1]
  local a = roll[1][start]
  if a == nil then
    a = {1, value, value, value, value, ms, samples, 1, start}
    roll[1][start] = a
    touched[#touched + 1] = a
  else
    a[1] = a[1] + 1; a[2] = a[2] + value
    if value < a[3] then a[3] = value end
    if value > a[4] then a[4] = value end
    -- On equal times the later item is the last.
    if ms >= a[6] then a[5] = value; a[6] = ms end
    a[7] = a[7] + samples
  end
end
local function derive_coarse_rolls()
  local nfinest = #touched
  for i = 1, nfinest do
    local f = touched[i]
    for level = 2, nlevels do
      local start = f[9] - f[9] % steps[level]
      local a = roll[level][start]
      if a == nil then
        roll[level][start] = {f[1], f[2], f[3], f[4], f[5], f[6], f[7], level, start}
        touched[#touched + 1] = roll[level][start]
      else
        a[1] = a[1] + f[1]; a[2] = a[2] + f[2]
        if f[3] < a[3] then a[3] = f[3] end
        if f[4] > a[4] then a[4] = f[4] end
        if f[6] > a[6] then a[5] = f[5]; a[6] = f[6] end
        a[7] = a[7] + f[7]
      end
    end
  end
end
local function flush_rolls()
  if #touched == 0 then return end
  derive_coarse_rolls()
  -- Bucket starts are integers below 2^53: '%d' prints them exactly.
  local starts, fields = {}, {}
  for i = 1, #touched do
    local a = touched[i]
    starts[i] = string.format('%d', a[9])
    fields[i] = ARGV[1 + a[8]] .. ':' .. starts[i]
  end
  local stored = hmget_all(ROLLUP, fields)
  local args = {}
  for i = 1, #touched do
    local a = touched[i]
    local s = stored[i]
    if s then
      -- One match and one format per bucket: the cheapest way through Lua's string
      -- library (a gmatch loop and a format call per field cost twice as much).
      local t = {string.match(s, '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')}
      for k = 1, 7 do t[k] = number(t[k]) end
      -- Stored points arrived earlier: on equal times the batch's point is the last.
      if a[6] < t[6] then a[5] = t[5]; a[6] = t[6] end
      a[1] = a[1] + t[1]; a[2] = a[2] + t[2]
      if t[3] < a[3] then a[3] = t[3] end
      if t[4] > a[4] then a[4] = t[4] end
      a[7] = a[7] + t[7]
    else
      -- A bucket new to P:rollup (it may exist in the pre-upgrade P:roll:<step>).
      redis.call('ZADD', KEYS[8 + a[8]], starts[i], starts[i])
    end
    args[#args + 1] = fields[i]
    -- Values with '%.17g' (every double reads back exactly); counts, times and sample
    -- totals are integers below 2^53, for which '%d' prints the same digits at a third
    -- of the cost.
    args[#args + 1] = string.format('%d %.17g %.17g %.17g %.17g %d %d', a[1], a[2], a[3], a[4], a[5], a[6], a[7])
  end
  bulk('HSET', ROLLUP, args)
end

-- Leader changes (P:leaders). The predecessor and successor of a round among its
-- cluster's node rounds in time order come from P:roundidx2: entries
-- `cluster enc(ms) member fencing leader`, so each cluster's rounds are one contiguous,
-- time-ordered range (another cluster's rounds, delivered at the same time, are never a
-- neighbour), legacy points are never visited, and each lookup is one O(log n) range read.
local function change(round20, fencing, prev, leader)
  return round20 .. ' ' .. fencing .. ' ' .. cjson.encode({prev, leader})
end
local function parse_entry(e)
  local m_enc, member, fencing, leader = string.match(e, '^%S+ (%d+) (%S+) (%d+) (.*)$')
  return dec(m_enc), member, fencing, leader
end
-- Pre-migration fallback: the nearest node round of `cluster` strictly before (dir < 0) or
-- after (dir > 0) the position (ms, member) in P:time, skipping legacy points and other
-- clusters' rounds.
local function scan_neighbour(cluster, ms, member, dir)
  flush_writes()
  local offset, chunk = 0, 2
  while true do
    local got
    if dir < 0 then
      got = redis.call('ZREVRANGEBYSCORE', TIME, ms, '-inf', 'WITHSCORES', 'LIMIT', offset, chunk)
    else
      got = redis.call('ZRANGEBYSCORE', TIME, ms, '+inf', 'WITHSCORES', 'LIMIT', offset, chunk)
    end
    if #got == 0 then return nil end
    for i = 1, #got, 2 do
      local m, s = got[i], tonumber(got[i + 1])
      local beyond
      if dir < 0 then beyond = (s < ms) or (m < member) else beyond = (s > ms) or (m > member) end
      if beyond and string.sub(m, 1, 2) == 'r:' and cluster_of(m) == cluster then
        local j = redis.call('HGET', REC, m)
        if j then
          return s, m, (string.match(j, '"fencing":(%d+)') or '0'), cjson.decode(j).leader
        end
      end
    end
    offset = offset + chunk
    if chunk < 4096 then chunk = chunk * 2 end
  end
end
-- What this call knows of each cluster's end of the index, so that most neighbour
-- searches need no Redis read: `top`, the cluster's greatest entry before this call
-- ({ms, member, leader}, or false for none), read once; `tail`, the entries this call
-- added after it, in time order ({ms, member, fencing, leader}). A round later than `top`
-- finds both neighbours in `tail` (or `top`) by a binary search on time. Every other case
-- (a round not later than `top`; a time equal to a tail entry's, whose order against it
-- would need a byte-order comparison of members, which Lua's locale-dependent string
-- comparison does not give; and for the rest of the call once such a tie was stored)
-- flushes the pending writes and searches the index in Redis.
local views = {}
local function view(cluster)
  local v = views[cluster]
  if v == nil then
    -- No entry of this cluster is pending yet: every one went through this view.
    local e = redis.call('ZREVRANGEBYLEX', IDX, '(' .. cluster .. '!', '[' .. cluster .. ' ', 'LIMIT', 0, 1)[1]
    local top = false
    if e then
      local ms, member, ignored, leader = parse_entry(e)
      top = {ms, member, leader}
    end
    v = {top = top, tail = {}, exact = true}
    views[cluster] = v
  end
  return v
end
-- The first position in `tail` whose time is >= ms (#tail + 1 when none).
local function tail_position(tail, ms)
  local n = #tail
  if n == 0 or tail[n][1] < ms then return n + 1 end
  local lo, hi = 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if tail[mid][1] < ms then lo = mid + 1 else hi = mid end
  end
  return lo
end
-- Predecessor (member, leader) and successor (ms, member, fencing, leader) of a new round
-- among its cluster's rounds; the last value is its position in `tail` when it belongs
-- there and was answered from memory.
local function neighbours(cluster, ms, member, key)
  if not indexed then
    local ps, pm, pf, pl = scan_neighbour(cluster, ms, member, -1)
    local ns, nm, nf, nl = scan_neighbour(cluster, ms, member, 1)
    return pm, pl, ns, nm, nf, nl, nil
  end
  local pm, pl, ns, nm, nf, nl, ignored
  local v = view(cluster)
  local top, tail = v.top, v.tail
  if v.exact and ((not top) or ms > top[1]) then
    local at = tail_position(tail, ms)
    if at > #tail or tail[at][1] > ms then
      if at > 1 then
        pm, pl = tail[at - 1][2], tail[at - 1][4]
      elseif top then
        pm, pl = top[2], top[3]
      end
      if at <= #tail then
        local t = tail[at]
        ns, nm, nf, nl = t[1], t[2], t[3], t[4]
      end
      return pm, pl, ns, nm, nf, nl, at
    end
    v.exact = false -- a tie with a tail entry: the tail order is no longer known
  end
  flush_writes()
  local p = redis.call('ZREVRANGEBYLEX', IDX, '(' .. key .. ' ', '[' .. cluster .. ' ', 'LIMIT', 0, 1)[1]
  if p then ignored, pm, ignored, pl = parse_entry(p) end
  local n = redis.call('ZRANGEBYLEX', IDX, '(' .. key .. '!', '(' .. cluster .. '!', 'LIMIT', 0, 1)[1]
  if n then ns, nm, nf, nl = parse_entry(n) end
  return pm, pl, ns, nm, nf, nl, nil
end
-- Keeps P:leaders exact after storing node round `member`: its own entry, and the entry
-- of the next node round (whose predecessor it now is).
local function track_leader(cluster, member, ms, leader, fencing)
  local round20 = string.sub(member, 3, 22)
  local key = cluster .. ' ' .. enc(ms) .. ' ' .. member
  local pm, pl, ns, nm, nf, nl, at = neighbours(cluster, ms, member, key)
  if pm and pl ~= leader then redis.call('ZADD', LK, ms, change(round20, fencing, pl, leader)) end
  if nm then
    local n20 = string.sub(nm, 3, 22)
    -- A successor found in this call's tail has a change entry exactly when its leader
    -- differs from its predecessor's until now, which is this round's predecessor; one
    -- found in Redis may have one: look.
    local had = (not at) or (pm ~= nil and pl ~= nl)
    if had then
      for _, e in ipairs(redis.call('ZRANGEBYSCORE', LK, ns, ns)) do
        if string.sub(e, 1, 20) == n20 then redis.call('ZREM', LK, e) end
      end
    end
    if nl ~= leader then redis.call('ZADD', LK, ns, change(n20, nf, leader, nl)) end
  end
  w_idx[#w_idx + 1] = '0'
  w_idx[#w_idx + 1] = key .. ' ' .. fencing .. ' ' .. leader
  if at then table.insert(views[cluster].tail, at, {ms, member, fencing, leader}) end
end


-- Every stored node round any batch names, read in one HMGET: its stored value, or false.
local stored_value = {}
do
  local members, arg = {}, 3 + nlevels
  for b = 1, nbatches do
    local cluster, nitems = ARGV[arg], tonumber(ARGV[arg + 1])
    for i = 0, nitems - 1 do
      local o = arg + 1 + i * W
      if ARGV[o + 1] == 'r' then members[#members + 1] = round_member(cluster, ARGV[o + 2]) end
    end
    arg = arg + 2 + nitems * W
  end
  local got = hmget_all(REC, members)
  for i = 1, #members do
    local j = got[i]
    if j then stored_value[members[i]] = cjson.decode(j).value else stored_value[members[i]] = false end
  end
end

local out = {}
local arg = 3 + nlevels
for b = 1, nbatches do
  local FENCE, LAST = KEYS[NSHARED + 2 * b - 1], KEYS[NSHARED + 2 * b]
  local cluster = ARGV[arg]
  local nitems = tonumber(ARGV[arg + 1])
  local base = arg + 1
  arg = arg + 2 + nitems * W
  local fence = fence_of(FENCE)
  local statuses = {}
  local pending = {}
  local rejected = false
  for i = 0, nitems - 1 do
    local o = base + i * W
    if ARGV[o + 1] == 'r' then
      local member = round_member(cluster, ARGV[o + 2])
      local value = number(ARGV[o + 3])
      local fencing = ARGV[o + 4]
      local prev = pending[member]
      if prev == nil then prev = stored_value[member] or nil end
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
  if rejected then
    for i = 1, nitems do
      local s = statuses[i]
      if s == 'stored' then s = 'not_applied' end
      out[#out + 1] = s
      out[#out + 1] = ''
    end
  else
    ensure_index()
    local top_round = nil
    for i = 0, nitems - 1 do
      local o = base + i * W
      local kind = ARGV[o + 1]
      local member = ''
      if statuses[i + 1] == 'stored' then
        local value
        if kind == 'r' then
          member = round_member(cluster, ARGV[o + 2])
          -- Parsed once, by the check above (decimal text costs a strtod each time).
          value = pending[member]
          if (not top_round) or ARGV[o + 2] > top_round then top_round = ARGV[o + 2] end
          -- Later batches of this call see it as stored.
          stored_value[member] = pending[member]
        else
          member = 'l:' .. string.format('%020d', redis.call('INCR', SEQ))
          value = number(ARGV[o + 3])
        end
        local ms = number(ARGV[o + 5])
        w_rec[#w_rec + 1] = member
        w_rec[#w_rec + 1] = ARGV[o + 7]
        -- Arguments of redis.call as the strings they arrived as: a Lua number would be
        -- printed anew.
        w_time[#w_time + 1] = ARGV[o + 5]
        w_time[#w_time + 1] = member
        add_roll(ms, value, number(ARGV[o + 6]))
        if kind == 'r' then track_leader(cluster, member, ms, ARGV[o + 8], ARGV[o + 4]) end
      end
      out[#out + 1] = statuses[i + 1]
      out[#out + 1] = member
    end
    fence_now[FENCE] = fence
    if top_round then
      if last_was[LAST] == nil then
        last_was[LAST] = redis.call('GET', LAST) or false
        last_top[LAST] = last_was[LAST]
        last_cluster[LAST] = cluster
      end
      if (not last_top[LAST]) or top_round > last_top[LAST] then last_top[LAST] = top_round end
    end
  end
end
flush_rolls()
flush_writes()
for key, f in pairs(fence_now) do
  if f ~= fence_was[key] then redis.call('SET', key, f) end
end
for key, was in pairs(last_was) do
  local top = last_top[key]
  if top ~= was then redis.call('SET', key, top) end
  -- The cluster was registered together with its first last_round.
  if not was then redis.call('SADD', CLUSTERS, last_cluster[key]) end
end
return out
