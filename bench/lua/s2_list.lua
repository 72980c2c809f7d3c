-- S2: GET the list, status filter
local B = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
function request() return B.list() end
