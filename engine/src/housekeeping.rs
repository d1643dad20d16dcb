//! Housekeeping of a table's Lance dataset: compaction of small fragments and
//! deletions (trickle writes make one fragment per statement), index upkeep,
//! and removal of old versions that no reader holds.
//!
//! - Compaction runs in the background after a write when the table has
//!   [`SMALL_FRAGMENTS`] fragments under [`TARGET_ROWS`] rows, or a tenth of its
//!   rows deleted; on demand with `OPTIMIZE TABLE`. It runs outside the table's
//!   write lock: Lance commits it with conflict resolution, so writers go on,
//!   and indexes are remapped to the new fragments. Fragments of
//!   [`TARGET_ROWS`] rows or more are left alone, so compaction rewrites the
//!   small recent fragments, not the table.
//! - Rows written after an index was built are folded into it (Lance's
//!   incremental `optimize_indices`) once there are [`UNINDEXED_ROWS`] of them.
//! - Cleanup removes versions older than the retention (`[storage]
//!   version_retention`), never the latest and never one a reader holds: every
//!   search view and table scan holds a [`Pin`] on its version (Lance's own
//!   cleanup knows nothing of this process's readers).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lance::Dataset;
use lance::dataset::optimize::CompactionOptions;

/// Compaction starts once this many fragments are below [`TARGET_ROWS`].
pub const SMALL_FRAGMENTS: usize = 32;

/// Fragments are compacted into fragments of up to this many rows; larger
/// ones are not rewritten.
pub const TARGET_ROWS: usize = 65_536;

/// Deleted share of the rows that starts a compaction (which drops them).
pub const DELETED_FRACTION: f64 = 0.1;

/// Rows not covered by a vector index that start an incremental index update.
pub const UNINDEXED_ROWS: usize = 10_000;

/// Writes between background looks at unindexed rows.
pub const CHECK_EVERY: u64 = 64;

/// Default `[storage] version_retention`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);

/// Whether the dataset's fragments call for a compaction.
pub fn needs_compaction(ds: &Dataset) -> bool {
    let frags = ds.fragments();
    let small = frags
        .iter()
        .filter(|f| f.physical_rows.unwrap_or(0) < TARGET_ROWS)
        .count();
    let physical: usize = frags.iter().map(|f| f.physical_rows.unwrap_or(0)).sum();
    let deleted: usize = frags
        .iter()
        .filter_map(|f| f.deletion_file.as_ref())
        .map(|d| d.num_deleted_rows.unwrap_or(0))
        .sum();
    small >= SMALL_FRAGMENTS
        || (physical > 0 && deleted as f64 >= DELETED_FRACTION * physical as f64)
}

pub fn compaction_options() -> CompactionOptions {
    CompactionOptions {
        target_rows_per_fragment: TARGET_ROWS,
        materialize_deletions_threshold: DELETED_FRACTION as f32,
        ..Default::default()
    }
}

/// Parses a retention such as `1h`, `30m`, `45s`, `500ms`, `2d` or `0`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = |m: u64| n.checked_mul(m).map(Duration::from_secs);
    match unit.trim().to_ascii_lowercase().as_str() {
        "ms" => Some(Duration::from_millis(n)),
        "" if n == 0 => Some(Duration::ZERO),
        "s" | "sec" | "secs" => secs(1),
        "m" | "min" | "mins" => secs(60),
        "h" | "hour" | "hours" => secs(3600),
        "d" | "day" | "days" => secs(86_400),
        _ => None,
    }
}

/// The versions of one table that readers hold, with how many readers each.
#[derive(Debug, Default)]
pub struct Pins {
    held: Mutex<BTreeMap<u64, usize>>,
}

/// A reader's hold on a version; released when dropped.
#[derive(Debug)]
pub struct Pin {
    pins: Arc<Pins>,
    version: u64,
}

impl Pins {
    pub fn pin(self: &Arc<Self>, version: u64) -> Pin {
        match self.held.lock() {
            Ok(mut g) => *g.entry(version).or_default() += 1,
            Err(p) => *p.into_inner().entry(version).or_default() += 1,
        }
        Pin {
            pins: self.clone(),
            version,
        }
    }

    pub fn is_held(&self, version: u64) -> bool {
        match self.held.lock() {
            Ok(g) => g.contains_key(&version),
            Err(p) => p.into_inner().contains_key(&version),
        }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut g = match self.pins.held.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(n) = g.get_mut(&self.version) {
            *n -= 1;
            if *n == 0 {
                g.remove(&self.version);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("45s"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn pins_count_readers() {
        let pins = Arc::new(Pins::default());
        let a = pins.pin(3);
        let b = pins.pin(3);
        assert!(pins.is_held(3));
        drop(a);
        assert!(pins.is_held(3));
        drop(b);
        assert!(!pins.is_held(3));
    }
}
