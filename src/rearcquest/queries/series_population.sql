-- The series-population report: every Q01 value of PRS30006032 with the US population of the
-- same year (years without population left out). Same answer as
-- `rq analyze --report series-population`.
SELECT o.series_id, o.year, o.period, o.value, p.population
FROM pr_observations AS o
JOIN population AS p ON o.year = p.year
WHERE o.file = 'pr.data.0.Current' AND o.series_id = 'PRS30006032' AND o.period = 'Q01'
ORDER BY o.year
