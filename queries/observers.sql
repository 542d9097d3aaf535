-- How many sightings came with an observer's email, per color (the emails themselves stay out).
SELECT color,
       count(observer_email) AS with_observer,
       count(*) - count(observer_email) AS anonymous
FROM unicorns
GROUP BY color
ORDER BY color
