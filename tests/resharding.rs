//! `ALTER TABLE t SET (shards = M)`: only the rows whose owner changes
//! move, readers see every row exactly once while they do, writers go on,
//! and a move killed half way finishes after the restart with every row
//! there once.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::common::{
    TempDir, client, copy_text, count, explain, free_port, random_vectors, spawn_command,
    spawn_server_with, start_server_with_storage, vector_text,
};

/// COPY text rows `(id, cat, emb)` for ids `from..from + n`.
fn rows(n: usize, from: usize, seed: u64) -> (String, Vec<Vec<f32>>) {
    let vectors = random_vectors(n, 8, seed);
    let mut s = String::new();
    for (i, v) in vectors.iter().enumerate() {
        s.push_str(&format!(
            "{}\t{}\t{}\n",
            from + i,
            (from + i) % 10,
            vector_text(v)
        ));
    }
    (s, vectors)
}

/// The row count and an order-independent checksum of the rows with
/// `id < below` (every column, as text), with the distinct ids among them.
async fn checksum(c: &tokio_postgres::Client, below: i64) -> (i64, i64, u64) {
    // The simple protocol: every column as text (the vector as pgvector writes it).
    let messages = c
        .simple_query(&format!("SELECT id, cat, emb FROM t WHERE id < {below}"))
        .await
        .expect("checksum rows");
    let mut sum = 0u64;
    let mut n = 0;
    let mut ids = std::collections::HashSet::new();
    for m in &messages {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            let row: Vec<Option<&str>> = (0..3).map(|i| r.get(i)).collect();
            ids.insert(row[0].map(str::to_string));
            let mut h = std::collections::hash_map::DefaultHasher::new();
            row.hash(&mut h);
            sum = sum.wrapping_add(h.finish());
            n += 1;
        }
    }
    (n, ids.len() as i64, sum)
}

/// `quiver_shards('t')`: rows per shard, and whether the table is moving.
async fn shard_rows(c: &tokio_postgres::Client) -> (Vec<i64>, bool) {
    let rows = c
        .query(
            "SELECT shard, rows, moving, tier FROM quiver_shards('t') ORDER BY shard",
            &[],
        )
        .await
        .expect("quiver_shards");
    let mut moving = false;
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.get::<_, i32>(0), i as i32);
        assert_eq!(r.get::<_, &str>(3), "hot");
        out.push(r.get(1));
        moving |= r.get::<_, bool>(2);
    }
    (out, moving)
}

/// A client whose server notices arrive on the returned channel.
async fn client_with_notices(
    port: u16,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (c, mut conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = futures::StreamExt::next(&mut messages).await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notice(n)) => {
                    let _ = tx.send(n.message().to_string());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    (c, rx)
}

/// The rows moved and the table's rows, from the NOTICE of an
/// `ALTER TABLE … SET (shards = …)`: "moved X of Y rows …".
fn moved(notices: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> (i64, i64) {
    while let Ok(n) = notices.try_recv() {
        let words: Vec<&str> = n.split_whitespace().collect();
        if let ["moved", x, "of", y, "rows", ..] = words.as_slice() {
            return (x.parse().expect("moved"), y.parse().expect("rows"));
        }
    }
    panic!("no NOTICE reported the rows moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_moves_only_changed_owners_while_readers_and_writers_go_on() {
    let dir = TempDir::new("reshard-online");
    let server = start_server_with_storage(
        dir.path(),
        quiver::config::StorageConfig {
            reshard_step_rows: 250,
            ..Default::default()
        },
    )
    .await;
    let port = server.addr.port();
    let (c, mut notices) = client_with_notices(port).await;
    c.batch_execute("CREATE TABLE t (id BIGINT, cat INT, emb VECTOR(8))")
        .await
        .expect("create");
    let (payload, vectors) = rows(4000, 0, 21);
    copy_text(&c, "COPY t FROM STDIN", payload).await;
    c.batch_execute("CREATE INDEX t_emb ON t USING ivfflat (emb) WITH (lists = 4)")
        .await
        .expect("index");
    let before = checksum(&c, 4000).await;
    assert_eq!(before.0, 4000);

    // 1 → 4 shards: a table of one shard takes its shard key here.
    c.batch_execute("ALTER TABLE t SET (shards = 4, shard_key = id)")
        .await
        .expect("1 → 4");
    let (moved_1_4, total) = moved(&mut notices);
    let (per_shard, moving) = shard_rows(&c).await;
    assert!(!moving);
    assert_eq!(per_shard.len(), 4);
    assert_eq!(total, 4000);
    // Every row that moved left shard 0 (the table's first dataset).
    assert_eq!(
        moved_1_4,
        per_shard[1..].iter().sum::<i64>(),
        "{per_shard:?}"
    );
    let fraction = moved_1_4 as f64 / 4000.0;
    assert!((0.6..0.9).contains(&fraction), "1 → 4 moved {fraction}");
    assert_eq!(checksum(&c, 4000).await, before);

    // 4 → 8 shards with readers and writers running.
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for r in 0..2u64 {
        let (stop, checks, vectors) = (stop.clone(), checks.clone(), vectors.clone());
        readers.push(tokio::spawn(async move {
            let c = client(port).await;
            let mut x = r as usize * 977;
            while !stop.load(Ordering::SeqCst) {
                x = (x + 389) % 4000;
                let n: i64 = c
                    .query_one("SELECT count(*) FROM t WHERE id < 4000", &[])
                    .await
                    .expect("count")
                    .get(0);
                assert_eq!(n, 4000, "a reader saw {n} of the 4,000 rows mid-move");
                let n: i64 = c
                    .query_one(&format!("SELECT count(*) FROM t WHERE id = {x}"), &[])
                    .await
                    .expect("lookup")
                    .get(0);
                assert_eq!(n, 1, "row {x} was not found by its key mid-move");
                let found: i64 = c
                    .query_one(
                        &format!(
                            "SELECT id FROM t WHERE id = {x} ORDER BY emb <-> '{}' LIMIT 1",
                            vector_text(&vectors[x])
                        ),
                        &[],
                    )
                    .await
                    .expect("search")
                    .get(0);
                assert_eq!(found, x as i64);
                // Unfiltered, through the index where a shard has it (the
                // new shards get it at the move's end: searched exactly).
                let nearest = c
                    .query(
                        &format!(
                            "SELECT id FROM t ORDER BY emb <-> '{}' LIMIT 3",
                            vector_text(&vectors[x])
                        ),
                        &[],
                    )
                    .await
                    .expect("unfiltered search mid-move");
                assert_eq!(nearest.len(), 3);
                checks.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let inserted = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, inserted) = (stop.clone(), inserted.clone());
        tokio::spawn(async move {
            let c = client(port).await;
            let mut id = 100_000u64;
            while !stop.load(Ordering::SeqCst) {
                if id.is_multiple_of(5) {
                    let values: Vec<String> = (0..10)
                        .map(|j| format!("({}, 1, '[1,2,3,4,5,6,7,{j}]')", id + j))
                        .collect();
                    c.batch_execute(&format!("INSERT INTO t VALUES {}", values.join(",")))
                        .await
                        .expect("a multi-row INSERT was refused mid-move");
                    id += 10;
                    inserted.fetch_add(10, Ordering::SeqCst);
                } else {
                    c.batch_execute(&format!(
                        "INSERT INTO t VALUES ({id}, 2, '[0,0,0,0,0,0,0,1]')"
                    ))
                    .await
                    .expect("an INSERT was refused mid-move");
                    id += 1;
                    inserted.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let checks_before = checks.load(Ordering::SeqCst);
    let inserted_before = inserted.load(Ordering::SeqCst);
    c.batch_execute("ALTER TABLE t SET (shards = 8)")
        .await
        .expect("4 → 8");
    let checks_during = checks.load(Ordering::SeqCst) - checks_before;
    let inserted_during = inserted.load(Ordering::SeqCst) - inserted_before;
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.await.expect("reader");
    }
    writer.await.expect("writer");
    assert!(checks_during > 0, "no reader ran during the move");
    assert!(inserted_during > 0, "no writer ran during the move");

    let (moved_4_8, total) = moved(&mut notices);
    let (per_shard, moving) = shard_rows(&c).await;
    assert!(!moving);
    assert_eq!(per_shard.len(), 8);
    let inserted = inserted.load(Ordering::SeqCst) as i64;
    assert!(total >= 4000);
    // The moved rows went to the new shards only, beside rows written there since.
    let on_new: i64 = per_shard[4..].iter().sum();
    assert!(
        moved_4_8 <= on_new && on_new <= moved_4_8 + inserted,
        "moved {moved_4_8}, new shards hold {on_new}, {inserted} inserted"
    );
    let fraction = moved_4_8 as f64 / total as f64;
    assert!((0.3..0.7).contains(&fraction), "4 → 8 moved {fraction}");
    assert_eq!(checksum(&c, 4000).await, before);
    let n = count(&c, "t").await;
    assert_eq!(n, 4000 + inserted);
    let distinct: i64 = c
        .query_one("SELECT count(DISTINCT id) FROM t", &[])
        .await
        .expect("distinct")
        .get(0);
    assert_eq!(distinct, n, "a row is on two shards");

    // The shards the move created got the table's index.
    let plan = explain(
        &c,
        &format!(
            "EXPLAIN ANALYZE SELECT id FROM t ORDER BY emb <-> '{}' LIMIT 5",
            vector_text(&vectors[0])
        ),
    )
    .await;
    for i in 0..8 {
        assert!(plan.contains(&format!("shard {i}: ")), "{plan}");
    }
    assert_eq!(plan.matches("ann t_emb").count(), 8, "{plan}");
    // A lookup by key reads its shard only (the old ring is gone).
    let plan = explain(
        &c,
        &format!(
            "EXPLAIN SELECT id FROM t WHERE id = 7 ORDER BY emb <-> '{}' LIMIT 5",
            vector_text(&vectors[0])
        ),
    )
    .await;
    let shards = plan
        .split("shards=[")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("{plan}"));
    assert!(!shards.contains(','), "one shard: {plan}");
    assert!(plan.contains("] of 8"), "{plan}");

    // The searches each shard served show.
    let served: i64 = c
        .query_one("SELECT sum(queries) FROM quiver_shards('t')", &[])
        .await
        .expect("queries")
        .get(0);
    assert!(served > 0);

    // Back to 3: the removed shards' rows move to the others.
    c.batch_execute("ALTER TABLE t SET (shards = 3)")
        .await
        .expect("8 → 3");
    let (moved_8_3, _) = moved(&mut notices);
    assert_eq!(moved_8_3, per_shard[3..].iter().sum::<i64>());
    let (per_shard, _) = shard_rows(&c).await;
    assert_eq!(per_shard.len(), 3);
    assert_eq!(checksum(&c, 4000).await, before);
    assert_eq!(count(&c, "t").await, n);
    // And up again: shards 3 and 4 take the folders the shrink left.
    c.batch_execute("ALTER TABLE t SET (shards = 5)")
        .await
        .expect("3 → 5");
    let (per_shard, _) = shard_rows(&c).await;
    assert_eq!(per_shard.len(), 5);
    assert_eq!(per_shard.iter().sum::<i64>(), n);
    assert_eq!(checksum(&c, 4000).await, before);

    // What cannot change.
    c.batch_execute("CREATE TABLE u (id INT, emb VECTOR(2))")
        .await
        .expect("create u");
    for (sql, code) in [
        (
            "ALTER TABLE u SET (shards = 1, shard_key = nosuch)",
            "42703",
        ),
        ("ALTER TABLE u SET (shards = 2, shard_key = emb)", "42P16"),
        ("ALTER TABLE nosuch SET (shards = 2)", "42P01"),
        ("ALTER TABLE t SET (shards = 4, shard_key = cat)", "0A000"),
        ("ALTER TABLE t SET (shards = 0)", "22023"),
        ("ALTER TABLE t SET (shards = 2000)", "22023"),
        ("ALTER TABLE t SET (tier = 'cold')", "42P16"), // no cold tier here
        ("ALTER TABLE t SET (tier = 'warm')", "22023"),
        ("ALTER TABLE t SET (vnodes = 5)", "22023"),
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(e.code().map(|c| c.code()), Some(code), "{sql}: {e}");
    }

    // quiver_shards() shows the deleted rows not compacted away and the
    // rows the index does not cover yet (as the last search opened them).
    let counters = || async {
        let search = format!(
            "SELECT id FROM t ORDER BY emb <-> '{}' LIMIT 5",
            vector_text(&vectors[0])
        );
        c.batch_execute(&search).await.expect("search");
        let r = c
            .query_one(
                "SELECT sum(deleted_rows)::BIGINT, sum(unindexed_rows)::BIGINT FROM quiver_shards('t')",
                &[],
            )
            .await
            .expect("counters");
        (r.get::<_, i64>(0), r.get::<_, i64>(1))
    };
    c.batch_execute("OPTIMIZE TABLE t").await.expect("optimize");
    let (deleted_before, unindexed) = counters().await;
    assert_eq!(unindexed, 0, "OPTIMIZE folds every row into the index");
    let gone = c
        .query_one("SELECT count(*) FROM t WHERE id < 20", &[])
        .await
        .expect("count")
        .get::<_, i64>(0);
    assert!(gone > 0);
    // Too few per shard (under 10 %) for a compaction to drop them.
    c.batch_execute("DELETE FROM t WHERE id < 20")
        .await
        .expect("delete");
    assert_eq!(counters().await.0, deleted_before + gone);
    c.batch_execute(
        "INSERT INTO t VALUES (70001, 1, '[1,0,0,0,0,0,0,0]'), (70002, 1, '[0,1,0,0,0,0,0,0]'),
         (70003, 1, '[0,0,1,0,0,0,0,0]')",
    )
    .await
    .expect("insert");
    // Logged first; once flushed (within about a second) they are a new
    // fragment the index does not cover.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, unindexed) = counters().await;
        if unindexed == 3 {
            break;
        }
        assert!(
            unindexed < 3 && std::time::Instant::now() < deadline,
            "unindexed rows: {unindexed}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    c.batch_execute("OPTIMIZE TABLE t").await.expect("optimize");
    assert_eq!(counters().await.1, 0);
}

/// `kill -9` during a move (the server aborts at a named step): after the
/// restart every row is readable exactly once, and the move finishes (or,
/// killed before the catalog recorded it, never started).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_killed_half_way_leaves_every_row_once() {
    for (step, shards_after) in [
        ("reshard:created", 2),
        ("reshard:recorded", 5),
        ("reshard:step", 5),
    ] {
        let dir = TempDir::new("reshard-crash");
        let config = dir.path().join("quiver.toml");
        std::fs::write(&config, "[storage]\nreshard_step_rows = 200\n").expect("config");
        let config = config.display().to_string();
        let flags = ["--config", config.as_str()];
        let port = free_port();
        let mut server = spawn_server_with(dir.path(), port, &flags).await;
        let c = client(port).await;
        c.batch_execute(
            "CREATE TABLE t (id BIGINT, cat INT, emb VECTOR(8)) WITH (shards = 2, shard_key = id)",
        )
        .await
        .expect("create");
        let (payload, _) = rows(3000, 0, 33);
        copy_text(&c, "COPY t FROM STDIN", payload).await;
        let before = checksum(&c, i64::MAX).await;
        server.start_kill().expect("stop");
        let _ = server.wait().await;

        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_quiver"));
        command.env("QUIVER_CRASH_AT", step);
        let mut server = spawn_command(command, dir.path(), port, &flags).await;
        let c = client(port).await;
        let res = c.batch_execute("ALTER TABLE t SET (shards = 5)").await;
        assert!(
            res.is_err(),
            "the ALTER finished although the server died at {step}"
        );
        let status = server.wait().await.expect("wait");
        assert!(!status.success(), "the server did not die at {step}");

        let mut server = spawn_server_with(dir.path(), port, &flags).await;
        let c = client(port).await;
        // Readable exactly once at once, while the move resumes.
        assert_eq!(
            checksum(&c, i64::MAX).await,
            before,
            "after a kill at {step}"
        );
        let mut waited = 0;
        let per_shard = loop {
            let (per_shard, moving) = shard_rows(&c).await;
            if !moving {
                break per_shard;
            }
            assert!(
                waited < 600,
                "the move did not finish after a kill at {step}"
            );
            waited += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(per_shard.len(), shards_after, "after a kill at {step}");
        assert_eq!(per_shard.iter().sum::<i64>(), 3000);
        assert_eq!(
            checksum(&c, i64::MAX).await,
            before,
            "after a kill at {step}"
        );
        // Every row is on its owner: a search fixing the key reads that
        // key's shard alone, and finds it.
        for id in (0..3000i64).step_by(7) {
            let found = c
                .query(
                    &format!(
                        "SELECT id FROM t WHERE id = {id} ORDER BY emb <-> '[0,0,0,0,0,0,0,0]' LIMIT 1"
                    ),
                    &[],
                )
                .await
                .expect("lookup");
            assert_eq!(found.len(), 1, "row {id} after a kill at {step}");
        }
        let datasets = dir
            .path()
            .join("tables")
            .read_dir()
            .expect("tables")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".lance"))
            })
            .count();
        assert_eq!(datasets, shards_after, "after a kill at {step}");
        // Writable, and movable again.
        c.batch_execute("INSERT INTO t VALUES (5000, 1, '[1,1,1,1,1,1,1,1]')")
            .await
            .expect("insert");
        c.batch_execute("ALTER TABLE t SET (shards = 3)")
            .await
            .expect("move again");
        assert_eq!(count(&c, "t").await, 3001);
        server.start_kill().expect("stop");
        let _ = server.wait().await;
    }
}
