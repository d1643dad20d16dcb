-- Re-ranking vector search results with WebAssembly functions written in Rust
-- (examples/wasm, built with the quiver-udf-guest SDK). Build the modules:
--   cargo build --release --target wasm32-unknown-unknown --manifest-path examples/wasm/Cargo.toml
-- then run against a server started with `cargo run -- serve`:
--   psql -h 127.0.0.1 -p 5433 -U postgres -v ON_ERROR_STOP=1 \
--     -v lexical=examples/wasm/target/wasm32-unknown-unknown/release/lexical_boost.wasm \
--     -v mmr=examples/wasm/target/wasm32-unknown-unknown/release/mmr.wasm \
--     -f examples/02_wasm_rerank.sql
-- (tests/examples.rs runs this file with psql on every test run.)

DROP TABLE IF EXISTS recipes;
CREATE TABLE recipes (id BIGINT, text TEXT, embedding VECTOR(3));
INSERT INTO recipes VALUES
  (1, 'apple pie with cinnamon',        '[0.90, 0.10, 0.00]'),
  (2, 'apple pie, grandmother''s way',  '[0.91, 0.10, 0.00]'),
  (3, 'pear tart',                      '[0.80, 0.00, 0.30]'),
  (4, 'red apple salad',                '[0.50, 0.50, 0.00]'),
  (5, 'cherry clafoutis',               '[0.60, 0.00, 0.60]');

-- A module is given as bytea hex ('\x0061736d...') or as WAT text. psql reads
-- the file into a variable: od prints it as hex, \set joins '\x' in front.
\set lexical_hex `od -An -v -tx1 :'lexical' | tr -d ' \n'`
\set lexical_body '\\x' :lexical_hex
\set mmr_hex `od -An -v -tx1 :'mmr' | tr -d ' \n'`
\set mmr_body '\\x' :mmr_hex

-- A row function: the share of the query's words found in the text.
CREATE OR REPLACE FUNCTION lexical_boost(doc text, query text) RETURNS float8
  LANGUAGE wasm AS :'lexical_body' WITH (timeout_ms = 100);

-- A window function: maximal-marginal-relevance rank over the whole candidate set.
CREATE OR REPLACE FUNCTION mmr_rank(vector, float8, float8) RETURNS int8
  LANGUAGE wasm WINDOW AS :'mmr_body' WITH (memory_limit = '16MB');

-- Hybrid scoring: vector distance, boosted by the words of the query.
SELECT id, text, round(lexical_boost(text, 'red apple') - _distance, 3) AS score
FROM vector_search('recipes', 'embedding', '[1, 0, 0]', 5, 'cosine')
ORDER BY score DESC LIMIT 3;

-- Diversity: the two near-identical apple pies no longer take the first two places.
SELECT id, text
FROM (SELECT id, text, mmr_rank(embedding, 1 - _distance, 0.3) OVER () AS r
      FROM vector_search('recipes', 'embedding', '[1, 0, 0]', 5, 'cosine')) ranked
ORDER BY r LIMIT 3;

-- psql lists them with \df.
\df
