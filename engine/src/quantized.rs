//! Vectors as 8-bit codes, for a cheap first pass over rows no index covers.
//!
//! Each vector `x` is stored as one scale `s = max|xᵢ| / 127` and codes
//! `qᵢ = round(xᵢ / s)` in `-127..=127`, kept biased by 128 as bytes (`qᵢ +
//! 128`, so `1..=255`); a query is coded the same way as signed bytes. Then
//! `x · y ≈ s_x s_y Σ qᵢ rᵢ`, and the integer sum is `Σ (qᵢ + 128) rᵢ − 128 Σ rᵢ`:
//! unsigned-by-signed byte products, which x86's AVX-512 VNNI multiplies and
//! adds 64 at a time (`vpdpbusd`). A 384-d row costs about 6 ns that way
//! against about 50 ns for the exact `f32` kernel, and a fourth of the memory.
//! The rounding error of a product is below `s_x s_y` per dimension: used to
//! choose candidates, whose exact distances are then computed from the `f32`
//! vectors (see [`crate::fresh`]).
//!
//! The sums are integers, so every compiled copy of the kernel (VNNI, AVX2,
//! baseline) gives the same result; the CPU's best one runs.

use std::sync::OnceLock;

/// The codes of a vector: its scale and its biased bytes.
pub fn encode(v: &[f32], codes: &mut Vec<u8>) -> f32 {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let usable = max.is_finite() && max > 0.0;
    if !usable {
        codes.extend(std::iter::repeat_n(128u8, v.len()));
        return 0.0;
    }
    let inv = 127.0 / max;
    codes.extend(v.iter().map(|x| ((x * inv).round() as i32 + 128) as u8));
    max / 127.0
}

/// A query coded for [`Query::dot`]: signed codes, their scale and their sum.
pub struct Query {
    codes: Vec<i8>,
    scale: f32,
    /// `128 Σ rᵢ`: what the bias of the rows' codes adds to each sum.
    bias: i64,
    kernel: Kernel,
}

impl Query {
    pub fn new(v: &[f32]) -> Query {
        let mut biased = Vec::with_capacity(v.len());
        let scale = encode(v, &mut biased);
        let codes: Vec<i8> = biased.iter().map(|b| (*b as i16 - 128) as i8).collect();
        let bias = 128 * codes.iter().map(|c| *c as i64).sum::<i64>();
        Query {
            codes,
            scale,
            bias,
            kernel: Kernel::detect(),
        }
    }

    /// About `x · query`, for a row coded with `scale` and `codes`.
    pub fn dot(&self, scale: f32, codes: &[u8]) -> f32 {
        self.scaled(self.kernel.sum(codes, &self.codes), scale)
    }

    /// About `x · query` for each row of `codes` (rows of the query's
    /// length, back to back) with the rows' `scales`, into `out`; `sums`
    /// is scratch space.
    pub fn dots(&self, codes: &[u8], scales: &[f32], sums: &mut Vec<i32>, out: &mut Vec<f32>) {
        sums.clear();
        self.kernel.sums(codes, &self.codes, sums);
        out.clear();
        out.extend(
            sums.iter()
                .zip(scales)
                .map(|(sum, scale)| self.scaled(*sum as i64, *scale)),
        );
    }

    #[inline(always)]
    fn scaled(&self, sum: i64, scale: f32) -> f32 {
        (sum - self.bias) as f32 * scale * self.scale
    }
}

/// Which compiled copy of the kernel runs. A value other than `Baseline`
/// exists only where [`Kernel::available`] found its features on this CPU,
/// which is what makes calling that copy sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Vnni,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Baseline,
}

impl Kernel {
    /// Every copy this CPU can run, best first.
    fn available() -> Vec<Kernel> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                all.push(Kernel::Vnni);
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(Kernel::Avx2);
            }
        }
        all.push(Kernel::Baseline);
        all
    }

    fn detect() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| Kernel::available()[0])
    }

    /// `Σ a[i] b[i]` over the common length (`a` unsigned, `b` signed).
    #[inline(always)]
    #[allow(unsafe_code)]
    fn sum(self, a: &[u8], b: &[i8]) -> i64 {
        match self {
            // SAFETY: these variants are only made after the CPU was found to
            // have the features the functions are compiled for (see `Kernel`).
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => unsafe { sum_vnni(a, b) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { sum_avx2(a, b) },
            Kernel::Baseline => sum_generic(a, b),
        }
    }
}

impl Kernel {
    /// The sum for each row of `rows` (rows of `b`'s length, back to back),
    /// appended to `out` (a row's sum fits an `i32`: 16,000 products of at
    /// most 255 · 128).
    #[allow(unsafe_code)]
    fn sums(self, rows: &[u8], b: &[i8], out: &mut Vec<i32>) {
        match self {
            // SAFETY: as in `Kernel::sum`.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => unsafe { sums_vnni(rows, b, out) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { sums_avx2(rows, b, out) },
            Kernel::Baseline => sums_generic(rows, b, out),
        }
    }
}

/// [`Kernel::sums`] with the row kernel `sum` (inlined into each copy).
#[inline(always)]
fn sums_with(rows: &[u8], b: &[i8], out: &mut Vec<i32>, sum: impl Fn(&[u8], &[i8]) -> i64) {
    if b.is_empty() {
        return;
    }
    out.extend(rows.chunks_exact(b.len()).map(|row| sum(row, b) as i32));
}

fn sums_generic(rows: &[u8], b: &[i8], out: &mut Vec<i32>) {
    sums_with(rows, b, out, sum_generic)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sums_avx2(rows: &[u8], b: &[i8], out: &mut Vec<i32>) {
    sums_with(rows, b, out, sum_generic)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn sums_vnni(rows: &[u8], b: &[i8], out: &mut Vec<i32>) {
    sums_with(rows, b, out, |a, b| sum_vnni(a, b))
}

/// Independent partial sums of the portable kernel.
const LANES: usize = 32;

#[inline(always)]
fn sum_generic(a: &[u8], b: &[i8]) -> i64 {
    let n = a.len().min(b.len());
    let (a_chunks, a_rest) = a[..n].as_chunks::<LANES>();
    let (b_chunks, b_rest) = b[..n].as_chunks::<LANES>();
    let mut acc = [0i32; LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for i in 0..LANES {
            acc[i] += x[i] as i32 * y[i] as i32;
        }
    }
    let rest: i64 = a_rest
        .iter()
        .zip(b_rest)
        .map(|(x, y)| *x as i64 * *y as i64)
        .sum();
    acc.iter().map(|s| *s as i64).sum::<i64>() + rest
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_avx2(a: &[u8], b: &[i8]) -> i64 {
    sum_generic(a, b)
}

/// Bytes one VNNI step multiplies and adds.
#[cfg(target_arch = "x86_64")]
const VNNI_BYTES: usize = 64;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
#[allow(unsafe_code)]
fn sum_vnni(a: &[u8], b: &[i8]) -> i64 {
    use std::arch::x86_64::{
        _mm512_add_epi32, _mm512_dpbusd_epi32, _mm512_loadu_si512, _mm512_reduce_add_epi32,
        _mm512_setzero_si512,
    };
    let n = a.len().min(b.len());
    let (a_chunks, a_rest) = a[..n].as_chunks::<VNNI_BYTES>();
    let (b_chunks, b_rest) = b[..n].as_chunks::<VNNI_BYTES>();
    // Two accumulators, so consecutive steps do not wait on each other. Each
    // of their 32-bit lanes adds 4 products a step, at most 255 · 128 each:
    // 16,000 dimensions (the largest vector) stay far from overflowing.
    let (mut acc0, mut acc1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let mut pairs = a_chunks.iter().zip(b_chunks);
    while let Some((x0, y0)) = pairs.next() {
        // SAFETY: each pointer is to 64 bytes of a slice of 64 bytes (`as_chunks`);
        // the loads are unaligned ones.
        let (x0, y0) = unsafe {
            (
                _mm512_loadu_si512(x0.as_ptr().cast()),
                _mm512_loadu_si512(y0.as_ptr().cast()),
            )
        };
        acc0 = _mm512_dpbusd_epi32(acc0, x0, y0);
        let Some((x1, y1)) = pairs.next() else { break };
        // SAFETY: as above.
        let (x1, y1) = unsafe {
            (
                _mm512_loadu_si512(x1.as_ptr().cast()),
                _mm512_loadu_si512(y1.as_ptr().cast()),
            )
        };
        acc1 = _mm512_dpbusd_epi32(acc1, x1, y1);
    }
    let lanes = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1)) as i64;
    lanes + sum_generic(a_rest, b_rest)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic components in [-0.5, 0.5) (an LCG).
    pub(crate) fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn every_kernel_copy_gives_the_same_sum_as_the_exact_one() {
        let kernels = Kernel::available();
        assert_eq!(kernels.last(), Some(&Kernel::Baseline));
        for len in [0usize, 1, 63, 64, 65, 127, 128, 129, 384, 1000, 16_000] {
            let a: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let b: Vec<i8> = (0..len)
                .map(|i| ((i * 13 % 255) as i32 - 127) as i8)
                .collect();
            let exact: i64 = a.iter().zip(&b).map(|(x, y)| *x as i64 * *y as i64).sum();
            for k in &kernels {
                assert_eq!(k.sum(&a, &b), exact, "{k:?} len {len}");
            }
        }
        // Row by row, as the scan calls it.
        let (dim, rows) = (384, 9);
        let a: Vec<u8> = (0..dim * rows).map(|i| (i * 5 % 256) as u8).collect();
        let b: Vec<i8> = (0..dim)
            .map(|i| ((i * 11 % 255) as i32 - 127) as i8)
            .collect();
        for k in &kernels {
            let mut sums = Vec::new();
            k.sums(&a, &b, &mut sums);
            let want: Vec<i32> = a.chunks(dim).map(|r| sum_generic(r, &b) as i32).collect();
            assert_eq!(sums, want, "{k:?}");
        }
        // The extremes of the codes, over the largest vector.
        let a = vec![255u8; 16_000];
        let b = vec![-127i8; 16_000];
        for k in &kernels {
            assert_eq!(k.sum(&a, &b), -255 * 127 * 16_000, "{k:?}");
        }
    }

    #[test]
    fn coded_dot_products_are_close_to_the_exact_ones() {
        for (dim, seed) in [(3, 1), (8, 2), (384, 3), (1536, 4)] {
            let q = random(dim, seed);
            let query = Query::new(&q);
            for row in 0..50 {
                let x = random(dim, seed * 1000 + row);
                let mut codes = Vec::new();
                let scale = encode(&x, &mut codes);
                assert_eq!(codes.len(), dim);
                let exact: f32 = x.iter().zip(&q).map(|(a, b)| a * b).sum();
                let max_x = x.iter().fold(0f32, |m, v| m.max(v.abs()));
                let max_q = q.iter().fold(0f32, |m, v| m.max(v.abs()));
                // Each coordinate is off by at most half a step of its scale.
                let bound =
                    dim as f32 * (max_x * max_q / 127.0 + max_x * max_q / (4.0 * 127.0 * 127.0));
                let got = query.dot(scale, &codes);
                assert!(
                    (got - exact).abs() <= bound,
                    "dim {dim}: {got} vs {exact} (bound {bound})"
                );
            }
        }
        // A zero vector codes to zero.
        let mut codes = Vec::new();
        assert_eq!(encode(&[0.0, 0.0], &mut codes), 0.0);
        assert_eq!(Query::new(&[1.0, 2.0]).dot(0.0, &codes), 0.0);
    }
}
