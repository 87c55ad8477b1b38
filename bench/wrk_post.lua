-- wrk script for bench/ingest.py: POST one prebuilt batch body, again and again.
--
--   BENCH_BODY=body.json BENCH_HEADER_NAME=X-Api-Key BENCH_HEADER_VALUE=bench-key \
--     wrk -t1 -c1 -d20s -s bench/wrk_post.lua http://127.0.0.1:8080/webhook/bench
--
-- Each wrk connection is one sequential sender (the next request waits for the answer):
-- -c1 is the vendor's single sequential sender, -c8 eight of them. done() prints one line,
-- "BENCH_JSON {...}", with the latency percentiles (microseconds), the counts per status
-- code and wrk's error counters.

local path = os.getenv("BENCH_BODY")
assert(path, "BENCH_BODY must name the body file")
local file = assert(io.open(path, "rb"))
local body = file:read("*a")
file:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
local encoding = os.getenv("BENCH_CONTENT_ENCODING")
if encoding and encoding ~= "" then
  wrk.headers["Content-Encoding"] = encoding
end
local header_name = os.getenv("BENCH_HEADER_NAME")
if header_name and header_name ~= "" then
  wrk.headers[header_name] = os.getenv("BENCH_HEADER_VALUE") or ""
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

-- Per thread (each thread has its own Lua state): answers counted by status code.
statuses = {}

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local codes = {}
  for _, thread in ipairs(threads) do
    local counted = thread:get("statuses")
    for code, n in pairs(counted) do
      codes[code] = (codes[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(codes) do
    table.insert(parts, string.format('"%s":%d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes_read":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,'
      .. '"p50":%d,"p90":%d,"p99":%d,"p99.9":%d},"statuses":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    table.concat(parts, ",")))
end
