//! The accept loop: one task per connection, each with its own
//! [`Session`](quiver_sql::Session) and handler set.
//!
//! A connection that fails or panics ends only its own task (logged); the
//! loop keeps accepting. Accept errors (e.g. out of file descriptors) are
//! logged and retried after a short pause. When `shutdown` resolves, the loop
//! stops accepting, aborts the connection tasks and waits for them to end, so
//! no session outlives [`serve`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pgwire::api::{PgWireServerHandlers, RandomPidSecretKeyGenerator};
use pgwire::tokio::process_socket;
use quiver_sql::Database;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinError, JoinSet};

use crate::cancel::{CancelRequests, Cancels};
use crate::connection::Connection;
use crate::errors::ErrorRewriter;
use crate::startup::Startup;

/// Pause after a failed `accept` before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a terminated connection's running statement has to send its
/// 57P01 before the connection closes.
const TERMINATE_GRACE: Duration = Duration::from_secs(1);

/// State shared by all connections of one server.
struct Shared {
    db: Arc<Database>,
    cancels: Arc<Cancels>,
    pids: Arc<RandomPidSecretKeyGenerator>,
}

/// The handlers pgwire uses for one connection.
struct Handlers {
    connection: Arc<Connection>,
    startup: Arc<Startup>,
    cancel: Arc<CancelRequests>,
    errors: Arc<ErrorRewriter>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::clone(&self.connection)
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::clone(&self.connection)
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        Arc::clone(&self.connection)
    }

    fn error_handler(&self) -> Arc<impl pgwire::api::ErrorHandler> {
        Arc::clone(&self.errors)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// Serves the Postgres wire protocol on `listener` until `shutdown`
/// resolves. Each accepted connection gets its own task and
/// [`Database::new_session`] session.
///
/// Returns `Ok(())` after shutdown, once every connection task has ended.
pub async fn serve(
    listener: TcpListener,
    db: Arc<Database>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let shared = Arc::new(Shared {
        db,
        cancels: Arc::new(Cancels::default()),
        pids: Arc::new(RandomPidSecretKeyGenerator::default()),
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "accepting Postgres connections");
    }
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(ended) = tasks.join_next(), if !tasks.is_empty() => log_task_end(ended),
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    tasks.spawn(run_connection(Arc::clone(&shared), socket, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    tracing::info!(
        connections = tasks.len(),
        "shutting down: closing connections"
    );
    tasks.shutdown().await;
    Ok(())
}

fn log_task_end(ended: Result<(), JoinError>) {
    if let Err(e) = ended {
        if e.is_panic() {
            tracing::error!("connection task panicked; connection closed");
        } else {
            tracing::debug!(error = %e, "connection task cancelled");
        }
    }
}

async fn run_connection(shared: Arc<Shared>, socket: TcpStream, peer: SocketAddr) {
    tracing::debug!(%peer, "connection accepted");
    let _counted = shared.db.metrics.connection();
    let session = shared.db.new_session();
    let interrupt = session.interrupt();
    let connection = Arc::new(Connection::new(session));
    let handlers = Handlers {
        startup: Arc::new(Startup {
            cancels: Arc::clone(&shared.cancels),
            interrupt: interrupt.clone(),
            pids: Arc::clone(&shared.pids),
        }),
        connection: Arc::clone(&connection),
        cancel: Arc::new(CancelRequests(Arc::clone(&shared.cancels))),
        errors: Arc::new(ErrorRewriter(shared.db.metrics.clone())),
    };
    // pg_terminate_backend: the running statement fails with 57P01 (its
    // error is sent); then the connection closes.
    let terminated = async {
        interrupt.terminated().await;
        let deadline = tokio::time::Instant::now() + TERMINATE_GRACE;
        while connection.session.backend().is_some_and(|b| b.is_active())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        served = process_socket(socket, None, handlers) => match served {
            Ok(()) => tracing::debug!(%peer, "connection closed"),
            Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        },
        () = terminated => tracing::info!(%peer, "connection terminated by pg_terminate_backend"),
    }
}
