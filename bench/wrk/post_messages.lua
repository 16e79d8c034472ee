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

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local counts = {}
   for _, thread in ipairs(threads) do
      local s = thread:get("statuses")
      for code, n in pairs(s) do
         counts[code] = (counts[code] or 0) + n
      end
   end
   local parts = {}
   for code, n in pairs(counts) do
      parts[#parts + 1] = string.format('"%d": %d', code, n)
   end
   io.write(string.format(
      'WRK_JSON {"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, "errors": %d, "statuses": {%s}}\n',
      summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
      latency:percentile(99) / 1e3,
      summary.errors.connect + summary.errors.read + summary.errors.write
         + summary.errors.timeout,
      table.concat(parts, ", ")))
end
