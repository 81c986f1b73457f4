-- Workload U: as headers.lua, but each request comes from another caller:
-- user-0000000, user-0000001, ... (zero-padded to 7 digits past 10^6).
--
--   wrk -s users.lua URL -- COUNT [OFFSET [STOP_AFTER]]   (from bench/)
--
-- COUNT callers in rotation (10000: the "10,000 distinct users" load);
-- ids start at OFFSET. With STOP_AFTER, each thread stops after that many
-- responses and, with COUNT at least the requests sent, every request is a
-- new caller (how load.py fills shared data with 10^4..10^6 counters).

dofile("report.lua")

local count, offset, stop_after = 10000, 0, 0
local sent, received = 0, 0
local headers = { ["x-plan"] = "bench" }

function init(args)
   count = tonumber(args[1]) or count
   offset = tonumber(args[2]) or offset
   stop_after = tonumber(args[3]) or stop_after
   if stop_after == 0 then
      -- wrk parses responses for Lua only when `response` exists: without a
      -- stop, leave it out so this workload costs the client what headers.lua does.
      response = nil
   end
end

function request()
   headers["x-user-id"] = string.format("user-%07d", offset + sent % count)
   sent = sent + 1
   return wrk.format("POST", "/v1/projects/p1/drafts", headers, "")
end

function response(status, headers, body)
   received = received + 1
   if stop_after > 0 and received >= stop_after then
      wrk.thread:stop()
   end
end
