-- S3: 70 % create, 30 % PATCH
local B = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
function request()
  if math.random(100) <= 70 then return B.create() end
  return B.patch()
end
