-- Workload B: a chat completion whose class comes from its 2 KB JSON body
-- (bench/body-2k.json, model gpt-4o: the demo matrix's body rules are tried,
-- then the path rule makes it a draft), one caller on the bench tier.
-- wrk -s body.lua http://127.0.0.1:PORT   (from bench/)

dofile("report.lua")

local file = assert(io.open("body-2k.json", "rb"))
local body = file:read("*a")
file:close()

wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.body = body
wrk.headers["content-type"] = "application/json"
wrk.headers["x-user-id"] = "bench-user"
wrk.headers["x-plan"] = "bench"
