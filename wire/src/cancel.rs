//! CancelRequest: a client's request, on a connection of its own, to stop
//! the statement another of its connections is running.
//!
//! pgwire's own registry hands out one cancel receiver at a time, and its
//! Execute takes a fresh one for the portal's planning only, so a request
//! that came while rows were being computed was lost. Here the request sets
//! the named connection's [`Interrupt`]: the statement's task races its work
//! against it ([`cancellable`]), and work that holds the task in one poll
//! (subplans) reads it itself.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::{Either, select};
use pgwire::api::cancel::CancelHandler;
use pgwire::error::PgWireResult;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use quiver_sql::interrupt::Interrupt;

use crate::errors;

/// The connections a CancelRequest can name: by pid and secret key.
#[derive(Debug, Default)]
pub(crate) struct Cancels {
    by_key: RwLock<HashMap<(i32, Bytes), Arc<Interrupt>>>,
}

impl Cancels {
    /// Makes the connection `(pid, secret)` cancellable until the guard drops.
    pub(crate) fn register(
        self: &Arc<Self>,
        pid: i32,
        secret: &SecretKey,
        interrupt: Arc<Interrupt>,
    ) -> CancelGuard {
        let key = (pid, secret.to_bytes());
        self.by_key
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), interrupt);
        CancelGuard {
            key,
            cancels: self.clone(),
        }
    }

    fn cancel(&self, pid: i32, secret: &SecretKey) {
        let map = self.by_key.read().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = map.get(&(pid, secret.to_bytes())) {
            i.cancel();
        }
    }
}

/// Unregisters its connection when the connection ends.
#[derive(Debug)]
pub(crate) struct CancelGuard {
    key: (i32, Bytes),
    cancels: Arc<Cancels>,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.cancels
            .by_key
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// pgwire's handler for CancelRequest connections.
#[derive(Debug)]
pub(crate) struct CancelRequests(pub(crate) Arc<Cancels>);

#[async_trait]
impl CancelHandler for CancelRequests {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.0.cancel(request.pid, &request.secret_key);
    }
}

/// Runs `work` until it finishes or a CancelRequest for its connection
/// arrives; then the work is dropped and the result is error 57014.
pub(crate) async fn cancellable<F, T>(interrupt: &Interrupt, work: F) -> PgWireResult<T>
where
    F: Future<Output = PgWireResult<T>> + Send,
{
    interrupt.arm();
    match select(std::pin::pin!(work), std::pin::pin!(interrupt.cancelled())).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(errors::from_sql(interrupt.stop_error())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_stops_the_named_connection_only() {
        let cancels = Arc::new(Cancels::default());
        let (a, b) = (
            Arc::new(Interrupt::default()),
            Arc::new(Interrupt::default()),
        );
        let key = |k: &'static [u8]| SecretKey::Bytes(Bytes::from_static(k));
        let _ga = cancels.register(1, &key(b"a"), a.clone());
        let gb = cancels.register(2, &key(b"b"), b.clone());
        // A wrong secret key cancels nothing.
        cancels.cancel(1, &key(b"b"));
        assert!(a.check(&a.token()).is_ok());
        let handler = CancelRequests(cancels.clone());
        let slow = futures::future::pending::<PgWireResult<()>>();
        let (result, ()) = futures::join!(cancellable(&a, slow), async {
            tokio::task::yield_now().await;
            handler
                .on_cancel_request(CancelRequest::new(1, key(b"a")))
                .await;
        });
        let info = pgwire::error::ErrorInfo::from(result.unwrap_err());
        assert_eq!(info.code, "57014");
        assert!(b.check(&b.token()).is_ok());
        // The next statement is not cancelled by the last one's request.
        assert_eq!(cancellable(&a, async { Ok(7) }).await.unwrap(), 7);
        // An ended connection is gone from the registry.
        drop(gb);
        assert!(
            cancels
                .by_key
                .read()
                .unwrap()
                .get(&(2, key(b"b").to_bytes()))
                .is_none()
        );
    }
}
