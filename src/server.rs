//! Start-up: open the database in the data directory and serve connections
//! until asked to stop.

use std::net::SocketAddr;
use std::sync::Arc;

use quiver_sql::Database;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;

/// A server running in this process.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub db: Arc<Database>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`None`: `[metrics] listen = ""`).
    pub metrics_addr: Option<SocketAddr>,
    http: Option<crate::http::HttpServer>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot open data directory: {0}")]
    Open(#[from] quiver_sql::SqlError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// Opens the data directory and starts serving on `config.listen`.
pub async fn start(config: &Config) -> Result<RunningServer, StartError> {
    start_with(config, config.engine_options()?).await
}

/// [`start`] with the engine set up as `options` says rather than as the
/// config does (the tests' fault injection beneath the cold tier).
pub async fn start_with(
    config: &Config,
    options: quiver_engine::EngineOptions,
) -> Result<RunningServer, StartError> {
    let db = Database::open_with(&config.local_dir(), options).await?;
    db.metrics
        .set_max_shard_series(config.metrics.max_shard_series);
    db.statements.set_max(config.metrics.max_statements);
    let slow = config.log_min_duration_statement.trim();
    if quiver_sql::settings::duration_ms(slow).is_none() {
        return Err(StartError::Config(crate::config::ConfigError::Invalid {
            key: "log_min_duration_statement",
            message: format!(
                "'{slow}' is not a duration (milliseconds, or with a unit: 250ms, 2s; -1 logs none)"
            ),
        }));
    }
    db.set_session_default("log_min_duration_statement", slow)?;
    let http = match config.metrics.listen.trim() {
        "" => None,
        listen => Some(
            crate::http::HttpServer::start(listen, db.clone(), tokio::runtime::Handle::current())
                .map_err(|source| StartError::Listen {
                addr: format!("{listen} ([metrics] listen)"),
                source,
            })?,
        ),
    };
    let listener =
        TcpListener::bind(&config.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.listen.clone(),
                source,
            })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen.clone(),
        source,
    })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(quiver_wire::serve(listener, db.clone(), async move {
        let _ = stopped.await;
    }));
    tracing::info!(%addr, data_dir = %config.data_location(), "quiver listening");
    Ok(RunningServer {
        addr,
        db,
        metrics_addr: http.as_ref().map(|h| h.addr),
        http,
        stop: Some(stop),
        task,
    })
}

impl RunningServer {
    /// Stops accepting connections, waits for the accept loop to end, then
    /// flushes every table's logged rows to Lance and stops its flushes (the
    /// data directory can then be opened again, by this process or another).
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.http.take();
        let served = match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        };
        self.db.engine.close().await;
        served
    }
}
