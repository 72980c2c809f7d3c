-- S5: PATCH with If-Match on shared tasks (BENCH_IDS: the 100 tasks every connection writes),
-- re-reading a task after a 412. The connections of a thread share what they know: the newest
-- ETag answered per task. Every task is read once first; a PATCH of a random task sends its
-- known ETag; a 412 queues a GET of that task (once while queued), sent before any further
-- PATCH, and marks the task stale: no PATCH picks it until a 2xx answer for it arrives; the
-- GET's ETag (not the 412's) is what its next PATCH sends. Answers of a thread's connections
-- interleave, so an answer is matched to its task by its ETag ("<id>.<version>").
local B = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

-- Globals, so that done() (in wrk's main Lua state) can read each thread's with thread:get().
patches, reads, rereads, answers, failed, no_etag = 0, 0, 0, 0, 0, 0

local etag, version = {}, {} -- per task id: the newest ETag answered, and its version
local queue, queued, head, tail = {}, {}, 1, 0 -- task ids to GET next: queue[head..tail]
local stale = {} -- task ids answered 412 and not answered 2xx since

local function enqueue(id)
  stale[id] = true
  if not queued[id] then
    queued[id], tail = true, tail + 1
    queue[tail] = id
  end
end

for i = 1, B.n do enqueue(B.ids[i]) end -- queue[1..B.n]: the first reads

function request()
  if head <= tail then
    local id = queue[head]
    if head <= B.n then reads = reads + 1 else rereads = rereads + 1 end
    queue[head], queued[id], head = nil, nil, head + 1
    return B.get(id)
  end
  local id = B.ids[math.random(B.n)]
  for _ = 1, 8 do -- if all are stale, the PATCH goes with what is known
    if not stale[id] then break end
    id = B.ids[math.random(B.n)]
  end
  if not etag[id] then -- only when the server sends no ETag: S5 then measures nothing
    rereads = rereads + 1
    return B.get(id)
  end
  patches = patches + 1
  return B.patch_if(id, etag[id])
end

function response(status, headers)
  answers = answers + 1
  if status == 412 then failed = failed + 1 end
  local value = headers["etag"] or headers["ETag"]
  local id, ver = nil, nil
  if value then id, ver = value:match('^"(%d+)%.(%d+)"$') end
  if not id then
    no_etag = no_etag + 1
    return
  end
  id, ver = tonumber(id), tonumber(ver)
  if status == 412 then
    enqueue(id)
  elseif status < 300 then
    stale[id] = nil
    if ver > (version[id] or 0) then etag[id], version[id] = value, ver end
  end
end

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

-- PATCHes counts those sent; at most one request per connection is unanswered at the end.
B.extra = function()
  local t = { patches = 0, reads = 0, rereads = 0, answers = 0, failed = 0, no_etag = 0 }
  for _, thread in ipairs(threads) do
    for k in pairs(t) do t[k] = t[k] + thread:get(k) end
  end
  return string.format(
    ',"patches":%d,"first_reads":%d,"rereads":%d,"answers":%d,"precondition_failed":%d,'
      .. '"no_etag":%d',
    t.patches, t.reads, t.rereads, t.answers, t.failed, t.no_etag), t.failed
end
