-- GET the paths listed in a file, one after another, round and round.
-- wrk -t THREADS ... -s get_paths.lua URL -- PATHS_FILE THREADS
-- Prints one line "WRK_JSON {...}" with the totals, for the benchmark to read.

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local paths = {}
local counter = 0
local step = 1
statuses = {}

function init(args)
   for line in io.lines(args[1]) do
      paths[#paths + 1] = line
   end
   counter = id
   step = tonumber(args[2] or "1")
end

function request()
   local path = paths[(counter % #paths) + 1]
   counter = counter + step
   return wrk.format("GET", path)
end

-- The statuses each thread saw, and the summary line the harness reads.
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "report.lua")
