//! The HTTP listener for operators (`[metrics] listen`, by default
//! 127.0.0.1:9433):
//!
//! - `GET /metrics`: every metric in the Prometheus text format (0.0.4);
//! - `GET /healthz`: 200 while the process serves HTTP at all;
//! - `GET /readyz`: 200 when the catalog is open and every table in it is
//!   open (a cold table whose object store could not be reached at start
//!   is not), 503 with the reason otherwise: for load balancers.
//!
//! It runs on a thread of its own (tiny_http) and asks the server's
//! runtime for the figures, so a scrape never waits behind statements for
//! a worker thread, and one slow scrape holds up only the next scrape.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quiver_sql::Database;
use tiny_http::{Header, Method, Request, Response, Server};

/// How long `/metrics` may gather its figures before it answers 503.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The Prometheus text format's content type.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The listener, running until dropped.
pub struct HttpServer {
    pub addr: SocketAddr,
    server: Arc<Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Listens on `listen` and answers on a new thread; `runtime` runs what
    /// the answers read from `db`.
    pub fn start(
        listen: &str,
        db: Arc<Database>,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<HttpServer> {
        let server = Arc::new(Server::http(listen).map_err(std::io::Error::other)?);
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("the metrics listener has no IP address"))?;
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("quiver-http".into())
            .spawn(move || {
                // recv fails once the server is unblocked (stopped).
                while let Ok(request) = serving.recv() {
                    answer(request, &db, &runtime);
                }
            })?;
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
        Ok(HttpServer {
            addr,
            server,
            thread: Some(thread),
        })
    }
}

impl Drop for HttpServer {
    /// Stops listening. The thread ends once its request in flight, if
    /// any, is answered; it is not waited for (it may be waiting for the
    /// runtime this is dropped on).
    fn drop(&mut self) {
        self.server.unblock();
        self.thread.take();
    }
}

fn answer(request: Request, db: &Arc<Database>, runtime: &tokio::runtime::Handle) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let readable = matches!(request.method(), Method::Get | Method::Head);
    let (status, content_type, body) = match path.as_str() {
        "/metrics" | "/healthz" | "/readyz" if !readable => (
            405,
            "text/plain; charset=utf-8",
            "only GET and HEAD are answered here\n".to_string(),
        ),
        "/metrics" => {
            let db = db.clone();
            let encoded = runtime.block_on(async move {
                tokio::time::timeout(ANSWER_TIMEOUT, db.metrics.encode(&db.engine, &db.results))
                    .await
            });
            match encoded {
                Ok(text) => (200, METRICS_CONTENT_TYPE, text),
                Err(_) => (
                    503,
                    "text/plain; charset=utf-8",
                    "the figures took too long to gather\n".to_string(),
                ),
            }
        }
        "/healthz" => (200, "text/plain; charset=utf-8", "ok\n".to_string()),
        "/readyz" => match readiness(db) {
            Ok(()) => (200, "text/plain; charset=utf-8", "ready\n".to_string()),
            Err(why) => (
                503,
                "text/plain; charset=utf-8",
                format!("not ready: {why}\n"),
            ),
        },
        _ => (
            404,
            "text/plain; charset=utf-8",
            "not found: try /metrics, /healthz or /readyz\n".to_string(),
        ),
    };
    let header = Header::from_bytes("Content-Type", content_type).ok();
    let mut response = Response::from_string(body).with_status_code(status);
    if let Some(h) = header {
        response = response.with_header(h);
    }
    // The client may have gone; nothing to do about it.
    let _ = request.respond(response);
}

/// Whether every table in the catalog is open.
fn readiness(db: &Database) -> Result<(), String> {
    let mut names = db.engine.table_names();
    names.sort();
    for name in names {
        if let Err(e) = db.engine.table(&name) {
            // Dropped since the names were read: not a reason to be unready.
            if e.kind != quiver_engine::ErrorKind::TableNotFound {
                return Err(e.to_string());
            }
        }
    }
    Ok(())
}
