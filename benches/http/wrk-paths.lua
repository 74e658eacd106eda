-- wrk script for benches/http/run.sh.
-- Usage: wrk ... -s wrk-paths.lua URL -- PATHS_FILE [RANGE_BYTES OBJECT_BYTES]
-- Each request takes a random path from PATHS_FILE; with RANGE_BYTES > 0 it also asks for a
-- random RANGE_BYTES-aligned `Range: bytes=a-b` inside OBJECT_BYTES. At the end it prints one
-- machine-readable line (bytes include response heads; latency in microseconds).

local paths = {}
local range_bytes, object_bytes = 0, 0

function init(args)
  local f = assert(io.open(args[1], "r"), "cannot open paths file " .. tostring(args[1]))
  for line in f:lines() do
    if line ~= "" then paths[#paths + 1] = line end
  end
  f:close()
  assert(#paths > 0, "no paths in " .. args[1])
  range_bytes = tonumber(args[2] or "0") or 0
  object_bytes = tonumber(args[3] or "0") or 0
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  local p = paths[math.random(#paths)]
  if range_bytes > 0 then
    local slots = math.max(1, math.floor(object_bytes / range_bytes))
    local a = (math.random(slots) - 1) * range_bytes
    return wrk.format("GET", p, { ["Range"] = "bytes=" .. a .. "-" .. (a + range_bytes - 1) })
  end
  return wrk.format("GET", p)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d bytes=%d duration_us=%d status_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d p50_us=%.0f p99_us=%.0f\n",
    summary.requests, summary.bytes, summary.duration, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50.0), latency:percentile(99.0)))
end
