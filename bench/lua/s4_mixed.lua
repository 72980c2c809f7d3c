-- S4: 80 % detail, 10 % list, 7 % PATCH, 3 % create
local B = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
function request()
  local r = math.random(100)
  if r <= 80 then return B.detail() end
  if r <= 90 then return B.list() end
  if r <= 97 then return B.patch() end
  return B.create()
end
