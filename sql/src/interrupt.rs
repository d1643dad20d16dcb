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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::Notify;

use crate::error::{SqlError, StatusCode};

/// A session's running statement: when it must stop, and whether a
/// CancelRequest came for it. One per session.
#[derive(Debug, Default)]
pub struct Interrupt {
    deadline: Mutex<Option<Instant>>,
    cancelled: AtomicBool,
    /// Wakes [`Interrupt::cancelled`] waiters.
    notify: Notify,
}

impl Interrupt {
    /// A statement starts, stopping at `deadline` if any.
    pub(crate) fn begin(&self, deadline: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
    }

    /// A statement the client may cancel starts: an earlier request (one
    /// that came as the last statement ended) does not apply to it.
    pub fn arm(&self) {
        self.cancelled.store(false, Ordering::Release);
    }

    /// A CancelRequest for the session's running statement.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Resolves once the statement is cancelled.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the flag is read: a cancel in between wakes it.
            notified.as_mut().enable();
            if self.cancelled.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// 57014 once the statement was cancelled or ran past its deadline.
    pub fn check(&self) -> Result<(), SqlError> {
        if self.cancelled.load(Ordering::Acquire) {
            return Err(user_cancel());
        }
        match self.deadline() {
            Some(d) if Instant::now() >= d => Err(statement_timeout()),
            _ => Ok(()),
        }
    }

    /// Resolves with the error once [`Interrupt::check`] would fail.
    pub async fn wait(&self) -> SqlError {
        match self.deadline() {
            None => {
                self.cancelled().await;
                user_cancel()
            }
            Some(d) => tokio::select! {
                _ = self.cancelled() => user_cancel(),
                _ = tokio::time::sleep_until(d.into()) => statement_timeout(),
            },
        }
    }

    fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
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

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    #[tokio::test]
    async fn a_statement_stops_at_its_deadline_or_when_cancelled() {
        let i = std::sync::Arc::new(Interrupt::default());
        i.begin(None);
        assert!(i.check().is_ok());
        i.begin(Some(Instant::now() - Duration::from_millis(1)));
        assert!(
            i.check()
                .expect_err("past")
                .message
                .contains("statement timeout")
        );
        assert!(i.wait().await.message.contains("statement timeout"));
        i.begin(Some(Instant::now() + Duration::from_secs(60)));
        assert!(i.check().is_ok());
        // A waiter wakes when the cancel comes.
        let waiter = tokio::spawn({
            let i = i.clone();
            async move { i.wait().await }
        });
        tokio::task::yield_now().await;
        i.cancel();
        assert!(
            waiter
                .await
                .expect("waiter")
                .message
                .contains("user request")
        );
        assert!(
            i.check()
                .expect_err("cancelled")
                .message
                .contains("user request")
        );
        // The next statement starts afresh.
        i.arm();
        i.begin(None);
        assert!(i.check().is_ok());
    }
}
