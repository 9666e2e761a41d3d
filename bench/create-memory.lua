-- wrk script for bench/write-path: POST /v1/memories with a ~500-byte body.
--
-- Env: BENCH_API_KEY (required), the bearer API key. Each request carries a
-- distinct content (thread number and a per-thread counter), so no two
-- memories are alike. `response` counts every status other than 201; `done`
-- prints one machine-readable line, "BENCH key=value ...", that
-- bench/write-path parses. Percentiles are in microseconds.

local api_key = os.getenv("BENCH_API_KEY")
if api_key == nil or api_key == "" then
  error("BENCH_API_KEY is not set")
end

-- 430 characters of plain text (no quotes or backslashes, so it needs no
-- JSON escaping); the per-request prefix makes it unique.
local filler = "Notes from the weekly planning meeting: we agreed to move the "
  .. "release to the second week of the month, to write the migration guide "
  .. "before the code freeze, and to ask the support team which questions "
  .. "come up most often. Follow up with design about the onboarding flow, "
  .. "check the invoice numbers against the ledger, and book the room for "
  .. "the retrospective. Remember to water the plants and renew the domain "
  .. "name before it expires at the end of the quarter."
local content_len = 430

local threads = {}
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_no", next_thread)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  created = 0
  non201 = 0
  first_bad = ""
  wrk.method = "POST"
  wrk.path = "/v1/memories"
  wrk.headers["Authorization"] = "Bearer " .. api_key
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local prefix = string.format("Memory %d-%d. ", thread_no, counter)
  local content = prefix .. string.sub(filler, 1, content_len - #prefix)
  local body = '{"content":"' .. content
    .. '","tags":["bench","load"],"metadata":{"source":"bench"}}'
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
  else
    non201 = non201 + 1
    if first_bad == "" then
      first_bad = status .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

function done(summary, latency, requests)
  local total_created, total_non201, bad = 0, 0, ""
  for _, thread in ipairs(threads) do
    total_created = total_created + (thread:get("created") or 0)
    total_non201 = total_non201 + (thread:get("non201") or 0)
    local b = thread:get("first_bad")
    if bad == "" and b ~= nil and b ~= "" then bad = b end
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d created=%d non201=%d duration_us=%d"
      .. " p50_us=%d p90_us=%d p99_us=%d max_us=%d"
      .. " connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    summary.requests, total_created, total_non201, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout))
  if bad ~= "" then
    io.write("BENCH_FIRST_BAD " .. string.gsub(bad, "[\r\n]", " ") .. "\n")
  end
end
