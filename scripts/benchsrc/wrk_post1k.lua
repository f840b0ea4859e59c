-- wrk_post1k.lua - wrk script for the berth benchmarks: every request is a
-- POST of 1 KiB to /echo (examples/http.lua echoes it back).
-- luacheck: globals wrk
wrk.method = "POST"
wrk.path = "/echo"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
