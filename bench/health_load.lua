-- wrk script for the HTTP floor: GET the URL (a health route), then one JSON line with the same
-- fields bench/api.sh reads from the baselines' collect_load.sh.
--   wrk -t1 -c32 -d10s --latency -s bench/health_load.lua http://127.0.0.1:PORT/health
done = function(summary, latency, _)
  local seconds = summary.duration / 1e6
  local ms = function(us) return us / 1000 end
  local fields = {
    string.format('"requests": %d', summary.requests),
    string.format('"seconds": %.3f', seconds),
    string.format('"rps": %.1f', summary.requests / seconds),
    string.format('"non_2xx": %d', summary.errors.status),
    string.format('"connect_errors": %d', summary.errors.connect),
    string.format('"read_errors": %d', summary.errors.read),
    string.format('"timeouts": %d', summary.errors.timeout),
    string.format('"p50_ms": %.3f', ms(latency:percentile(50))),
    string.format('"p90_ms": %.3f', ms(latency:percentile(90))),
    string.format('"p99_ms": %.3f', ms(latency:percentile(99))),
    string.format('"max_ms": %.3f', ms(latency.max)),
  }
  io.write("{" .. table.concat(fields, ", ") .. "}\n")
end
