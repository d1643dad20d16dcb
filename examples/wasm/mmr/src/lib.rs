//! `mmr_rank(embedding vector, relevance float8, lambda float8) RETURNS int8`,
//! a window function: the position (1 = first) of each candidate in a
//! maximal-marginal-relevance ordering of the whole candidate set. Each step
//! picks the candidate with the best
//! `lambda * relevance - (1 - lambda) * (highest cosine similarity to one already picked)`,
//! so near-duplicates of a picked result sink and the top of the list covers
//! more ground. lambda = 1 keeps the relevance order.
//!
//! ```sql
//! CREATE FUNCTION mmr_rank(vector, float8, float8) RETURNS int8 LANGUAGE wasm WINDOW AS '\x…';
//! SELECT id, text FROM (
//!   SELECT id, text, mmr_rank(embedding, 1 - _distance, 0.5) OVER () AS r
//!   FROM vector_search('docs', 'embedding', $1, 50)) s
//! ORDER BY r LIMIT 10;
//! ```

use quiver_udf_guest::Output;

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        v.to_vec()
    }
}

quiver_udf_guest::batch! {
    fn mmr_rank(batch: &Batch) -> Result<Output, String> {
        let emb = batch.column::<Option<&[f32]>>(0)?;
        let rel = batch.column::<Option<f64>>(1)?;
        let lambda = batch.column::<f64>(2)?;
        let n = batch.num_rows();
        let lambda = if n > 0 { lambda.get(0).ok_or("lambda must not be NULL")? } else { 0.5 };
        if !(0.0..=1.0).contains(&lambda) {
            return Err(format!("lambda must be between 0 and 1, got {lambda}"));
        }
        let vectors: Vec<Vec<f32>> = (0..n).map(|i| unit(emb.get(i).flatten().unwrap_or(&[]))).collect();
        let relevance: Vec<f64> = (0..n).map(|i| rel.get(i).flatten().unwrap_or(f64::MIN)).collect();
        // Highest similarity of each candidate to any picked one so far.
        let mut max_sim = vec![f64::NEG_INFINITY; n];
        let mut rank = vec![0i64; n];
        for r in 1..=n as i64 {
            let mut best: Option<(usize, f64)> = None;
            for i in (0..n).filter(|&i| rank[i] == 0) {
                let penalty = if max_sim[i].is_finite() { max_sim[i] } else { 0.0 };
                let score = lambda * relevance[i] - (1.0 - lambda) * penalty;
                if best.is_none_or(|(_, b)| score > b) {
                    best = Some((i, score));
                }
            }
            let Some((pick, _)) = best else { break };
            rank[pick] = r;
            for i in (0..n).filter(|&i| rank[i] == 0) {
                if vectors[i].len() == vectors[pick].len() {
                    let sim: f32 = vectors[i].iter().zip(&vectors[pick]).map(|(a, b)| a * b).sum();
                    max_sim[i] = max_sim[i].max(sim as f64);
                }
            }
        }
        Output::of(rank)
    }
}
