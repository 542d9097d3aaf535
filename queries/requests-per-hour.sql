-- Requests and records received per hour (UTC): how the API was used. Columns that begin with
-- an underscore are quoted: Athena reads them only so.
SELECT date_trunc('hour', "_received_at") AS hour,
       count(DISTINCT "_event_id") AS requests,
       count(*) AS records
FROM unicorns
GROUP BY date_trunc('hour', "_received_at")
ORDER BY hour
