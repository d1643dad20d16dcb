//! `kill -9` during writes: after a restart every acknowledged statement is
//! there whole, and no statement is there in part.

use std::time::Duration;

use crate::common::{
    TempDir, client, copy_text, count, explain, free_port, random_vectors, spawn_command,
    spawn_server, tool_available, vector_text,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_acknowledged_statements_whole() {
    let dir = TempDir::new("crash");
    let port = free_port();
    let mut server = spawn_server(dir.path(), port).await;
    let c = client(port).await;
    c.batch_execute("CREATE TABLE w (id BIGINT, embedding VECTOR(16))")
        .await
        .expect("create");
    let vectors = random_vectors(100, 16, 5);
    let rows: Vec<String> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| format!("({i}, '{}')", vector_text(v)))
        .collect();
    let insert = format!("INSERT INTO w VALUES {}", rows.join(","));
    // Keep inserting until killed; count the statements the server acknowledged.
    let writer = tokio::spawn(async move {
        let mut acked = 0u64;
        while c.batch_execute(&insert).await.is_ok() {
            acked += 1;
            if acked == 400 {
                break;
            }
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.start_kill().expect("kill -9");
    let _ = server.wait().await;
    let acked = writer.await.expect("writer");
    assert!(acked > 0, "no statement was acknowledged before the kill");

    let mut server = spawn_server(dir.path(), port).await;
    let c = client(port).await;
    let n: i64 = count(&c, "w").await;
    assert_eq!(n % 100, 0, "a statement is there in part: {n} rows");
    assert!(
        n as u64 >= acked * 100,
        "acknowledged {acked} statements, found {n} rows"
    );
    assert!(
        n as u64 <= (acked + 1) * 100,
        "more statements than were sent: {n} rows"
    );
    // The table still takes writes and searches.
    c.batch_execute(&format!(
        "INSERT INTO w VALUES (1000, '{}')",
        vector_text(&vectors[0])
    ))
    .await
    .expect("write after crash");
    let hit: i64 = c
        .query_one(
            &format!(
                "SELECT id FROM vector_search('w', 'embedding', '{}', 1) WHERE id >= 1000",
                vector_text(&vectors[0])
            ),
            &[],
        )
        .await
        .expect("search")
        .get(0);
    assert_eq!(hit, 1000);
    server.start_kill().expect("stop");
    let _ = server.wait().await;
}

/// One statement's syscalls as they completed (strace `-f` splits a call
/// interrupted by another thread into "unfinished" and "resumed" lines).
fn completed_calls(log: &str) -> Vec<String> {
    let mut pending: std::collections::HashMap<&str, String> = Default::default();
    let mut calls = Vec::new();
    for line in log.lines() {
        // "<pid> <call>", the pid padded with spaces to a fixed width.
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(start) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid, start.to_string());
        } else if rest.starts_with("<... ") {
            let tail = rest.split_once("resumed>").map_or("", |(_, t)| t);
            calls.push(format!("{}{tail}", pending.remove(pid).unwrap_or_default()));
        } else {
            calls.push(rest.to_string());
        }
    }
    calls
}

/// The index of the first call at or after `from` that `is` accepts.
fn find_call(calls: &[String], from: usize, what: &str, is: impl Fn(&str) -> bool) -> usize {
    match calls[from..].iter().position(|c| is(c)) {
        Some(i) => from + i,
        None => panic!("no {what} after call {from}:\n{}", calls[from..].join("\n")),
    }
}

/// A statement is on stable storage before the client hears of it (recorded
/// with strace around the server). A one-row INSERT goes to the table's
/// write-ahead log: its record is written to the log segment and the segment
/// `fdatasync`ed before CommandComplete. A COPY goes to Lance directly: its
/// data file is renamed into place, the filesystem synced, the version's
/// manifest written with fsync and linked into `_versions/`, that folder
/// fsynced, and only then is CommandComplete sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_is_durable_before_it_is_acknowledged() {
    if !tool_available("strace", "an_insert_is_durable_before_it_is_acknowledged") {
        return;
    }
    let dir = TempDir::new("durable");
    let port = free_port();
    let log_path = dir.path().join("strace.log");
    let mut strace = tokio::process::Command::new("strace");
    strace
        .args(["-f", "-qq", "-y", "-s", "512", "-o"])
        .arg(&log_path)
        .args([
            "-e",
            "trace=fsync,fdatasync,syncfs,rename,renameat,renameat2,link,linkat,sendto,writev,write,pwrite64",
        ])
        .arg(env!("CARGO_BIN_EXE_quiver"));
    let mut server = spawn_command(strace, &dir.path().join("data"), port, &[]).await;
    let c = client(port).await;
    // Start-up writes the catalog too (a new data directory's id): only
    // the calls of CREATE TABLE count.
    let started = std::fs::read_to_string(&log_path).expect("log").len();
    c.batch_execute("CREATE TABLE d (id BIGINT, embedding VECTOR(3))")
        .await
        .expect("create");
    let log = std::fs::read_to_string(&log_path).expect("log");
    let calls = completed_calls(&log[started..]);
    // CREATE TABLE: the catalog is replaced durably before the reply.
    let catalog = find_call(&calls, 0, "catalog rename", |c| {
        c.starts_with("rename") && c.contains("catalog.json\"")
    });
    let folder = find_call(&calls, catalog, "data folder fsync", |c| {
        c.starts_with("fsync(") && c.contains("/data>")
    });
    find_call(&calls, folder, "CREATE TABLE reply", |c| {
        c.contains("CREATE TABLE")
    });

    let log = std::fs::read_to_string(&log_path).expect("log");
    let before = log.len();
    c.batch_execute("INSERT INTO d VALUES (1, '[1,2,3]')")
        .await
        .expect("insert");
    let log = std::fs::read_to_string(&log_path).expect("log");
    let calls = completed_calls(&log[before..]);
    let is_segment = |c: &str| c.contains("/wal/") && c.contains(".wal>");
    // The record overwrites zeros the segment was extended with: a write of
    // something else than zeros (strace shows them as `\0\0…`).
    let record = find_call(&calls, 0, "log record write", |c| {
        (c.starts_with("write(") || c.starts_with("pwrite64("))
            && is_segment(c)
            && !c.trim_end().ends_with("= -1")
            && c.split('"')
                .nth(1)
                .is_some_and(|data| data.chars().any(|ch| ch != '\\' && ch != '0'))
    });
    let sync = find_call(&calls, record, "log fdatasync", |c| {
        c.starts_with("fdatasync(") && is_segment(c) && c.trim_end().ends_with("= 0")
    });
    let ack = find_call(&calls, 0, "INSERT reply", |c| c.contains("INSERT 0 1"));
    assert!(
        ack > sync,
        "CommandComplete was sent before the log record was durable:\n{}",
        calls.join("\n")
    );
    // Another connection reads it at once.
    let other = client(port).await;
    assert_eq!(count(&other, "d").await, 1);

    let log = std::fs::read_to_string(&log_path).expect("log");
    let before = log.len();
    copy_text(&c, "COPY d FROM STDIN", "2\t[4,5,6]\n".to_string()).await;
    let log = std::fs::read_to_string(&log_path).expect("log");
    let calls = completed_calls(&log[before..]);
    let data = find_call(&calls, 0, "data file rename", |c| {
        c.starts_with("rename")
            && c.contains("/data/")
            && c.contains(".lance\")")
            && c.trim_end().ends_with("= 0")
    });
    let sync = find_call(&calls, data, "syncfs", |c| {
        c.starts_with("syncfs(") && c.trim_end().ends_with("= 0")
    });
    let manifest_sync = find_call(&calls, sync, "manifest fsync", |c| {
        c.starts_with("fsync(") && c.contains("/_versions/") && c.contains(".manifest")
    });
    let link = find_call(&calls, manifest_sync, "manifest link", |c| {
        (c.starts_with("link") || c.starts_with("rename"))
            && c.contains(".manifest\"")
            && c.trim_end().ends_with("= 0")
    });
    let folder = find_call(&calls, link, "_versions fsync", |c| {
        c.starts_with("fsync(") && c.contains("/_versions>")
    });
    let ack = find_call(&calls, 0, "COPY reply", |c| c.contains("COPY 1"));
    assert!(
        ack > folder,
        "CommandComplete was sent before the commit was durable:\n{}",
        calls.join("\n")
    );

    // strace does not take its tracee down with it.
    let pid = log.split(' ').next().unwrap_or_default().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status();
    server.start_kill().expect("stop strace");
    let _ = server.wait().await;
}

/// A server that dies at `step` (debug builds abort there when
/// `QUIVER_CRASH_AT` names it) while running `statement`.
async fn crash_during(dir: &std::path::Path, port: u16, step: &str, statement: &str) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_quiver"));
    command.env("QUIVER_CRASH_AT", step);
    let mut server = spawn_command(command, dir, port, &[]).await;
    let c = client(port).await;
    let res = c.batch_execute(statement).await;
    assert!(
        res.is_err(),
        "{statement} was acknowledged although the server died at {step}"
    );
    let status = server.wait().await.expect("wait");
    assert!(!status.success(), "the server did not die at {step}");
}

/// A crash at each step of CREATE/DROP TABLE and CREATE/DROP INDEX leaves
/// the catalog and Lance agreeing after the restart: the statement is undone
/// or done whole, every search works, and the statement can be run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_interrupted_at_each_step_leaves_catalog_and_lance_agreeing() {
    let vectors = random_vectors(300, 8, 11);
    let query = vector_text(&vectors[7]);
    let search = format!("SELECT id FROM vector_search('docs', 'embedding', '{query}', 1)");
    let explain_search = format!("EXPLAIN {search}");
    let create_index = "CREATE INDEX docs_idx ON docs USING ivf_flat (embedding) \
                        WITH (metric = 'l2', num_partitions = 2)";
    for (step, statement, with_index) in [
        (
            "create_table:dataset_written",
            "CREATE TABLE t2 (id BIGINT)",
            false,
        ),
        ("drop_table:catalog_written", "DROP TABLE docs", false),
        ("create_index:lance_committed", create_index, false),
        ("drop_index:catalog_written", "DROP INDEX docs_idx", true),
    ] {
        let dir = TempDir::new("ddl-crash");
        let port = free_port();
        let mut server = spawn_server(dir.path(), port).await;
        let c = client(port).await;
        c.batch_execute("CREATE TABLE docs (id BIGINT, embedding VECTOR(8))")
            .await
            .expect("create");
        let rows: Vec<String> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| format!("({i}, '{}')", vector_text(v)))
            .collect();
        c.batch_execute(&format!("INSERT INTO docs VALUES {}", rows.join(",")))
            .await
            .expect("insert");
        if with_index {
            c.batch_execute(create_index).await.expect("index");
        }
        server.start_kill().expect("stop");
        let _ = server.wait().await;

        crash_during(dir.path(), port, step, statement).await;

        let mut server = spawn_server(dir.path(), port).await;
        let c = client(port).await;
        let folders = std::fs::read_dir(dir.path().join("tables"))
            .expect("tables")
            .count();
        match step {
            "create_table:dataset_written" => {
                assert!(c.batch_execute("SELECT * FROM t2").await.is_err(), "{step}");
                assert_eq!(
                    folders, 1,
                    "{step}: the half-created table's folder is left"
                );
                c.batch_execute("CREATE TABLE t2 (id BIGINT); INSERT INTO t2 VALUES (1)")
                    .await
                    .expect("create again");
                assert_eq!(count(&c, "t2").await, 1);
            }
            "drop_table:catalog_written" => {
                assert!(
                    c.batch_execute("SELECT * FROM docs").await.is_err(),
                    "{step}"
                );
                assert_eq!(folders, 0, "{step}: the dropped table's folder is left");
                c.batch_execute("CREATE TABLE docs (id BIGINT, embedding VECTOR(8))")
                    .await
                    .expect("create again");
                assert_eq!(count(&c, "docs").await, 0);
            }
            _ => {
                // Neither half-built nor half-dropped: no index, searches exact and right.
                let plan = explain(&c, &explain_search).await;
                assert!(plan.contains("index=none"), "{step}: {plan}");
                let hit: i64 = c.query_one(&search, &[]).await.expect("search").get(0);
                assert_eq!(hit, 7, "{step}");
                // The name is free in Lance as in the catalog: the index builds again.
                c.batch_execute(create_index).await.expect("index again");
                let plan = explain(&c, &explain_search).await;
                assert!(plan.contains("index=docs_idx"), "{step}: {plan}");
                let hit: i64 = c.query_one(&search, &[]).await.expect("search").get(0);
                assert_eq!(hit, 7, "{step}");
            }
        }
        server.start_kill().expect("stop");
        let _ = server.wait().await;
    }
}

/// A crash inside ALTER TABLE, between its Lance change and its catalog
/// change (in whichever order the change takes them): start-up makes the
/// dataset agree with the catalog, so ADD COLUMN is undone, DROP and RENAME
/// COLUMN are done, every row (those still in the log at the crash among
/// them) is readable once, searches work, and the statement runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_interrupted_leaves_dataset_and_catalog_agreeing() {
    let vectors = random_vectors(200, 8, 12);
    let query = vector_text(&vectors[9]);
    for (step, statement) in [
        (
            "alter_table:lance_written",
            "ALTER TABLE docs ADD COLUMN score INT DEFAULT 5",
        ),
        (
            "alter_table:catalog_written",
            "ALTER TABLE docs DROP COLUMN note",
        ),
        (
            "alter_table:catalog_written",
            "ALTER TABLE docs RENAME COLUMN note TO remark",
        ),
    ] {
        let dir = TempDir::new("alter-crash");
        let port = free_port();
        let mut server = spawn_server(dir.path(), port).await;
        let c = client(port).await;
        c.batch_execute("CREATE TABLE docs (id BIGINT, note TEXT, embedding VECTOR(8))")
            .await
            .expect("create");
        let rows: Vec<String> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| format!("({i}, 'n{i}', '{}')", vector_text(v)))
            .collect();
        c.batch_execute(&format!(
            "INSERT INTO docs VALUES {}",
            rows[..150].join(",")
        ))
        .await
        .expect("insert");
        c.batch_execute("CREATE INDEX ON docs USING hnsw (embedding vector_l2_ops)")
            .await
            .expect("index");
        // Small inserts stay in the log until a flush: ALTER must take them along.
        for r in &rows[150..] {
            c.batch_execute(&format!("INSERT INTO docs VALUES {r}"))
                .await
                .expect("insert");
        }
        drop(c);
        server.start_kill().expect("stop");
        let _ = server.wait().await;

        crash_during(dir.path(), port, step, statement).await;

        let mut server = spawn_server(dir.path(), port).await;
        let c = client(port).await;
        assert_eq!(count(&c, "docs").await, 200, "{step}: {statement}");
        let columns: Vec<String> = c
            .query(
                "SELECT column_name FROM information_schema.columns \
                 WHERE table_name = 'docs' ORDER BY ordinal_position",
                &[],
            )
            .await
            .expect("columns")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let hit: i64 = c
            .query_one(
                &format!("SELECT id FROM docs ORDER BY embedding <-> '{query}' LIMIT 1"),
                &[],
            )
            .await
            .expect("search")
            .get(0);
        assert_eq!(hit, 9, "{step}: {statement}");
        if statement.contains("ADD COLUMN") {
            assert_eq!(columns, ["id", "note", "embedding"], "{statement}");
            c.batch_execute(statement).await.expect("add again");
            let n: i64 = c
                .query_one("SELECT count(*) FROM docs WHERE score = 5", &[])
                .await
                .expect("filled")
                .get(0);
            assert_eq!(n, 200);
        } else if statement.contains("DROP COLUMN") {
            assert_eq!(columns, ["id", "embedding"], "{statement}");
            c.batch_execute("ALTER TABLE docs ADD COLUMN note TEXT")
                .await
                .expect("a new column of the dropped one's name");
            let n: i64 = c
                .query_one("SELECT count(*) FROM docs WHERE note IS NULL", &[])
                .await
                .expect("nulls")
                .get(0);
            assert_eq!(n, 200, "the old column's values must not come back");
        } else {
            assert_eq!(columns, ["id", "remark", "embedding"], "{statement}");
            let remark: String = c
                .query_one("SELECT remark FROM docs WHERE id = 170", &[])
                .await
                .expect("renamed")
                .get(0);
            assert_eq!(remark, "n170");
        }
        server.start_kill().expect("stop");
        let _ = server.wait().await;
    }
}

/// A crash after a flush has committed the log's rows to Lance and before it
/// has removed the log segments that hold them: start-up finds the flush's
/// mark on the version and replays none of them, so every acknowledged row
/// is there exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_a_flush_and_its_log_removal_applies_no_row_twice() {
    let dir = TempDir::new("flush-crash");
    let port = free_port();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_quiver"));
    command.env("QUIVER_CRASH_AT", "flush:lance_committed");
    let mut server = spawn_command(command, dir.path(), port, &[]).await;
    let c = client(port).await;
    c.batch_execute("CREATE TABLE w (id BIGINT, embedding VECTOR(4))")
        .await
        .expect("create");
    // One-row INSERTs (logged) until a flush, a background one or the one
    // the DELETE starts, kills the server.
    let mut acked = 0i64;
    for i in 0..20i64 {
        let ok = c
            .execute("INSERT INTO w VALUES ($1, '[1,2,3,4]')", &[&i])
            .await
            .is_ok();
        if !ok {
            break;
        }
        acked += 1;
    }
    assert!(acked > 0, "no INSERT was acknowledged");
    let _ = c.batch_execute("DELETE FROM w WHERE id = -1").await;
    let status = server.wait().await.expect("wait");
    assert!(!status.success(), "the server did not die at the flush");
    // The window was hit: the log still holds the records Lance has.
    let logs = dir.path().join("wal");
    let held: u64 = std::fs::read_dir(&logs)
        .expect("wal")
        .flatten()
        .flat_map(|t| std::fs::read_dir(t.path()).expect("log").flatten())
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum();
    assert!(held > 0, "the log was empty after the crash");

    let mut server = spawn_server(dir.path(), port).await;
    let c = client(port).await;
    let n = count(&c, "w").await;
    let distinct: i64 = c
        .query_one("SELECT count(DISTINCT id) FROM w", &[])
        .await
        .expect("distinct")
        .get(0);
    assert_eq!(distinct, n, "a row was applied twice");
    assert!(
        n >= acked && n <= acked + 1,
        "acknowledged {acked} rows, found {n}"
    );
    // And again after a clean restart: the log was consumed.
    server.start_kill().expect("stop");
    let _ = server.wait().await;
    let mut server = spawn_server(dir.path(), port).await;
    let c = client(port).await;
    assert_eq!(count(&c, "w").await, n);
    server.start_kill().expect("stop");
    let _ = server.wait().await;
}
