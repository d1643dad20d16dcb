//! Hash-sharded tables: a table of N Lance datasets answers exactly as a
//! table of one does (ids and distances, ties broken by the shard key), a
//! statement over several shards is seen whole or not at all, and survives a
//! crash whole or not at all.

use std::time::Duration;

use crate::common::{
    TempDir, client, connect, copy_text, count, explain, free_port, hits, random_vectors,
    spawn_command, spawn_server, spawn_server_with, start_server, vector_text,
};

/// COPY text rows `(id, cat, embedding)`; every 7th vector repeats the one
/// 7 rows before, so many rows tie at equal distances.
fn rows(n: usize, from: usize, seed: u64) -> (String, Vec<Vec<f32>>) {
    let mut vectors = random_vectors(n, 8, seed);
    for i in 7..n {
        if i % 7 == 0 {
            vectors[i] = vectors[i - 7].clone();
        }
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_table_answers_exactly_as_one_shard() {
    let dir = TempDir::new("sharded-exact");
    let server = start_server(dir.path()).await;
    let c = connect(&server).await;
    c.batch_execute(
        "CREATE TABLE one (id BIGINT, cat INT, emb VECTOR(8));
         CREATE TABLE four (id BIGINT, cat INT, emb VECTOR(8)) WITH (shards = 4, shard_key = id)",
    )
    .await
    .expect("create");
    let (payload, vectors) = rows(3000, 0, 5);
    for t in ["one", "four"] {
        // A COPY over every shard, a multi-row INSERT over several, one-row INSERTs.
        copy_text(&c, &format!("COPY {t} FROM STDIN"), payload.clone()).await;
        let (more, _) = rows(40, 10_000, 9);
        let values: Vec<String> = more
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                format!("({}, {}, '{}')", f[0], f[1], f[2])
            })
            .collect();
        c.batch_execute(&format!("INSERT INTO {t} VALUES {}", values.join(",")))
            .await
            .expect("insert");
        for i in 0..5 {
            c.batch_execute(&format!(
                "INSERT INTO {t} VALUES ({}, 3, '{}')",
                20_000 + i,
                vector_text(&vectors[i * 7])
            ))
            .await
            .expect("insert one");
        }
    }
    assert_eq!(count(&c, "one").await, 3045);
    assert_eq!(count(&c, "four").await, 3045);

    // Really four Lance datasets, each holding a share of the rows.
    let table = server.db.engine.table("four").expect("table");
    assert_eq!(table.shards().len(), 4);
    let datasets = std::fs::read_dir(dir.path().join("tables"))
        .expect("tables dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("four-") && n.ends_with(".lance") && e.path().join("_versions").is_dir()
        })
        .count();
    assert_eq!(datasets, 4, "four shard datasets on disk");
    for s in table.shards() {
        let rows = s.stats().rows;
        assert!((400..1300).contains(&rows), "a shard holds {rows} rows");
    }

    let check = async |c: &tokio_postgres::Client, what: &str| {
        for (qi, q) in [0usize, 7, 14, 100, 2999].into_iter().enumerate() {
            let q = vector_text(&vectors[q]);
            for (k, filter) in [(10, ""), (25, "WHERE cat = 3"), (7, "WHERE cat IN (0, 7)")] {
                let pg = |t: &str| {
                    format!(
                        "SELECT id, emb <-> '{q}' AS d FROM {t} {filter} ORDER BY emb <-> '{q}' LIMIT {k}"
                    )
                };
                let a = hits(c, &pg("one")).await;
                let b = hits(c, &pg("four")).await;
                assert_eq!(a.len(), k, "{what}: query {qi} {filter}");
                assert_eq!(a, b, "{what}: query {qi} k={k} {filter}");
                let vs = |t: &str| {
                    format!(
                        "SELECT id, _distance FROM vector_search('{t}', 'emb', '{q}', {k}) {filter}"
                    )
                };
                assert_eq!(hits(c, &vs("one")).await, hits(c, &vs("four")).await);
            }
        }
    };
    check(&c, "loaded").await;

    // Ties are really there: a repeated vector has 3045 / 7 twins.
    let q = vector_text(&vectors[0]);
    let tied = hits(
        &c,
        &format!("SELECT id, emb <-> '{q}' FROM four ORDER BY emb <-> '{q}' LIMIT 5"),
    )
    .await;
    assert!(tied.iter().all(|(_, d)| *d == 0.0), "{tied:?}");
    // Broken by the shard key: the smallest ids of the twins.
    assert_eq!(
        tied.iter().map(|r| r.0).collect::<Vec<_>>(),
        [0, 7, 14, 21, 28]
    );

    // EXPLAIN shows the shards read; a fixed key reads one.
    let plan = explain(
        &c,
        &format!("EXPLAIN SELECT id FROM four ORDER BY emb <-> '{q}' LIMIT 3"),
    )
    .await;
    assert!(plan.contains("shards=[0,1,2,3] of 4"), "{plan}");
    let plan = explain(
        &c,
        &format!("EXPLAIN SELECT id FROM four WHERE id = 42 ORDER BY emb <-> '{q}' LIMIT 3"),
    )
    .await;
    assert!(
        plan.contains("] of 4") && !plan.contains("shards=[0,1"),
        "{plan}"
    );
    let analyzed = explain(
        &c,
        &format!("EXPLAIN ANALYZE SELECT id FROM four ORDER BY emb <-> '{q}' LIMIT 3"),
    )
    .await;
    for s in 0..4 {
        assert!(analyzed.contains(&format!("shard {s}: ")), "{analyzed}");
    }

    // DELETE and UPDATE, by key (one shard) and over all; an UPDATE of the
    // key moves rows to their new shards.
    for t in ["one", "four"] {
        c.batch_execute(&format!(
            "DELETE FROM {t} WHERE id = 7;
             DELETE FROM {t} WHERE cat = 9 AND id < 500;
             UPDATE {t} SET id = id + 100000 WHERE id < 300 AND cat = 2;
             UPDATE {t} SET cat = 5 WHERE id = 14;
             DELETE FROM {t} WHERE id = 21 RETURNING id"
        ))
        .await
        .expect("delete / update");
    }
    assert_eq!(count(&c, "one").await, count(&c, "four").await);
    let moved = c
        .query_one("SELECT count(*) FROM four WHERE id >= 100000", &[])
        .await
        .expect("moved")
        .get::<_, i64>(0);
    assert_eq!(moved, 30);
    let per_shard: u64 = table.shards().iter().map(|s| s.stats().rows).sum();
    assert_eq!(per_shard as i64, count(&c, "four").await);
    check(&c, "after deletes and updates").await;

    // A statement whose filter fixes the key takes that key's shard only
    // (the other shards stay free for other writers); one that sets the
    // key takes every shard.
    {
        use datafusion::prelude::{col, lit};
        let filter = col("id").eq(lit(14i64));
        let key_shard = table.shards_for(Some(&filter));
        assert_eq!(key_shard.len(), 1);
        let wait = Some(std::time::Duration::from_millis(300));
        for (moves_rows, taken) in [(false, key_shard.clone()), (true, vec![0, 1, 2, 3])] {
            let w = table
                .begin_writes_for(Some(&filter), moves_rows)
                .await
                .expect("take");
            for (i, s) in table.shards().iter().enumerate() {
                let other = s.begin_writes(wait, None).await;
                assert_eq!(
                    other.is_err(),
                    taken.contains(&i),
                    "shard {i}, moves {moves_rows}"
                );
                if let Ok(o) = other {
                    o.rollback().await.expect("rollback");
                }
            }
            w.rollback().await.expect("rollback");
        }
    }

    // An index on every shard; exact search with it (nprobes over all lists).
    c.batch_execute(
        "CREATE INDEX four_emb ON four USING ivf_flat (emb) WITH (metric = 'l2', num_partitions = 4)",
    )
    .await
    .expect("index");
    for s in table.shards() {
        let names: Vec<String> = s
            .index_segments()
            .await
            .expect("indices")
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert!(names.contains(&"four_emb".to_string()), "{names:?}");
    }
    c.batch_execute("OPTIMIZE TABLE four; REINDEX INDEX four_emb")
        .await
        .expect("optimize, reindex");
    let q = vector_text(&vectors[100]);
    let plan = explain(
        &c,
        &format!("EXPLAIN SELECT id FROM four ORDER BY emb <-> '{q}' LIMIT 3"),
    )
    .await;
    assert!(plan.contains("index=four_emb"), "{plan}");
    assert_eq!(
        hits(
            &c,
            &format!("SELECT id, emb <-> '{q}' FROM four ORDER BY emb <-> '{q}' LIMIT 1")
        )
        .await[0]
            .1,
        0.0
    );

    // Sharding options are checked.
    for (sql, state) in [
        ("CREATE TABLE bad1 (id INT) WITH (shards = 0)", "22023"),
        (
            "CREATE TABLE bad2 (id INT) WITH (shards = 2, shard_key = nope)",
            "42703",
        ),
        (
            "CREATE TABLE bad3 (id INT) WITH (shards = 2, sharding = 'ivf')",
            "42P16",
        ),
        ("CREATE TABLE bad4 (id INT) WITH (colour = 2)", "22023"),
        ("CREATE TABLE bad5 (v VECTOR(2)) WITH (shards = 2)", "42P16"),
        ("ALTER TABLE four ADD COLUMN extra INT", "0A000"),
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(e.code().map(|c| c.code()), Some(state), "{sql}: {e}");
    }
}

/// `n` rows `(id, cat, emb)` around four far-apart centres in 8 dimensions
/// (row i near centre i % 4), as COPY text, and their vectors.
fn clustered(n: usize, from: usize, seed: u64) -> (String, Vec<Vec<f32>>) {
    let noise = random_vectors(n, 8, seed);
    let mut s = String::new();
    let mut vectors = Vec::with_capacity(n);
    for (i, mut v) in noise.into_iter().enumerate() {
        let id = from + i;
        v[id % 4] += 20.0;
        s.push_str(&format!("{id}\t{}\t{}\n", id % 10, vector_text(&v)));
        vectors.push(v);
    }
    (s, vectors)
}

/// Waits until ivf-sharded `table` is trained and its rows have moved.
async fn trained(server: &quiver::RunningServer, table: &str) {
    for _ in 0..300 {
        let def = server.db.engine.catalog().tables[table].clone();
        let s = def.sharding.expect("sharded");
        if s.centroids.is_some() && s.moving_from.is_none() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{table} was not trained within 30 s");
}

/// `sharding = 'ivf'`: rows wait on the pending shard until the table has
/// `train_rows` of them, then move to the shard of their nearest centroid;
/// a search reads the `quiver.shard_probes` nearest shards, and with all of
/// them answers exactly as one shard does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ivf_sharded_table_places_rows_by_centroid() {
    let dir = TempDir::new("sharded-ivf");
    let server = start_server(dir.path()).await;
    let c = connect(&server).await;
    c.batch_execute(
        "SET quiver.result_cache = off;
         CREATE TABLE one (id BIGINT, cat INT, emb VECTOR(8));
         CREATE TABLE ivf (id BIGINT, cat INT, emb VECTOR(8))
           WITH (shards = 4, sharding = 'ivf', train_rows = 1000)",
    )
    .await
    .expect("create");
    let (first, mut vectors) = clustered(600, 0, 41);
    for t in ["one", "ivf"] {
        copy_text(&c, &format!("COPY {t} FROM STDIN"), first.clone()).await;
    }
    // Not trained: every row on the pending shard, the only one searched.
    let table = server.db.engine.table("ivf").expect("table");
    let q = vector_text(&vectors[1]);
    let search = |t: &str, q: &str, k: usize, filter: &str| {
        format!("SELECT id, emb <-> '{q}' AS d FROM {t} {filter} ORDER BY emb <-> '{q}' LIMIT {k}")
    };
    let rows: Vec<u64> = table.shards().iter().map(|s| s.stats().rows).collect();
    assert_eq!(rows, [600, 0, 0, 0]);
    let plan = explain(&c, &format!("EXPLAIN {}", search("ivf", &q, 5, ""))).await;
    assert!(plan.contains("shards=[0] of 4"), "{plan}");
    assert_eq!(
        hits(&c, &search("one", &q, 10, "")).await,
        hits(&c, &search("ivf", &q, 10, "")).await
    );
    // Past train_rows: trained, and the rows moved to their centroids' shards.
    let (more, v2) = clustered(1400, 600, 43);
    vectors.extend(v2);
    for t in ["one", "ivf"] {
        copy_text(&c, &format!("COPY {t} FROM STDIN"), more.clone()).await;
    }
    c.batch_execute("OPTIMIZE TABLE ivf")
        .await
        .expect("optimize");
    trained(&server, "ivf").await;
    assert_eq!(count(&c, "ivf").await, 2000);
    let table = server.db.engine.table("ivf").expect("table");
    let rows: Vec<u64> = table.shards().iter().map(|s| s.stats().rows).collect();
    assert_eq!(rows, [500, 500, 500, 500], "one cluster a shard");
    // Each cluster on one shard: the probed shard holds a query's neighbours.
    let centroids = table.search_shards(None, Some(&vectors[2]), 1);
    assert_eq!(centroids.len(), 1);
    // The shards an EXPLAIN of `sql` lists.
    let probed = async |c: &tokio_postgres::Client, sql: &str| -> usize {
        let plan = explain(c, &format!("EXPLAIN {sql}")).await;
        let list = plan
            .split("shards=[")
            .nth(1)
            .and_then(|r| r.split("] of 4").next())
            .unwrap_or_else(|| panic!("no shard list: {plan}"));
        list.split(',').count()
    };
    assert_eq!(
        probed(&c, &search("ivf", &q, 5, "")).await,
        2,
        "two probes by default"
    );
    c.batch_execute("SET quiver.shard_probes = 1")
        .await
        .expect("set");
    assert_eq!(
        c.query_one("SHOW quiver.shard_probes", &[])
            .await
            .expect("show")
            .get::<_, String>(0),
        "1"
    );
    for i in [0usize, 1, 2, 3, 1234, 1999] {
        let q = vector_text(&vectors[i]);
        // Row i's cluster holds the ids of i's parity, so its cats have it too.
        let filter = format!("WHERE cat % 2 = {}", i % 2);
        for (k, filter) in [(10, ""), (5, filter.as_str())] {
            assert_eq!(
                hits(&c, &search("one", &q, k, filter)).await,
                hits(&c, &search("ivf", &q, k, filter)).await,
                "one probe: row {i} {filter}"
            );
        }
    }
    let plan = explain(&c, &format!("EXPLAIN {}", search("ivf", &q, 5, ""))).await;
    assert!(plan.contains("shard_probes=1"), "{plan}");
    assert_eq!(probed(&c, &search("ivf", &q, 5, "")).await, 1);
    // Every shard probed: exactly one shard's answers, for any query.
    c.batch_execute("SET quiver.shard_probes = 4")
        .await
        .expect("set");
    for (i, q) in random_vectors(5, 8, 77).iter().enumerate() {
        let q: Vec<f32> = q.iter().map(|x| x * 10.0).collect();
        let q = vector_text(&q);
        for (k, filter) in [(10, ""), (7, "WHERE cat IN (1, 2)")] {
            assert_eq!(
                hits(&c, &search("one", &q, k, filter)).await,
                hits(&c, &search("ivf", &q, k, filter)).await,
                "all probes: query {i} {filter}"
            );
        }
    }
    // A row written now goes to its centroid's shard; an UPDATE of its
    // vector moves it to the new centroid's shard.
    let mut near2 = vec![0.0f32; 8];
    near2[2] = 20.0;
    let mut near0 = vec![0.0f32; 8];
    near0[0] = 20.0;
    let shard_of = |v: &[f32]| table.search_shards(None, Some(v), 1)[0];
    let before: Vec<u64> = table.shards().iter().map(|s| s.stats().rows).collect();
    for t in ["one", "ivf"] {
        c.batch_execute(&format!(
            "INSERT INTO {t} VALUES (5000, 1, '{}')",
            vector_text(&near2)
        ))
        .await
        .expect("insert");
    }
    let after: Vec<u64> = table.shards().iter().map(|s| s.stats().rows).collect();
    assert_eq!(after[shard_of(&near2)], before[shard_of(&near2)] + 1);
    c.batch_execute("SET quiver.shard_probes = 1")
        .await
        .expect("set");
    let found = |v: Vec<f32>| {
        let q = vector_text(&v);
        let c = &c;
        async move {
            hits(
                c,
                &format!("SELECT id, emb <-> '{q}' FROM ivf ORDER BY emb <-> '{q}' LIMIT 1"),
            )
            .await[0]
                .0
        }
    };
    assert_eq!(found(near2.clone()).await, 5000);
    for t in ["one", "ivf"] {
        c.batch_execute(&format!(
            "UPDATE {t} SET emb = '{}' WHERE id = 5000",
            vector_text(&near0)
        ))
        .await
        .expect("update");
    }
    let moved: Vec<u64> = table.shards().iter().map(|s| s.stats().rows).collect();
    assert_eq!(moved[shard_of(&near0)], after[shard_of(&near0)] + 1);
    assert_eq!(moved[shard_of(&near2)], after[shard_of(&near2)] - 1);
    assert_eq!(found(near0.clone()).await, 5000);
    assert_ne!(found(near2.clone()).await, 5000);
    assert_eq!(count(&c, "ivf").await, 2001);
    // Centroids are trained once; ivf is chosen at CREATE TABLE.
    for (sql, state) in [
        ("ALTER TABLE ivf SET (shards = 8)", "0A000"),
        (
            "ALTER TABLE one SET (shards = 2, sharding = 'ivf')",
            "0A000",
        ),
        (
            "CREATE TABLE bad (id INT, v VECTOR(2)) WITH (shards = 2, train_rows = 9)",
            "22023",
        ),
        (
            "CREATE TABLE bad (id INT, v VECTOR(2)) WITH (shards = 2, sharding = 'ivf', shard_key = id)",
            "42P16",
        ),
        ("SET quiver.shard_probes = 0", "22023"),
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(e.code().map(|c| c.code()), Some(state), "{sql}: {e}");
    }
    // The centroids survive a restart.
    server.shutdown().await.expect("shutdown");
    let server = start_server(dir.path()).await;
    let c = connect(&server).await;
    c.batch_execute("SET quiver.result_cache = off; SET quiver.shard_probes = 1")
        .await
        .expect("set");
    for i in [5usize, 6, 7, 8] {
        let q = vector_text(&vectors[i]);
        assert_eq!(
            hits(&c, &search("one", &q, 10, "")).await,
            hits(&c, &search("ivf", &q, 10, "")).await,
            "after restart: row {i}"
        );
    }
    let table = server.db.engine.table("ivf").expect("table");
    let rows: u64 = table.shards().iter().map(|s| s.stats().rows).sum();
    assert_eq!(rows, 2001);
    server.shutdown().await.expect("shutdown");
}

/// `kill -9` while an ivf-sharded table is trained (the server aborts
/// once the catalog holds the centroids, or after the first step moving
/// rows off the pending shard): after the restart every row is readable
/// exactly once, the move finishes, and every row is on its centroid's
/// shard (a one-probe search for its own vector finds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ivf_training_killed_half_way_leaves_every_row_once() {
    for step in ["reshard:recorded", "reshard:step"] {
        let dir = TempDir::new("ivf-crash");
        let config = dir.path().join("quiver.toml");
        std::fs::write(&config, "[storage]\nreshard_step_rows = 200\n").expect("config");
        let config = config.display().to_string();
        let flags = ["--config", config.as_str()];
        let port = free_port();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_quiver"));
        command.env("QUIVER_CRASH_AT", step);
        let mut server = spawn_command(command, dir.path(), port, &flags).await;
        let c = client(port).await;
        c.batch_execute(
            "CREATE TABLE t (id BIGINT, cat INT, emb VECTOR(8))
               WITH (shards = 4, sharding = 'ivf', train_rows = 1000)",
        )
        .await
        .expect("create");
        let (payload, vectors) = clustered(3000, 0, 51);
        copy_text(&c, "COPY t FROM STDIN", payload).await;
        let before = c
            .query_one("SELECT count(*), sum(id)::BIGINT FROM t", &[])
            .await
            .expect("checksum");
        let before: (i64, i64) = (before.get(0), before.get(1));
        // The trainer finds the table due within a second, and dies.
        let status = tokio::time::timeout(Duration::from_secs(60), server.wait())
            .await
            .expect("the server did not die")
            .expect("wait");
        assert!(!status.success(), "the server did not die at {step}");

        let mut server = spawn_server_with(dir.path(), port, &flags).await;
        let c = client(port).await;
        let checksum = async |c: &tokio_postgres::Client| -> (i64, i64) {
            let r = c
                .query_one("SELECT count(*), sum(id)::BIGINT FROM t", &[])
                .await
                .expect("checksum");
            (r.get(0), r.get(1))
        };
        assert_eq!(checksum(&c).await, before, "at once after a kill at {step}");
        let mut waited = 0;
        loop {
            let moving: bool = c
                .query_one("SELECT bool_or(moving) FROM quiver_shards('t')", &[])
                .await
                .expect("quiver_shards")
                .get(0);
            if !moving {
                break;
            }
            assert!(
                waited < 600,
                "the move did not finish after a kill at {step}"
            );
            waited += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(checksum(&c).await, before, "after a kill at {step}");
        let rows: Vec<i64> = c
            .query("SELECT rows FROM quiver_shards('t') ORDER BY shard", &[])
            .await
            .expect("rows")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(rows, [750, 750, 750, 750], "after a kill at {step}");
        c.batch_execute("SET quiver.result_cache = off; SET quiver.shard_probes = 1")
            .await
            .expect("set");
        for id in (0..3000usize).step_by(97) {
            let q = vector_text(&vectors[id]);
            let found = hits(
                &c,
                &format!("SELECT id, emb <-> '{q}' FROM t ORDER BY emb <-> '{q}' LIMIT 1"),
            )
            .await;
            assert_eq!(found, [(id as i64, 0.0)], "row {id} after a kill at {step}");
        }
        server.start_kill().expect("stop");
        let _ = server.wait().await;
    }
}

/// A reader never sees part of a statement that wrote several shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_a_statement_over_several_shards_whole() {
    let dir = TempDir::new("sharded-atomic");
    let server = start_server(dir.path()).await;
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE t (id BIGINT, emb VECTOR(2)) WITH (shards = 3)")
        .await
        .expect("create");
    let reader = connect(&server).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let reads = tokio::spawn(async move {
        let mut seen = 0;
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let n = count(&reader, "t").await;
            assert_eq!(n % 50, 0, "a reader saw {n} rows: part of a statement");
            let s: i64 = reader
                .query_one(
                    "SELECT count(*) FROM vector_search('t', 'emb', '[0,0]', 5000)",
                    &[],
                )
                .await
                .expect("search")
                .get(0);
            assert_eq!(s % 50, 0, "a search saw {s} rows: part of a statement");
            seen += 1;
        }
        seen
    });
    for batch in 0..20 {
        let values: Vec<String> = (0..50)
            .map(|i| format!("({}, '[{i},{batch}]')", batch * 50 + i))
            .collect();
        c.batch_execute(&format!("INSERT INTO t VALUES {}", values.join(",")))
            .await
            .expect("insert");
    }
    c.batch_execute("DELETE FROM t WHERE id % 50 < 25 AND id < 500")
        .await
        .expect("delete");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reads.await.expect("reader");
    assert!(seen > 0);
    assert_eq!(count(&c, "t").await, 1000 - 250);
}

/// A crash inside a commit over several shards: before its record, no row
/// of the statement is there after the restart; after it, every row is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_a_commit_over_several_shards_keeps_it_whole_or_not_at_all() {
    for (step, expect) in [
        ("sharded_commit:written", 0),
        ("sharded_commit:recorded", 60),
    ] {
        let dir = TempDir::new("sharded-crash");
        let port = free_port();
        let mut server = spawn_server(dir.path(), port).await;
        let c = client(port).await;
        c.batch_execute(
            "CREATE TABLE t (id BIGINT, emb VECTOR(2)) WITH (shards = 4);
             INSERT INTO t VALUES (1000, '[1,1]')",
        )
        .await
        .expect("create");
        server.start_kill().expect("stop");
        let _ = server.wait().await;

        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_quiver"));
        command.env("QUIVER_CRASH_AT", step);
        let mut server = spawn_command(command, dir.path(), port, &[]).await;
        let c = client(port).await;
        let values: Vec<String> = (0..60).map(|i| format!("({i}, '[{i},0]')")).collect();
        let res = c
            .batch_execute(&format!("INSERT INTO t VALUES {}", values.join(",")))
            .await;
        assert!(
            res.is_err(),
            "acknowledged although the server died at {step}"
        );
        let status = server.wait().await.expect("wait");
        assert!(!status.success(), "the server did not die at {step}");

        let mut server = spawn_server(dir.path(), port).await;
        let c = client(port).await;
        assert_eq!(count(&c, "t").await, 1 + expect, "after a crash at {step}");
        let found: i64 = c
            .query_one(
                "SELECT count(*) FROM vector_search('t', 'emb', '[0,0]', 1000)",
                &[],
            )
            .await
            .expect("search")
            .get(0);
        assert_eq!(found, 1 + expect);
        // Writable again, over every shard.
        c.batch_execute(&format!("INSERT INTO t VALUES {}", values.join(",")))
            .await
            .expect("insert again");
        assert_eq!(count(&c, "t").await, 61 + expect);
        server.start_kill().expect("stop");
        let _ = server.wait().await;
        assert!(
            !dir.path()
                .join("wal")
                .read_dir()
                .expect("wal")
                .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".commit"))),
            "a commit record was left"
        );
    }
}
