-- POST /messages with a different sender on every request, so the rate limit
-- (5 per sender per minute) is not what gets measured.
-- wrk -t THREADS ... -s post_messages.lua URL -- SENDERS_FILE OFFSET THREADS
-- Prints one line "WRK_JSON {...}" with the totals, for the benchmark to read.

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local senders = {}
local counter = 0
local step = 1
statuses = {}

function init(args)
   for line in io.lines(args[1]) do
      senders[#senders + 1] = line
   end
   counter = tonumber(args[2] or "0") + id
   step = tonumber(args[3] or "1")
end

local headers = { ["Content-Type"] = "application/json" }

function request()
   local sender = senders[(counter % #senders) + 1]
   local body = '{"from":"' .. sender .. '","to":"+447911123456","message":"bench ' .. counter .. '"}'
   counter = counter + step
   return wrk.format("POST", "/messages", headers, body)
end

-- The statuses each thread saw, and the summary line the harness reads.
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "report.lua")
