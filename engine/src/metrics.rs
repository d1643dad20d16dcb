//! What the engine's long work cost: index builds, index updates (rows
//! folded into an index) and compactions, as Prometheus metrics the
//! server's `/metrics` gathers ([`MaintenanceMetrics::families`]).

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

/// Buckets in seconds for work that takes from milliseconds to an hour.
const WORK_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    3600.0,
];

/// Index builds, index updates and compactions: each timed (a histogram's
/// `_count` is how many ran), failures counted by operation.
pub struct MaintenanceMetrics {
    index_builds: HistogramVec,
    index_updates: HistogramVec,
    compactions: HistogramVec,
    failures: IntCounterVec,
}

impl std::fmt::Debug for MaintenanceMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaintenanceMetrics").finish_non_exhaustive()
    }
}

fn histogram(name: &str, help: &str, label: &str) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(WORK_BUCKETS.to_vec()),
        &[label],
    )
    .expect("valid histogram")
}

/// What a failed operation is labelled in `quiver_maintenance_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    IndexBuild,
    IndexUpdate,
    Compaction,
}

impl Work {
    fn label(self) -> &'static str {
        match self {
            Work::IndexBuild => "index_build",
            Work::IndexUpdate => "index_update",
            Work::Compaction => "compaction",
        }
    }
}

impl Default for MaintenanceMetrics {
    fn default() -> Self {
        MaintenanceMetrics {
            index_builds: histogram(
                "quiver_index_build_seconds",
                "Index builds of one shard (CREATE INDEX, REINDEX, a reshard's new shards), \
                 by kind: vector or scalar",
                "kind",
            ),
            index_updates: histogram(
                "quiver_index_update_seconds",
                "Rows written since an index build folded into a shard's indexes (OPTIMIZE, \
                 or in the background)",
                "trigger",
            ),
            compactions: histogram(
                "quiver_compaction_seconds",
                "Compactions of a shard's fragments that rewrote some (OPTIMIZE, or in the \
                 background)",
                "trigger",
            ),
            failures: IntCounterVec::new(
                Opts::new(
                    "quiver_maintenance_failures_total",
                    "Index builds, index updates and compactions that failed",
                ),
                &["work"],
            )
            .expect("valid counter"),
        }
    }
}

/// `optimize` for work OPTIMIZE asked for, else `background`.
fn trigger(optimize: bool) -> &'static str {
    if optimize { "optimize" } else { "background" }
}

impl MaintenanceMetrics {
    /// An index build of `kind` (`vector` / `scalar`) that took `took`.
    pub fn index_built(&self, kind: &str, took: Duration) {
        self.index_builds
            .with_label_values(&[kind])
            .observe(took.as_secs_f64());
    }

    pub fn index_updated(&self, optimize: bool, took: Duration) {
        self.index_updates
            .with_label_values(&[trigger(optimize)])
            .observe(took.as_secs_f64());
    }

    pub fn compacted(&self, optimize: bool, took: Duration) {
        self.compactions
            .with_label_values(&[trigger(optimize)])
            .observe(took.as_secs_f64());
    }

    pub fn failed(&self, work: Work) {
        self.failures.with_label_values(&[work.label()]).inc();
    }

    /// Every family, for the server's `/metrics`.
    pub fn families(&self) -> Vec<MetricFamily> {
        let mut out = self.index_builds.collect();
        out.extend(self.index_updates.collect());
        out.extend(self.compactions.collect());
        out.extend(self.failures.collect());
        out
    }
}
