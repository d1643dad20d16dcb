//! The result cache and `quiver_caches()`: a repeated read is answered from
//! the cache (the counters say so), a committed write to a table it read —
//! through the write-ahead log, a DELETE, a write to a subquery's table —
//! makes the next read see the new rows, and what may not be cached
//! (volatile calls, a block's own writes, `quiver.result_cache = off`) is not.

use std::collections::HashMap;
use std::time::Duration;

use quiver::Config;

use crate::common::{TempDir, Vector, connect, copy_text, random_vectors, vector_text};

/// `quiver_caches()`: (hits, misses, entries, bytes) by cache.
type Figures = (Option<i64>, Option<i64>, Option<i64>, i64);

async fn caches(c: &tokio_postgres::Client) -> HashMap<String, Figures> {
    let rows = c
        .query(
            "SELECT cache, hits, misses, entries, bytes, capacity FROM quiver_caches()",
            &[],
        )
        .await
        .expect("quiver_caches");
    rows.iter()
        .map(|r| {
            assert!(r.get::<_, i64>(5) >= 0);
            (
                r.get::<_, String>(0),
                (r.get(1), r.get(2), r.get(3), r.get(4)),
            )
        })
        .collect()
}

/// The result cache's (hits, misses).
async fn results(c: &tokio_postgres::Client) -> (i64, i64) {
    let all = caches(c).await;
    let r = all.get("results").expect("a results row");
    (r.0.expect("hits"), r.1.expect("misses"))
}

/// The ids a simple-protocol query returns, in order.
async fn ids(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    c.simple_query(sql)
        .await
        .expect(sql)
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect()
}

async fn start(dir: &TempDir, ttl: &str) -> quiver::RunningServer {
    let mut cfg = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        metrics: crate::common::metrics_on_any_port(),
        ..Config::default()
    };
    cfg.cache.result_ttl = ttl.into();
    // No timed flush of the logged rows: a flush is a new Lance version,
    // which would make entries unreachable at moments the test cannot see.
    cfg.storage.log_flush_interval = "1h".into();
    quiver::start(&cfg).await.expect("server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_reads_come_from_the_result_cache_until_a_write() {
    let dir = TempDir::new("result-cache");
    let server = start(&dir, "30s").await;
    let c = connect(&server).await;
    let other = connect(&server).await;
    c.batch_execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, cat int, emb vector(8));
         CREATE TABLE u (cat int)",
    )
    .await
    .expect("tables");
    let vectors = random_vectors(500, 8, 7);
    let mut payload = String::new();
    for (i, v) in vectors.iter().enumerate() {
        payload.push_str(&format!("{i}\t{}\t{}\n", i % 10, vector_text(v)));
    }
    copy_text(&c, "COPY t FROM STDIN", payload).await;
    c.batch_execute("INSERT INTO u VALUES (3)")
        .await
        .expect("u");
    let q = vector_text(&vectors[42]);
    let search = format!("SELECT id FROM t ORDER BY emb <-> '{q}' LIMIT 5");
    // The same statement spelled differently: one cache entry.
    let respelled = format!("select   id\n  FROM t order BY emb <-> '{q}'   limit 5");

    let (h0, m0) = results(&c).await;
    assert_eq!((h0, m0), (0, 0), "nothing read yet");
    let first = ids(&c, &search).await;
    assert_eq!(first[0], "42");
    assert_eq!(results(&c).await, (0, 1), "the first read runs");
    assert_eq!(ids(&c, &respelled).await, first);
    assert_eq!(results(&c).await, (1, 1), "the repeat is a hit");
    // Another session shares the entry.
    assert_eq!(ids(&other, &search).await, first);
    assert_eq!(results(&c).await, (2, 1));
    let all = caches(&c).await;
    let r = &all["results"];
    assert!(r.2 >= Some(1) && r.3 > 0, "an entry is held: {r:?}");
    for name in ["chunks", "fresh", "lance_index", "lance_metadata"] {
        assert!(
            all.contains_key(name),
            "quiver_caches() lists {name}: {all:?}"
        );
    }

    // A one-row INSERT (acknowledged through the log, not yet in Lance)
    // makes the entry unreachable: the new nearest row shows at once.
    c.batch_execute(&format!("INSERT INTO t VALUES (1000, 1, '{q}')"))
        .await
        .expect("insert");
    let after = ids(&c, &search).await;
    assert!(after[..2].contains(&"1000".to_string()), "{after:?}");
    assert_eq!(results(&c).await, (2, 2), "a miss after the write");
    assert_eq!(ids(&c, &search).await, after);
    assert_eq!(results(&c).await, (3, 2));

    // A DELETE too.
    c.batch_execute("DELETE FROM t WHERE id = 1000")
        .await
        .expect("delete");
    assert_eq!(ids(&c, &search).await, first);
    assert_eq!(results(&c).await, (3, 3));

    // A prepared statement with a vector parameter (the generic plan path):
    // the parameter value is part of the key.
    let stmt = c
        .prepare("SELECT id FROM t ORDER BY emb <-> $1 LIMIT 5")
        .await
        .expect("prepare");
    let by_param = |v: &[f32]| {
        let stmt = stmt.clone();
        let c = &c;
        let v = Vector(v.to_vec());
        async move {
            c.query(&stmt, &[&v])
                .await
                .expect("search")
                .iter()
                .map(|r| r.get::<_, i64>(0))
                .collect::<Vec<_>>()
        }
    };
    let a = by_param(&vectors[42]).await;
    assert_eq!(a[0], 42);
    let b = by_param(&vectors[7]).await;
    assert_eq!(b[0], 7);
    assert_eq!(
        results(&c).await,
        (3, 5),
        "two parameter values, two misses"
    );
    assert_eq!(by_param(&vectors[42]).await, a);
    assert_eq!(by_param(&vectors[7]).await, b);
    assert_eq!(results(&c).await, (5, 5));

    // Not cached: volatile calls, catalog reads.
    for _ in 0..2 {
        c.simple_query("SELECT id, random() FROM t LIMIT 1")
            .await
            .expect("random");
        c.simple_query("SELECT count(*) FROM pg_class")
            .await
            .expect("catalog");
    }
    assert_eq!(
        results(&c).await,
        (5, 5),
        "volatile and catalog reads bypass"
    );

    // Switched off for the session: neither looked up nor counted.
    c.batch_execute("SET quiver.result_cache = off")
        .await
        .expect("off");
    assert_eq!(ids(&c, &search).await, first);
    assert_eq!(results(&c).await, (5, 5));
    c.batch_execute("RESET quiver.result_cache")
        .await
        .expect("on");

    // Search knobs are part of the key.
    c.batch_execute("SET quiver.ef = 16").await.expect("ef");
    ids(&c, &search).await;
    assert_eq!(results(&c).await, (5, 6));
    c.batch_execute("RESET quiver.ef").await.expect("ef");
    ids(&c, &search).await;
    assert_eq!(results(&c).await, (6, 6));

    // A block that wrote reads its own rows, not the cache; after its
    // ROLLBACK the cached rows are still the table's.
    c.batch_execute(&format!("BEGIN; INSERT INTO t VALUES (2000, 1, '{q}')"))
        .await
        .expect("begin");
    let own = ids(&c, &search).await;
    assert!(own[..2].contains(&"2000".to_string()), "{own:?}");
    c.batch_execute("ROLLBACK").await.expect("rollback");
    // (The block's first write flushed the table's logged rows to Lance: a
    // new Lance version with the same rows, which keeps the entry.)
    assert_eq!(ids(&c, &search).await, first);
    assert_eq!(ids(&c, &search).await, first);
    let (h, m) = results(&c).await;
    assert_eq!((h, m), (8, 6), "hits after the ROLLBACK");

    // A table read only by a subquery is tracked too.
    let sub = "SELECT count(*) FROM t WHERE cat IN (SELECT cat FROM u)";
    assert_eq!(ids(&c, sub).await, vec!["50"]);
    assert_eq!(ids(&c, sub).await, vec!["50"]);
    assert_eq!(results(&c).await, (h + 1, m + 1));
    c.batch_execute("INSERT INTO u VALUES (4)")
        .await
        .expect("u");
    assert_eq!(ids(&c, sub).await, vec!["100"]);
    assert_eq!(results(&c).await, (h + 1, m + 2));

    // DDL makes older entries unreachable (a new index may change a search).
    c.batch_execute("CREATE INDEX ON t (cat)")
        .await
        .expect("index");
    assert_eq!(ids(&c, &search).await, first);
    assert_eq!(results(&c).await, (h + 1, m + 3));
    drop(server);
}

/// A flush moves logged rows into a new Lance version without changing the
/// table's rows: the cached results stay reachable, and the next write
/// still makes them unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_of_logged_rows_keeps_cached_results() {
    let dir = TempDir::new("result-flush");
    let server = start(&dir, "30s").await;
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE t (id int, v int); INSERT INTO t VALUES (1, 10), (2, 20)")
        .await
        .expect("table");
    let shard = server.db.engine.table("t").expect("t").shards()[0].clone();
    assert_eq!(shard.tail_rows(), 2, "the rows are in the log");
    let q = "SELECT sum(v) FROM t";
    assert_eq!(ids(&c, q).await, vec!["30"]);
    assert_eq!(ids(&c, q).await, vec!["30"]);
    assert_eq!(results(&c).await, (1, 1));
    let before = shard.snapshot().dataset.version().version;
    shard.flush().await.expect("flush");
    assert_eq!(shard.tail_rows(), 0);
    assert!(
        shard.snapshot().dataset.version().version > before,
        "a new Lance version"
    );
    assert_eq!(ids(&c, q).await, vec!["30"]);
    assert_eq!(results(&c).await, (2, 1), "the flush kept the entry");
    c.batch_execute("INSERT INTO t VALUES (3, 30)")
        .await
        .expect("insert");
    assert_eq!(ids(&c, q).await, vec!["60"]);
    assert_eq!(results(&c).await, (2, 2), "the write made it unreachable");
    shard.flush().await.expect("flush");
    c.batch_execute("DELETE FROM t WHERE id = 1")
        .await
        .expect("delete");
    assert_eq!(ids(&c, q).await, vec!["50"]);
    assert_eq!(results(&c).await, (2, 3), "a DELETE after a flush too");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_results_expire_after_their_ttl() {
    let dir = TempDir::new("result-ttl");
    let server = start(&dir, "1s").await;
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE t (id int, v int); INSERT INTO t VALUES (1, 10), (2, 20)")
        .await
        .expect("table");
    let q = "SELECT sum(v) FROM t";
    assert_eq!(ids(&c, q).await, vec!["30"]);
    assert_eq!(ids(&c, q).await, vec!["30"]);
    assert_eq!(results(&c).await, (1, 1));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ids(&c, q).await, vec!["30"]);
    assert_eq!(results(&c).await, (1, 2), "expired: run again");
    drop(server);
}

/// Rows a search's rescoring read from Lance, and the chunks it loaded.
fn loaded(server: &quiver::RunningServer) -> (u64, u64) {
    let s = server.db.engine.chunk_stats();
    (s.rows_loaded, s.loads)
}

/// A table that becomes hot after another filled the chunk cache gets in:
/// its first ANN searches read only the rows they rescore (not whole
/// chunks), and once its chunks were asked for enough rows they are loaded,
/// evicting the idle table's, after which its searches read nothing from
/// Lance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_that_becomes_hot_gets_into_a_full_chunk_cache() {
    let dir = TempDir::new("chunk-admission");
    let mut cfg = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        metrics: crate::common::metrics_on_any_port(),
        ..Config::default()
    };
    // 16 MiB, 45 % for chunks: 7.2 MB, room for three 2 MiB vector chunks.
    cfg.cache.memory = "16MiB".into();
    let server = quiver::start(&cfg).await.expect("server starts");
    let c = connect(&server).await;
    c.batch_execute(
        "SET quiver.result_cache = off;
         CREATE TABLE idle (id bigint, bucket int, emb vector(64));
         CREATE TABLE hot (id bigint, bucket int, emb vector(64))",
    )
    .await
    .expect("tables");
    let chunk = quiver_engine::chunks::CHUNK_ROWS as usize;
    let idle = random_vectors(4 * chunk, 64, 3);
    copy_text(
        &c,
        "COPY idle FROM STDIN",
        crate::common::copy_payload(&idle),
    )
    .await;
    let hot = random_vectors(2 * chunk, 64, 5);
    copy_text(&c, "COPY hot FROM STDIN", crate::common::copy_payload(&hot)).await;
    c.batch_execute(
        "CREATE INDEX hot_emb ON hot USING ivfflat (emb vector_l2_ops) WITH (lists = 4)",
    )
    .await
    .expect("index");
    // Exact searches of the idle table fill the cache with its chunks.
    for i in [1, 2] {
        let q = vector_text(&idle[i]);
        let got = ids(
            &c,
            &format!("SELECT id FROM idle ORDER BY emb <-> '{q}' LIMIT 3"),
        )
        .await;
        assert_eq!(got[0], i.to_string());
    }
    let capacity = server.db.engine.chunk_stats().capacity as i64;
    let full = caches(&c).await["chunks"];
    assert!(
        full.3 * 10 > capacity * 8,
        "the idle table fills the cache of {capacity} bytes: {full:?}"
    );

    let search = |i: usize| {
        let q = vector_text(&hot[i]);
        format!("SELECT id FROM hot ORDER BY emb <-> '{q}' LIMIT 10")
    };
    // The first search reads the rows it rescores, not their chunks.
    let before = loaded(&server);
    assert_eq!(ids(&c, &search(0)).await[0], "0");
    let after = loaded(&server);
    let read = after.0 - before.0;
    assert!(
        read > 0 && read < chunk as u64 && after.1 == before.1,
        "the first search read {read} rows in {} chunk loads",
        after.1 - before.1
    );
    // Searches go on; the hot table's chunks are let in.
    let mut i = 1;
    let mut quiet = 0;
    while quiet < 20 {
        assert!(i < 3000, "the hot table's rows are still read from Lance");
        let before = loaded(&server);
        assert_eq!(ids(&c, &search(i)).await[0], i.to_string());
        quiet = if loaded(&server).0 == before.0 {
            quiet + 1
        } else {
            0
        };
        i += 1;
    }
    let caches = caches(&c).await;
    let (hits, misses, entries, bytes) = caches["chunks"];
    assert!(
        hits > Some(0) && misses > Some(0) && entries > Some(0) && bytes > 0,
        "{:?}",
        caches["chunks"]
    );
    assert!(
        bytes <= capacity,
        "the cache stays in its capacity: {:?}",
        caches["chunks"]
    );
    drop(server);
}
