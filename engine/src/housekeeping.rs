//! Housekeeping of a table's Lance dataset: compaction of small fragments and
//! deletions (trickle writes make one fragment per flush of the write-ahead
//! log, or per statement for larger ones), index upkeep,
//! and removal of old versions that no reader holds.
//!
//! - Compaction runs in the background after a write when [`FANOUT`] small
//!   fragments (under [`TARGET_ROWS`] rows) of one size tier have piled up, or
//!   a tenth of the table's rows are deleted; and on demand with `OPTIMIZE
//!   TABLE`, which merges every small fragment. It runs outside the table's
//!   write lock: Lance commits it with conflict resolution, so writers go on,
//!   and indexes are remapped to the new fragments. Fragments of
//!   [`TARGET_ROWS`] rows or more are left alone, so compaction rewrites the
//!   small recent fragments, not the table.
//! - Rows written after an index was built are searched by a scan of their
//!   8-bit codes ([`crate::fresh`]) and folded into the index (Lance's
//!   incremental `optimize_indices`) as a delta segment once [`fold_in_due`]:
//!   when [`UNINDEXED_ROWS`] of them are scored exactly (the budget had no
//!   room to prepare them), or [`FRESH_ROWS`] rows or [`FRESH_FRAGMENTS`]
//!   fragments wait. Past [`MAX_INDEX_DELTAS`] deltas the newest
//!   similar-sized ones are merged with them ([`index_segments_to_merge`]).
//! - Cleanup removes versions older than the retention (`[storage]
//!   version_retention`), never the latest and never one a reader holds: every
//!   search view and table scan holds a [`Pin`] on its version (Lance's own
//!   cleanup knows nothing of this process's readers).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lance::Dataset;
use lance::dataset::optimize::{
    CompactionOptions, CompactionPlan, CompactionPlanner, DefaultCompactionPlanner,
};

/// Small fragments are merged in tiers of similar size: a fragment of r rows
/// is in tier ⌊log_FANOUT r⌋, and once FANOUT fragments of one tier pile up
/// they are merged into one of a higher tier. A trickle-written row is then
/// rewritten about once per tier (log_8 of [`TARGET_ROWS`], about 5 times) on
/// its way into a full fragment, where merging every small fragment at once
/// would rewrite the growing merged fragment with each handful of new rows
/// (and make the next search read it again).
pub const FANOUT: usize = 8;

/// Compactions one background pass runs at most, one tier each.
pub const MAX_PASSES: usize = 16;

/// Fragments are compacted into fragments of up to this many rows; larger
/// ones are not rewritten.
pub const TARGET_ROWS: usize = 65_536;

/// Deleted share of the rows that starts a compaction (which drops them).
pub const DELETED_FRACTION: f64 = 0.1;

/// Rows that searches score exactly (not covered by an index, and not
/// prepared for the coded scan of [`crate::fresh`]) that start an
/// incremental index update: a new delta segment of the index (searched
/// beside the others), so that rows written after the build are not scored
/// exactly by every search for long (about 50 ns a 384-d row).
pub const UNINDEXED_ROWS: usize = 1_024;

/// Rows not covered by an index that start an index update whatever was
/// prepared: the coded scan costs every search about 6 ns a 384-d row, as
/// much as one more delta segment (about 60 µs on the wordnet table) at
/// about 10,000 rows, so the rows wait about that many on average.
pub const FRESH_ROWS: usize = 16_384;

/// Fragments not covered by an index that start an index update: each is one
/// more entry in every version and view, and one more to prepare.
pub const FRESH_FRAGMENTS: usize = 64;

/// Whether rows written since the last index update are folded in now:
/// `unindexed` rows in `fragments` fragments not covered by some index, of
/// which `exact` are scored exactly by some index's searches.
pub fn fold_in_due(unindexed: usize, fragments: usize, exact: usize) -> bool {
    unindexed > 0
        && (exact >= UNINDEXED_ROWS || unindexed >= FRESH_ROWS || fragments >= FRESH_FRAGMENTS)
}

/// Delta segments an index keeps beside its base before an update merges
/// some of them (each one is searched by every query).
pub const MAX_INDEX_DELTAS: usize = 4;

/// Size ratio of the delta segments merged together (see [`index_segments_to_merge`]).
pub const INDEX_FANOUT: usize = 4;

/// Writes between background looks at unindexed rows.
pub const CHECK_EVERY: u64 = 64;

/// Default `[storage] version_retention`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);

/// Background cleanup passes are at least this far apart (or the retention,
/// when shorter): a pass reads the manifest of every version it keeps.
pub const CLEANUP_INTERVAL: Duration = Duration::from_secs(30);

/// One fragment as compaction planning sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FragmentSize {
    pub id: u32,
    pub rows: usize,
    pub deleted: usize,
}

impl FragmentSize {
    fn small(&self) -> bool {
        self.rows < TARGET_ROWS
    }

    fn tier(&self) -> u32 {
        self.rows.max(1).ilog(FANOUT)
    }

    /// Enough of its rows are deleted that compaction rewrites it without them.
    fn deletions_due(&self) -> bool {
        self.rows > 0 && self.deleted as f64 > DELETED_FRACTION * self.rows as f64
    }
}

pub fn fragment_sizes(ds: &Dataset) -> Vec<FragmentSize> {
    ds.fragments()
        .iter()
        .map(|f| FragmentSize {
            id: f.id as u32,
            rows: f.physical_rows.unwrap_or(0),
            deleted: f
                .deletion_file
                .as_ref()
                .and_then(|d| d.num_deleted_rows)
                .unwrap_or(0),
        })
        .collect()
}

/// The lowest tier with [`FANOUT`] small fragments: the one to merge.
fn full_tier(frags: &[FragmentSize]) -> Option<u32> {
    let mut per_tier = BTreeMap::<u32, usize>::new();
    for f in frags.iter().filter(|f| f.small()) {
        *per_tier.entry(f.tier()).or_default() += 1;
    }
    per_tier
        .into_iter()
        .find(|&(_, n)| n >= FANOUT)
        .map(|(t, _)| t)
}

/// How many of an index's newest segments an update rewrites together with
/// the `new_rows` it adds (0: they become one more delta segment).
/// `segment_rows` holds the rows each segment covers, oldest (the base built by
/// CREATE INDEX) first. Once [`MAX_INDEX_DELTAS`] deltas exist, the newest run
/// of deltas each at most [`INDEX_FANOUT`] times the rows newer than it (new
/// rows included) is merged: size-tiered, as compaction, so a row is rewritten
/// a few times per tier and the base is never rebuilt by housekeeping.
pub fn index_segments_to_merge(segment_rows: &[usize], new_rows: usize) -> usize {
    let deltas = segment_rows.get(1..).unwrap_or_default();
    if deltas.len() < MAX_INDEX_DELTAS {
        return 0;
    }
    let mut newer = new_rows.max(1);
    let mut merged = 0;
    for &rows in deltas.iter().rev() {
        if rows > newer.saturating_mul(INDEX_FANOUT) {
            break;
        }
        newer += rows;
        merged += 1;
    }
    merged
}

/// Whether the fragments call for a (background) compaction.
pub fn needs_compaction(frags: &[FragmentSize]) -> bool {
    let physical: usize = frags.iter().map(|f| f.rows).sum();
    let deleted: usize = frags.iter().map(|f| f.deleted).sum();
    full_tier(frags).is_some()
        || (physical > 0 && deleted as f64 >= DELETED_FRACTION * physical as f64)
}

/// What one background compaction may rewrite, most selective first: Lance
/// plans each in turn (merging runs of adjacent fragments that are not held
/// back) and the first that gives work is done. Each is the list of fragments
/// held back: with a full tier, first every fragment outside it, then only
/// those above it; then, or without a full tier (deletions), every fragment
/// whose deletions are not due; last nothing (Lance's own choice).
pub fn compaction_attempts(frags: &[FragmentSize]) -> Vec<Vec<u32>> {
    let held = |keep: &dyn Fn(&FragmentSize) -> bool| -> Vec<u32> {
        frags
            .iter()
            .filter(|f| !f.deletions_due() && !keep(f))
            .map(|f| f.id)
            .collect()
    };
    let mut attempts = Vec::new();
    if let Some(t) = full_tier(frags) {
        attempts.push(held(&|f| f.small() && f.tier() == t));
        attempts.push(held(&|f| f.small() && f.tier() <= t));
    }
    attempts.push(held(&|_| false));
    attempts.push(Vec::new());
    attempts.dedup();
    attempts
}

pub fn compaction_options() -> CompactionOptions {
    CompactionOptions {
        target_rows_per_fragment: TARGET_ROWS,
        materialize_deletions_threshold: DELETED_FRACTION as f32,
        ..Default::default()
    }
}

/// The background compaction's planner: tiers (see [`FANOUT`]) over Lance's
/// own planner, which keeps rows in order and indexes remappable.
pub struct TieredPlanner;

#[async_trait::async_trait]
impl CompactionPlanner for TieredPlanner {
    async fn plan(&self, ds: &Dataset) -> lance::Result<CompactionPlan> {
        let sizes = fragment_sizes(ds);
        let mut attempts = compaction_attempts(&sizes).into_iter().peekable();
        loop {
            let excluded = attempts.next().unwrap_or_default();
            let options = CompactionOptions {
                excluded_fragment_ids: excluded,
                ..compaction_options()
            };
            let plan = DefaultCompactionPlanner::new(options)?.plan(ds).await?;
            if plan.num_tasks() > 0 || attempts.peek().is_none() {
                return Ok(plan);
            }
        }
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

    /// Lance's planning, as far as the policy relies on it: runs of adjacent
    /// fragments that are not held back and are small (or have deletions
    /// due) are each rewritten as one (a run of one small fragment without
    /// deletions is left alone). Returns the rows rewritten.
    fn compact(frags: &mut Vec<FragmentSize>, next_id: &mut u32) -> usize {
        for held in compaction_attempts(frags) {
            let (mut out, mut run, mut rewritten) = (Vec::new(), Vec::new(), 0);
            let mut flush = |run: &mut Vec<FragmentSize>, out: &mut Vec<FragmentSize>| {
                if run.len() > 1 || run.iter().any(|f| f.deletions_due()) {
                    let rows: usize = run.iter().map(|f| f.rows - f.deleted).sum();
                    rewritten += rows;
                    *next_id += 1;
                    out.push(FragmentSize {
                        id: *next_id,
                        rows,
                        deleted: 0,
                    });
                } else {
                    out.append(run);
                }
                run.clear();
            };
            for f in frags.iter() {
                if !held.contains(&f.id) && (f.small() || f.deletions_due()) {
                    run.push(*f);
                } else {
                    flush(&mut run, &mut out);
                    out.push(*f);
                }
            }
            flush(&mut run, &mut out);
            if rewritten > 0 {
                *frags = out;
                return rewritten;
            }
        }
        0
    }

    #[test]
    fn trickle_writes_are_rewritten_once_per_tier() {
        let mut frags = vec![FragmentSize {
            id: 0,
            rows: 116_659,
            deleted: 0,
        }];
        let (mut next_id, mut rewritten, mut most) = (0, 0, 0);
        for _ in 0..10_000 {
            next_id += 1;
            frags.push(FragmentSize {
                id: next_id,
                rows: 1,
                deleted: 0,
            });
            if needs_compaction(&frags) {
                rewritten += compact(&mut frags, &mut next_id);
            }
            most = most.max(frags.len());
        }
        assert_eq!(frags.iter().map(|f| f.rows).sum::<usize>(), 126_659);
        assert_eq!(frags[0].rows, 116_659, "the large fragment was rewritten");
        // Each row is rewritten once per tier it passes (1 → 8 → 64 → 512 → 4096 rows).
        assert!(rewritten <= 4 * 10_000, "{rewritten} rows rewritten");
        assert!(most <= 1 + 4 * FANOUT, "{most} fragments");
        assert!(!needs_compaction(&frags));
    }

    #[test]
    fn deletions_are_dropped_without_merging_neighbours() {
        let mut frags: Vec<FragmentSize> = (0..4)
            .map(|id| FragmentSize {
                id,
                rows: 1_000,
                deleted: 0,
            })
            .collect();
        frags[2].deleted = 500;
        assert!(needs_compaction(&frags));
        let mut next_id = 3;
        assert_eq!(compact(&mut frags, &mut next_id), 500);
        let rows: Vec<usize> = frags.iter().map(|f| f.rows).collect();
        assert_eq!(rows, vec![1_000, 1_000, 500, 1_000]);
        assert!(!needs_compaction(&frags));
    }

    #[test]
    fn index_deltas_stay_few_and_rows_are_rewritten_a_few_times() {
        // A trickle: every update adds UNINDEXED_ROWS rows to an index whose
        // base covers 100,000, as Lance does with the count this returns.
        let mut segments = vec![100_000];
        let (mut written, mut rewritten, mut most) = (0, 0, 0);
        for _ in 0..1_000 {
            let merge = index_segments_to_merge(&segments, UNINDEXED_ROWS);
            assert!(merge < segments.len(), "the base is never merged");
            let keep = segments.len() - merge;
            let merged: usize = segments[keep..].iter().sum();
            rewritten += merged;
            segments.truncate(keep);
            segments.push(merged + UNINDEXED_ROWS);
            written += UNINDEXED_ROWS;
            most = most.max(segments.len() - 1);
        }
        assert_eq!(segments[0], 100_000);
        assert_eq!(segments.iter().sum::<usize>(), 100_000 + written);
        // ~1M rows in 1,000 updates: a handful of deltas, not one per update,
        // and each row rewritten about once per tier (log_4 1,000 = 5).
        assert!(most <= 2 * MAX_INDEX_DELTAS, "{most} deltas: {segments:?}");
        assert!(
            rewritten <= 10 * written,
            "rewrote {rewritten} rows for {written}"
        );
        // Fewer deltas than the bound: new rows become one more.
        assert_eq!(index_segments_to_merge(&[100_000, 1_024, 1_024], 1_024), 0);
        assert_eq!(index_segments_to_merge(&[100_000], 50), 0);
        assert_eq!(index_segments_to_merge(&[], 50), 0);
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
