//! `quiver_stat_statements`: what each statement cost, summed over its
//! executions, as PostgreSQL's `pg_stat_statements` shows it: the
//! statement's text normalized (constants and vectors replaced by `$n`,
//! see [`crate::Statement::normalized_text`]), calls, total / min / max /
//! mean time, and rows returned or written.
//!
//! The entries are bounded ([`StatStatements::set_max`]): when a new text
//! would pass the bound, the least-called 5 % of the entries go first, as
//! `pg_stat_statements.max` does.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Entries kept unless `[metrics] max_statements` says otherwise
/// (`pg_stat_statements.max`'s default).
pub const DEFAULT_MAX_STATEMENTS: usize = 5000;

/// One normalized statement's executions.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub calls: u64,
    pub total: Duration,
    pub min: Duration,
    pub max: Duration,
    /// Rows returned (reads) or written (writes), summed.
    pub rows: u64,
    /// The sum of squared times in ms² (for the standard deviation).
    sum_sq_ms: f64,
}

impl Figures {
    pub fn mean(&self) -> Duration {
        self.total / u32::try_from(self.calls.max(1)).unwrap_or(u32::MAX)
    }

    /// The population standard deviation of the times, in milliseconds.
    pub fn stddev_ms(&self) -> f64 {
        let n = self.calls.max(1) as f64;
        let mean = self.total.as_secs_f64() * 1e3 / n;
        (self.sum_sq_ms / n - mean * mean).max(0.0).sqrt()
    }
}

/// The statements' figures of one server.
#[derive(Debug)]
pub struct StatStatements {
    entries: Mutex<HashMap<Arc<str>, Figures>>,
    max: AtomicUsize,
}

impl Default for StatStatements {
    fn default() -> Self {
        StatStatements {
            entries: Mutex::new(HashMap::new()),
            max: AtomicUsize::new(DEFAULT_MAX_STATEMENTS),
        }
    }
}

/// A stable id of a normalized text (`queryid`): the same in every run.
pub fn query_id(text: &str) -> i64 {
    // DefaultHasher::new() has fixed keys: stable across processes.
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish() as i64
}

impl StatStatements {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Figures>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// At most `n` entries (at least 1).
    pub fn set_max(&self, n: usize) {
        self.max.store(n.max(1), Ordering::Relaxed);
    }

    /// One execution of the statement normalized to `text`.
    pub fn record(&self, text: &Arc<str>, elapsed: Duration, rows: u64) {
        let ms = elapsed.as_secs_f64() * 1e3;
        let mut entries = self.lock();
        if let Some(f) = entries.get_mut(text) {
            f.calls += 1;
            f.total += elapsed;
            f.min = f.min.min(elapsed);
            f.max = f.max.max(elapsed);
            f.rows += rows;
            f.sum_sq_ms += ms * ms;
            return;
        }
        let max = self.max.load(Ordering::Relaxed);
        if entries.len() >= max {
            // The least-called 5 % (at least one, and down to the bound) go.
            let mut calls: Vec<(u64, Arc<str>)> =
                entries.iter().map(|(t, f)| (f.calls, t.clone())).collect();
            calls.sort_unstable_by_key(|(n, _)| *n);
            let drop = (entries.len() / 20).max(entries.len() + 1 - max);
            for (_, t) in calls.into_iter().take(drop) {
                entries.remove(&t);
            }
        }
        entries.insert(
            text.clone(),
            Figures {
                calls: 1,
                total: elapsed,
                min: elapsed,
                max: elapsed,
                rows,
                sum_sq_ms: ms * ms,
            },
        );
    }

    /// Every entry, most total time first.
    pub fn entries(&self) -> Vec<(Arc<str>, Figures)> {
        let mut out: Vec<(Arc<str>, Figures)> =
            self.lock().iter().map(|(t, f)| (t.clone(), *f)).collect();
        out.sort_by(|a, b| b.1.total.cmp(&a.1.total).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// `quiver_stat_statements_reset()`: forgets every entry.
    pub fn reset(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_sum_per_text_and_the_least_called_go_first() {
        let s = StatStatements::default();
        s.set_max(3);
        let a: Arc<str> = "SELECT $1".into();
        let ms = Duration::from_millis;
        s.record(&a, ms(2), 1);
        s.record(&a, ms(4), 1);
        s.record(&a, ms(6), 1);
        let f = s.entries()[0].1;
        assert_eq!((f.calls, f.rows), (3, 3));
        assert_eq!((f.min, f.max, f.mean()), (ms(2), ms(6), ms(4)));
        assert!((f.stddev_ms() - (8.0f64 / 3.0).sqrt()).abs() < 1e-9);
        for t in ["b", "c"] {
            s.record(&t.into(), ms(1), 0);
        }
        s.record(&"b".into(), ms(1), 0);
        // Full: a new text pushes out the least called ("c").
        s.record(&"d".into(), ms(1), 0);
        let texts: Vec<String> = s.entries().iter().map(|(t, _)| t.to_string()).collect();
        assert_eq!(texts.len(), 3);
        assert!(!texts.contains(&"c".to_string()), "{texts:?}");
        assert_eq!(query_id("SELECT $1"), query_id("SELECT $1"));
        assert_ne!(query_id("SELECT $1"), query_id("SELECT $2"));
        s.reset();
        assert!(s.entries().is_empty());
    }
}
