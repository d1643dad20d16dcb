-- Quiver quick start: run against a server started with `cargo run -- serve`:
--   psql -h 127.0.0.1 -p 5433 -U postgres -v ON_ERROR_STOP=1 -f examples/01_quickstart.sql
-- (tests/examples.rs runs this file with psql on every test run.)

DROP TABLE IF EXISTS quickstart;
CREATE TABLE quickstart (id BIGINT, text TEXT, category TEXT, bucket INT, embedding VECTOR(3));

INSERT INTO quickstart VALUES
  (1, 'apple: fruit with red or green skin', 'noun.plant',  0, '[0.9, 0.1, 0.0]'),
  (2, 'oak: a tree of the genus Quercus',     'noun.plant',  3, '[0.7, 0.3, 0.1]'),
  (3, 'run: move fast on foot',               'verb.motion', 0, '[0.0, 0.2, 0.9]'),
  (4, 'walk: move on foot at a slow pace',    'verb.motion', 1, '[0.1, 0.3, 0.8]');

-- The table function: every column plus _distance, nearest first; the WHERE is
-- applied before the top k is chosen (filter-first).
SELECT id, text, round(_distance, 3) AS distance
FROM vector_search('quickstart', 'embedding', '[1, 0, 0]', 2, 'cosine')
WHERE category = 'verb.motion';

-- The pgvector dialect runs the same search.
SELECT id, text
FROM quickstart
WHERE bucket < 1
ORDER BY embedding <=> '[0, 0, 1]'
LIMIT 1;

-- An index, a knob, and the plan that uses them.
CREATE INDEX quickstart_embedding_idx ON quickstart USING hnsw (embedding vector_cosine_ops);
SET hnsw.ef_search = 40;
EXPLAIN SELECT id FROM quickstart ORDER BY embedding <=> '[1, 0, 0]' LIMIT 3;

-- Vectors are ordinary values too.
SELECT a.id, b.id, round(a.embedding <-> b.embedding, 3) AS l2
FROM quickstart a JOIN quickstart b ON a.id < b.id
ORDER BY l2
LIMIT 2;

DROP TABLE quickstart;
