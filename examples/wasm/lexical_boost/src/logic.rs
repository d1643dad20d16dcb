//! The scoring itself, free of any ABI: the WASM function and the native
//! benchmark UDF (bench/rerank) compile this same file.

/// Words of at least two letters or digits.
fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 2)
}

/// The share of the query's distinct words (case-insensitive) found in `doc`.
pub fn lexical_boost(doc: &str, query: &str) -> f64 {
    let mut terms: Vec<String> = words(query).map(|w| w.to_lowercase()).collect();
    terms.sort_unstable();
    terms.dedup();
    if terms.is_empty() {
        return 0.0;
    }
    let hits = terms
        .iter()
        .filter(|t| words(doc).any(|w| w.eq_ignore_ascii_case(t)))
        .count();
    hits as f64 / terms.len() as f64
}
