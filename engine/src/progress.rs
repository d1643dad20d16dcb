//! Progress of long work: CREATE INDEX, REINDEX, OPTIMIZE, resharding and
//! tier moves each register a [`Task`] while they run, with their phase and
//! how much of it is done (`quiver_progress()` and `/metrics` read them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tasks running now.
#[derive(Debug, Default)]
pub struct Progress {
    tasks: Mutex<Vec<Arc<Task>>>,
    next_id: AtomicU64,
}

/// One piece of long work.
#[derive(Debug)]
pub struct Task {
    pub id: u64,
    /// `create_index`, `reindex`, `optimize`, `reshard`, `tier_move`.
    pub command: &'static str,
    pub table: String,
    started: Instant,
    state: Mutex<State>,
    done: AtomicU64,
    total: AtomicU64,
}

#[derive(Debug, Clone)]
struct State {
    phase: String,
    unit: &'static str,
}

/// What [`Progress::tasks`] shows of one task.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: u64,
    pub command: &'static str,
    pub table: String,
    pub phase: String,
    pub done: u64,
    pub total: u64,
    /// What `done` and `total` count: `shards`, `rows`, `bytes`.
    pub unit: &'static str,
    pub elapsed: Duration,
}

impl Progress {
    /// Registers a task of `command` on `table`; listed until the guard drops.
    pub fn start(self: &Arc<Self>, command: &'static str, table: &str) -> TaskGuard {
        let task = Arc::new(Task {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            command,
            table: table.to_string(),
            started: Instant::now(),
            state: Mutex::new(State {
                phase: "starting".into(),
                unit: "shards",
            }),
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
        });
        self.lock().push(task.clone());
        TaskGuard {
            progress: self.clone(),
            task,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Task>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every running task, oldest first.
    pub fn tasks(&self) -> Vec<TaskRow> {
        let tasks: Vec<Arc<Task>> = self.lock().clone();
        tasks.iter().map(|t| t.row()).collect()
    }
}

impl Task {
    fn row(&self) -> TaskRow {
        let state = self
            .state
            .lock()
            .map(|g| g.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        TaskRow {
            id: self.id,
            command: self.command,
            table: self.table.clone(),
            phase: state.phase,
            done: self.done.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            unit: state.unit,
            elapsed: self.started.elapsed(),
        }
    }

    /// A new phase, counting `total` of `unit` from 0.
    pub fn phase(&self, phase: impl Into<String>, total: u64, unit: &'static str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.phase = phase.into();
        state.unit = unit;
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// `n` more of the phase's units done.
    pub fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
}

/// Keeps a task listed; it leaves the list when dropped (done or failed).
#[derive(Debug)]
pub struct TaskGuard {
    progress: Arc<Progress>,
    pub task: Arc<Task>,
}

impl std::ops::Deref for TaskGuard {
    type Target = Task;
    fn deref(&self) -> &Task {
        &self.task
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.progress.lock().retain(|t| !Arc::ptr_eq(t, &self.task));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_show_their_phase_and_leave_when_done() {
        let p = Arc::new(Progress::default());
        let a = p.start("create_index", "docs");
        a.phase("building index docs_emb", 4, "shards");
        a.advance(1);
        let b = p.start("reshard", "t");
        b.phase("moving rows", 1000, "rows");
        b.advance(250);
        let rows = p.tasks();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].command, rows[0].done, rows[0].total, rows[0].unit),
            ("create_index", 1, 4, "shards")
        );
        assert_eq!((rows[1].phase.as_str(), rows[1].done), ("moving rows", 250));
        assert!(rows[1].id > rows[0].id);
        drop(a);
        assert_eq!(p.tasks().len(), 1);
        drop(b);
        assert!(p.tasks().is_empty());
    }
}
