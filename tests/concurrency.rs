//! Readers never wait for, nor see half of, a writer's statement.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::{TempDir, connect, count, random_vectors, start_server, vector_text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_whole_statements_while_a_writer_commits() {
    let dir = TempDir::new("concurrency");
    let server = start_server(dir.path()).await;
    let writer = connect(&server).await;
    writer
        .batch_execute("CREATE TABLE c (id BIGINT, embedding VECTOR(4))")
        .await
        .expect("create");
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..2 {
        let client = connect(&server).await;
        let done = done.clone();
        readers.push(tokio::spawn(async move {
            let mut last = 0i64;
            let mut reads = 0;
            while !done.load(Ordering::SeqCst) && reads < 2_000 {
                let n: i64 = count(&client, "c").await;
                assert_eq!(n % 50, 0, "reader {r} saw a partial statement: {n} rows");
                assert!(n >= last, "reader {r} went back in time: {last} then {n}");
                last = n;
                let found = client
                    .query(
                        "SELECT id FROM vector_search('c', 'embedding', '[1,0,0,0]', 5)",
                        &[],
                    )
                    .await
                    .expect("search");
                // The table only grows: the search sees at least the n rows counted before it.
                assert!(
                    found.len() <= 5 && found.len() as i64 >= n.min(5),
                    "reader {r}: {} hits with {n} rows",
                    found.len()
                );
                reads += 1;
            }
            reads
        }));
    }
    let vectors = random_vectors(50 * 20, 4, 3);
    for chunk in 0..20 {
        let values: Vec<String> = (0..50)
            .map(|i| {
                let id = chunk * 50 + i;
                format!("({id}, '{}')", vector_text(&vectors[id]))
            })
            .collect();
        writer
            .batch_execute(&format!("INSERT INTO c VALUES {}", values.join(",")))
            .await
            .expect("insert");
    }
    done.store(true, Ordering::SeqCst);
    for r in readers {
        let reads = r.await.expect("reader ran");
        assert!(reads > 0);
    }
    let n: i64 = count(&writer, "c").await;
    assert_eq!(n, 1000);
    server.shutdown().await.expect("shutdown");
}

/// One writer inserting and deleting continuously, readers searching: every
/// search returns the rows of one committed version (whole statements only),
/// and a row acknowledged to the writer is found at once on another connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_see_committed_versions_while_rows_come_and_go() {
    const BATCH: i64 = 20;
    const STEPS: i64 = 30;
    let dir = TempDir::new("churn");
    let server = start_server(dir.path()).await;
    let writer = connect(&server).await;
    let checker = connect(&server).await;
    writer
        .batch_execute("CREATE TABLE churn (id BIGINT, embedding VECTOR(4))")
        .await
        .expect("create");
    let search = "SELECT id FROM vector_search('churn', 'embedding', '[0,0,0,0]', 100)";
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..2 {
        let client = connect(&server).await;
        let done = done.clone();
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            while !done.load(Ordering::SeqCst) && reads < 5_000 {
                let mut ids: Vec<i64> = client
                    .query(search, &[])
                    .await
                    .expect("search")
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                ids.sort_unstable();
                // A committed version holds batch b alone, or batches b and b + 1.
                if let Some(&first) = ids.first() {
                    let b = first / BATCH;
                    let whole = |n: i64| ((b * BATCH)..((b + n) * BATCH)).collect::<Vec<_>>();
                    assert!(
                        ids == whole(1) || ids == whole(2),
                        "reader {r} saw rows of no committed version: {ids:?}"
                    );
                }
                reads += 1;
            }
            reads
        }));
    }
    let vectors = random_vectors((BATCH * STEPS) as usize, 4, 5);
    for step in 0..STEPS {
        let values: Vec<String> = (0..BATCH)
            .map(|i| {
                let id = step * BATCH + i;
                format!("({id}, '{}')", vector_text(&vectors[id as usize]))
            })
            .collect();
        writer
            .batch_execute(&format!("INSERT INTO churn VALUES {}", values.join(",")))
            .await
            .expect("insert");
        // Acknowledged: another connection finds every new row now.
        let seen: Vec<i64> = checker
            .query(search, &[])
            .await
            .expect("check")
            .iter()
            .map(|row| row.get(0))
            .collect();
        for id in step * BATCH..(step + 1) * BATCH {
            assert!(seen.contains(&id), "acknowledged row {id} not found");
        }
        if step > 0 {
            writer
                .batch_execute(&format!(
                    "DELETE FROM churn WHERE id >= {} AND id < {}",
                    (step - 1) * BATCH,
                    step * BATCH
                ))
                .await
                .expect("delete");
        }
    }
    done.store(true, Ordering::SeqCst);
    for r in readers {
        assert!(r.await.expect("reader ran") > 0);
    }
    let n: i64 = count(&writer, "churn").await;
    assert_eq!(n, BATCH);
    server.shutdown().await.expect("shutdown");
}

/// Concurrent INSERTs into one table share log syncs and Lance commits (far
/// fewer table versions than statements), every one is acknowledged only
/// once it is readable by another connection, and none is lost or applied
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_share_commits_and_each_is_visible_when_acknowledged() {
    let dir = TempDir::new("group-commit");
    let server = start_server(dir.path()).await;
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE g (id BIGINT, writer INT, embedding VECTOR(4))")
        .await
        .expect("create");
    let version_before = server.db.engine.table("g").expect("table").shards()[0]
        .dataset()
        .version()
        .version;
    let (writers, per_writer) = (8i64, 25i64);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let client = connect(&server).await;
        let checker = connect(&server).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                let id = w * 1000 + i;
                client
                    .execute(
                        "INSERT INTO g VALUES ($1, $2, '[1,2,3,4]')",
                        &[&id, &(w as i32)],
                    )
                    .await
                    .expect("insert");
                let seen: i64 = checker
                    .query_one("SELECT count(*) FROM g WHERE id = $1", &[&id])
                    .await
                    .expect("read")
                    .get(0);
                assert_eq!(seen, 1, "row {id} was acknowledged but is not readable");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    assert_eq!(count(&c, "g").await, writers * per_writer);
    let distinct: i64 = c
        .query_one("SELECT count(DISTINCT id) FROM g", &[])
        .await
        .expect("distinct")
        .get(0);
    assert_eq!(distinct, writers * per_writer);
    let table = server.db.engine.table("g").expect("table");
    let table = table.shards()[0].clone();
    let commits = table.dataset().version().version - version_before;
    // One-row INSERTs go through the write-ahead log: Lance versions come
    // from flushes (each of up to 64 statements, or a second's worth).
    assert!(
        commits * 4 <= (writers * per_writer) as u64,
        "{} statements took {commits} commits",
        writers * per_writer
    );
}

/// ALTER TABLE while a writer inserts and a reader searches: an insert that
/// meets the table mid-change waits for the ALTER and runs after it, so
/// every insert is acknowledged (or, should it meet three ALTERs in a row,
/// refused with 40001 and absent), and present with the new column NULL or
/// its default; the reader never fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_under_writes_loses_no_acknowledged_row() {
    let dir = TempDir::new("alter-concurrency");
    let server = start_server(dir.path()).await;
    let admin = connect(&server).await;
    admin
        .batch_execute("CREATE TABLE w (id BIGINT, embedding VECTOR(4))")
        .await
        .expect("create");
    let vectors = random_vectors(1, 4, 5);
    let v = vector_text(&vectors[0]);
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let client = connect(&server).await;
        let done = done.clone();
        let v = v.clone();
        tokio::spawn(async move {
            let (mut acked, mut refused) = (Vec::new(), 0usize);
            let mut id = 0i64;
            while !done.load(Ordering::SeqCst) {
                id += 1;
                match client
                    .batch_execute(&format!(
                        "INSERT INTO w (id, embedding) VALUES ({id}, '{v}')"
                    ))
                    .await
                {
                    Ok(()) => acked.push(id),
                    Err(e) => {
                        let code = e.code().map(|c| c.code().to_string());
                        assert_eq!(code.as_deref(), Some("40001"), "insert {id}: {e}");
                        refused += 1;
                    }
                }
            }
            (acked, refused)
        })
    };
    let reader = {
        let client = connect(&server).await;
        let done = done.clone();
        tokio::spawn(async move {
            let mut searches = 0;
            while !done.load(Ordering::SeqCst) {
                client
                    .query(
                        &format!("SELECT id FROM w ORDER BY embedding <-> '{v}' LIMIT 5"),
                        &[],
                    )
                    .await
                    .expect("search during ALTER");
                searches += 1;
            }
            searches
        })
    };
    for step in [
        "ALTER TABLE w ADD COLUMN a INT DEFAULT 3",
        "ALTER TABLE w ADD COLUMN b TEXT",
        "ALTER TABLE w RENAME COLUMN b TO c",
        "ALTER TABLE w DROP COLUMN c",
        "ALTER TABLE w ALTER COLUMN a SET DEFAULT 4",
    ] {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        admin.batch_execute(step).await.expect(step);
    }
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    done.store(true, Ordering::SeqCst);
    let (acked, refused) = writer.await.expect("writer");
    let searches = reader.await.expect("reader");
    assert!(searches > 0);
    assert!(
        acked.len() > 10,
        "the writer got {} inserts in",
        acked.len()
    );
    let rows = admin
        .query("SELECT id, a FROM w ORDER BY id", &[])
        .await
        .expect("rows");
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, acked, "{refused} inserts were refused");
    assert!(
        refused <= 3,
        "{refused} inserts were refused rather than waiting"
    );
    // Rows before the ADD have the default it filled in, later ones the
    // default then in force, or NULL: never a value from elsewhere.
    assert!(
        rows.iter()
            .all(|r| matches!(r.get::<_, Option<i32>>(1), Some(3 | 4) | None))
    );
    assert_eq!(count(&admin, "w").await, acked.len() as i64);
}
