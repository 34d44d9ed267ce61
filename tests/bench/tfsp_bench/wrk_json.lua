-- wrk script of `make bench`: POST one JSON body and print the run's figures
-- as one JSON line at the end.
--   wrk ... -s wrk_json.lua URL -- BODY_FILE [HOST_HEADER]
-- Latency figures are wrk's own (microseconds, from its histogram); non-2xx/3xx
-- answers are counted by wrk in summary.errors.status.

local req = nil

-- Runs in every thread: build the one request once.
function init(args)
  local f = assert(io.open(args[1], "rb"))
  local body = f:read("*a")
  f:close()
  local headers = { ["Content-Type"] = "application/json" }
  if args[2] ~= nil and args[2] ~= "" then
    headers["Host"] = args[2]
  end
  req = wrk.format("POST", nil, headers, body)
end

function request()
  return req
end

function done(summary, latency, requests)
  local e = summary.errors
  local out = string.format(
    '{"tool":"wrk","requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d}}',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99))
  io.write("WRK_JSON " .. out .. "\n")
end
