-- The population report: mean and sample standard deviation (ddof=1) of the US population,
-- 2013 to 2018 inclusive. Same answer as `rq analyze --report population` (mean printed with
-- 1 decimal, std with 2).
SELECT
    AVG(population) AS mean,
    STDDEV_SAMP(population) AS std,
    COUNT(*) AS years
FROM population
WHERE year BETWEEN 2013 AND 2018
