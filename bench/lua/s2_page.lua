-- S2 at one page of the list: GET BENCH_PATH (e.g. a cursor's page of one user's tasks)
local B = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
function request() return B.path() end
