//! Shared test fixtures: a server on a fresh data directory, and clients.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use quiver::{Config, RunningServer};

/// A data directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("quiver-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a server on `dir`, on a free loopback port.
pub async fn start_server(dir: &Path) -> RunningServer {
    start_server_with_storage(dir, Default::default()).await
}

/// [`start_server`] with `[storage]` settings.
pub async fn start_server_with_storage(
    dir: &Path,
    storage: quiver::config::StorageConfig,
) -> RunningServer {
    let cfg = Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".into(),
        storage,
        metrics: metrics_on_any_port(),
        ..Config::default()
    };
    quiver::start(&cfg).await.expect("server starts")
}

/// `[metrics]` on a free loopback port: tests run servers side by side,
/// and the default port (9433) is one.
pub fn metrics_on_any_port() -> quiver::config::MetricsConfig {
    quiver::config::MetricsConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    }
}

/// One plain HTTP/1.1 request (to the S3 server: moto does not check
/// signatures; to `/metrics`): its status and the whole response.
pub async fn http(endpoint: &str, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .unwrap_or_else(|e| panic!("connect to {host}: {e}"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A tokio-postgres client connected to `server`.
pub async fn connect(server: &RunningServer) -> tokio_postgres::Client {
    connect_as(server.addr.port(), "").await
}

/// A tokio-postgres client of the server on `port`, with
/// `application_name` `application` (none when empty).
pub async fn connect_as(port: u16, application: &str) -> tokio_postgres::Client {
    let mut dsn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    if !application.is_empty() {
        dsn.push_str(&format!(" application_name={application}"));
    }
    let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// `count(*)` of a table.
pub async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

/// The text of `EXPLAIN …`: the plan column of every row, one line each.
pub async fn explain(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = client.simple_query(sql).await.expect("explain");
    rows.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some(format!("{}\n", r.get(1).unwrap_or("")))
            }
            _ => None,
        })
        .collect()
}

/// Whether psql can run here (see [`tool_available`]).
pub fn psql_available(test: &str) -> bool {
    tool_available("psql", test)
}

/// Whether `tool` runs here. CI installs it (.ci/run), so there a missing tool
/// fails the test instead of skipping it.
pub fn tool_available(tool: &str, test: &str) -> bool {
    if std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{tool} is missing on CI");
    eprintln!("{test}: {tool} is not installed here; skipped");
    false
}

/// Deterministic pseudo-random vectors (xorshift), components in [-1, 1).
pub fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed.max(1);
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    (0..n).map(|_| (0..dim).map(|_| next()).collect()).collect()
}

pub fn vector_text(v: &[f32]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// COPY text-format payload for `(id, bucket, embedding)` rows.
pub fn copy_payload(vectors: &[Vec<f32>]) -> String {
    let mut s = String::new();
    for (i, v) in vectors.iter().enumerate() {
        s.push_str(&format!("{i}\t{}\t{}\n", i % 100, vector_text(v)));
    }
    s
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `quiver serve` as a child process on `dir` and `port`, with `extra` flags,
/// once it accepts connections.
pub async fn spawn_server_with(dir: &Path, port: u16, extra: &[&str]) -> tokio::process::Child {
    spawn_command(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_quiver")),
        dir,
        port,
        extra,
    )
    .await
}

/// `quiver serve` run through `command` (e.g. `strace … quiver`, or with an
/// environment), once it accepts connections.
pub async fn spawn_command(
    mut command: tokio::process::Command,
    dir: &Path,
    port: u16,
    extra: &[&str],
) -> tokio::process::Child {
    let child = command
        .args([
            "serve",
            "--data-dir",
            &dir.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start quiver");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("quiver did not start listening on {port}");
}

pub async fn spawn_server(dir: &Path, port: u16) -> tokio::process::Child {
    spawn_server_with(dir, port, &[]).await
}

/// A tokio-postgres client of the server on `port`.
pub async fn client(port: u16) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

/// Runs `COPY … FROM STDIN` with a text-format payload; the rows copied.
pub async fn copy_text(client: &tokio_postgres::Client, sql: &str, payload: String) -> u64 {
    use futures::SinkExt;
    let sink = client.copy_in(sql).await.expect("copy in");
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from(payload)).await.expect("send");
    sink.finish().await.expect("finish")
}

/// Runs a psql script (unaligned, tuples only), returning stdout and stderr.
pub async fn psql(port: u16, script: &str) -> (String, String) {
    let mut child = tokio::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args([
            "-d",
            "postgres",
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=0",
            "-f",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql is installed (.ci/run installs postgresql-client)");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(script.as_bytes()).await.expect("script");
    }
    let out = child.wait_with_output().await.expect("psql ends");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `vector` bind parameter, sent in pgvector's binary format as the
/// `pgvector` crate sends it. Quiver, like PostgreSQL + pgvector, types a
/// parameter cast to `vector`, compared by a distance operator or stored in
/// a vector column as `vector`, so a plain `&str` is refused for it.
#[derive(Debug, Clone)]
pub struct Vector(pub Vec<f32>);

impl Vector {
    /// From pgvector's text form, `[1,2,3]`.
    pub fn text(s: &str) -> Vector {
        let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
        Vector(
            inner
                .split(',')
                .map(|x| x.trim().parse().expect("vector component"))
                .collect(),
        )
    }
}

impl tokio_postgres::types::ToSql for Vector {
    fn to_sql(
        &self,
        _ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use bytes::BufMut;
        out.put_i16(i16::try_from(self.0.len())?);
        out.put_i16(0);
        for v in &self.0 {
            out.put_f32(*v);
        }
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        ty.name() == "vector"
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The Python with the client libraries of `tests/clients/requirements.txt`:
/// `QUIVER_TEST_PYTHON` (.ci/run sets it to the venv it installs), else that
/// venv's default place. Missing on CI fails the test; elsewhere it is skipped.
pub fn client_python(test: &str) -> Option<PathBuf> {
    let python = match std::env::var_os("QUIVER_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/quiver-venv/bin/python"),
    };
    let ready = std::process::Command::new(&python)
        .args([
            "-c",
            "import psycopg, psycopg2, asyncpg, pgvector, sqlalchemy",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = format!(
        "{} cannot import the client libraries of tests/clients/requirements.txt",
        python.display()
    );
    installed(test, ready, python, &missing)
}

/// The Python (as [`client_python`]) when it has `pgserver` (PostgreSQL 16 +
/// pgvector 0.6, from tests/clients/requirements.txt): the slt files' run
/// against real PostgreSQL.
pub fn postgres_python(test: &str) -> Option<PathBuf> {
    let python = client_python(test)?;
    let ready = std::process::Command::new(&python)
        .args(["-c", "import pgserver"])
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = format!("{} cannot import pgserver", python.display());
    installed(test, ready, python, &missing)
}

/// `what` when `ready`; else a failure on CI (.ci/run installs every client
/// kit) and, elsewhere, `None` with a note that the test is skipped.
fn installed<T>(test: &str, ready: bool, what: T, missing: &str) -> Option<T> {
    if ready {
        return Some(what);
    }
    assert!(std::env::var_os("CI").is_none(), "{test}: {missing} on CI");
    eprintln!("{test}: {missing}; skipped (.ci/run installs it)");
    None
}

/// Runs `tests/clients/SCRIPT` against a fresh server; fails with its output
/// unless it exits 0.
pub async fn run_client_script(script: &str) {
    run_client_script_with(script, &[]).await;
}

/// [`run_client_script`] with more arguments after the port.
pub async fn run_client_script_with(script: &str, args: &[&str]) {
    let Some(python) = client_python(script) else {
        return;
    };
    run_script(tokio::process::Command::new(python), script, args).await;
}

/// Runs `program tests/clients/SCRIPT PORT ARGS…` against a fresh server;
/// fails with its output unless it exits 0.
async fn run_script(mut program: tokio::process::Command, script: &str, args: &[&str]) {
    let dir = TempDir::new(script);
    let server = start_server(dir.path()).await;
    let out = program
        .arg(script)
        .arg(server.addr.port().to_string())
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients"))
        .kill_on_drop(true)
        .output()
        .await
        .expect("the client script runs");
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    server.shutdown().await.expect("shutdown");
}

/// The `node_modules` holding the packages of `tests/clients/node`:
/// `QUIVER_TEST_NODE_PATH` (.ci/run installs them and sets it), else
/// `tests/clients/node/node_modules`. Missing on CI fails the test;
/// elsewhere it is skipped.
pub fn client_node_modules(test: &str) -> Option<PathBuf> {
    let modules = match std::env::var_os("QUIVER_TEST_NODE_PATH") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/node/node_modules"
        )),
    };
    let ready = modules.join("pg/package.json").exists()
        && std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    let missing = format!("node or {} missing", modules.display());
    installed(test, ready, modules, &missing)
}

/// Runs `node tests/clients/SCRIPT PORT` against a fresh server; fails with
/// its output unless it exits 0.
pub async fn run_node_script(script: &str) {
    let Some(modules) = client_node_modules(script) else {
        return;
    };
    let mut node = tokio::process::Command::new("node");
    node.env("NODE_PATH", modules);
    run_script(node, script, &[]).await;
}

/// The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java, which
/// .ci/run installs) and a `java` that runs single-file programs. Missing
/// on CI fails the test; elsewhere it is skipped.
pub fn jdbc_driver(test: &str) -> Option<PathBuf> {
    let jar = PathBuf::from(
        std::env::var_os("QUIVER_TEST_JDBC_JAR")
            .unwrap_or_else(|| "/usr/share/java/postgresql.jar".into()),
    );
    let java = std::process::Command::new("java")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = format!("java or {} missing", jar.display());
    let ready = java && jar.exists();
    installed(test, ready, jar, &missing)
}

/// Runs `java -cp JAR tests/clients/SCRIPT PORT` (a single-file program)
/// against a fresh server; fails with its output unless it exits 0.
pub async fn run_java_program(script: &str) {
    let Some(jar) = jdbc_driver(script) else {
        return;
    };
    let mut java = tokio::process::Command::new("java");
    java.arg("-cp").arg(jar);
    run_script(java, script, &[]).await;
}

/// `(id, distance)` rows of a search, sorted (the order among equal
/// distances is the client's to choose; the set is the engine's).
pub async fn hits(c: &tokio_postgres::Client, sql: &str) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = c
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    out.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    out
}
