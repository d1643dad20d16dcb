//! `lexical_boost(doc text, query text) RETURNS float8`: the share of the
//! query's words that occur in the document (0 to 1), to add to a vector
//! score so that candidates which also match the words rank first.
//!
//! ```sql
//! CREATE FUNCTION lexical_boost(text, text) RETURNS float8 LANGUAGE wasm AS '\x…';
//! SELECT id, lexical_boost(body, 'red apple') - _distance AS score
//! FROM vector_search('docs', 'embedding', $1, 100) ORDER BY score DESC LIMIT 10;
//! ```

mod logic;

quiver_udf_guest::scalar! {
    fn lexical_boost(doc: &str, query: &str) -> f64 {
        logic::lexical_boost(doc, query)
    }
}
