-- wrk script for the counter workload, configured by environment:
--   BENCH_PREFIX   path before the object's name: "/objects/counter/" or "/c/"
--   BENCH_METHOD   POST (increment) or GET (read)
--   BENCH_MODE     hot: one object; cold: a new object per request;
--                  spread: a random one of BENCH_OBJECTS objects;
--                  fixed: BENCH_PREFIX alone (e.g. "/healthz")
--   BENCH_SUFFIX   path after the object's name (e.g. "/whoami"), if any
--   BENCH_RUN      distinguishes this run's cold objects from earlier ones
-- Prints one line: RESULT <req/s> <p50 ms> <p99 ms> <errors>
local prefix = os.getenv("BENCH_PREFIX") or "/c/"
local method = os.getenv("BENCH_METHOD") or "POST"
local mode = os.getenv("BENCH_MODE") or "hot"
local objects = tonumber(os.getenv("BENCH_OBJECTS") or "10000")
local run = os.getenv("BENCH_RUN") or tostring(os.time())
local suffix = os.getenv("BENCH_SUFFIX") or ""
local sent = 0

function setup(thread)
  thread:set("id", tostring(math.random(1000000)))
end

function init(args)
  math.randomseed(os.time() + tonumber(id or "0"))
end

function request()
  local name
  if mode == "fixed" then
    return wrk.format(method, prefix)
  elseif mode == "hot" then
    name = "hot"
  elseif mode == "cold" then
    sent = sent + 1
    name = "cold-" .. run .. "-" .. (id or "0") .. "-" .. sent
  else
    name = "spread-" .. math.random(objects)
  end
  return wrk.format(method, prefix .. name .. suffix)
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("RESULT %.1f %.3f %.3f %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors))
end
