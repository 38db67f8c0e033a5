-- plain.lua - the URL given on the command line, with the JSON report
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
