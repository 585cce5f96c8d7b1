-- wrk script: an abusive client cycling through the expensive and hostile reads of
-- sensor-api (all public, no token): a 50-target Grafana query over a year at 20 000
-- points, intervalMs 1e19, a 10-year Prometheus range at step 86410 (read budget), a
-- one-day range at a 10 s step (8 640 points, legitimate but heavy), a regex bomb and a
-- deeply nested query.
local now = os.time()
local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", t) end

local targets = {}
for i = 1, 50 do targets[i] = string.format('{"refId":"T%d","target":"average"}', i) end
local fanout = string.format(
  '{"range":{"from":"%s","to":"%s"},"maxDataPoints":20000,"intervalMs":1,"targets":[%s]}',
  iso(now - 365 * 86400), iso(now), table.concat(targets, ","))
local interval = string.format(
  '{"range":{"from":"%s","to":"%s"},"maxDataPoints":1000,"intervalMs":1e19,"targets":[{"refId":"A","target":"average"}]}',
  iso(now - 3600), iso(now))
local bomb = {}
for i = 1, 20 do bomb[i] = string.format("l%d=~`\\w{200}`", i) end
local function form(s) return (s:gsub("[^%w_.~-]", function(c) return string.format("%%%02X", c:byte()) end)) end

local json = {["Content-Type"] = "application/json"}
local formh = {["Content-Type"] = "application/x-www-form-urlencoded"}
local requests = {
  wrk.format("POST", "/grafana/query", json, fanout),
  wrk.format("POST", "/grafana/query", json, interval),
  wrk.format("GET", string.format("/prom/api/v1/query_range?query=sensor_average&start=%d&end=%d&step=86410", now - 10 * 365 * 86400, now)),
  wrk.format("GET", string.format("/prom/api/v1/query_range?query=sensor_average&start=%d&end=%d&step=10", now - 86400, now)),
  wrk.format("POST", "/prom/api/v1/query", formh, "query=" .. form("sensor_average{" .. table.concat(bomb, ",") .. "}")),
  wrk.format("POST", "/prom/api/v1/query", formh, "query=" .. string.rep("-", 3000) .. "1"),
}
local i = 0
function request()
  i = i % #requests + 1
  return requests[i]
end
