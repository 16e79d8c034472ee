-- Shared by the wrk scripts: count each response's status per thread, and at
-- the end print one WRK_JSON line that bench/wrk.py parses.

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
