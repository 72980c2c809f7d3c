-- taskapi's load scenarios for wrk. Environment: BENCH_TOKEN (bearer access token),
-- BENCH_IDS (file: one existing task id per line), BENCH_PATH (the path M.path() requests).
-- done() prints "BENCHJSON {...}" (p50/p99/p99.9, errors, and the errors by kind); a scenario
-- that sets M.extra (returning extra JSON fields and the count of its expected non-2xx answers)
-- adds those fields, and its expected answers are not counted as errors.
local M = {}
local token = os.getenv("BENCH_TOKEN") or "none"
M.ids = {}
for line in io.lines(os.getenv("BENCH_IDS")) do
  local n = tonumber(line)
  if n then M.ids[#M.ids + 1] = n end
end
M.n = #M.ids
local counter = 0

local function headers(json)
  local h = { ["Authorization"] = "Bearer " .. token, ["Accept"] = "application/json" }
  if json then h["Content-Type"] = "application/json" end
  return h
end

function M.detail()
  return wrk.format("GET", "/api/tasks/" .. M.ids[math.random(M.n)], headers(false))
end

function M.get(id)
  return wrk.format("GET", "/api/tasks/" .. id, headers(false))
end

function M.path()
  return wrk.format("GET", os.getenv("BENCH_PATH"), headers(false))
end

function M.list()
  return wrk.format("GET", "/api/tasks/?status=pending", headers(false))
end

function M.create()
  counter = counter + 1
  local body = string.format('{"title":"bench task %d","description":"load","status":"pending"}', counter)
  return wrk.format("POST", "/api/tasks/", headers(true), body)
end

function M.patch()
  counter = counter + 1
  local status = (math.random(2) == 1) and "pending" or "completed"
  local body = string.format('{"status":"%s","description":"patched %d"}', status, counter)
  return wrk.format("PATCH", "/api/tasks/" .. M.ids[math.random(M.n)], headers(true), body)
end

function M.patch_if(id, etag)
  counter = counter + 1
  local status = (math.random(2) == 1) and "pending" or "completed"
  local body = string.format('{"status":"%s","description":"patched %d"}', status, counter)
  local h = headers(true)
  h["If-Match"] = etag
  return wrk.format("PATCH", "/api/tasks/" .. id, h, body)
end

function init(args)
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0) % 100000)
end

function done(summary, latency, requests)
  local fields, expected = "", 0
  if M.extra then fields, expected = M.extra() end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,'
      .. '"max_us":%d,"errors":%d,"err_connect":%d,"err_read":%d,"err_write":%d,'
      .. '"err_timeout":%d,"err_status":%d%s}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    e.connect + e.read + e.write + e.timeout + e.status - expected,
    e.connect, e.read, e.write, e.timeout, e.status - expected, fields))
end

return M
