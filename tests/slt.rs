//! The `.slt` files under `tests/slt/`, each run three ways: in-process on a
//! session, over the wire with the simple protocol, and over the wire with the
//! extended protocol (Parse/Bind/Describe/Execute) — and a fourth time against
//! a real PostgreSQL 16 + pgvector (pgserver) with the simple protocol, which
//! must give the same answers. Quiver's runners carry the label `quiver`, the
//! PostgreSQL run `postgres`: a record only Quiver has (`vector_search`, its
//! index methods and knobs) is marked `onlyif quiver`; one where Quiver
//! differs on purpose `skipif postgres` (README lists them); everything else
//! is the shared subset. Errors are written as `statement error <SQLSTATE>` /
//! `query error <SQLSTATE>`: a runner's error text starts with the SQLSTATE.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use quiver_sql::{Output, Session};
use sqllogictest::{DBOutput, DefaultColumnType};
use tokio_postgres::types::{FromSql, Type};

use crate::common::{TempDir, connect, start_server};

#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for SltError {}

/// Floats print with at most 4 decimals so the three runners agree.
fn normalize(cell: Option<String>) -> String {
    match cell {
        None => "NULL".into(),
        Some(s) if s.is_empty() => "(empty)".into(),
        Some(s) => {
            let looks_float =
                s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN");
            match s.parse::<f64>() {
                Ok(v) if looks_float && !s.starts_with('[') => {
                    let r = (v * 10_000.0).round() / 10_000.0;
                    let r = if r == 0.0 { 0.0 } else { r };
                    format!("{r}")
                }
                _ => s,
            }
        }
    }
}

fn rows_output(rows: Vec<Vec<String>>, columns: usize) -> DBOutput<DefaultColumnType> {
    DBOutput::Rows {
        types: vec![DefaultColumnType::Any; columns],
        rows,
    }
}

fn count_of(tag: &str) -> u64 {
    tag.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

struct InProcess(Arc<Session>);

#[async_trait]
impl sqllogictest::AsyncDB for InProcess {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let err = |e: quiver_sql::SqlError| SltError(format!("{} {}", sqlstate(e.code), e.message));
        let mut last = DBOutput::StatementComplete(0);
        for stmt in self.0.parse(sql).map_err(err)? {
            last = match self.0.execute(&stmt, &[]).await.map_err(err)? {
                Output::Rows { schema, stream } => {
                    let batches: Vec<_> = stream.try_collect().await.map_err(|e| err(e.into()))?;
                    let mut rows = Vec::new();
                    for b in &batches {
                        for r in 0..b.num_rows() {
                            let mut row = Vec::new();
                            for c in b.columns() {
                                row.push(normalize(
                                    quiver_sql::copy::format_value(c, r).map_err(err)?,
                                ));
                            }
                            rows.push(row);
                        }
                    }
                    rows_output(rows, schema.fields().len())
                }
                Output::Command { tag } => DBOutput::StatementComplete(count_of(&tag)),
                _ => DBOutput::StatementComplete(0),
            };
        }
        Ok(last)
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "in-process"
    }
}

/// The SQLSTATE the wire sends for a status code (kept in step with quiver-wire's mapping).
fn sqlstate(code: quiver_sql::StatusCode) -> &'static str {
    quiver_wire::sqlstate(code)
}

struct WireSimple(tokio_postgres::Client);

fn pg_err(e: tokio_postgres::Error) -> SltError {
    match e.as_db_error() {
        Some(db) => SltError(format!("{} {}", db.code().code(), db.message())),
        None => SltError(format!("client error: {e}")),
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for WireSimple {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let msgs = self.0.simple_query(sql).await.map_err(pg_err)?;
        let mut rows = Vec::new();
        let mut columns = None;
        let mut count = None;
        for m in msgs {
            match m {
                tokio_postgres::SimpleQueryMessage::RowDescription(cols) => {
                    columns = Some(cols.len())
                }
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    columns = Some(r.len());
                    rows.push(
                        (0..r.len())
                            .map(|i| normalize(r.get(i).map(str::to_string)))
                            .collect(),
                    );
                }
                tokio_postgres::SimpleQueryMessage::CommandComplete(n) => count = Some(n),
                _ => {}
            }
        }
        Ok(match columns {
            Some(c) => rows_output(rows, c),
            None => DBOutput::StatementComplete(count.unwrap_or(0)),
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "wire-simple"
    }
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Any value, decoded from the binary format by its type.
pub(crate) struct Cell(pub(crate) String);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let s = match *ty {
            Type::BOOL => if bool::from_sql(ty, raw)? { "t" } else { "f" }.to_string(),
            Type::INT2 => i16::from_sql(ty, raw)?.to_string(),
            Type::INT4 => i32::from_sql(ty, raw)?.to_string(),
            Type::INT8 => i64::from_sql(ty, raw)?.to_string(),
            Type::OID => u32::from_sql(ty, raw)?.to_string(),
            Type::FLOAT4 => format!("{:?}", f32::from_sql(ty, raw)?),
            Type::FLOAT8 => format!("{:?}", f64::from_sql(ty, raw)?),
            Type::UUID => quiver_sql::json::uuid_from_bytes(raw.try_into()?),
            Type::NUMERIC => quiver_sql::copy::binary::numeric_text(raw)?,
            Type::TIME => quiver_sql::copy::text::time_text(i64::from_sql(&Type::INT8, raw)?),
            Type::INTERVAL => {
                let micros = i64::from_be_bytes(raw[..8].try_into()?);
                let days = i32::from_be_bytes(raw[8..12].try_into()?);
                let months = i32::from_be_bytes(raw[12..16].try_into()?);
                quiver_sql::copy::text::interval_text(months, days, micros)
            }
            Type::JSONB => String::from_utf8(raw[1..].to_vec())?,
            Type::BYTEA => {
                let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                format!("\\x{hex}")
            }
            Type::DATE => {
                let days = i32::from_sql(ty, raw)? as i64 + 10_957;
                let (y, m, d) = civil_from_days(days);
                format!("{y:04}-{m:02}-{d:02}")
            }
            Type::TIMESTAMPTZ => {
                let micros = i64::from_sql(ty, raw)? + 10_957 * 86_400_000_000;
                let secs = micros.div_euclid(1_000_000);
                let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
                let t = secs.rem_euclid(86_400);
                format!(
                    "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+00",
                    t / 3600,
                    t % 3600 / 60,
                    t % 60
                )
            }
            _ if ty.name() == "vector" => {
                let dim = u16::from_be_bytes([raw[0], raw[1]]) as usize;
                let v: Vec<f32> = (0..dim)
                    .map(|i| {
                        f32::from_be_bytes(raw[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes"))
                    })
                    .collect();
                crate::common::vector_text(&v)
            }
            _ => String::from_utf8(raw.to_vec())?,
        };
        Ok(Cell(s))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

struct WireExtended(tokio_postgres::Client);

#[async_trait]
impl sqllogictest::AsyncDB for WireExtended {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let stmt = self.0.prepare(sql).await.map_err(pg_err)?;
        if stmt.columns().is_empty() {
            let n = self.0.execute(&stmt, &[]).await.map_err(pg_err)?;
            return Ok(DBOutput::StatementComplete(n));
        }
        let rows = self.0.query(&stmt, &[]).await.map_err(pg_err)?;
        let out = rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| normalize(r.get::<_, Option<Cell>>(i).map(|c| c.0)))
                    .collect()
            })
            .collect();
        Ok(rows_output(out, stmt.columns().len()))
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "wire-extended"
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files found");
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_in_process() {
    for file in slt_files() {
        let dir = TempDir::new("slt-inproc");
        let db = quiver_sql::Database::open(dir.path()).await.expect("open");
        let session = Arc::new(db.new_session());
        let mut runner = sqllogictest::Runner::new(move || {
            let s = session.clone();
            async move { Ok(InProcess(s)) }
        });
        runner.add_label("quiver");
        if let Err(e) = runner.run_file_async(&file).await {
            panic!("{} (in-process): {e}", file.display());
        }
        // Flushes and stops the tables' background work before the folder
        // goes (it recreated folders in the removed directory otherwise).
        db.engine.close().await;
    }
}

/// Runs every file against a fresh server, through one connection wrapped by `wrap`.
async fn run_over_wire<D>(tag: &str, protocol: &str, wrap: fn(tokio_postgres::Client) -> D)
where
    D: sqllogictest::AsyncDB<Error = SltError, ColumnType = DefaultColumnType> + Send + 'static,
{
    for file in slt_files() {
        let dir = TempDir::new(tag);
        let server = start_server(dir.path()).await;
        let client = Arc::new(tokio::sync::Mutex::new(Some(connect(&server).await)));
        let mut runner = sqllogictest::Runner::new(move || {
            let c = client.clone();
            async move {
                Ok(wrap(
                    c.lock().await.take().expect("one connection per file"),
                ))
            }
        });
        runner.add_label("quiver");
        if let Err(e) = runner.run_file_async(&file).await {
            panic!("{} (wire, {protocol} protocol): {e}", file.display());
        }
        server.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_wire_simple() {
    run_over_wire("slt-simple", "simple", WireSimple).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_wire_extended() {
    run_over_wire("slt-ext", "extended", WireExtended).await;
}

/// A connection to the pgserver PostgreSQL whose socket is in `pgdata`.
async fn postgres_client(pgdata: &std::path::Path, db: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::Config::new()
        .host_path(pgdata)
        .user("postgres")
        .dbname(db)
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// How many records of the files run on both systems.
fn shared_records() -> usize {
    let on = |conditions: &[sqllogictest::Condition], label: &str| {
        conditions.iter().all(|c| match c {
            sqllogictest::Condition::OnlyIf { label: l } => l == label,
            sqllogictest::Condition::SkipIf { label: l } => l != label,
        })
    };
    slt_files()
        .iter()
        .flat_map(|f| sqllogictest::parse_file::<DefaultColumnType>(f).expect("parses"))
        .filter(|r| match r {
            sqllogictest::Record::Statement { conditions, .. }
            | sqllogictest::Record::Query { conditions, .. } => {
                on(conditions, "quiver") && on(conditions, "postgres")
            }
            _ => false,
        })
        .count()
}

/// The files against PostgreSQL 16 + pgvector 0.6 (`pip install pgserver`):
/// each in a fresh database with the `vector` extension, through the simple
/// protocol; the shared subset must answer as on Quiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_against_postgres() {
    let Some(python) = crate::common::postgres_python("slt_against_postgres") else {
        return;
    };
    let dir = TempDir::new("slt-postgres");
    let pgdata = dir.path().join("pgdata");
    let ctl = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/pgserver_ctl.py");
    let started = tokio::process::Command::new(&python)
        .arg(&ctl)
        .arg("start")
        .arg(&pgdata)
        .output()
        .await
        .expect("pgserver_ctl runs");
    assert!(
        started.status.success(),
        "PostgreSQL did not start: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let mut failures = Vec::new();
    for (n, file) in slt_files().iter().enumerate() {
        let db = format!("slt_{n}");
        let admin = postgres_client(&pgdata, "postgres").await;
        for sql in [
            format!("DROP DATABASE IF EXISTS {db}"),
            format!("CREATE DATABASE {db}"),
        ] {
            admin.simple_query(&sql).await.expect("create database");
        }
        let client = postgres_client(&pgdata, &db).await;
        client
            .simple_query("CREATE EXTENSION vector")
            .await
            .expect("CREATE EXTENSION vector");
        let client = Arc::new(tokio::sync::Mutex::new(Some(client)));
        let mut runner = sqllogictest::Runner::new(move || {
            let c = client.clone();
            async move {
                Ok(WireSimple(
                    c.lock().await.take().expect("one connection per file"),
                ))
            }
        });
        runner.add_label("postgres");
        if let Err(e) = runner.run_file_async(file).await {
            failures.push(format!("{} (PostgreSQL): {e}", file.display()));
        }
    }
    let _ = tokio::process::Command::new(&python)
        .arg(&ctl)
        .arg("stop")
        .arg(&pgdata)
        .output()
        .await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "slt_against_postgres: {} statements and queries agree with PostgreSQL",
        shared_records()
    );
}
