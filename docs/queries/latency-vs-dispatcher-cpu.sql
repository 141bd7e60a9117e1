-- Each request of run :run with its latency and the dispatcher's CPU (% of one core) in
-- the second it completed. CPU comes from consecutive 10 Hz samples of each dispatcher
-- process; a restarted dispatcher's processes add up.
WITH steps AS (
  SELECT unix_ms, cpu_ms - LAG(cpu_ms) OVER (PARTITION BY pid ORDER BY unix_ms) AS d
  FROM process_samples WHERE run_id = :run AND role = 'dispatcher'
), cpu AS (
  SELECT unix_ms / 1000 AS second, SUM(d) / 10.0 AS dispatcher_cpu_pct
  FROM steps WHERE d IS NOT NULL GROUP BY second
)
SELECT q.task_id, q.function, q.state, q.latency_us / 1000.0 AS latency_ms, c.dispatcher_cpu_pct
FROM requests q JOIN cpu c ON c.second = q.completed_us / 1000000
WHERE q.run_id = :run
ORDER BY q.completed_us;
