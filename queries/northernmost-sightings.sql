-- The five sightings farthest north, with their tags counted (a struct field and an array).
SELECT name,
       color,
       location.lat AS lat,
       location.lon AS lon,
       cardinality(tags) AS tag_count
FROM unicorns
ORDER BY location.lat DESC, name
LIMIT 5
