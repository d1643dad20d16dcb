//! Who is connected and what they run: the rows of `pg_stat_activity`, and
//! `pg_cancel_backend(pid)` / `pg_terminate_backend(pid)`.
//!
//! A session registers itself once the wire layer knows its client (the
//! backend pid it was given at start-up) and leaves when it ends. The wire
//! layer reports each statement's start (the client's query text) and end
//! ([`crate::Session::statement_began`], [`crate::Session::statement_ended`]);
//! the application name and user are read from the session when the view
//! is read, so `SET application_name` shows at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use crate::interrupt::Interrupt;
use crate::pg_catalog::ClientIdentity;
use crate::settings::SessionSettings;

/// The longest query text kept per session (PostgreSQL's
/// `track_activity_query_size` default is 1 kB; vectors make texts long).
pub const QUERY_TEXT_BYTES: usize = 4096;

/// The first [`QUERY_TEXT_BYTES`] of a query text, as `pg_stat_activity` keeps it.
pub fn query_text(text: &str) -> &str {
    let mut cut = text.len().min(QUERY_TEXT_BYTES);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// Every registered session, by backend pid.
#[derive(Debug, Default)]
pub struct Activity {
    backends: Mutex<BTreeMap<i32, Arc<Backend>>>,
}

/// What `pg_stat_activity` shows of one session.
#[derive(Debug)]
pub struct Backend {
    pub pid: i32,
    identity: Arc<RwLock<ClientIdentity>>,
    settings: Arc<SessionSettings>,
    interrupt: Arc<Interrupt>,
    client: Option<std::net::SocketAddr>,
    started: SystemTime,
    now: Mutex<Now>,
}

#[derive(Debug, Clone)]
struct Now {
    state: &'static str,
    query: String,
    query_start: Option<SystemTime>,
    state_change: SystemTime,
}

/// One row of `pg_stat_activity`.
#[derive(Debug, Clone)]
pub struct BackendRow {
    pub pid: i32,
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub client_addr: Option<String>,
    pub client_port: Option<i32>,
    pub backend_start: SystemTime,
    pub query_start: Option<SystemTime>,
    pub state_change: SystemTime,
    pub state: &'static str,
    pub query: String,
}

/// The state a session is left in after a statement, by its transaction
/// block, as PostgreSQL names it.
pub fn idle_state(status: crate::TransactionStatus) -> &'static str {
    match status {
        crate::TransactionStatus::Idle => "idle",
        crate::TransactionStatus::InBlock => "idle in transaction",
        crate::TransactionStatus::Failed => "idle in transaction (aborted)",
    }
}

impl Activity {
    /// Registers a session; it stays listed until the guard drops.
    pub(crate) fn register(
        self: &Arc<Self>,
        pid: i32,
        identity: Arc<RwLock<ClientIdentity>>,
        settings: Arc<SessionSettings>,
        interrupt: Arc<Interrupt>,
        client: Option<std::net::SocketAddr>,
    ) -> BackendGuard {
        let now = SystemTime::now();
        let backend = Arc::new(Backend {
            pid,
            identity,
            settings,
            interrupt,
            client,
            started: now,
            now: Mutex::new(Now {
                state: "idle",
                query: String::new(),
                query_start: None,
                state_change: now,
            }),
        });
        self.lock().insert(pid, backend.clone());
        BackendGuard {
            activity: self.clone(),
            backend,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, Arc<Backend>>> {
        self.backends.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every session's row, by pid.
    pub fn rows(&self) -> Vec<BackendRow> {
        let backends: Vec<Arc<Backend>> = self.lock().values().cloned().collect();
        backends.iter().map(|b| b.row()).collect()
    }

    /// `pg_cancel_backend(pid)`: stops the session's running statement
    /// (57014); false when no session has that pid.
    pub fn cancel(&self, pid: i32) -> bool {
        let backend = self.lock().get(&pid).cloned();
        match backend {
            Some(b) => {
                b.interrupt.cancel();
                true
            }
            None => false,
        }
    }

    /// `pg_terminate_backend(pid)`: stops the session's running statement
    /// (57P01) and closes its connection; false when no session has that pid.
    pub fn terminate(&self, pid: i32) -> bool {
        let backend = self.lock().get(&pid).cloned();
        match backend {
            Some(b) => {
                // The connection's task waits for this ([`Interrupt::terminated`]).
                b.interrupt.terminate();
                true
            }
            None => false,
        }
    }
}

fn lock_now(m: &Mutex<Now>) -> std::sync::MutexGuard<'_, Now> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Backend {
    fn row(&self) -> BackendRow {
        let id = self
            .identity
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        let now = lock_now(&self.now).clone();
        BackendRow {
            pid: self.pid,
            user: id.user,
            database: id.database,
            application_name: self.settings.show("application_name").unwrap_or_default(),
            client_addr: self.client.map(|a| a.ip().to_string()),
            client_port: self.client.map(|a| i32::from(a.port())),
            backend_start: self.started,
            query_start: now.query_start,
            state_change: now.state_change,
            state: now.state,
            query: now.query,
        }
    }

    /// A statement (or a query string of several) starts.
    pub(crate) fn began(&self, text: &str) {
        let at = SystemTime::now();
        let mut now = lock_now(&self.now);
        now.state = "active";
        now.query.clear();
        now.query.push_str(query_text(text));
        now.query_start = Some(at);
        now.state_change = at;
    }

    /// The statement ended; the session waits in `state`.
    pub(crate) fn ended(&self, state: &'static str) {
        let mut now = lock_now(&self.now);
        now.state = state;
        now.state_change = SystemTime::now();
    }

    /// The text of the running (or last) statement.
    pub fn query(&self) -> String {
        lock_now(&self.now).query.clone()
    }

    /// Whether a statement is running.
    pub fn is_active(&self) -> bool {
        lock_now(&self.now).state == "active"
    }
}

/// Keeps a session listed; unlists it when dropped.
#[derive(Debug)]
pub struct BackendGuard {
    activity: Arc<Activity>,
    pub backend: Arc<Backend>,
}

impl Drop for BackendGuard {
    fn drop(&mut self) {
        let mut map = self.activity.lock();
        if map
            .get(&self.backend.pid)
            .is_some_and(|b| Arc::ptr_eq(b, &self.backend))
        {
            map.remove(&self.backend.pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(activity: &Arc<Activity>, pid: i32) -> (BackendGuard, Arc<Interrupt>) {
        let interrupt = Arc::new(Interrupt::default());
        let guard = activity.register(
            pid,
            Default::default(),
            Default::default(),
            interrupt.clone(),
            None,
        );
        (guard, interrupt)
    }

    #[test]
    fn sessions_are_listed_until_they_end_and_named_by_pid() {
        let activity = Arc::new(Activity::default());
        let (a, ia) = session(&activity, 7);
        let (b, ib) = session(&activity, 9);
        a.backend.began(&"x".repeat(QUERY_TEXT_BYTES + 10));
        let rows = activity.rows();
        assert_eq!(rows.iter().map(|r| r.pid).collect::<Vec<_>>(), [7, 9]);
        assert_eq!(rows[0].state, "active");
        assert_eq!(rows[0].query.len(), QUERY_TEXT_BYTES);
        assert_eq!(rows[1].state, "idle");
        assert!(rows[1].query_start.is_none());
        a.backend.ended("idle in transaction");
        assert_eq!(activity.rows()[0].state, "idle in transaction");

        assert!(activity.cancel(9));
        assert!(!ib.is_terminated());
        assert!(!activity.cancel(8));
        assert!(activity.terminate(7));
        assert!(ia.is_terminated());
        futures::executor::block_on(ia.terminated());
        drop(a);
        assert_eq!(activity.rows().len(), 1);
        drop(b);
        assert!(activity.rows().is_empty());
        assert!(!activity.terminate(9));
    }
}
