-- Workload H: a draft classified by its path alone (the demo matrix's last
-- head rule, a glob), one caller on the bench tier, no body.
-- wrk -s headers.lua http://127.0.0.1:PORT   (from bench/)

dofile("report.lua")

local headers = { ["x-user-id"] = "bench-user", ["x-plan"] = "bench" }

-- Built per request, like users.lua, so both workloads cost the client the same.
function request()
   return wrk.format("POST", "/v1/projects/p1/drafts", headers, "")
end
