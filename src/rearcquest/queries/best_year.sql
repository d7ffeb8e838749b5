-- The best-year report: for every series, the year whose quarterly values (Q01-Q04) have the
-- largest sum, ties to the earliest year. Same answer as `rq analyze --report best-year`.
-- Reads the pr.data.0.Current partition only: the data files overlap.
WITH sums AS (
    SELECT series_id, year, SUM(value) AS value
    FROM pr_observations
    WHERE file = 'pr.data.0.Current' AND period IN ('Q01', 'Q02', 'Q03', 'Q04')
    GROUP BY series_id, year
),
best AS (
    SELECT series_id, MAX(value) AS value
    FROM sums
    GROUP BY series_id
)
SELECT s.series_id, MIN(s.year) AS year, s.value
FROM sums AS s
JOIN best AS b ON s.series_id = b.series_id AND s.value = b.value
GROUP BY s.series_id, s.value
ORDER BY s.series_id
