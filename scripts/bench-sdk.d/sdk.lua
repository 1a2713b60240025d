-- wrk script for scripts/bench-sdk. BENCH_ENDPOINT=flags: GET /api/v1/flags/;
-- BENCH_ENDPOINT=identities: POST /api/v1/identities/ with 10 traits, transient, a different
-- identifier (and trait values) on every request. BENCH_KEY is the environment key.
-- BENCH_PACE_MS paces each connection (below).
-- At the end prints one line: "BENCH <req/s> <p50 µs> <p99 µs> <requests> <non-2xx> <socket errors>".

local endpoint = os.getenv("BENCH_ENDPOINT") or "flags"
wrk.headers["X-Environment-Key"] = os.getenv("BENCH_KEY") or ""
wrk.path = "/api/v1/flags/"

if endpoint == "identities" then
  wrk.method = "POST"
  wrk.path = "/api/v1/identities/"
  wrk.headers["Content-Type"] = "application/json"

  local threads = 0
  function setup(thread)
    threads = threads + 1
    thread:set("thread_id", threads)
  end

  local plans = { "free", "pro", "enterprise" }
  local countries = { "fr", "de", "us", "gb", "jp", "es" }
  local devices = { "ios", "android", "web" }
  local template = '{"identifier":"user-%d-%d","transient":true,"traits":['
    .. '{"trait_key":"plan","trait_value":"%s"},'
    .. '{"trait_key":"age","trait_value":%d},'
    .. '{"trait_key":"country","trait_value":"%s"},'
    .. '{"trait_key":"email","trait_value":"user-%d@%s"},'
    .. '{"trait_key":"orders","trait_value":%d},'
    .. '{"trait_key":"beta","trait_value":%s},'
    .. '{"trait_key":"score","trait_value":%.2f},'
    .. '{"trait_key":"device","trait_value":"%s"},'
    .. '{"trait_key":"signup_days","trait_value":%d},'
    .. '{"trait_key":"language","trait_value":"en"}]}'
  local n = 0

  function request()
    n = n + 1
    local body = string.format(template, thread_id or 0, n,
      plans[n % 3 + 1], 18 + n % 60, countries[n % 6 + 1],
      n, (n % 2 == 0) and "example.com" or "corp.example", n % 50,
      (n % 2 == 0) and "true" or "false", (n % 100) / 100, devices[n % 3 + 1], n % 400)
    return wrk.format(nil, nil, nil, body)
  end
end

-- BENCH_PACE_MS: each connection waits that long before each request (a load below the
-- server's capacity).
local pace = tonumber(os.getenv("BENCH_PACE_MS") or "")
if pace and pace > 0 then
  function delay()
    return pace
  end
end

function done(summary, latency, requests)
  local s = summary.errors
  io.write(string.format("BENCH %.1f %d %d %d %d %d\n",
    summary.requests / summary.duration * 1e6,
    latency:percentile(50), latency:percentile(99),
    summary.requests, s.status, s.connect + s.read + s.write + s.timeout))
end
