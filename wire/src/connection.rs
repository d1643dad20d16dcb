//! Per-connection state: the client's [`Session`], the Parse-side statement
//! parser and the COPY FROM STDIN in progress. One [`Connection`] implements
//! the simple-query (`simple.rs`), extended-query (`extended.rs`) and COPY
//! (`copy.rs`) handlers of pgwire; pgwire keeps the prepared statements and
//! portals in its own per-connection store.

use std::sync::Arc;
use std::time::Instant;

use pgwire::api::ClientInfo;
use pgwire::api::store::PortalStore;
use pgwire::messages::response::TransactionStatus;
use quiver_sql::{Session, Statement};

use crate::copy::CopyState;
use crate::prepared::StatementParser;

pub(crate) struct Connection {
    pub(crate) session: Arc<Session>,
    pub(crate) parser: Arc<StatementParser>,
    pub(crate) copy: CopyState,
    /// Whether the session knows the client's user, database and pid yet.
    identified: std::sync::atomic::AtomicBool,
    /// Names of the statements the client prepared (for `DEALLOCATE ALL`).
    pub(crate) prepared_names: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Rows the Execute in progress wrote (from its command tag), for the metrics.
    pub(crate) written: std::sync::atomic::AtomicU64,
    /// Rows the statement in progress returned (`quiver_stat_statements`).
    pub(crate) returned: Arc<std::sync::atomic::AtomicU64>,
}

impl Connection {
    pub(crate) fn new(session: Session) -> Self {
        let session = Arc::new(session);
        Self {
            parser: Arc::new(StatementParser::new(Arc::clone(&session))),
            session,
            copy: CopyState::default(),
            identified: std::sync::atomic::AtomicBool::new(false),
            prepared_names: Default::default(),
            written: Default::default(),
            returned: Default::default(),
        }
    }

    /// `DEALLOCATE name` / `DEALLOCATE ALL` in a simple query: the named
    /// prepared statements are forgotten (the statement itself only
    /// answers with its tag).
    pub(crate) fn deallocate<S: PortalStore>(&self, store: &S, statements: &[Statement]) {
        for s in statements {
            let Some(name) = s.deallocates() else {
                continue;
            };
            let mut names = match self.prepared_names.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            match name {
                Some(n) => {
                    store.rm_statement(&n);
                    names.remove(&n);
                }
                None => {
                    for n in names.drain() {
                        store.rm_statement(&n);
                    }
                }
            }
        }
    }

    /// Tells the session who is connected (once, at the first message after
    /// start-up, when the client's start-up parameters are known).
    pub(crate) fn identify<C: ClientInfo>(&self, client: &C) {
        use std::sync::atomic::Ordering;
        if self.identified.swap(true, Ordering::AcqRel) {
            return;
        }
        let meta = client.metadata();
        let get = |k: &str| meta.get(k).map(String::as_str).unwrap_or("");
        self.session.set_client(
            get(pgwire::api::METADATA_USER),
            get(pgwire::api::METADATA_DATABASE),
            client.pid_and_secret_key().0,
            Some(client.socket_addr()),
        );
        self.session.set_startup_settings(
            meta.iter()
                .filter(|(k, _)| k.as_str() != "user" && k.as_str() != "database")
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
    }
}

impl Connection {
    /// A statement that ran to its end `started` ago, having written
    /// `written` rows: into the metrics, with its vector search's k.
    pub(crate) fn statement_done(&self, statement: &Statement, started: Instant, written: u64) {
        let k = self.session.take_search_k();
        let elapsed = started.elapsed();
        self.session
            .metrics()
            .statement_done(statement.class(), k, elapsed, written);
        let returned = self.returned.swap(0, std::sync::atomic::Ordering::Relaxed);
        self.session.statement_stats().record(
            &statement.normalized_text(),
            elapsed,
            written + returned,
        );
        self.log_if_slow(elapsed);
    }

    /// The slow-statement log line of a statement that ran `elapsed`, when
    /// `log_min_duration_statement` asks for it, as PostgreSQL writes it:
    /// the duration and the client's statement text.
    pub(crate) fn log_if_slow(&self, elapsed: std::time::Duration) {
        if self
            .session
            .log_min_duration()
            .is_none_or(|min| elapsed < min)
        {
            return;
        }
        let backend = self.session.backend();
        let text = backend.as_ref().map(|b| b.query()).unwrap_or_default();
        let pid = backend.map_or(0, |b| b.pid);
        tracing::info!(
            target: "quiver::slow_statement",
            pid,
            "duration: {:.3} ms  statement: {text}",
            elapsed.as_secs_f64() * 1e3
        );
    }

    /// A statement that failed (its error is counted where it is sent).
    pub(crate) fn statement_failed(&self, statement: &Statement) {
        self.session.take_search_k();
        self.returned.store(0, std::sync::atomic::Ordering::Relaxed);
        self.session.metrics().statement_failed(statement.class());
    }
}

/// The rows an INSERT or COPY FROM command tag says were written.
pub(crate) fn rows_written(tag: &str) -> u64 {
    let mut words = tag.split_whitespace();
    match words.next() {
        Some("INSERT" | "COPY") => words.last().and_then(|n| n.parse().ok()).unwrap_or(0),
        _ => 0,
    }
}

/// The status ReadyForQuery reports for the session's transaction block.
pub(crate) fn wire_status(status: quiver_sql::TransactionStatus) -> TransactionStatus {
    match status {
        quiver_sql::TransactionStatus::Idle => TransactionStatus::Idle,
        quiver_sql::TransactionStatus::InBlock => TransactionStatus::Transaction,
        quiver_sql::TransactionStatus::Failed => TransactionStatus::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_rows_come_from_insert_and_copy_tags() {
        assert_eq!(rows_written("INSERT 0 25"), 25);
        assert_eq!(rows_written("COPY 1000"), 1000);
        assert_eq!(rows_written("UPDATE 3"), 0);
        assert_eq!(rows_written("CREATE TABLE"), 0);
        assert_eq!(rows_written(""), 0);
    }

    #[test]
    fn transaction_status_follows_the_session() {
        use quiver_sql::TransactionStatus as S;
        assert_eq!(wire_status(S::Idle), TransactionStatus::Idle);
        assert_eq!(wire_status(S::InBlock), TransactionStatus::Transaction);
        assert_eq!(wire_status(S::Failed), TransactionStatus::Error);
    }
}
