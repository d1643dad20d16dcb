//! Small helpers showing every argument and result type of the SDK; one module
//! holds several functions, each created with its export name:
//!
//! ```sql
//! CREATE FUNCTION normalize(vector) RETURNS vector LANGUAGE wasm AS '\x…';
//! CREATE FUNCTION has_word(text, text) RETURNS bool LANGUAGE wasm AS '\x…';
//! CREATE FUNCTION describe_row(bool, int8, float8) RETURNS text LANGUAGE wasm AS '\x…';
//! ```

quiver_udf_guest::scalar! {
    /// The vector scaled to length 1 (a zero vector stays zero).
    fn normalize(v: &[f32]) -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 { v.iter().map(|x| x / norm).collect() } else { v.to_vec() }
    }
}

quiver_udf_guest::scalar! {
    /// Whether `doc` contains `word` as a whole word, ignoring case.
    fn has_word(doc: &str, word: &str) -> bool {
        doc.split(|c: char| !c.is_alphanumeric()).any(|w| w.eq_ignore_ascii_case(word))
    }
}

quiver_udf_guest::scalar! {
    /// A label from a flag (NULL allowed), a count and a score; fails on a negative count.
    fn describe_row(flag: Option<bool>, n: i64, score: f64) -> Result<String, String> {
        if n < 0 {
            Err(format!("count must not be negative, got {n}"))
        } else {
            let f = match flag {
                Some(true) => "yes",
                Some(false) => "no",
                None => "unknown",
            };
            Ok(format!("{f}/{n}/{score:.2}"))
        }
    }
}
