-- S1: GET one task (random id of the benchmark user's)
local B = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
function request() return B.detail() end
