//! The process-wide memory budget for cached table data, and how it is split.
//!
//! One number (`[cache] memory`, `--cache-memory`) bounds everything Quiver
//! keeps of a table in memory between queries:
//! - the column-chunk cache ([`crate::chunks`]): vectors, filter columns and
//!   result columns of immutable Lance fragments;
//! - the tails of the tables: rows acknowledged through the write-ahead log
//!   and not yet flushed to Lance ([`crate::table`]; a flush starts when all
//!   tails together pass their share);
//! - the rows the vector indexes do not cover yet, prepared for searches as
//!   8-bit codes beside their vectors ([`crate::fresh`]; a fragment past
//!   their share is searched exactly);
//! - Lance's index cache (opened index partitions) and metadata cache
//!   (manifests, file metadata, deletion vectors), both in the one shared
//!   `lance::session::Session` that every dataset is opened with;
//! - query results, kept by the SQL layer until a write to a table they
//!   read makes them unreachable.
//!
//! The split is explicit ([`Shares`], config keys). A vector is held once:
//! in its fragment's chunk; an index holds its own codes, not the vectors,
//! and a cached result holds the rows it returned.
//!
//! Not covered by the budget, and bounded separately: Lance scanner I/O
//! buffers (per scan, [`SCAN_IO_BUFFER_BYTES`]) and index builds (their peak is
//! transient and reported by the benchmarks).

use std::sync::Arc;

use lance::session::Session;

use crate::engine_err;
use crate::error::Result;

/// Default budget when none is configured.
pub const DEFAULT_CACHE_BYTES: u64 = 2 << 30;

/// The smallest budget accepted: below it the index cache cannot hold even a
/// small index's partitions and every query would re-read them.
pub const MIN_CACHE_BYTES: u64 = 16 << 20;

/// I/O buffer of one Lance scan (Lance's own default is 2 GiB per scan).
pub const SCAN_IO_BUFFER_BYTES: u64 = 32 << 20;

/// The budget's shares, in percent of the total; Lance's metadata cache
/// gets what they leave (at least [`MIN_METADATA_PERCENT`]). Config keys
/// `[cache] chunk_share`, `result_share`, `index_share`, `fresh_share`,
/// `tail_share`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shares {
    /// Column chunks ([`crate::chunks`]): the hot vectors and the columns
    /// searches read. 45 %.
    pub chunks: u8,
    /// Query results (the SQL layer's result cache). 5 %.
    pub results: u8,
    /// Lance's index cache (opened index partitions). 30 %.
    pub index: u8,
    /// The prepared fresh rows of all tables ([`crate::fresh`]). 5 %.
    pub fresh: u8,
    /// The tables' tails, all together. 5 %.
    pub tail: u8,
}

impl Default for Shares {
    fn default() -> Self {
        Shares {
            chunks: 45,
            results: 5,
            index: 30,
            fresh: 5,
            tail: 5,
        }
    }
}

/// The least share left to Lance's metadata cache (manifests, file
/// metadata, deletion vectors): below it every query would re-read them.
pub const MIN_METADATA_PERCENT: u8 = 5;

/// How the budget is divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    pub total: u64,
    pub shares: Shares,
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget {
            total: DEFAULT_CACHE_BYTES,
            shares: Shares::default(),
        }
    }
}

impl MemoryBudget {
    pub fn new(total: u64) -> Result<MemoryBudget> {
        Self::with_shares(total, Shares::default())
    }

    /// A budget of `total` bytes split by `shares`. Every share but the
    /// result cache's must be at least 1 %; they may sum to at most
    /// 100 − [`MIN_METADATA_PERCENT`].
    pub fn with_shares(total: u64, shares: Shares) -> Result<MemoryBudget> {
        if total < MIN_CACHE_BYTES {
            return engine_err!(
                InvalidRequest,
                "cache memory {} is below the minimum {}",
                format_bytes(total),
                format_bytes(MIN_CACHE_BYTES)
            );
        }
        let Shares {
            chunks,
            results,
            index,
            fresh,
            tail,
        } = shares;
        if [chunks, index, fresh, tail].contains(&0) {
            return engine_err!(
                InvalidRequest,
                "the chunk, index, fresh and tail shares of the cache memory must be at least 1 %"
            );
        }
        let sum: u32 = [chunks, results, index, fresh, tail]
            .iter()
            .map(|&p| u32::from(p))
            .sum();
        if sum > u32::from(100 - MIN_METADATA_PERCENT) {
            return engine_err!(
                InvalidRequest,
                "the cache memory shares add up to {sum} %; at most {} % (the rest is Lance's metadata cache)",
                100 - MIN_METADATA_PERCENT
            );
        }
        Ok(MemoryBudget { total, shares })
    }

    fn percent(&self, p: u8) -> u64 {
        self.total / 100 * u64::from(p)
    }

    /// Column chunks.
    pub fn chunk_bytes(&self) -> u64 {
        self.percent(self.shares.chunks)
    }

    /// Query results (0: the result cache is off).
    pub fn result_bytes(&self) -> u64 {
        self.percent(self.shares.results)
    }

    /// The prepared fresh rows of all tables ([`crate::fresh`]).
    pub fn fresh_bytes(&self) -> u64 {
        self.percent(self.shares.fresh)
    }

    /// The tables' tails, all together.
    pub fn tail_bytes(&self) -> u64 {
        self.percent(self.shares.tail)
    }

    /// Lance's index cache.
    pub fn index_bytes(&self) -> u64 {
        self.percent(self.shares.index)
    }

    /// Lance's metadata cache: the rest.
    pub fn metadata_bytes(&self) -> u64 {
        self.total
            - self.chunk_bytes()
            - self.result_bytes()
            - self.fresh_bytes()
            - self.tail_bytes()
            - self.index_bytes()
    }

    /// The one Lance session of the process, with its caches sized from the
    /// budget; with `durable`, its local stores commit durably ([`crate::durable`]).
    pub fn lance_session(&self, durable: bool) -> Arc<Session> {
        let registry = Arc::new(lance::io::ObjectStoreRegistry::default());
        if durable {
            crate::durable::install(&registry);
        }
        Arc::new(Session::new(
            self.index_bytes() as usize,
            self.metadata_bytes() as usize,
            registry,
        ))
    }
}

/// Parses a size such as `256MiB`, `2GiB`, `512MB`, `1g` or `1048576` (bytes).
/// Units are binary (`KB` = `KiB` = 1024), as in PostgreSQL's settings.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    let bytes = n * mult as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// A byte count in the largest binary unit that keeps it readable.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("256MiB"), Some(256 << 20));
        assert_eq!(parse_bytes("2GiB"), Some(2 << 30));
        assert_eq!(parse_bytes("2 GB"), Some(2 << 30));
        assert_eq!(parse_bytes("1.5g"), Some(3 << 29));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("12 parsecs"), None);
        assert_eq!(parse_bytes(""), None);
        assert_eq!(parse_bytes("-1MB"), None);
    }

    #[test]
    fn budget_splits_add_up() {
        let b = MemoryBudget::new(256 << 20).expect("budget");
        assert_eq!(
            b.chunk_bytes()
                + b.result_bytes()
                + b.fresh_bytes()
                + b.tail_bytes()
                + b.index_bytes()
                + b.metadata_bytes(),
            b.total
        );
        assert!(MemoryBudget::new(1 << 20).is_err());
        assert_eq!(b.metadata_bytes(), b.total - b.total / 100 * 90);
        let no_results = Shares {
            results: 0,
            ..Shares::default()
        };
        let b = MemoryBudget::with_shares(256 << 20, no_results).expect("no result cache");
        assert_eq!(b.result_bytes(), 0);
        let greedy = Shares {
            chunks: 80,
            ..Shares::default()
        };
        assert!(MemoryBudget::with_shares(256 << 20, greedy).is_err());
        let none = Shares {
            index: 0,
            ..Shares::default()
        };
        assert!(MemoryBudget::with_shares(256 << 20, none).is_err());
        assert_eq!(format_bytes(256 << 20), "256.0MiB");
    }
}
