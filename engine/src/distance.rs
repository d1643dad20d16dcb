//! Distance metrics and exact kernels.
//!
//! Quiver reports distances with pgvector's meaning: `l2` is the Euclidean
//! distance (`<->`), `cosine` is `1 - cos` (`<=>`), `dot` is the negative inner
//! product (`<#>`), `l1` the taxicab distance (`<+>`). Lance's own distances
//! differ (squared L2, `1 - dot`); [`Metric::from_lance`] converts.
//!
//! The exact kernels keep [`LANES`] independent partial sums, so the CPU has
//! several SIMD additions in flight instead of waiting on one accumulator
//! (Lance's `dot` keeps one: cosine over 384 dimensions took 110 ns a row,
//! two thirds of it waiting). Each is compiled for AVX-512, for AVX and for
//! the baseline, and the CPU's best runs; all three perform the same
//! operations in the same order (no fused multiply-add), so a distance is the
//! same bits whichever copy computed it.

use std::sync::OnceLock;

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

/// `v` scaled to unit length (as it is when its length is zero): how a query
/// meets an index that compares unit vectors (cosine as a dot product).
pub fn unit_length(v: &[f32]) -> impl Iterator<Item = f32> + '_ {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let n = if norm > 0.0 { norm } else { 1.0 };
    v.iter().map(move |x| x / n)
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
        self.from_query(a).distance(b)
    }
}

/// Distances from one query vector to many: what depends on the query alone
/// (its squared norm, for cosine) is computed once, with the same arithmetic
/// as [`Metric::distance`], so the distances are identical.
pub struct QueryDistance<'a> {
    metric: Metric,
    query: &'a [f32],
    norm2: f32,
    isa: Isa,
}

impl Metric {
    pub fn from_query<'a>(&self, query: &'a [f32]) -> QueryDistance<'a> {
        self.query_on(Isa::detect(), query)
    }

    fn query_on<'a>(&self, isa: Isa, query: &'a [f32]) -> QueryDistance<'a> {
        let norm2 = match self {
            Metric::Cosine => isa.fold(query, query, |x, _| (x * x, 0.0)).0,
            _ => 0.0,
        };
        QueryDistance {
            metric: *self,
            query,
            norm2,
            isa,
        }
    }
}

impl QueryDistance<'_> {
    pub fn distance(&self, b: &[f32]) -> f32 {
        let (q, isa) = (self.query, self.isa);
        match self.metric {
            Metric::L2 => isa.fold(q, b, |x, y| ((x - y) * (x - y), 0.0)).0.sqrt(),
            Metric::Cosine => {
                // `1 - cos(q, b)`; NaN when either vector is all zeros, as in pgvector.
                let (dot, nb) = isa.fold(q, b, |x, y| (x * y, y * y));
                let denom = (self.norm2 * nb).sqrt();
                if denom == 0.0 {
                    return f32::NAN;
                }
                // Clamp as pgvector does, so rounding never yields a distance outside [0, 2].
                1.0 - (dot / denom).clamp(-1.0, 1.0)
            }
            Metric::Dot => -isa.fold(q, b, |x, y| (x * y, 0.0)).0,
            Metric::L1 => isa.fold(q, b, |x, y| ((x - y).abs(), 0.0)).0,
        }
    }
}

/// Independent partial sums of a kernel: 4 AVX-512 or 8 AVX registers, enough
/// to hide the latency of an addition.
const LANES: usize = 64;

/// The two sums of `term(a[i], b[i])` over the common length of `a` and `b`.
/// A sum the caller ignores is optimized away.
#[inline(always)]
fn fold(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> (f32, f32)) -> (f32, f32) {
    let n = a.len().min(b.len());
    let (a_chunks, a_rest) = a[..n].as_chunks::<LANES>();
    let (b_chunks, b_rest) = b[..n].as_chunks::<LANES>();
    let (mut s, mut t) = ([0f32; LANES], [0f32; LANES]);
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for i in 0..LANES {
            let (u, v) = term(x[i], y[i]);
            s[i] += u;
            t[i] += v;
        }
    }
    let (mut s_rest, mut t_rest) = (0f32, 0f32);
    for (x, y) in a_rest.iter().zip(b_rest) {
        let (u, v) = term(*x, *y);
        s_rest += u;
        t_rest += v;
    }
    (reduce(s) + s_rest, reduce(t) + t_rest)
}

/// The sum of the lanes, pairwise in a fixed order.
#[inline(always)]
fn reduce(mut lanes: [f32; LANES]) -> f32 {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    lanes[0]
}

/// Which compiled copy of the kernels runs. A value other than `Baseline`
/// exists only where [`Isa::detect`] or [`Isa::available`] found its
/// features on this CPU, which is what makes calling that copy sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx,
    Baseline,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fold_avx512(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> (f32, f32)) -> (f32, f32) {
    fold(a, b, term)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn fold_avx(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> (f32, f32)) -> (f32, f32) {
    fold(a, b, term)
}

impl Isa {
    /// Every copy this CPU can run, best first.
    fn available() -> Vec<Isa> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(Isa::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx") {
                all.push(Isa::Avx);
            }
        }
        all.push(Isa::Baseline);
        all
    }

    /// The best copy for this CPU (looked up once).
    fn detect() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| Isa::available()[0])
    }

    #[inline(always)]
    #[allow(unsafe_code)]
    fn fold(self, a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> (f32, f32)) -> (f32, f32) {
        match self {
            // SAFETY: these variants are only made after the CPU was found to
            // have the features the functions are compiled for (see `Isa`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { fold_avx512(a, b, term) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx => unsafe { fold_avx(a, b, term) },
            Isa::Baseline => fold(a, b, term),
        }
    }
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
    fn every_kernel_copy_gives_the_same_bits_close_to_the_exact_value() {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let copies = Isa::available();
        assert_eq!(copies.last(), Some(&Isa::Baseline));
        for len in [0, 1, 3, 63, 64, 65, 384, 1000] {
            let a: Vec<f32> = (0..len).map(|_| next()).collect();
            let b: Vec<f32> = (0..len).map(|_| next()).collect();
            let exact = |m: Metric| -> f64 {
                let pairs = a.iter().zip(&b).map(|(x, y)| (*x as f64, *y as f64));
                match m {
                    Metric::L2 => pairs.map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt(),
                    Metric::Dot => -pairs.map(|(x, y)| x * y).sum::<f64>(),
                    Metric::L1 => pairs.map(|(x, y)| (x - y).abs()).sum(),
                    Metric::Cosine => {
                        let (mut d, mut na, mut nb) = (0.0, 0.0, 0.0);
                        for (x, y) in pairs {
                            (d, na, nb) = (d + x * y, na + x * x, nb + y * y);
                        }
                        1.0 - d / (na * nb).sqrt()
                    }
                }
            };
            for m in [Metric::L2, Metric::Cosine, Metric::Dot, Metric::L1] {
                let bits: Vec<u32> = copies
                    .iter()
                    .map(|isa| m.query_on(*isa, &a).distance(&b).to_bits())
                    .collect();
                assert!(
                    bits.windows(2).all(|w| w[0] == w[1]),
                    "{m:?} len {len}: {copies:?} {bits:?}"
                );
                let got = f32::from_bits(bits[0]) as f64;
                let want = exact(m);
                if len == 0 && m == Metric::Cosine {
                    assert!(got.is_nan());
                } else {
                    assert!(
                        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "{m:?} len {len}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn lance_distances_convert() {
        assert!((Metric::L2.from_lance(4.0) - 2.0).abs() < 1e-6);
        assert!((Metric::Dot.from_lance(1.0 - 3.0) + 3.0).abs() < 1e-6);
    }
}
