//! The start-up and schema-discovery queries of four BI tools (DBeaver,
//! Metabase, Grafana, Superset), kept as fixtures under `tests/bi/` (taken from
//! the tools' sources; see its README) and replayed against a table whose name
//! is made at test time, through the protocol each tool's driver speaks. A
//! record's `-- expect:` lines are checked against the answer: at least one
//! row, or a cell equal to the table's name, its schema, a column's name. A
//! record marked `-- unsupported:` must fail with a clear SQLSTATE (not an
//! internal error, the connection usable after it); the README lists them.

use std::path::PathBuf;

use tokio_postgres::SimpleQueryMessage;

use crate::common::{TempDir, connect, start_server};
use crate::slt::Cell;

/// One query of a fixture file.
#[derive(Debug)]
struct Record {
    source: String,
    expects: Vec<String>,
    unsupported: bool,
    sql: String,
}

/// The records of a fixture: comment lines (`-- source:`, `-- expect:`,
/// `-- unsupported:`), then the query, ended by a line `;;`.
fn records(text: &str) -> Vec<Record> {
    let mut out = Vec::new();
    let (mut source, mut expects, mut unsupported, mut sql) =
        (String::new(), Vec::new(), false, String::new());
    for line in text.lines() {
        if line.trim() == ";;" {
            assert!(!sql.trim().is_empty(), "empty record after {source}");
            out.push(Record {
                source: std::mem::take(&mut source),
                expects: std::mem::take(&mut expects),
                unsupported: std::mem::take(&mut unsupported),
                sql: std::mem::take(&mut sql),
            });
        } else if sql.is_empty() && line.starts_with("--") {
            if let Some(s) = line.strip_prefix("-- source:") {
                source.push_str(s.trim());
            } else if let Some(e) = line.strip_prefix("-- expect:") {
                expects.push(e.trim().to_string());
            } else if line.starts_with("-- unsupported:") {
                unsupported = true;
            }
        } else if !(sql.is_empty() && line.trim().is_empty()) {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    assert!(sql.trim().is_empty(), "a record is not ended by ';;'");
    out
}

/// Replaces the fixture's four placeholders (and nothing else in braces).
fn fill(s: &str, vars: &[(&str, &str)]) -> String {
    vars.iter()
        .fold(s.to_string(), |s, (k, v)| s.replace(&format!("{{{k}}}"), v))
}

/// The rows of one query, as text (NULL as None).
async fn run(
    client: &tokio_postgres::Client,
    sql: &str,
    extended: bool,
) -> Result<Vec<Vec<Option<String>>>, tokio_postgres::Error> {
    if extended {
        let rows = client.query(sql, &[]).await?;
        return Ok(rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.get::<_, Option<Cell>>(i).map(|c| c.0))
                    .collect()
            })
            .collect());
    }
    Ok(client
        .simple_query(sql)
        .await?
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect())
}

/// Replays `tests/bi/<tool>.sql`; `extended`: the tool's driver sends each
/// query with Parse/Bind/Execute (JDBC), else as a simple Query.
async fn replay(tool: &str, extended: bool) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/bi/{tool}.sql"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    let dir = TempDir::new(&format!("bi-{tool}"));
    let server = start_server(dir.path()).await;
    let client = connect(&server).await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let table = format!("{tool}_items_{nanos}");
    client
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS vector;
             CREATE TABLE {table} (id BIGINT PRIMARY KEY, title TEXT NOT NULL, embedding VECTOR(3), meta JSONB);
             INSERT INTO {table} VALUES (1, 'one', '[1,0,0]', '{{\"k\": 1}}'), (2, 'two', '[0,1,0]', NULL);
             CREATE INDEX {table}_title ON {table} (title);"
        ))
        .await
        .expect("set-up");
    let row = client
        .query_one("SELECT current_database(), current_user", &[])
        .await
        .expect("identity");
    let (database, user): (String, String) = (row.get(0), row.get(1));
    let vars = [
        ("schema", "public"),
        ("table", table.as_str()),
        ("database", database.as_str()),
        ("user", user.as_str()),
    ];
    let records = records(&text);
    assert!(!records.is_empty(), "{tool}: no records");
    let mut failures = Vec::new();
    for (n, r) in records.iter().enumerate() {
        let sql = fill(&r.sql, &vars);
        let what = format!("{tool} record {} ({})", n + 1, r.source);
        match run(&client, &sql, extended).await {
            Ok(_) if r.unsupported => {
                failures.push(format!("{what}: marked unsupported but succeeded"))
            }
            Ok(rows) => {
                for e in &r.expects {
                    let ok = match e.as_str() {
                        "rows" => !rows.is_empty(),
                        _ => match e.strip_prefix("contains ") {
                            Some(want) => {
                                let want = fill(want, &vars);
                                rows.iter().flatten().flatten().any(|c| *c == want)
                            }
                            None => panic!("{what}: unknown expectation {e:?}"),
                        },
                    };
                    if !ok {
                        failures.push(format!("{what}: expected {e}, got {rows:?}\n{sql}"));
                    }
                }
            }
            Err(e) => {
                let db = e.as_db_error();
                let code = db.map(|d| d.code().code());
                let clear = code.is_some_and(|c| c != "XX000");
                if !(r.unsupported && clear) {
                    let message = db.map_or(e.to_string(), |d| d.message().to_string());
                    failures.push(format!("{what}: {code:?} {message}\n{sql}"));
                }
            }
        }
        // Whatever happened, the connection still answers.
        client
            .simple_query("SELECT 1")
            .await
            .unwrap_or_else(|e| panic!("{what}: connection unusable after it: {e}"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} {tool} queries failed:\n{}",
        failures.len(),
        records.len(),
        failures.join("\n\n")
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bi_dbeaver_discovers_the_schema() {
    replay("dbeaver", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bi_metabase_discovers_the_schema() {
    replay("metabase", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bi_grafana_discovers_the_schema() {
    replay("grafana", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bi_superset_discovers_the_schema() {
    replay("superset", false).await;
}
