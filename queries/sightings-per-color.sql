-- Sightings per day and color, with how many had a rainbow and the mean horn length.
SELECT dt,
       color,
       count(*) AS sightings,
       sum(CASE WHEN rainbow THEN 1 ELSE 0 END) AS with_rainbow,
       round(avg(horn_length_cm), 2) AS mean_horn_cm
FROM unicorns
GROUP BY dt, color
ORDER BY dt, color
