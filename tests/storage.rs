//! The storage engine's costs: a write costs the next search what it wrote
//! (rows read from Lance, counted by the chunk cache), never a reload of the
//! table; a table several times the memory budget answers every kind of
//! search correctly while the server's peak RSS stays near the budget.

use crate::common::{
    TempDir, client, connect, copy_payload, copy_text, count, free_port, random_vectors,
    spawn_server_with, start_server, start_server_with_storage, vector_text,
};

async fn ids(c: &tokio_postgres::Client, sql: &str) -> Vec<i64> {
    c.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_costs_the_next_search_what_it_wrote() {
    let dir = TempDir::new("write-cost");
    let server = start_server(dir.path()).await;
    let engine = server.db.engine.clone();
    let loaded = || engine.chunk_stats().rows_loaded;
    let c = connect(&server).await;
    let other = connect(&server).await;
    // The engine's own costs: no answer from the result cache.
    for s in [&c, &other] {
        s.batch_execute("SET quiver.result_cache = off")
            .await
            .expect("result cache off");
    }
    c.batch_execute("CREATE TABLE w (id BIGINT, bucket INT, embedding VECTOR(8))")
        .await
        .expect("create");
    let vectors = random_vectors(20_000, 8, 11);
    copy_text(&c, "COPY w FROM STDIN", copy_payload(&vectors)).await;

    let q = vector_text(&vectors[7]);
    let unfiltered = format!("SELECT id FROM vector_search('w', 'embedding', '{q}', 10)");
    let filtered =
        format!("SELECT id FROM vector_search('w', 'embedding', '{q}', 10) WHERE bucket = 7");
    assert_eq!(ids(&c, &unfiltered).await[0], 7);
    assert_eq!(ids(&c, &filtered).await[0], 7);
    // The first searches read the vector, bucket and id columns once.
    assert!(loaded() >= 40_000, "loaded {}", loaded());

    // Warm: nothing more is read.
    let before = loaded();
    ids(&c, &unfiltered).await;
    ids(&c, &filtered).await;
    assert_eq!(loaded() - before, 0, "a repeated search read rows");

    // INSERT of r far-away rows: acknowledged once in the write-ahead log,
    // searched from memory (no row read from Lance) until flushed; after the
    // flush (one Lance version) the next searches read those r rows' vectors
    // and the filter column of them, nothing of the 20,000 others.
    let far = vector_text(&[50.0; 8]);
    c.batch_execute(&format!(
        "INSERT INTO w VALUES (90001, 7, '{far}'), (90002, 7, '{far}'), (90003, 8, '{far}')"
    ))
    .await
    .expect("insert");
    let table = engine.table("w").expect("table");
    let table = table.shards()[0].clone();
    let before = loaded();
    let in_tail = table.tail_rows();
    assert_eq!(ids(&other, &unfiltered).await[0], 7);
    // 0 while the rows are in the tail; a background flush may come between.
    assert!(
        loaded() - before <= 3 - in_tail as u64,
        "search of a 3-row tail read {} rows from Lance",
        loaded() - before
    );
    table.flush().await.expect("flush");
    assert_eq!(table.tail_rows(), 0);
    let before = loaded();
    assert_eq!(ids(&other, &unfiltered).await[0], 7);
    assert_eq!(
        loaded() - before,
        3,
        "unfiltered search after a 3-row INSERT"
    );
    let before = loaded();
    assert_eq!(ids(&other, &filtered).await[0], 7);
    assert_eq!(loaded() - before, 3, "filtered search after a 3-row INSERT");

    // Read-your-writes on another connection: a row acknowledged to `c` is the
    // nearest for `other` at once; it costs its vector and its id.
    let near = vector_text(&vectors[7]);
    c.batch_execute(&format!("INSERT INTO w VALUES (90004, 7, '{near}')"))
        .await
        .expect("insert near");
    table.flush().await.expect("flush");
    let before = loaded();
    let got = ids(&other, &unfiltered).await;
    assert!(got[..2].contains(&90004), "new row not found: {got:?}");
    assert!(loaded() - before <= 2, "read {} rows", loaded() - before);

    // DELETE costs a deletion-vector read: no rows.
    c.batch_execute("DELETE FROM w WHERE id = 7 OR id = 90004")
        .await
        .expect("delete");
    let before = loaded();
    let got = ids(&other, &unfiltered).await;
    assert!(
        !got.contains(&7) && !got.contains(&90004),
        "deleted rows found: {got:?}"
    );
    let got = ids(&other, &filtered).await;
    assert!(!got.contains(&7), "deleted row passed the filter: {got:?}");
    assert_eq!(loaded() - before, 0, "search after a DELETE read rows");

    // With an index: the index build changes no data files, and a write after
    // it costs only the rows the index does not cover, read once by the write
    // itself (the flush prepares its version's fresh rows for the index the
    // searches opened, see Table::warm), not by the next search.
    c.batch_execute(
        "CREATE INDEX w_ivf ON w USING ivf_flat (embedding) WITH (num_partitions = 4);
         SET quiver.nprobes = 4",
    )
    .await
    .expect("index");
    let exact_before = ids(&c, &unfiltered).await;
    let before = loaded();
    assert_eq!(ids(&c, &unfiltered).await, exact_before);
    assert_eq!(loaded() - before, 0, "ANN search re-read rows");
    c.batch_execute(&format!(
        "INSERT INTO w VALUES (90005, 1, '{far}'), (90006, 1, '{far}')"
    ))
    .await
    .expect("insert after index");
    table.flush().await.expect("flush");
    assert_eq!(
        loaded() - before,
        2,
        "a 2-row INSERT after the index, flushed"
    );
    let before = loaded();
    assert_eq!(ids(&c, &unfiltered).await, exact_before);
    assert_eq!(loaded() - before, 0, "ANN search after the flushed INSERT");
    server.shutdown().await.expect("shutdown");
}

/// `VmHWM` (peak resident set) of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

const ROWS: usize = 240_000;
const DIM: usize = 64;
const TAG_BYTES: usize = 100;
/// Rows of the reference table: more than the exact-search limit, so its
/// filtered searches also take the prefiltered ANN branch.
const SMALL_ROWS: usize = 24_000;

/// Small-integer vectors (exact in f32, so brute force and the server agree
/// on every distance and tie).
fn int_vector(i: usize) -> Vec<i32> {
    let mut s = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..DIM)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 19) as i32 - 9
        })
        .collect()
}

fn l2(a: &[i32], b: &[i32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) * (x - y)) as f64)
        .sum::<f64>()
        .sqrt()
}

/// COPY text rows `(id, bucket, tag, embedding)` for `rows`, ids from `first`.
fn int_payload(first: usize, rows: &[Vec<i32>], tag: &str) -> String {
    let mut payload = String::with_capacity(rows.len() * (DIM * 3 + TAG_BYTES + 16));
    for (j, v) in rows.iter().enumerate() {
        let id = first + j;
        payload.push_str(&format!("{id}\t{}\t{tag}\t{}\n", id % 100, int_text(v)));
    }
    payload
}

fn int_text(v: &[i32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// The k smallest true distances among the rows passing `pass`.
fn truth(all: &[Vec<i32>], q: &[i32], k: usize, pass: impl Fn(usize) -> bool) -> Vec<f64> {
    let mut d: Vec<f64> = (0..all.len())
        .filter(|&i| pass(i))
        .map(|i| l2(&all[i], q))
        .collect();
    d.sort_by(f64::total_cmp);
    d.truncate(k);
    d
}

/// How a search is judged against brute force.
#[derive(Clone, Copy)]
enum Expect {
    /// The k smallest true distances exactly (ties may pick either row).
    Exact,
    /// An ANN answer: at least this share of the ids are among the true top k
    /// (by distance, so a tie with the k-th counts).
    Recall(f64),
}

/// Runs a search returning ids and checks it against brute force; every id
/// must pass the filter.
async fn check_search(
    c: &tokio_postgres::Client,
    what: &str,
    sql: &str,
    all: &[Vec<i32>],
    q: &[i32],
    pass: impl Fn(usize) -> bool + Copy,
    expect: Expect,
) {
    let got = ids(c, sql).await;
    let want = truth(all, q, 10, pass);
    assert_eq!(got.len(), want.len(), "{what}: {got:?}");
    let mut dist: Vec<f64> = got
        .iter()
        .map(|&id| {
            assert!(pass(id as usize), "{what}: id {id} fails the filter");
            l2(&all[id as usize], q)
        })
        .collect();
    dist.sort_by(f64::total_cmp);
    match expect {
        Expect::Exact => {
            for (g, w) in dist.iter().zip(&want) {
                assert!(
                    (g - w).abs() < 1e-4,
                    "{what}: distances {dist:?}, want {want:?}"
                );
            }
        }
        Expect::Recall(min) => {
            let kth = want.last().copied().unwrap_or(0.0);
            let hits = dist.iter().filter(|d| **d <= kth + 1e-4).count();
            let recall = hits as f64 / want.len() as f64;
            assert!(
                recall >= min,
                "{what}: recall {recall}, distances {dist:?}, want {want:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_larger_than_the_budget_answers_within_it() {
    let dir = TempDir::new("bounded");
    let port = free_port();
    let budget: u64 = 40 << 20;
    let mut child = spawn_server_with(dir.path(), port, &["--cache-memory", "40MiB"]).await;
    let pid = child.id().expect("pid");
    let c = client(port).await;
    c.batch_execute("SELECT 1").await.expect("ping");
    let baseline = peak_rss(pid);

    c.batch_execute("CREATE TABLE b (id BIGINT, bucket INT, tag TEXT, embedding VECTOR(64))")
        .await
        .expect("create");
    let all: Vec<Vec<i32>> = (0..ROWS).map(int_vector).collect();
    let tag = "x".repeat(TAG_BYTES);
    for part in all.chunks(40_000).enumerate() {
        let (p, rows) = part;
        let payload = int_payload(p * 40_000, rows, &tag);
        copy_text(&c, "COPY b FROM STDIN", payload).await;
    }
    // A small table with the same columns: the reference for the server's
    // fixed working memory when every search path has run once.
    c.batch_execute("CREATE TABLE small (id BIGINT, bucket INT, tag TEXT, embedding VECTOR(64))")
        .await
        .expect("create small");
    let payload = int_payload(0, &all[..SMALL_ROWS], &tag);
    copy_text(&c, "COPY small FROM STDIN", payload).await;
    let after_load = peak_rss(pid);
    let table_bytes = (ROWS * (DIM * 4 + TAG_BYTES + 12)) as u64;
    assert!(
        table_bytes > 2 * budget,
        "the table must be larger than the budget"
    );

    let q = int_vector(ROWS + 1);
    let qt = int_text(&q);
    let vs = |k: usize, filter: &str| {
        format!("SELECT id FROM vector_search('b', 'embedding', '{qt}', {k}) {filter}")
    };
    // Exact: no index yet.
    check_search(&c, "exact", &vs(10, ""), &all, &q, |_| true, Expect::Exact).await;
    let f1 = |i: usize| i % 100 == 3;
    let f50 = |i: usize| i % 100 < 50;
    let not5 = |i: usize| i % 100 != 5;
    let bucket3 = vs(10, "WHERE bucket = 3");
    let bucket50 = vs(10, "WHERE bucket < 50");
    check_search(
        &c,
        "exact, 1% filter",
        &bucket3,
        &all,
        &q,
        f1,
        Expect::Exact,
    )
    .await;
    check_search(
        &c,
        "exact, 50% filter",
        &bucket50,
        &all,
        &q,
        f50,
        Expect::Exact,
    )
    .await;
    let pg = format!("SELECT id FROM b WHERE bucket <> 5 ORDER BY embedding <-> '{qt}' LIMIT 10");
    check_search(&c, "pgvector form", &pg, &all, &q, not5, Expect::Exact).await;
    let agg = c
        .query_one(
            "SELECT count(*), sum(bucket) FROM b WHERE tag LIKE 'x%'",
            &[],
        )
        .await
        .expect("aggregate");
    assert_eq!(agg.get::<_, i64>(0), ROWS as i64);
    assert_eq!(
        agg.get::<_, i64>(1),
        (0..ROWS).map(|i| (i % 100) as i64).sum::<i64>()
    );
    let join: i64 = c
        .query_one(
            "SELECT count(*) FROM b x JOIN b y ON x.id = y.id + 1 WHERE x.bucket = 0",
            &[],
        )
        .await
        .expect("join")
        .get(0);
    assert_eq!(join, (ROWS / 100 - 1) as i64);

    let after_exact = peak_rss(pid);
    // ANN: IVF_PQ (an index far smaller than the vectors), every partition
    // probed, candidates re-scored exactly.
    c.batch_execute(
        "CREATE INDEX b_ivf ON b USING ivf_pq (embedding) \
         WITH (num_partitions = 8, num_sub_vectors = 16);
         CREATE INDEX small_ivf ON small USING ivf_pq (embedding) \
         WITH (num_partitions = 8, num_sub_vectors = 16)",
    )
    .await
    .expect("index");
    let after_index = peak_rss(pid);

    // The query phase in a fresh process: what a restarted server holds while
    // it answers every kind of search (load and index build are transients
    // of the first process, reported above).
    drop(c);
    child.kill().await.expect("kill");
    let mut child = spawn_server_with(dir.path(), port, &["--cache-memory", "40MiB"]).await;
    let pid = child.id().expect("pid");
    let c = client(port).await;
    c.batch_execute("SELECT 1").await.expect("ping");
    let restarted = peak_rss(pid);
    let mut fixed = 0;
    let t0 = std::time::Instant::now();
    let first = ids(&c, &vs(10, "")).await;
    let first_answer = t0.elapsed();
    assert_eq!(first.len(), 10);
    c.batch_execute("SET quiver.nprobes = 8; SET quiver.refine_factor = 20")
        .await
        .expect("set");
    let small = &all[..SMALL_ROWS];
    // Every search path once over the small table: the fixed working memory.
    let on_small = |sql: &str| {
        sql.replace("'b'", "'small'")
            .replace("FROM b ", "FROM small ")
    };
    let ann = Expect::Recall(0.9);
    for table in ["small", "b"] {
        let rows = if table == "small" { small } else { &all[..] };
        let t = |sql: &str| {
            if table == "small" {
                on_small(sql)
            } else {
                sql.to_string()
            }
        };
        check_search(&c, "ANN", &t(&vs(10, "")), rows, &q, |_| true, ann).await;
        check_search(&c, "ANN, 50% filter", &t(&bucket50), rows, &q, f50, ann).await;
        check_search(
            &c,
            "ANN, 1% filter",
            &t(&bucket3),
            rows,
            &q,
            f1,
            Expect::Exact,
        )
        .await;
        check_search(&c, "pgvector form, ANN", &t(&pg), rows, &q, not5, ann).await;
        let l1 = t(&format!(
            "SELECT id FROM vector_search('b', 'embedding', '{qt}', 10, 'l1') WHERE bucket < 90"
        ));
        assert_eq!(
            ids(&c, &l1).await.len(),
            10,
            "exact l1 search (no index for l1)"
        );
        for n in 0..10 {
            let q = int_vector(ROWS + 100 + n);
            let sql = t(&format!(
                "SELECT id FROM vector_search('b', 'embedding', '{}', 10)",
                int_text(&q)
            ));
            check_search(&c, "ANN, other queries", &sql, rows, &q, |_| true, ann).await;
        }
        let agg: i64 = c
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE tag LIKE 'x%'"),
                &[],
            )
            .await
            .expect("aggregate")
            .get(0);
        assert_eq!(agg, rows.len() as i64);
        if table == "small" {
            fixed = peak_rss(pid);
        }
    }
    let peak = peak_rss(pid);
    eprintln!(
        "bounded memory: budget {} MiB, table ~{} MiB; first process peak RSS: at start {} MiB, \
         after load {} MiB, after exact searches {} MiB, after index build {} MiB; \
         restarted: {} MiB at start, {} MiB after every search kind on a {}-row table, \
         {} MiB after the same on the {}-row table; first answer after restart {:?}",
        budget >> 20,
        table_bytes >> 20,
        baseline >> 20,
        after_load >> 20,
        after_exact >> 20,
        after_index >> 20,
        restarted >> 20,
        fixed >> 20,
        SMALL_ROWS,
        peak >> 20,
        ROWS,
        first_answer
    );
    // What the large table adds over the small one stays within the budget
    // (plus a margin for its larger per-query buffers: filter masks, row lists).
    assert!(
        peak < fixed + budget + (24 << 20),
        "peak RSS {} MiB on the large table, {} MiB on the small one, budget {} MiB",
        peak >> 20,
        fixed >> 20,
        budget >> 20
    );
    // Loading in 40,000-row COPYs never holds the table on top of the budget.
    // (The index build's peak, printed above, is reported, not bounded: Lance
    // reads the whole column to train and encode.)
    assert!(
        after_load < baseline + budget + table_bytes,
        "load peak RSS {} MiB",
        after_load >> 20
    );
    child.kill().await.expect("kill");
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// (id, distance × 10⁵ rounded) of each query's rows.
async fn answers(c: &tokio_postgres::Client, queries: &[String]) -> Vec<Vec<(i64, i64)>> {
    let mut out = Vec::new();
    for q in queries {
        let rows = c.query(q.as_str(), &[]).await.expect("search");
        out.push(
            rows.iter()
                .map(|r| {
                    (
                        r.get::<_, i64>(0),
                        (r.get::<_, f64>(1) * 1e5).round() as i64,
                    )
                })
                .collect(),
        );
    }
    out
}

/// Trickle writes that are Lance commits (one-row COPYs: one-row INSERTs
/// go through the write-ahead log and reach Lance a flush at a time) make a
/// fragment per statement; compaction (in the
/// background, and by OPTIMIZE TABLE) merges them with the same answers and
/// the index still used, and cleanup removes old versions except those a
/// reader holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_answers_and_cleanup_spares_pinned_versions() {
    let dir = TempDir::new("compact");
    let storage = quiver::config::StorageConfig {
        version_retention: "0".into(),
        ..Default::default()
    };
    let server = start_server_with_storage(dir.path(), storage).await;
    let engine = server.db.engine.clone();
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE t (id BIGINT, bucket INT, embedding VECTOR(8))")
        .await
        .expect("create");
    let vectors = random_vectors(2_200, 8, 21);
    copy_text(&c, "COPY t FROM STDIN", copy_payload(&vectors[..2_000])).await;
    c.batch_execute(
        "CREATE INDEX t_ivf ON t USING ivf_flat (embedding) WITH (num_partitions = 2);
         SET quiver.nprobes = 2",
    )
    .await
    .expect("index");
    let table = engine.table("t").expect("table");
    let table = table.shards()[0].clone();
    // A reader holding the version before the trickle writes.
    let held = table.view().await.expect("view");
    let held_version = held.version;
    for (i, v) in vectors[2_000..].iter().enumerate() {
        let id = 2_000 + i;
        let row = format!("{id}\t{}\t{}\n", id % 100, vector_text(v));
        copy_text(&c, "COPY t FROM STDIN", row).await;
    }
    c.batch_execute("DELETE FROM t WHERE id % 7 = 0")
        .await
        .expect("delete");
    let queries: Vec<String> = (0..5)
        .map(|i| {
            let q = vector_text(&vectors[i * 311]);
            let filter = if i % 2 == 0 { "" } else { "WHERE bucket < 30" };
            format!("SELECT id, _distance FROM vector_search('t', 'embedding', '{q}', 10) {filter}")
        })
        .collect();
    // 201 fragments were written; background compaction merges them (and
    // is waited for, so that OPTIMIZE and the version listing below do not
    // race a background pass).
    let mut fragments = table.dataset().fragments().len();
    for _ in 0..300 {
        if fragments < 50 && !table.housekeeping_running() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        fragments = table.dataset().fragments().len();
    }
    assert!(
        fragments < 50,
        "no background compaction: {fragments} fragments"
    );
    let before = answers(&c, &queries).await;
    c.batch_execute("OPTIMIZE TABLE t").await.expect("optimize");
    let ds = table.dataset();
    // The indexed fragment and the trickle-written ones are never merged
    // (Lance bins only adjacent fragments covered by the same indexes), and
    // the indexed one, rewritten without its deleted rows, can come to lie
    // between small ones (observed under CPU load): one small fragment on
    // each side of it at most.
    assert!(
        ds.fragments().len() <= 3,
        "fragments after OPTIMIZE: {:?}",
        ds.fragments()
            .iter()
            .map(|f| (f.id, f.physical_rows))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        answers(&c, &queries).await,
        before,
        "answers changed by compaction"
    );
    assert_eq!(crate::common::count(&c, "t").await, 2_200 - 315);
    let plan = crate::common::explain(&c, &format!("EXPLAIN {}", queries[0])).await;
    assert!(plan.contains("index=t_ivf"), "{plan}");
    // Cleanup (retention 0) removed old versions but the one a reader holds.
    let versions: Vec<u64> = ds
        .versions()
        .await
        .expect("versions")
        .iter()
        .map(|v| v.version)
        .collect();
    assert!(
        versions.contains(&held_version),
        "pinned version removed: {versions:?}"
    );
    assert!(versions.len() <= 3, "old versions kept: {versions:?}");
    // The held version still answers from its own files.
    let q: Vec<f32> = vectors[5].clone();
    let plan = engine.plan_search("t", "embedding", None).expect("plan");
    let hits = quiver_engine::search::run(held, &plan, &q, 3, None, &Default::default())
        .await
        .expect("search the held version");
    assert_eq!(hits.rows.len(), 3);
    drop(hits);
    // With the reader gone, the next cleanup removes its version too.
    c.batch_execute("OPTIMIZE TABLE t")
        .await
        .expect("optimize again");
    let versions = table.dataset().versions().await.expect("versions");
    assert!(
        versions.iter().all(|v| v.version != held_version),
        "unpinned version kept"
    );
    let bytes = dir_bytes(dir.path());
    assert!(bytes > 0);
    server.shutdown().await.expect("shutdown");
}

/// Rows written after an index build are folded into it as delta segments
/// of about a thousand rows, and the deltas are merged so that their count
/// stays bounded (each is searched by every query): after twelve updates the
/// index has at most the base and `MAX_INDEX_DELTAS` deltas, and the indexed
/// search (every partition probed, so exact) returns what a search without
/// an index returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_deltas_are_merged_and_keep_exact_answers() {
    use quiver_engine::housekeeping::{MAX_INDEX_DELTAS, UNINDEXED_ROWS};
    let dir = TempDir::new("deltas");
    let server = start_server(dir.path()).await;
    let engine = server.db.engine.clone();
    let c = connect(&server).await;
    create_with_twin(&c).await;
    let batch = UNINDEXED_ROWS + 100;
    let updates = 12;
    let vectors = random_vectors(2_000 + updates * batch, 8, 33);
    let payload = |from: usize, to: usize| -> String {
        (from..to)
            .map(|i| format!("{i}\t{}\t{}\n", i % 100, vector_text(&vectors[i])))
            .collect()
    };
    copy_text(&c, "COPY t FROM STDIN", payload(0, 2_000)).await;
    copy_text(&c, "COPY twin FROM STDIN", payload(0, 2_000)).await;
    c.batch_execute(
        "CREATE INDEX t_ivf ON t USING ivf_flat (embedding) WITH (num_partitions = 2);
         SET quiver.nprobes = 2",
    )
    .await
    .expect("index");
    let table = engine.table("t").expect("table");
    let table = table.shards()[0].clone();
    let segments = || async {
        let all = table.index_segments().await.expect("segments");
        all.iter()
            .find(|(n, _)| n == "t_ivf")
            .map(|(_, s)| *s)
            .expect("t_ivf")
    };
    assert_eq!(segments().await, 1);
    let mut most = 1;
    for u in 0..updates {
        let (from, to) = (2_000 + u * batch, 2_000 + (u + 1) * batch);
        copy_text(&c, "COPY t FROM STDIN", payload(from, to)).await;
        copy_text(&c, "COPY twin FROM STDIN", payload(from, to)).await;
        // Folds the new rows in (and compacts): what the background pass does
        // once UNINDEXED_ROWS rows are unindexed.
        c.batch_execute("OPTIMIZE TABLE t").await.expect("optimize");
        let n = segments().await;
        assert!(
            n <= 1 + MAX_INDEX_DELTAS,
            "update {u}: {n} segments, more than the base and {MAX_INDEX_DELTAS} deltas"
        );
        most = most.max(n);
    }
    assert_eq!(
        most,
        1 + MAX_INDEX_DELTAS,
        "the deltas never reached the bound"
    );
    // Every row is covered (by the base or a delta): nothing to fold in.
    assert!(
        !table
            .optimize_indexes(1, true)
            .await
            .expect("optimize indexes"),
        "an index update ran with no unindexed rows"
    );
    for i in 0..8 {
        let q = vector_text(&vectors[i * 1_777 + 5]);
        let search = |t: &str| {
            format!("SELECT id, _distance FROM vector_search('{t}', 'embedding', '{q}', 10)")
        };
        let indexed = id_distances(&c, &search("t")).await;
        assert_eq!(
            indexed,
            id_distances(&c, &search("twin")).await,
            "query {i}"
        );
        let plan = crate::common::explain(&c, &format!("EXPLAIN {}", search("t"))).await;
        assert!(plan.contains("index=t_ivf"), "{plan}");
    }
    assert_eq!(
        crate::common::count(&c, "t").await,
        (2_000 + updates * batch) as i64
    );
    server.shutdown().await.expect("shutdown");
}

/// A COPY of several pieces' worth of data is loaded piece by piece (memory
/// holds a piece, not the statement) and committed as one version; a bad
/// record in a later piece commits nothing of the earlier ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_copy_is_loaded_in_pieces_and_stays_atomic() {
    use tokio_postgres::error::SqlState;
    let dir = TempDir::new("copy-pieces");
    let server = start_server(dir.path()).await;
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE big (id BIGINT, bucket INT, embedding VECTOR(64))")
        .await
        .expect("create");
    let payload = copy_payload(&random_vectors(50_000, 64, 3));
    assert!(
        payload.len() > 2 * 16 * 1024 * 1024,
        "{} bytes is one piece",
        payload.len()
    );
    let table = server.db.engine.table("big").expect("table");
    let table = table.shards()[0].clone();
    let before = table.dataset().version().version;
    let copied = copy_text(&c, "COPY big FROM STDIN", payload.clone()).await;
    assert_eq!(copied, 50_000);
    assert_eq!(count(&c, "big").await, 50_000);
    assert_eq!(
        table.dataset().version().version,
        before + 1,
        "the COPY is one commit"
    );
    // A COPY that fails with `code` (after sending all its data).
    let copy_fails = async |sql: &str, payload: String, code: SqlState| {
        use futures::SinkExt;
        let sink = c.copy_in(sql).await.expect("copy in");
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(payload)).await.expect("send");
        let err = sink.finish().await.expect_err("the COPY fails");
        assert_eq!(err.code(), Some(&code), "{err}");
    };
    // The last record is bad: the pieces before it were written, none is committed.
    let bad = format!("{payload}oops\t1\t[1]\n");
    copy_fails(
        "COPY big FROM STDIN",
        bad,
        SqlState::INVALID_TEXT_REPRESENTATION,
    )
    .await;
    assert_eq!(count(&c, "big").await, 50_000);
    let hit: i64 = c
        .query_one("SELECT id FROM big WHERE id = 49999", &[])
        .await
        .expect("read")
        .get(0);
    assert_eq!(hit, 49_999);

    // A CHECK constraint: added over the 50,000 rows (all read, in batches),
    // then enforced on every piece, whether the COPY streams its rows to
    // the data files or writes them at the end as an INSERT (a left-out
    // column with a default).
    let refused = c
        .batch_execute("ALTER TABLE big ADD CONSTRAINT big_id_check CHECK (id < 49999)")
        .await
        .expect_err("a row breaks it");
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
    );
    c.batch_execute("ALTER TABLE big ADD CONSTRAINT big_id_check CHECK (id < 60000)")
        .await
        .expect("the rows pass");
    let late = format!("{payload}70000\t1\t{}\n", vector_text(&[0.5; 64]));
    copy_fails(
        "COPY big FROM STDIN",
        late.clone(),
        SqlState::CHECK_VIOLATION,
    )
    .await;
    c.batch_execute("ALTER TABLE big ADD COLUMN tag INT DEFAULT 7 CHECK (tag > 0)")
        .await
        .expect("add column");
    let partial = "COPY big (id, bucket, embedding) FROM STDIN";
    copy_fails(partial, late, SqlState::CHECK_VIOLATION).await;
    assert_eq!(count(&c, "big").await, 50_000);
}

/// A filter on a column with a scalar index is evaluated by Lance with the
/// index: the search reads no chunk of the filter column (only the vectors of
/// the matching rows), EXPLAIN says so, and the answers equal those of the
/// same rows without the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_on_a_scalar_indexed_column_uses_the_index() {
    let dir = TempDir::new("scalar-filter");
    let server = start_server(dir.path()).await;
    let engine = server.db.engine.clone();
    let c = connect(&server).await;
    let payload = copy_payload(&random_vectors(20_000, 8, 21));
    for t in ["plain", "indexed"] {
        c.batch_execute(&format!(
            "CREATE TABLE {t} (id BIGINT, bucket INT, embedding VECTOR(8))"
        ))
        .await
        .expect("create");
        copy_text(&c, &format!("COPY {t} FROM STDIN"), payload.clone()).await;
    }
    c.batch_execute("CREATE INDEX indexed_id ON indexed (id)")
        .await
        .expect("btree");
    let q = vector_text(&random_vectors(1, 8, 22)[0]);
    let search = |t: &str| {
        format!(
            "SELECT id, _distance FROM vector_search('{t}', 'embedding', '{q}', 10) \
             WHERE id < 100 AND bucket <> 7"
        )
    };
    let plan = crate::common::explain(&c, &format!("EXPLAIN {}", search("indexed"))).await;
    assert!(plan.contains("filter by scalar index on id"), "{plan}");
    let plan = crate::common::explain(&c, &format!("EXPLAIN {}", search("plain"))).await;
    assert!(!plan.contains("scalar index"), "{plan}");

    let mut answers = Vec::new();
    let mut loads = Vec::new();
    for t in ["plain", "indexed"] {
        let before = engine.chunk_stats().rows_loaded;
        let rows = c.query(&search(t), &[]).await.expect("search");
        loads.push(engine.chunk_stats().rows_loaded - before);
        answers.push(
            rows.iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, f64>(1)))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(answers[0].len(), 10);
    assert_eq!(answers[0], answers[1], "the index changes the answer");
    let chunk = quiver_engine::chunks::CHUNK_ROWS as u64;
    // Without the index: both filter columns over all rows, then the vectors'
    // first chunk (every match is among the first 100 rows).
    assert_eq!(loads[0], 2 * 20_000 + chunk, "unindexed filter loads");
    // With it: the first chunk of the vectors and of `id` (for the result
    // rows) only; no chunk of `bucket`, which Lance refines itself.
    assert_eq!(loads[1], 2 * chunk, "the indexed filter read filter chunks");
}

/// (id, distance) rows of a search, or (id, 0) of a plain query.
/// Tables `t` and `twin`, alike: one gets an index, the other answers exactly.
async fn create_with_twin(c: &tokio_postgres::Client) {
    c.batch_execute(
        "CREATE TABLE t (id BIGINT, bucket INT, embedding VECTOR(8));
         CREATE TABLE twin (id BIGINT, bucket INT, embedding VECTOR(8))",
    )
    .await
    .expect("create");
}

async fn id_distances(c: &tokio_postgres::Client, sql: &str) -> Vec<(i64, f64)> {
    c.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| (r.get(0), if r.len() > 1 { r.get(1) } else { 0.0 }))
        .collect()
}

/// Rows acknowledged through the write-ahead log and not yet flushed (the
/// tail, in memory) are found by every kind of read exactly as if they were
/// in Lance: counts, plain filters, joins, exact searches on the scalar-index
/// and the chunked filter paths, the ANN search with a prefilter (more than
/// 20,000 matching rows), unfiltered ANN and the pgvector form. Compared
/// with a twin table that holds the same rows all in Lance, before and after
/// the flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_in_the_log_tail_are_found_by_every_read() {
    let dir = TempDir::new("tail-reads");
    let storage = quiver::config::StorageConfig {
        // Nothing flushes but the test.
        log_flush_interval: "1h".into(),
        ..Default::default()
    };
    let server = start_server_with_storage(dir.path(), storage).await;
    let c = connect(&server).await;
    let base = random_vectors(30_000, 8, 31);
    for t in ["t", "twin"] {
        c.batch_execute(&format!(
            "CREATE TABLE {t} (id BIGINT, bucket INT, embedding VECTOR(8));"
        ))
        .await
        .expect("create");
        copy_text(&c, &format!("COPY {t} FROM STDIN"), copy_payload(&base)).await;
        c.batch_execute(&format!(
            "CREATE INDEX {t}_ivf ON {t} USING ivf_flat (embedding) WITH (num_partitions = 4);
             CREATE INDEX {t}_bucket ON {t} (bucket)"
        ))
        .await
        .expect("indexes");
    }
    c.batch_execute("SET quiver.nprobes = 4")
        .await
        .expect("set");
    let q = [0.5f32; 8];
    let qt = vector_text(&q);
    // 40 rows nearer to q than any other: one-row INSERTs into t (logged),
    // one COPY into the twin (Lance).
    let mut copy = String::new();
    for i in 0..40i64 {
        let mut v = q;
        v[0] += 0.001 * (i + 1) as f32;
        let (id, bucket, vt) = (900_000 + i, 6 + i % 3, vector_text(&v));
        c.batch_execute(&format!("INSERT INTO t VALUES ({id}, {bucket}, '{vt}')"))
            .await
            .expect("insert");
        copy.push_str(&format!("{id}\t{bucket}\t{vt}\n"));
    }
    copy_text(&c, "COPY twin FROM STDIN", copy).await;
    let table = server.db.engine.table("t").expect("table");
    let table = table.shards()[0].clone();
    assert_eq!(table.tail_rows(), 40);

    let reads = [
        "SELECT count(*) FROM {t}".to_string(),
        "SELECT id FROM {t} WHERE bucket = 7 ORDER BY id".to_string(),
        "SELECT id FROM {t} WHERE id >= 899990 ORDER BY id LIMIT 7".to_string(),
        "SELECT a.id FROM {t} a JOIN {t} b ON a.id = b.id + 1 WHERE b.bucket = 8 ORDER BY a.id"
            .to_string(),
        // Few rows pass, bucket has a btree: Lance's indexed scan plus the tail.
        format!(
            "SELECT id, _distance FROM vector_search('{{t}}', 'embedding', '{qt}', 10) \
             WHERE bucket = 7"
        ),
        // Chunked filter evaluation, exact (15,020 rows pass).
        format!(
            "SELECT id, _distance FROM vector_search('{{t}}', 'embedding', '{qt}', 10) \
             WHERE id % 2 = 0"
        ),
        // More than 20,000 rows pass: ANN with the filter as a prefilter.
        format!(
            "SELECT id, _distance FROM vector_search('{{t}}', 'embedding', '{qt}', 10) \
             WHERE bucket <> 7"
        ),
        format!("SELECT id, _distance FROM vector_search('{{t}}', 'embedding', '{qt}', 10)"),
        format!("SELECT id FROM {{t}} ORDER BY embedding <-> '{qt}' LIMIT 10"),
    ];
    let run_all = |table: &'static str| {
        let c = &c;
        let reads = &reads;
        async move {
            let mut out = Vec::new();
            for r in reads {
                out.push(id_distances(c, &r.replace("{t}", table)).await);
            }
            out
        }
    };
    let twin = run_all("twin").await;
    let tail = run_all("t").await;
    assert_eq!(table.tail_rows(), 40, "a read flushed the tail");
    for (i, r) in reads.iter().enumerate() {
        assert_eq!(tail[i], twin[i], "{r}: the tail's rows read differently");
    }
    // The nearest rows are the logged ones, on every search path.
    let logged = |rows: &Vec<(i64, f64)>| rows.iter().all(|(id, _)| *id >= 900_000);
    for (i, r) in reads.iter().enumerate().skip(4) {
        assert!(logged(&tail[i]), "{r}: {:?}", tail[i]);
    }
    assert_eq!(tail[0][0].0, 30_040);

    // Flushed: one Lance version, the same answers.
    let version = table.dataset().version().version;
    assert_eq!(table.flush().await.expect("flush"), 40);
    assert_eq!(table.tail_rows(), 0);
    assert!(table.dataset().version().version > version);
    let flushed = run_all("t").await;
    assert_eq!(flushed, tail, "the flush changed an answer");
    server.shutdown().await.expect("shutdown");
}

/// Rows written after an index build are searched by the coded scan of
/// fresh rows: the index handle of the version after the writes takes every
/// fresh fragment prepared (none left to exact scoring), and answers (every
/// partition probed) equal exact answers — after deletions too; an index
/// update folds the rows in and nothing is left to the scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_rows_are_found_by_the_coded_scan() {
    // L2 by |x|² − 2x·q, cosine on unit-length codes.
    fresh_rows_scenario("l2").await;
    fresh_rows_scenario("cosine").await;
}

async fn fresh_rows_scenario(metric: &str) {
    let dir = TempDir::new(&format!("fresh-{metric}"));
    let server = start_server(dir.path()).await;
    let engine = server.db.engine.clone();
    let c = connect(&server).await;
    create_with_twin(&c).await;
    let vectors = random_vectors(2_300, 8, 47);
    let payload: String = (0..2_000)
        .map(|i| format!("{i}\t{}\t{}\n", i % 100, vector_text(&vectors[i])))
        .collect();
    copy_text(&c, "COPY t FROM STDIN", payload.clone()).await;
    copy_text(&c, "COPY twin FROM STDIN", payload).await;
    c.batch_execute(
        &format!("CREATE INDEX t_ivf ON t USING ivf_flat (embedding) WITH (num_partitions = 2, metric = '{metric}');
         SET quiver.nprobes = 2"),
    )
    .await
    .expect("index");
    let search = |t: &str, i: usize| {
        let q = vector_text(&vectors[i]);
        format!(
            "SELECT id, _distance FROM vector_search('{t}', 'embedding', '{q}', 10, '{metric}')"
        )
    };
    for (i, v) in vectors.iter().enumerate().skip(2_000) {
        let row = format!("({i}, {}, '{}')", i % 100, vector_text(v));
        c.batch_execute(&format!(
            "INSERT INTO t VALUES {row}; INSERT INTO twin VALUES {row}"
        ))
        .await
        .expect("insert");
    }
    let table = engine.table("t").expect("table");
    let table = table.shards()[0].clone();
    table.flush().await.expect("flush");
    let lance_metric = quiver_engine::distance::Metric::parse(metric)
        .and_then(|m| m.lance())
        .expect("metric");
    let view = table.view().await.expect("view");
    let handle = view
        .ann("t_ivf", "embedding", lance_metric)
        .await
        .expect("ann");
    assert!(
        handle.unindexed_fragments.is_empty() && handle.fresh_fragment_count() > 0,
        "{handle:?}"
    );
    assert_eq!(
        table.fresh_rows(),
        (300, 0),
        "rows prepared / left to exact scoring"
    );
    drop((handle, view));
    let queries = [0, 5, 1_999, 2_000, 2_123, 2_299, 777, 2_250];
    let compare = |when: &'static str| {
        let c = &c;
        async move {
            for &i in &queries {
                assert_eq!(
                    id_distances(c, &search("t", i)).await,
                    id_distances(c, &search("twin", i)).await,
                    "{metric}, {when}: query {i}"
                );
            }
        }
    };
    compare("fresh rows prepared").await;
    c.batch_execute(
        "DELETE FROM t WHERE id >= 2000 AND id % 3 = 0; DELETE FROM twin WHERE id >= 2000 AND id % 3 = 0",
    )
    .await
    .expect("delete");
    compare("after deletions").await;
    c.batch_execute("OPTIMIZE TABLE t").await.expect("optimize");
    let view = table.view().await.expect("view");
    let handle = view
        .ann("t_ivf", "embedding", lance_metric)
        .await
        .expect("ann");
    assert_eq!(handle.fresh_fragment_count(), 0, "{handle:?}");
    assert_eq!(
        table.fresh_rows(),
        (0, 0),
        "prepared rows left after the fold-in"
    );
    drop((handle, view));
    compare("folded in").await;
}
