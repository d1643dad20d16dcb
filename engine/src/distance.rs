//! Distance metrics and exact kernels.
//!
//! Quiver reports distances with pgvector's meaning: `l2` is the Euclidean
//! distance (`<->`), `cosine` is `1 - cos` (`<=>`), `dot` is the negative inner
//! product (`<#>`), `l1` the taxicab distance (`<+>`). Lance's own distances
//! differ (squared L2, `1 - dot`); [`Metric::from_lance`] converts.

use lance_linalg::distance::DistanceType;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    L2,
    Cosine,
    Dot,
    L1,
}

impl Metric {
    pub fn parse(s: &str) -> Option<Metric> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Some(Metric::L2),
            "cosine" => Some(Metric::Cosine),
            "dot" | "ip" | "inner_product" => Some(Metric::Dot),
            "l1" | "manhattan" | "taxicab" => Some(Metric::L1),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
            Metric::L1 => "l1",
        }
    }

    /// The Lance distance type for ANN indexes; L1 has none.
    pub fn lance(&self) -> Option<DistanceType> {
        match self {
            Metric::L2 => Some(DistanceType::L2),
            Metric::Cosine => Some(DistanceType::Cosine),
            Metric::Dot => Some(DistanceType::Dot),
            Metric::L1 => None,
        }
    }

    /// Converts a distance Lance reported for this metric to Quiver's meaning.
    pub fn from_lance(&self, d: f32) -> f32 {
        match self {
            Metric::L2 => d.max(0.0).sqrt(),
            Metric::Dot => d - 1.0,
            Metric::Cosine | Metric::L1 => d,
        }
    }

    /// The exact distance between two vectors of equal length.
    pub fn distance(&self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::L2 => lance_linalg::distance::l2_distance(a, b).max(0.0).sqrt(),
            Metric::Cosine => cosine(a, b),
            Metric::Dot => -lance_linalg::distance::dot(a, b),
            Metric::L1 => a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum(),
        }
    }
}

/// Distances from one query vector to many: what depends on the query alone
/// (its squared norm, for cosine) is computed once, with the same arithmetic
/// as [`Metric::distance`], so the distances are identical.
pub struct QueryDistance<'a> {
    metric: Metric,
    query: &'a [f32],
    norm2: f32,
}

impl Metric {
    pub fn from_query<'a>(&self, query: &'a [f32]) -> QueryDistance<'a> {
        let norm2 = match self {
            Metric::Cosine => lance_linalg::distance::dot(query, query),
            _ => 0.0,
        };
        QueryDistance {
            metric: *self,
            query,
            norm2,
        }
    }
}

impl QueryDistance<'_> {
    pub fn distance(&self, b: &[f32]) -> f32 {
        match self.metric {
            Metric::Cosine => cosine_with_norm(self.query, self.norm2, b),
            m => m.distance(self.query, b),
        }
    }
}

/// `1 - cos(a, b)`; NaN when either vector is all zeros, as in pgvector.
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    cosine_with_norm(a, lance_linalg::distance::dot(a, a), b)
}

/// [`cosine`] with `a`'s squared norm `na` given.
fn cosine_with_norm(a: &[f32], na: f32, b: &[f32]) -> f32 {
    let dot = lance_linalg::distance::dot(a, b);
    let nb = lance_linalg::distance::dot(b, b);
    let denom = (na * nb).sqrt();
    if denom == 0.0 {
        return f32::NAN;
    }
    // Clamp as pgvector does, so rounding never yields a distance outside [0, 2].
    1.0 - (dot / denom).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_have_pgvector_meaning() {
        let a = [1.0, 0.0, 0.0];
        let b = [0.0, 2.0, 0.0];
        assert!((Metric::L2.distance(&a, &b) - 5f32.sqrt()).abs() < 1e-6);
        assert!((Metric::Cosine.distance(&a, &b) - 1.0).abs() < 1e-6);
        assert!((Metric::Dot.distance(&a, &[3.0, 1.0, 0.0]) + 3.0).abs() < 1e-6);
        assert!((Metric::L1.distance(&a, &b) - 3.0).abs() < 1e-6);
        assert!(Metric::Cosine.distance(&a, &[0.0, 0.0, 0.0]).is_nan());
    }

    #[test]
    fn query_distances_equal_pairwise_ones() {
        let q = [0.3, -1.2, 2.5, 0.0];
        let rows = [
            [1.0, 2.0, 3.0, 4.0],
            [0.0, 0.0, 0.0, 0.0],
            [-0.3, 1.2, -2.5, 0.0],
        ];
        for m in [Metric::L2, Metric::Cosine, Metric::Dot, Metric::L1] {
            let from_q = m.from_query(&q);
            for r in &rows {
                let (a, b) = (from_q.distance(r), m.distance(&q, r));
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "{m:?}"
                );
            }
        }
    }

    #[test]
    fn lance_distances_convert() {
        assert!((Metric::L2.from_lance(4.0) - 2.0).abs() < 1e-6);
        assert!((Metric::Dot.from_lance(1.0 - 3.0) + 3.0).abs() < 1e-6);
    }
}
