-- wrk script: POST /api/v1/averages with a fresh round per request, the same fencing
-- token, and a valid RFC 3339 time; every request stores a new point. Each wrk thread is
-- one fleet: thread 1 delivers to the default cluster, thread N to cluster `bench-N`,
-- each in time order, as one leader per cluster does (two threads writing one cluster
-- would interleave two time sequences, which no fleet produces).
-- Optional arguments (wrk ... -- BASE HOUR WRAP): BASE is added to every round, so that
-- successive runs against one Redis store new rounds instead of answering duplicates;
-- HOUR (0-23, default 0) is the hour of 2026-01-01 the times fall in, so a later run can
-- store rounds newer than every earlier round (and still older than /nuevo points);
-- WRAP (default: none) makes each thread repeat its requests 2..WRAP exactly (same
-- round, value and time), so a run after one with the same BASE that stored at least
-- WRAP rounds per thread sends only rounds already stored (answered `duplicate`).
local counter = 0
local thread_id = 0
local base = 0
local hour = 0
local wrap = nil
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local cluster = ''

function init(args)
  thread_id = tonumber(tid) or 1
  if thread_id > 1 then cluster = string.format(',"cluster":"bench-%d"', thread_id) end
  base = tonumber(args[1]) or 0
  hour = tonumber(args[2]) or 0
  wrap = tonumber(args[3])
  counter = 0
end

function request()
  counter = counter + 1
  -- Back to 2, not 1: wrk calls thread 1's request() once to check it before the run,
  -- so that thread never sends its counter 1 and round BASE + 1 of its cluster is absent.
  if wrap and counter > wrap then counter = 2 end
  local round = base + counter
  local body = string.format(
    '{"round":%d,"value":%.2f,"samples":3,"leader":"bench","fencing":1,"taken_at":"2026-01-01T%02d:%02d:%02d.%03dZ"%s}',
    round, 20 + (counter % 100) / 10, hour, math.floor(counter / 60000) % 60, math.floor(counter / 1000) % 60, counter % 1000, cluster)
  return wrk.format("POST", "/api/v1/averages", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer bench-token-0123456789"}, body)
end
