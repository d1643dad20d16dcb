//! What stops a running statement from inside work that does not yield to
//! the statement's task: its `statement_timeout` deadline and a client's
//! CancelRequest.
//!
//! A statement is cut off at an await point of its own task (the timeout
//! wraps its future; a CancelRequest drops it). Work that holds the task in
//! one poll — subplans run inside a synchronous function evaluation — cannot
//! be cut off there, so it asks the session's [`Interrupt`] between steps
//! and races its steps against [`Interrupt::wait`]. The wire layer's
//! CancelRequest handler sets the interrupt of the connection it names.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::Notify;

use crate::error::{SqlError, StatusCode};

/// A session's running statement: when it must stop, and whether a
/// CancelRequest came for it. One per session.
#[derive(Debug, Default)]
pub struct Interrupt {
    deadline: Mutex<Option<Instant>>,
    cancelled: AtomicBool,
    /// `pg_terminate_backend` named the session: its statement stops with
    /// 57P01 and its connection closes.
    terminated: AtomicBool,
    /// Counts the statements the wire layer started ([`Interrupt::arm`]):
    /// work of an earlier one (a subplan still running after its statement
    /// was cancelled and dropped) sees it moved on and stops.
    generation: AtomicU64,
    /// Wakes waiters on a cancel or a new statement.
    notify: Notify,
}

/// What work holds of the statement it runs for: which one, and its
/// deadline ([`Interrupt::token`]).
#[derive(Debug, Clone, Copy)]
pub struct Token {
    generation: u64,
    deadline: Option<Instant>,
}

impl Interrupt {
    /// A statement starts, stopping at `deadline` if any.
    pub(crate) fn begin(&self, deadline: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
    }

    /// A statement the client may cancel starts: an earlier request (one
    /// that came as the last statement ended) does not apply to it, and
    /// work left from the last one stops.
    pub fn arm(&self) {
        self.cancelled
            .store(self.is_terminated(), Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// A CancelRequest for the session's running statement.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// `pg_terminate_backend`: the running statement stops (57P01), and so
    /// does every later one; the connection is to close.
    pub fn terminate(&self) {
        self.terminated.store(true, Ordering::Release);
        self.cancel();
    }

    /// Whether the session was terminated.
    pub fn is_terminated(&self) -> bool {
        self.terminated.load(Ordering::Acquire)
    }

    /// Resolves once the session is terminated.
    pub async fn terminated(&self) {
        self.until(|| self.is_terminated()).await
    }

    /// The error a stopped statement fails with: 57P01 once terminated,
    /// else 57014.
    pub fn stop_error(&self) -> SqlError {
        if self.is_terminated() {
            admin_terminate()
        } else {
            user_cancel()
        }
    }

    /// The running statement, for work that must stop with it.
    pub fn token(&self) -> Token {
        Token {
            generation: self.generation.load(Ordering::Acquire),
            deadline: *self.deadline.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Whether `token`'s statement was cancelled or is over.
    fn stopped(&self, token: &Token) -> bool {
        self.cancelled.load(Ordering::Acquire)
            || self.generation.load(Ordering::Acquire) != token.generation
    }

    /// Resolves once the running statement is cancelled.
    pub async fn cancelled(&self) {
        self.until(|| self.cancelled.load(Ordering::Acquire)).await
    }

    async fn until(&self, done: impl Fn() -> bool) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the state is read: a change in between wakes it.
            notified.as_mut().enable();
            if done() {
                return;
            }
            notified.await;
        }
    }

    /// 57014 once `token`'s statement was cancelled (or is over) or ran
    /// past its deadline.
    pub fn check(&self, token: &Token) -> Result<(), SqlError> {
        if self.stopped(token) {
            return Err(self.stop_error());
        }
        match token.deadline {
            Some(d) if Instant::now() >= d => Err(statement_timeout()),
            _ => Ok(()),
        }
    }

    /// Resolves with the error once [`Interrupt::check`] would fail.
    pub async fn wait(&self, token: &Token) -> SqlError {
        let stopped = self.until(|| self.stopped(token));
        match token.deadline {
            None => {
                stopped.await;
                self.stop_error()
            }
            Some(d) => tokio::select! {
                _ = stopped => self.stop_error(),
                _ = tokio::time::sleep_until(d.into()) => statement_timeout(),
            },
        }
    }
}

/// 57014 for a statement that ran past `statement_timeout`.
pub(crate) fn statement_timeout() -> SqlError {
    SqlError::new(
        StatusCode::QueryCanceled,
        "canceling statement due to statement timeout",
    )
}

/// 57014 for a statement a CancelRequest stopped.
pub fn user_cancel() -> SqlError {
    SqlError::new(
        StatusCode::QueryCanceled,
        "canceling statement due to user request",
    )
}

/// 57P01 for the statement of a session `pg_terminate_backend` named.
pub fn admin_terminate() -> SqlError {
    SqlError::new(
        StatusCode::AdminShutdown,
        "terminating connection due to administrator command",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    #[tokio::test]
    async fn a_statement_stops_at_its_deadline_or_when_cancelled() {
        let i = std::sync::Arc::new(Interrupt::default());
        i.begin(None);
        assert!(i.check(&i.token()).is_ok());
        i.begin(Some(Instant::now() - Duration::from_millis(1)));
        let past = i.token();
        assert!(
            i.check(&past)
                .expect_err("past")
                .message
                .contains("statement timeout")
        );
        assert!(i.wait(&past).await.message.contains("statement timeout"));
        i.begin(Some(Instant::now() + Duration::from_secs(60)));
        let t = i.token();
        assert!(i.check(&t).is_ok());
        let waiter = |t: Token| {
            let i = i.clone();
            tokio::spawn(async move { i.wait(&t).await.message })
        };
        // A waiter wakes when the cancel comes.
        let w = waiter(t);
        tokio::task::yield_now().await;
        i.cancel();
        assert!(w.await.expect("waiter").contains("user request"));
        let err = i.check(&t).expect_err("cancelled");
        assert!(err.message.contains("user request"));
        // The next statement starts afresh; work of the one before it stops
        // (a waiter of it wakes) when the one after starts.
        i.arm();
        i.begin(None);
        let second = i.token();
        assert!(i.check(&second).is_ok());
        let w = waiter(second);
        tokio::task::yield_now().await;
        i.arm();
        assert!(i.check(&i.token()).is_ok());
        assert!(i.check(&second).is_err());
        assert!(w.await.expect("waiter").contains("user request"));
    }
}
