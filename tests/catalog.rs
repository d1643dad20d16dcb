//! PostgreSQL's catalog as tools read it: psql's meta-commands, the
//! catalog helper functions and `::regclass` casts drivers send, and object
//! ids that stay the same across a restart. Table names are made at test
//! time, so no answer can be canned.

use crate::common::{TempDir, connect, psql, psql_available, start_server};

/// A table name no fixture can know in advance.
fn fresh_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_meta_commands_describe_this_database() {
    if !psql_available("psql_meta_commands_describe_this_database") {
        return;
    }
    let dir = TempDir::new("psql-meta");
    let server = start_server(dir.path()).await;
    let table = fresh_name("docs");
    let client = connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS vector;
             CREATE TABLE {table} (id BIGINT NOT NULL, body TEXT CHECK (char_length(body) < 100), embedding VECTOR(3));
             INSERT INTO {table} VALUES (1, 'a', '[1,0,0]'), (2, 'b', '[0,1,0]');
             CREATE INDEX {table}_emb ON {table} USING hnsw (embedding vector_cosine_ops);
             CREATE INDEX {table}_id ON {table} (id);"
        ))
        .await
        .expect("set-up");
    let script = format!(
        "\\dt\n\\di\n\\d\n\\pset tuples_only off\n\\d {table}\n\\pset tuples_only on\n\\d {table}_emb\n\\dn\n\\l\n\\dx\n\\dT\n\\df\n\\du\n\
         \\conninfo\n\\x\nSELECT count(*) FROM {table};\n"
    );
    let (out, err) = psql(server.addr.port(), &script).await;
    let ctx = format!("stdout:\n{out}\nstderr:\n{err}");
    assert!(!err.contains("ERROR"), "{ctx}");
    // \dt, \d: the table, owned by the connected user.
    assert!(
        out.contains(&format!("public|{table}|table|postgres\n")),
        "{ctx}"
    );
    // \di: both indexes, with their table.
    assert!(
        out.contains(&format!("public|{table}_emb|index|postgres|{table}\n")),
        "{ctx}"
    );
    assert!(
        out.contains(&format!("public|{table}_id|index|postgres|{table}\n")),
        "{ctx}"
    );
    // \d table (with its footers): columns with PostgreSQL's type names,
    // nullability, and the indexes.
    assert!(out.contains("id|bigint||not null|\n"), "{ctx}");
    assert!(out.contains("body|text|||\n"), "{ctx}");
    assert!(out.contains("embedding|vector(3)|||\n"), "{ctx}");
    assert!(
        out.contains(&format!(
            "\"{table}_emb\" ivf_hnsw_sq (embedding) WITH (metric = 'cosine'"
        )),
        "{ctx}"
    );
    assert!(out.contains(&format!("\"{table}_id\" btree (id)")), "{ctx}");
    assert!(out.contains("Check constraints:"), "{ctx}");
    assert!(
        out.contains(&format!(
            "\"{table}_body_check\" CHECK (char_length(body) < 100)"
        )),
        "{ctx}"
    );
    // \d index: its column.
    assert!(out.contains("embedding|vector(3)|yes|embedding\n"), "{ctx}");
    // \dn, \l, \dx, \dT
    assert!(out.contains("public|postgres\n"), "{ctx}");
    assert!(out.contains("postgres|postgres|UTF8|"), "{ctx}");
    assert!(out.contains("vector|0.8.0|public|"), "{ctx}");
    assert!(out.contains("public|vector|"), "{ctx}");
    // \conninfo is psql's own; the query after \x still runs.
    assert!(
        out.contains("You are connected to database \"postgres\""),
        "{ctx}"
    );
    assert!(out.contains("count|2"), "{ctx}");
    // The `+` forms: sizes (pg_size_pretty of the data files' bytes),
    // storage, the extension's objects (pg_describe_object over pg_depend),
    // functions with their language.
    let (out, err) = psql(
        server.addr.port(),
        &format!("\\dt+\n\\di+\n\\l+\n\\d+ {table}\n\\dx+ vector\n\\df+\n\\dn+\n\\d+\n"),
    )
    .await;
    let ctx = format!("stdout:\n{out}\nstderr:\n{err}");
    assert!(!err.contains("ERROR"), "{ctx}");
    let size = |line: &str| {
        let cells: Vec<&str> = line.split('|').collect();
        cells.iter().any(|c| {
            c.strip_suffix(" bytes")
                .or_else(|| c.strip_suffix(" kB"))
                .is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n > 0))
        })
    };
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_string)
    };
    let dt = line(&format!("public|{table}|table|postgres|permanent|heap|"));
    assert!(dt.as_deref().is_some_and(size), "\\dt+ size: {ctx}");
    assert!(
        line("postgres|postgres|UTF8|").as_deref().is_some_and(size),
        "\\l+ size: {ctx}"
    );
    assert!(
        line(&format!(
            "public|{table}_emb|index|postgres|{table}|permanent|ivf_hnsw_sq|"
        ))
        .is_some(),
        "{ctx}"
    );
    assert!(out.contains("embedding|vector(3)||||external|"), "{ctx}");
    assert!(out.contains("body|text||||extended|"), "{ctx}");
    assert!(out.contains("\ntype vector\n"), "{ctx}");
    assert!(
        out.contains("operator class vector_cosine_ops for access method ivf_hnsw_sq\n"),
        "{ctx}"
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_ids_functions_and_casts_agree_and_survive_a_restart() {
    let dir = TempDir::new("catalog-ids");
    let table = fresh_name("items");
    let server = start_server(dir.path()).await;
    let client = connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE EXTENSION vector;
             CREATE TABLE {table} (id BIGINT, embedding VECTOR(4));
             CREATE INDEX {table}_id ON {table} (id);"
        ))
        .await
        .expect("set-up");
    let ids = |sql: String| {
        let client = &client;
        async move {
            let row = client.query_one(&sql, &[]).await.expect(&sql);
            (row.get::<_, u32>(0), row.get::<_, u32>(1))
        }
    };
    let q = format!(
        "SELECT c.oid, i.indexrelid FROM pg_class c JOIN pg_index i ON i.indrelid = c.oid \
         WHERE c.relname = '{table}'"
    );
    let (table_oid, index_oid) = ids(q.clone()).await;
    assert!(table_oid >= 16384 && index_oid >= 16384 && table_oid != index_oid);
    // The cast, the lookup function and pg_class agree.
    let row = client
        .query_one(
            &format!(
                "SELECT '{table}'::regclass::oid, to_regclass('public.{table}')::oid, \
                 {table_oid}::oid::regclass::text, format_type(a.atttypid, a.atttypmod), \
                 pg_catalog.pg_table_is_visible({table_oid}), current_database(), \
                 current_schema(), pg_backend_pid() > 0, version() \
                 FROM pg_attribute a WHERE a.attrelid = {table_oid} AND a.attname = 'embedding'"
            ),
            &[],
        )
        .await
        .expect("catalog functions");
    assert_eq!(row.get::<_, u32>(0), table_oid);
    assert_eq!(row.get::<_, u32>(1), table_oid);
    assert_eq!(row.get::<_, String>(2), table);
    assert_eq!(row.get::<_, String>(3), "vector(4)");
    assert!(row.get::<_, bool>(4));
    assert_eq!(row.get::<_, String>(5), "postgres");
    assert_eq!(row.get::<_, String>(6), "public");
    assert!(row.get::<_, bool>(7));
    assert!(row.get::<_, String>(8).starts_with("PostgreSQL 16"));
    // Result columns are named as PostgreSQL names them, through both protocols.
    let sql = format!("SELECT count(*), 1, id, 'a'::text, max(id) AS top FROM {table} GROUP BY id");
    let stmt = client.prepare(&sql).await.expect("prepare");
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["count", "?column?", "id", "text", "top"]);
    let simple = client
        .simple_query("SELECT count(*), 1")
        .await
        .expect("simple");
    let tokio_postgres::SimpleQueryMessage::RowDescription(cols) = &simple[0] else {
        panic!("a row description first: {simple:?}");
    };
    let names: Vec<&str> = cols.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["count", "?column?"]);
    // An unknown name is an error with the right code, and the connection stays up.
    let err = client
        .query_one("SELECT 'no_such_table'::regclass", &[])
        .await
        .expect_err("unknown relation");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
    );
    let err = client
        .batch_execute("CREATE EXTENSION postgis")
        .await
        .expect_err("not available");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED)
    );
    // Another table gets another id; the first keeps its own after a restart.
    client
        .batch_execute(&format!("CREATE TABLE {table}_2 (id BIGINT)"))
        .await
        .expect("second table");
    drop(client);
    server.shutdown().await.expect("stop");
    let server = start_server(dir.path()).await;
    let client = connect(&server).await;
    let row = client.query_one(&q, &[]).await.expect("after restart");
    assert_eq!(
        (row.get::<_, u32>(0), row.get::<_, u32>(1)),
        (table_oid, index_oid)
    );
    let second: u32 = client
        .query_one(&format!("SELECT '{table}_2'::regclass::oid"), &[])
        .await
        .expect("second")
        .get(0);
    assert!(second != table_oid && second != index_oid);
    server.shutdown().await.expect("shutdown");
}
