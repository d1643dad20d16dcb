//! Tables on the cold tier (an S3-compatible object store: moto, which
//! `.ci/run` starts) and moves between tiers: a cold table lives only in
//! the bucket, reads go through the local-SSD cache (its hit and GET
//! counters), survives a restart, answers as a hot copy does (sharded too),
//! moves hot ↔ cold while written, and a store that stops answering gives
//! SQLSTATE 58030 in bounded time while hot tables keep serving.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use quiver::Config;
use quiver::config::{ObjectStoreConfig, StorageConfig};

use crate::common::{TempDir, connect, copy_text, count, hits, http, random_vectors, vector_text};

/// The S3 endpoint of the moto server `.ci/run` started
/// (`QUIVER_TEST_S3_ENDPOINT`, e.g. `http://127.0.0.1:5999`).
fn s3_endpoint(test: &str) -> Option<String> {
    match std::env::var("QUIVER_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: QUIVER_TEST_S3_ENDPOINT is not set on CI"
            );
            eprintln!("{test}: no QUIVER_TEST_S3_ENDPOINT; skipped (.ci/run starts moto)");
            None
        }
    }
}

/// A new bucket, named for the test.
async fn bucket(endpoint: &str, tag: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("quiver-{tag}-{}-{n}-{nanos}", std::process::id());
    let name = &name[..name.len().min(60)];
    let (status, body) = http(endpoint, "PUT", &format!("/{name}")).await;
    assert_eq!(status, 200, "create bucket {name}: {body}");
    name.to_string()
}

/// The keys in `bucket` (moto lists up to 1,000 a page; the tests stay under).
async fn keys(endpoint: &str, bucket: &str) -> Vec<String> {
    let (status, body) = http(endpoint, "GET", &format!("/{bucket}?list-type=2")).await;
    assert_eq!(status, 200, "list {bucket}: {body}");
    body.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_string)
        .collect()
}

fn config(dir: &Path, endpoint: &str, bucket: &str) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".into(),
        storage: StorageConfig {
            cold_root: format!("s3://{bucket}/quiver"),
            // Old versions and a moved table's former files go at once.
            version_retention: "0".into(),
            ..StorageConfig::default()
        },
        object_store: ObjectStoreConfig {
            endpoint: endpoint.to_string(),
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
            allow_http: true,
            timeout: "3s".into(),
            connect_timeout: "1s".into(),
            retries: 1,
            retry_timeout: "3s".into(),
            ..ObjectStoreConfig::default()
        },
        metrics: crate::common::metrics_on_any_port(),
        ..Config::default()
    }
}

/// The local dataset folders of `table` (`tables/<table>-….lance`).
fn local_datasets(dir: &Path, table: &str) -> usize {
    std::fs::read_dir(dir.join("tables"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with(&format!("{table}-")) && n.ends_with(".lance")
                })
                .count()
        })
        .unwrap_or(0)
}

/// COPY payload `(id, cat, emb)` of `n` random 16-d vectors from `from`.
fn rows(n: usize, from: usize, seed: u64) -> (String, Vec<Vec<f32>>) {
    let vectors = random_vectors(n, 16, seed);
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

/// Tables `cold` (on the cold tier) and `hot` with the same `n` rows
/// (result cache off in this session); their vectors.
async fn cold_and_hot(c: &tokio_postgres::Client, n: usize) -> Vec<Vec<f32>> {
    c.batch_execute(
        "SET quiver.result_cache = off;
         CREATE TABLE cold (id BIGINT PRIMARY KEY, cat INT, emb VECTOR(16)) WITH (tier = 'cold');
         CREATE TABLE hot (id BIGINT PRIMARY KEY, cat INT, emb VECTOR(16))",
    )
    .await
    .expect("create");
    let (payload, vectors) = rows(n, 0, 11);
    for t in ["cold", "hot"] {
        copy_text(c, &format!("COPY {t} FROM STDIN"), payload.clone()).await;
    }
    vectors
}

/// Asserts tables `a` and `b` answer the same searches (filtered and not).
async fn same_answers(c: &tokio_postgres::Client, a: &str, b: &str, queries: &[Vec<f32>]) {
    for q in queries {
        let q = vector_text(q);
        for (k, filter) in [(10, ""), (20, "WHERE cat = 3")] {
            let sql = |t: &str| {
                format!(
                    "SELECT id, emb <-> '{q}' AS d FROM {t} {filter} ORDER BY emb <-> '{q}' LIMIT {k}"
                )
            };
            let (x, y) = (hits(c, &sql(a)).await, hits(c, &sql(b)).await);
            assert_eq!(x.len(), k, "{a} {filter}");
            assert_eq!(x, y, "{a} vs {b}, k={k} {filter}");
        }
    }
}

/// `(count, sum of ids, sum of cats)` of a table: an order-independent checksum.
async fn checksum(c: &tokio_postgres::Client, table: &str) -> (i64, i64, i64) {
    let r = c
        .query_one(
            &format!("SELECT count(*), sum(id)::BIGINT, sum(cat)::BIGINT FROM {table}"),
            &[],
        )
        .await
        .expect("checksum");
    (r.get(0), r.get(1), r.get(2))
}

/// The SSD cache's `(hits, misses, store_bytes)`.
async fn ssd(c: &tokio_postgres::Client) -> (i64, i64, i64) {
    let r = c
        .query_one(
            "SELECT hits, misses, store_bytes FROM quiver_caches() WHERE cache = 'ssd'",
            &[],
        )
        .await
        .expect("ssd row");
    (r.get(0), r.get(1), r.get(2))
}

async fn tier_of(c: &tokio_postgres::Client, table: &str) -> Vec<String> {
    c.query(
        &format!("SELECT tier FROM quiver_shards() WHERE table_name = '{table}' ORDER BY shard"),
        &[],
    )
    .await
    .expect("quiver_shards")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_table_lives_in_the_bucket_and_survives_a_restart() {
    let Some(endpoint) = s3_endpoint("cold table") else {
        return;
    };
    let bucket = bucket(&endpoint, "cold").await;
    let dir = TempDir::new("tier-cold");
    let cfg = config(dir.path(), &endpoint, &bucket);
    let server = quiver::start(&cfg).await.expect("start");
    let c = connect(&server).await;
    let vectors = cold_and_hot(&c, 3000).await;
    for t in ["cold", "hot"] {
        c.batch_execute(&format!(
            "INSERT INTO {t} VALUES (90001, 3, '{}')",
            vector_text(&vectors[5])
        ))
        .await
        .expect("insert");
    }
    assert_eq!(tier_of(&c, "cold").await, ["cold"]);
    assert_eq!(tier_of(&c, "hot").await, ["hot"]);
    // The cold table is in the bucket, under this data directory's id, and not on disk.
    assert_eq!(local_datasets(dir.path(), "cold"), 0);
    assert_eq!(local_datasets(dir.path(), "hot"), 1);
    let stored = keys(&endpoint, &bucket).await;
    assert!(
        stored
            .iter()
            .any(|k| k.starts_with("quiver/") && k.contains("/cold-") && k.contains("/_versions/")),
        "{stored:?}"
    );
    let queries: Vec<Vec<f32>> = [0, 5, 999, 2999]
        .iter()
        .map(|&i| vectors[i].clone())
        .collect();
    same_answers(&c, "cold", "hot", &queries).await;

    // CREATE INDEX on a cold table; searches use it and still agree.
    c.batch_execute(
        "CREATE INDEX ON cold USING hnsw (emb vector_l2_ops); SET hnsw.ef_search = 400",
    )
    .await
    .expect("index");
    let with_index = hits(
        &c,
        &format!(
            "SELECT id, emb <-> '{q}' FROM cold ORDER BY emb <-> '{q}' LIMIT 10",
            q = vector_text(&vectors[5])
        ),
    )
    .await;
    assert!(
        with_index.iter().any(|(id, _)| *id == 5) && with_index.iter().any(|(id, _)| *id == 90001)
    );
    let sums = checksum(&c, "cold").await;
    let filled = ssd(&c).await;
    assert!(filled.1 > 0, "reads went through the SSD cache: {filled:?}");
    // /metrics counts the requests that reached the store: a ranged GET
    // for every block the SSD cache fetched (and manifests beside them),
    // the files written, no failure.
    let text = crate::metrics::scrape(&server).await;
    let value = |series: &str| crate::metrics::value(&text, series);
    let gets = value(r#"quiver_object_store_requests_total{op="get",tier="cold"}"#);
    assert!(gets >= filled.1 as f64, "{gets} GETs, {filled:?}\n{text}");
    assert!(value(r#"quiver_object_store_bytes_total{op="get",tier="cold"}"#) > 0.0);
    let written = value(r#"quiver_object_store_bytes_total{op="put",tier="cold"}"#)
        + value(r#"quiver_object_store_bytes_total{op="upload_part",tier="cold"}"#);
    assert!(written > 0.0, "{text}");
    assert!(
        value(r#"quiver_object_store_request_seconds_count{op="get",tier="cold"}"#) > 0.0,
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("quiver_object_store_errors_total{kind=\"other\"")),
        "a request failed:\n{text}"
    );
    server.shutdown().await.expect("shutdown");

    // A restart opens it from the bucket. The memory caches start empty;
    // the SSD cache keeps its blocks, so the same reads send no data GET.
    let server = quiver::start(&cfg).await.expect("restart");
    let c = connect(&server).await;
    c.batch_execute("SET quiver.result_cache = off; SET hnsw.ef_search = 400")
        .await
        .expect("set");
    let opened = ssd(&c).await;
    assert_eq!((opened.0, opened.1), (0, 0), "{opened:?}");
    assert_eq!(checksum(&c, "cold").await, sums);
    let again = hits(
        &c,
        &format!(
            "SELECT id, emb <-> '{q}' FROM cold ORDER BY emb <-> '{q}' LIMIT 10",
            q = vector_text(&vectors[5])
        ),
    )
    .await;
    assert_eq!(again, with_index);
    let warm = ssd(&c).await;
    assert!(warm.0 > 0, "blocks read from the SSD cache: {warm:?}");
    assert_eq!(warm.1, 0, "no block fetched again: {warm:?}");
    assert_eq!(count(&c, "cold").await, 3001);
    same_answers(&c, "cold", "hot", &queries[..2]).await;
    // Written after the restart, read back; dropped, gone from the bucket.
    c.batch_execute("INSERT INTO cold VALUES (90002, 1, '[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]')")
        .await
        .expect("insert after restart");
    assert_eq!(count(&c, "cold").await, 3002);
    c.batch_execute("DROP TABLE cold").await.expect("drop");
    let left: Vec<String> = keys(&endpoint, &bucket)
        .await
        .into_iter()
        .filter(|k| k.contains("/cold-"))
        .collect();
    assert!(left.is_empty(), "a dropped cold table's files go: {left:?}");
    server.shutdown().await.expect("shutdown");
}

/// The config of a server whose data directory is `url` on the object
/// store, with `dir` as its local folder.
fn on_store(dir: &Path, endpoint: &str, bucket: &str, url: &str) -> Config {
    let mut cfg = config(dir, endpoint, bucket);
    cfg.data_dir = PathBuf::from(url);
    cfg.storage.cold_root = String::new();
    cfg.storage.local_dir = dir.display().to_string();
    cfg
}

/// The first `k` neighbours of `q` in `table`, with distances.
async fn nearest(c: &tokio_postgres::Client, table: &str, q: &[f32], k: usize) -> Vec<(i64, f64)> {
    let q = vector_text(q);
    hits(
        c,
        &format!("SELECT id, emb <-> '{q}' FROM {table} ORDER BY emb <-> '{q}' LIMIT {k}"),
    )
    .await
}

/// A data directory on the object store (`data_dir = "s3://bucket/db"`):
/// the catalog is kept beside the data as numbered versions written with
/// conditional puts, and the function modules too; the local folder keeps
/// only logs, hot tables and the SSD cache. A server started on a new,
/// empty local folder serves the same tables, rows, index and function
/// (the hot table, left in the old folder, gives 58030 and can be
/// dropped). A second server on the same store cannot overwrite a catalog
/// version the first wrote: its change is refused with 40001 and its new
/// table's files removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_on_s3_keeps_its_catalog_beside_the_data() {
    let Some(endpoint) = s3_endpoint("s3 data directory") else {
        return;
    };
    let bucket = bucket(&endpoint, "datadir").await;
    let url = format!("s3://{bucket}/db");
    let first = TempDir::new("tier-datadir-1");
    let server = quiver::start(&on_store(first.path(), &endpoint, &bucket, &url))
        .await
        .expect("start");
    let c = connect(&server).await;
    c.batch_execute(&format!(
        "SET quiver.result_cache = off;
         CREATE TABLE docs (id BIGINT PRIMARY KEY, cat INT, emb VECTOR(16));
         CREATE TABLE parts (id BIGINT PRIMARY KEY, cat INT, emb VECTOR(16)) WITH (shards = 2);
         CREATE TABLE scratch (id BIGINT PRIMARY KEY, cat INT, emb VECTOR(16)) WITH (tier = 'hot');
         CREATE FUNCTION double_it(float8) RETURNS float8 LANGUAGE wasm AS '{}'",
        crate::udf::wat("double")
    ))
    .await
    .expect("create");
    assert_eq!(tier_of(&c, "docs").await, ["cold"], "cold by default");
    assert_eq!(tier_of(&c, "parts").await, ["cold", "cold"]);
    assert_eq!(tier_of(&c, "scratch").await, ["hot"]);
    let (payload, vectors) = rows(5000, 0, 21);
    for t in ["docs", "parts", "scratch"] {
        copy_text(&c, &format!("COPY {t} FROM STDIN"), payload.clone()).await;
    }
    // Acknowledged from the local log; the shutdown writes it to the store.
    c.batch_execute(&format!(
        "INSERT INTO docs VALUES (90001, 3, '{}')",
        vector_text(&vectors[7])
    ))
    .await
    .expect("insert");
    c.batch_execute(
        "CREATE INDEX docs_emb ON docs USING hnsw (emb vector_l2_ops); SET hnsw.ef_search = 400",
    )
    .await
    .expect("index");
    let queries: Vec<Vec<f32>> = [0, 7, 4999].iter().map(|&i| vectors[i].clone()).collect();
    same_answers(&c, "parts", "scratch", &queries).await;
    let sums = (checksum(&c, "docs").await, checksum(&c, "parts").await);
    assert_eq!(sums.0.0, 5001);
    let answer = nearest(&c, "docs", &vectors[7], 10).await;
    assert!(answer.iter().any(|(id, _)| *id == 90001), "{answer:?}");

    // Nothing but logs and hot tables is local; the catalog's versions and
    // the module are in the bucket beside the datasets.
    assert!(!first.path().join("catalog.json").exists());
    assert_eq!(local_datasets(first.path(), "docs"), 0);
    assert_eq!(local_datasets(first.path(), "scratch"), 1);
    let stored = keys(&endpoint, &bucket).await;
    let versions = stored
        .iter()
        .filter(|k| k.starts_with("db/catalog/") && k.ends_with(".json"))
        .count();
    assert!((1..=9).contains(&versions), "{stored:?}");
    assert!(
        stored
            .iter()
            .any(|k| k.starts_with("db/functions/") && k.ends_with(".wasm")),
        "{stored:?}"
    );
    assert!(
        stored
            .iter()
            .any(|k| k.starts_with("db/") && k.contains("/docs-") && k.contains("/_versions/")),
        "{stored:?}"
    );
    server.shutdown().await.expect("shutdown");

    // A server on a new, empty local folder serves the same data.
    let second = TempDir::new("tier-datadir-2");
    let server = quiver::start(&on_store(second.path(), &endpoint, &bucket, &url))
        .await
        .expect("start on a new local folder");
    let c = connect(&server).await;
    c.batch_execute("SET quiver.result_cache = off; SET hnsw.ef_search = 400")
        .await
        .expect("set");
    assert_eq!(
        (checksum(&c, "docs").await, checksum(&c, "parts").await),
        sums
    );
    assert_eq!(nearest(&c, "docs", &vectors[7], 10).await, answer);
    let index: String = c
        .query_one(
            "SELECT indexname::text FROM pg_indexes WHERE tablename = 'docs' AND indexname = 'docs_emb'",
            &[],
        )
        .await
        .expect("the index is in the catalog")
        .get(0);
    assert_eq!(index, "docs_emb");
    let doubled: f64 = c
        .query_one("SELECT double_it(2.5)", &[])
        .await
        .expect("the module came from the bucket")
        .get(0);
    assert_eq!(doubled, 5.0);
    let e = c
        .batch_execute("SELECT count(*) FROM scratch")
        .await
        .expect_err("the hot table is in the first folder");
    assert_eq!(e.code().map(|c| c.code()), Some("58030"), "{e:?}");
    assert!(message(&e).contains("hot tier"), "{e:?}");
    c.batch_execute("DROP TABLE scratch")
        .await
        .expect("drop it");

    // A second server on the same store: the first change wins; the
    // other is refused, not written over it.
    let third = TempDir::new("tier-datadir-3");
    let other = quiver::start(&on_store(third.path(), &endpoint, &bucket, &url))
        .await
        .expect("a second server");
    let o = connect(&other).await;
    o.batch_execute("CREATE TABLE extra (id INT, emb VECTOR(16))")
        .await
        .expect("the first change");
    let e = c
        .batch_execute("CREATE TABLE lost (id INT, emb VECTOR(16))")
        .await
        .expect_err("a change over a catalog version it has not read");
    assert_eq!(e.code().map(|c| c.code()), Some("40001"), "{e:?}");
    assert!(message(&e).contains("another server"), "{e:?}");
    assert_eq!(checksum(&c, "docs").await, sums.0, "reads go on");
    let stored = keys(&endpoint, &bucket).await;
    assert!(
        !stored.iter().any(|k| k.contains("/lost-")),
        "the refused table's files are removed: {stored:?}"
    );
    other.shutdown().await.expect("shutdown");
    server.shutdown().await.expect("shutdown");

    // The store's catalog is the one with `extra`, without `scratch`.
    let server = quiver::start(&on_store(first.path(), &endpoint, &bucket, &url))
        .await
        .expect("restart on the first folder");
    let c = connect(&server).await;
    assert_eq!(count(&c, "extra").await, 0);
    assert_eq!(checksum(&c, "docs").await, sums.0);
    for gone in ["lost", "scratch"] {
        let e = c
            .batch_execute(&format!("SELECT count(*) FROM {gone}"))
            .await
            .expect_err("not in the catalog");
        assert_eq!(e.code().map(|c| c.code()), Some("42P01"), "{gone}: {e:?}");
    }
    assert_eq!(
        local_datasets(first.path(), "scratch"),
        0,
        "its dropped folder is removed"
    );
    server.shutdown().await.expect("shutdown");
}

/// With the catalog on the object store, a catalog write the store refuses
/// fails its statement with 58030 in bounded time and changes nothing: a
/// DROP TABLE leaves the table whole, a CREATE VIEW leaves no view, a
/// CREATE TABLE leaves no table and no files; after a restart the catalog
/// is the one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_catalog_write_changes_nothing() {
    use quiver_tiering::faults::{FaultWrapper, Faults};
    use std::sync::atomic::Ordering;
    let Some(endpoint) = s3_endpoint("refused catalog write") else {
        return;
    };
    let bucket = bucket(&endpoint, "catfault").await;
    let url = format!("s3://{bucket}/db");
    let dir = TempDir::new("tier-catfault");
    let cfg = on_store(dir.path(), &endpoint, &bucket, &url);
    let faults = Faults::new();
    let mut options = cfg.engine_options().expect("options");
    options.cold.as_mut().expect("the store").beneath_cache =
        Some(std::sync::Arc::new(FaultWrapper(faults.clone())));
    let server = quiver::start_with(&cfg, options.clone())
        .await
        .expect("start");
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE keep (id BIGINT PRIMARY KEY, cat INT, emb VECTOR(16))")
        .await
        .expect("create");
    let (payload, _) = rows(5000, 0, 31);
    copy_text(&c, "COPY keep FROM STDIN", payload).await;
    let sums = checksum(&c, "keep").await;
    for sql in [
        "DROP TABLE keep",
        "CREATE VIEW v AS SELECT id FROM keep",
        "CREATE TABLE lost (id INT, emb VECTOR(16))",
    ] {
        faults.fail_writes.store(true, Ordering::SeqCst);
        let started = Instant::now();
        let e = c.batch_execute(sql).await.expect_err(sql);
        faults.clear();
        assert_eq!(e.code().map(|c| c.code()), Some("58030"), "{sql}: {e:?}");
        assert!(started.elapsed() < Duration::from_secs(20), "{sql}");
        assert_eq!(checksum(&c, "keep").await, sums, "{sql}");
    }
    for (sql, code) in [
        ("SELECT * FROM v", "42P01"),
        ("SELECT * FROM lost", "42P01"),
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(e.code().map(|c| c.code()), Some(code), "{sql}: {e:?}");
    }
    // The store answers again: the same statements work.
    c.batch_execute("CREATE VIEW v AS SELECT id FROM keep")
        .await
        .expect("view");
    server.shutdown().await.expect("shutdown");

    let server = quiver::start(&cfg).await.expect("restart");
    let c = connect(&server).await;
    assert_eq!(checksum(&c, "keep").await, sums);
    assert_eq!(count(&c, "v").await, 5000);
    let e = c
        .batch_execute("SELECT * FROM lost")
        .await
        .expect_err("never created");
    assert_eq!(e.code().map(|c| c.code()), Some("42P01"));
    let stored = keys(&endpoint, &bucket).await;
    assert!(
        !stored.iter().any(|k| k.contains("/lost-")),
        "no files of the table never created: {stored:?}"
    );
    server.shutdown().await.expect("shutdown");
}

/// Found by hand, not fixed yet: with a chunk cache smaller than one
/// chunk of vectors (16 MiB budget, `chunk_share = 1`) and 12,000 rows
/// just copied, the first exact searches of the cold table miss a row
/// (the 10th neighbour of vector 0) that the hot copy returns; after
/// `OPTIMIZE TABLE cold` they agree, and with the SSD cache off
/// (`ssd_cache_size = "0"`) they agree. Every byte the SSD cache returned
/// was checked equal to the store's. Run with `--ignored`. It did not
/// fail in 18 runs on another machine (alone and beside the other tiering
/// tests); its cause was not found, so it stays out of CI until it is.
#[ignore = "open bug: a cold table with a tiny chunk cache missed a neighbour"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_table_with_a_tiny_chunk_cache_is_exact() {
    let Some(endpoint) = s3_endpoint("tiny chunk cache") else {
        return;
    };
    let bucket = bucket(&endpoint, "tiny").await;
    let dir = TempDir::new("tier-tiny");
    let mut cfg = config(dir.path(), &endpoint, &bucket);
    cfg.cache.memory = "16MiB".into();
    cfg.cache.chunk_share = 1;
    let server = quiver::start(&cfg).await.expect("start");
    let c = connect(&server).await;
    let vectors = cold_and_hot(&c, 12_000).await;
    let queries: Vec<Vec<f32>> = [0, 5, 999].iter().map(|&i| vectors[i].clone()).collect();
    same_answers(&c, "cold", "hot", &queries).await;
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_cold_table_answers_as_a_hot_one() {
    let Some(endpoint) = s3_endpoint("sharded cold table") else {
        return;
    };
    let bucket = bucket(&endpoint, "sharded").await;
    let dir = TempDir::new("tier-sharded");
    let server = quiver::start(&config(dir.path(), &endpoint, &bucket))
        .await
        .expect("start");
    let c = connect(&server).await;
    c.batch_execute(
        "SET quiver.result_cache = off;
         CREATE TABLE one (id BIGINT, cat INT, emb VECTOR(16));
         CREATE TABLE three (id BIGINT, cat INT, emb VECTOR(16))
           WITH (shards = 3, shard_key = id, tier = 'cold')",
    )
    .await
    .expect("create");
    let (payload, vectors) = rows(2000, 0, 21);
    for t in ["one", "three"] {
        copy_text(&c, &format!("COPY {t} FROM STDIN"), payload.clone()).await;
    }
    assert_eq!(tier_of(&c, "three").await, ["cold", "cold", "cold"]);
    let datasets: std::collections::BTreeSet<String> = keys(&endpoint, &bucket)
        .await
        .into_iter()
        .filter(|k| k.contains("/_versions/"))
        .filter_map(|k| k.split('/').nth(2).map(str::to_string))
        .filter(|d| d.starts_with("three-"))
        .collect();
    assert_eq!(
        datasets.len(),
        3,
        "three Lance datasets in the bucket: {datasets:?}"
    );
    assert_eq!(local_datasets(dir.path(), "three"), 0);
    let queries: Vec<Vec<f32>> = [1, 50, 1999].iter().map(|&i| vectors[i].clone()).collect();
    same_answers(&c, "one", "three", &queries).await;
    // An UPDATE and a DELETE over every shard, seen whole.
    for t in ["one", "three"] {
        c.batch_execute(&format!(
            "UPDATE {t} SET cat = 11 WHERE id % 5 = 0; DELETE FROM {t} WHERE id % 7 = 0"
        ))
        .await
        .expect("update and delete");
    }
    assert_eq!(checksum(&c, "one").await, checksum(&c, "three").await);
    same_answers(&c, "one", "three", &queries).await;
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_move_between_tiers_while_written() {
    let Some(endpoint) = s3_endpoint("tier moves") else {
        return;
    };
    let bucket = bucket(&endpoint, "moves").await;
    let dir = TempDir::new("tier-moves");
    let cfg = config(dir.path(), &endpoint, &bucket);
    let server = quiver::start(&cfg).await.expect("start");
    let c = connect(&server).await;
    c.batch_execute(
        "SET quiver.result_cache = off;
         CREATE TABLE docs (id BIGINT PRIMARY KEY, cat INT, emb VECTOR(16));
         CREATE TABLE twin (id BIGINT PRIMARY KEY, cat INT, emb VECTOR(16))",
    )
    .await
    .expect("create");
    let (payload, vectors) = rows(3000, 0, 31);
    for t in ["docs", "twin"] {
        copy_text(&c, &format!("COPY {t} FROM STDIN"), payload.clone()).await;
    }
    c.batch_execute(
        "CREATE INDEX docs_emb ON docs USING ivfflat (emb vector_l2_ops) WITH (lists = 8)",
    )
    .await
    .expect("index");

    // A writer inserts into both tables while docs moves to the cold tier
    // and back; a write that meets the switch may fail with 40001 (as in
    // any ALTER TABLE) and is then not applied to either table.
    let port = server.addr.port();
    let writer = tokio::spawn(async move {
        let w = crate::common::client(port).await;
        let mut written = 0;
        for i in 0..150i64 {
            let id = 100_000 + i;
            let v = vector_text(&random_vectors(1, 16, 1000 + i as u64)[0]);
            let r = w
                .batch_execute(&format!(
                    "BEGIN; INSERT INTO docs VALUES ({id}, 2, '{v}'); INSERT INTO twin VALUES ({id}, 2, '{v}'); COMMIT"
                ))
                .await;
            match r {
                Ok(()) => written += 1,
                Err(e) => {
                    let code = e.code().map(|c| c.code().to_string());
                    assert_eq!(code.as_deref(), Some("40001"), "{e}");
                    let _ = w.batch_execute("ROLLBACK").await;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        written
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let notice = c.simple_query("ALTER TABLE docs SET (tier = 'cold')").await;
    notice.expect("move to cold");
    assert_eq!(tier_of(&c, "docs").await, ["cold"]);
    let written = writer.await.expect("writer");
    assert!(written > 100, "most writes went through: {written}");
    assert_eq!(checksum(&c, "docs").await, checksum(&c, "twin").await);
    let queries: Vec<Vec<f32>> = [3, 300].iter().map(|&i| vectors[i].clone()).collect();
    c.batch_execute("SET ivfflat.probes = 8")
        .await
        .expect("probes");
    same_answers(&c, "docs", "twin", &queries).await;
    // The index moved with it.
    let plan: Vec<String> = c
        .query(
            &format!(
                "EXPLAIN SELECT id FROM docs ORDER BY emb <-> '{}' LIMIT 5",
                vector_text(&vectors[3])
            ),
            &[],
        )
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect();
    assert!(plan.join("\n").contains("docs_emb"), "{plan:?}");
    // Its local folder goes (retention 0), the bucket has it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while local_datasets(dir.path(), "docs") > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        local_datasets(dir.path(), "docs"),
        0,
        "the hot copy is removed"
    );
    assert!(
        keys(&endpoint, &bucket)
            .await
            .iter()
            .any(|k| k.contains("/docs-"))
    );
    server.shutdown().await.expect("shutdown");

    // After a restart it is still cold; then back to hot.
    let server = quiver::start(&cfg).await.expect("restart");
    let c = connect(&server).await;
    c.batch_execute("SET quiver.result_cache = off")
        .await
        .expect("set");
    assert_eq!(tier_of(&c, "docs").await, ["cold"]);
    assert_eq!(checksum(&c, "docs").await, checksum(&c, "twin").await);
    c.batch_execute("ALTER TABLE docs SET (tier = 'hot')")
        .await
        .expect("move to hot");
    assert_eq!(tier_of(&c, "docs").await, ["hot"]);
    assert_eq!(local_datasets(dir.path(), "docs"), 1);
    c.batch_execute("INSERT INTO docs SELECT id + 500000, cat, emb FROM twin WHERE id < 10")
        .await
        .expect("write after the move");
    assert_eq!(count(&c, "docs").await, count(&c, "twin").await + 10);
    let deadline = Instant::now() + Duration::from_secs(10);
    let cold_keys = async || {
        keys(&endpoint, &bucket)
            .await
            .into_iter()
            .filter(|k| k.contains("/docs-"))
            .count()
    };
    while cold_keys().await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cold_keys().await, 0, "the cold copy is removed");
    // Moving to the tier a table is on does nothing.
    c.batch_execute("ALTER TABLE docs SET (tier = 'hot')")
        .await
        .expect("no-op move");
    let e = c
        .batch_execute("ALTER TABLE docs SET (tier = 'lukewarm')")
        .await
        .expect_err("bad tier");
    assert_eq!(e.code().map(|c| c.code()), Some("22023"), "{e}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cold_tier_cold_tables_are_refused() {
    let dir = TempDir::new("tier-none");
    let server = crate::common::start_server(dir.path()).await;
    let c = connect(&server).await;
    let e = c
        .batch_execute("CREATE TABLE t (id INT) WITH (tier = 'cold')")
        .await
        .expect_err("no cold tier");
    assert!(message(&e).contains("cold_root"), "{e:?}");
    assert_eq!(e.code().map(|c| c.code()), Some("42P16"), "{e:?}");
    c.batch_execute("CREATE TABLE t (id INT) WITH (tier = 'hot')")
        .await
        .expect("hot is fine");
    let e = c
        .batch_execute("ALTER TABLE t SET (tier = 'cold')")
        .await
        .expect_err("no cold tier");
    assert!(message(&e).contains("cold_root"), "{e:?}");
    assert_eq!(tier_of(&c, "t").await, ["hot"]);
    server.shutdown().await.expect("shutdown");
}

/// A server error's message.
fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string())
}

/// The `moto_server` program (`QUIVER_TEST_MOTO_SERVER`), for a test that
/// stops its own S3 server.
fn moto_server(test: &str) -> Option<String> {
    match std::env::var("QUIVER_TEST_MOTO_SERVER") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: QUIVER_TEST_MOTO_SERVER is not set on CI"
            );
            eprintln!("{test}: no QUIVER_TEST_MOTO_SERVER; skipped (.ci/run installs moto)");
            None
        }
    }
}

/// A COPY of `payload` that must fail: its error.
async fn copy_fails(
    c: &tokio_postgres::Client,
    sql: &str,
    payload: String,
) -> tokio_postgres::Error {
    use futures::SinkExt;
    let sink = c
        .copy_in::<_, bytes::Bytes>(sql)
        .await
        .expect("copy starts");
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from(payload)).await.expect("send");
    sink.finish().await.expect_err("the COPY fails")
}

/// A store that fails or slows down beneath the cold tier (a fault
/// injector wrapped around the S3 store, under an SSD cache of size 0 so
/// that every read reaches it): statements fail with 58030 in bounded time,
/// a failed COPY leaves no row (also when its data files were written and
/// only its commit failed), a one-row INSERT acknowledged from the local
/// log reaches the bucket once the store is back, hot tables serve on, and
/// afterwards the table answers exactly as its hot twin, after a restart too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_store_faults_fail_cleanly_and_lose_nothing() {
    use quiver_tiering::faults::{FaultWrapper, Faults};
    use std::sync::atomic::Ordering;
    let Some(endpoint) = s3_endpoint("injected faults") else {
        return;
    };
    let bucket = bucket(&endpoint, "faults").await;
    let dir = TempDir::new("tier-faults");
    let mut cfg = config(dir.path(), &endpoint, &bucket);
    cfg.storage.ssd_cache_size = "0".into();
    let faults = Faults::new();
    let mut options = cfg.engine_options().expect("options");
    options.cold.as_mut().expect("cold tier").beneath_cache =
        Some(std::sync::Arc::new(FaultWrapper(faults.clone())));
    let server = quiver::start_with(&cfg, options.clone())
        .await
        .expect("start");
    let c = connect(&server).await;
    let vectors = cold_and_hot(&c, 2000).await;
    let queries: Vec<Vec<f32>> = [3, 77, 1500].iter().map(|&i| vectors[i].clone()).collect();

    // Latency: a COPY into the cold table (large enough to be written to
    // the store, not to the local log) waits for it, and lands whole.
    faults.set_latency(Duration::from_millis(200));
    let (more, _) = rows(5000, 10_000, 12);
    let started = Instant::now();
    copy_text(&c, "COPY cold FROM STDIN", more.clone()).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    faults.clear();
    copy_text(&c, "COPY hot FROM STDIN", more).await;
    assert_eq!(checksum(&c, "cold").await, checksum(&c, "hot").await);

    // Failed writes of a COPY written to the store: every write refused,
    // or the data files written and then the commit refused. Either way
    // 58030 and no row.
    let baseline = checksum(&c, "cold").await;
    let (bad, _) = rows(5000, 20_000, 13);
    for (what, inject) in [
        (
            "every write",
            &(|f: &Faults| f.fail_writes.store(true, Ordering::SeqCst)) as &dyn Fn(&Faults),
        ),
        ("the commit", &|f: &Faults| f.fail_puts_after(1)),
    ] {
        let injected = faults.injected.load(Ordering::SeqCst);
        inject(&faults);
        let started = Instant::now();
        let e = copy_fails(&c, "COPY cold FROM STDIN", bad.clone()).await;
        faults.clear();
        assert_eq!(e.code().map(|c| c.code()), Some("58030"), "{what}: {e}");
        assert!(message(&e).contains("injected fault"), "{what}: {e:?}");
        assert!(started.elapsed() < Duration::from_secs(20), "{what}");
        assert!(faults.injected.load(Ordering::SeqCst) > injected, "{what}");
        assert_eq!(
            checksum(&c, "cold").await,
            baseline,
            "{what}: no partial rows"
        );
    }

    // A one-row INSERT is acknowledged from the local log while the store
    // refuses writes; its flush to the bucket waits for the store.
    faults.fail_writes.store(true, Ordering::SeqCst);
    let one = "(30000, 4, '[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]')";
    c.batch_execute(&format!("INSERT INTO cold VALUES {one}"))
        .await
        .expect("insert acknowledged from the log");
    let injected = faults.injected.load(Ordering::SeqCst);
    // Past the flush interval (1 s): the flush was tried and refused.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        faults.injected.load(Ordering::SeqCst) > injected,
        "a flush was tried"
    );
    assert_eq!(count(&c, "cold").await, baseline.0 + 1);
    faults.clear();
    c.batch_execute(&format!("INSERT INTO hot VALUES {one}"))
        .await
        .expect("hot insert");

    // Failed reads: rows never read yet fail with 58030 in bounded time;
    // the hot table serves on, on the same connection.
    let (fresh, _) = rows(200, 40_000, 14);
    for t in ["cold", "hot"] {
        copy_text(&c, &format!("COPY {t} FROM STDIN"), fresh.clone()).await;
    }
    faults.fail_reads.store(true, Ordering::SeqCst);
    let q = vector_text(&queries[0]);
    for sql in [
        "SELECT sum(cat)::BIGINT FROM cold WHERE id >= 40000".to_string(),
        format!("SELECT id FROM cold ORDER BY emb <-> '{q}' LIMIT 5"),
    ] {
        let started = Instant::now();
        let e = c.query(&sql, &[]).await.expect_err("reads fail");
        assert_eq!(e.code().map(|c| c.code()), Some("58030"), "{sql}: {e}");
        assert!(started.elapsed() < Duration::from_secs(20), "{sql}");
    }
    assert_eq!(count(&c, "hot").await, baseline.0 + 201);
    let near = hits(
        &c,
        &format!("SELECT id, emb <-> '{q}' FROM hot ORDER BY emb <-> '{q}' LIMIT 1"),
    )
    .await;
    assert_eq!(near[0].0, 3);
    // /metrics counted the failed requests, reads and writes, as errors of
    // the store (not as the normal not-found answers).
    let text = crate::metrics::scrape(&server).await;
    let failed = |ops: &[&str]| -> f64 {
        ops.iter()
            .map(|op| {
                crate::metrics::value(
                    &text,
                    &format!(
                        r#"quiver_object_store_errors_total{{kind="other",op="{op}",tier="cold"}}"#
                    ),
                )
            })
            .sum()
    };
    assert!(failed(&["get", "get_ranges", "head"]) > 0.0, "{text}");
    assert!(
        failed(&["put", "put_multipart", "upload_part", "complete"]) > 0.0,
        "{text}"
    );
    faults.clear();

    // Nothing was lost or damaged: the cold table answers as its twin,
    // and so it does after a restart.
    assert_eq!(checksum(&c, "cold").await, checksum(&c, "hot").await);
    same_answers(&c, "cold", "hot", &queries).await;
    server.shutdown().await.expect("shutdown");
    let server = quiver::start_with(&cfg, options.clone())
        .await
        .expect("restart");
    let c = connect(&server).await;
    c.batch_execute("SET quiver.result_cache = off")
        .await
        .expect("set");
    assert_eq!(checksum(&c, "cold").await, checksum(&c, "hot").await);
    assert_eq!(
        count(&c, "cold WHERE id = 30000").await,
        1,
        "the row acknowledged from the log"
    );
    same_answers(&c, "cold", "hot", &queries).await;
    let expected = checksum(&c, "cold").await;
    server.shutdown().await.expect("shutdown");

    // A start while the store fails: the server starts and serves the hot
    // table; the cold one fails with 58030 until the store is back, then
    // opens by itself.
    faults.fail_reads.store(true, Ordering::SeqCst);
    let server = quiver::start_with(&cfg, options)
        .await
        .expect("start while the store fails");
    let c = connect(&server).await;
    c.batch_execute("SET quiver.result_cache = off")
        .await
        .expect("set");
    assert_eq!(checksum(&c, "hot").await, expected);
    let e = c
        .query("SELECT count(*) FROM cold", &[])
        .await
        .expect_err("the cold table is not available");
    assert_eq!(e.code().map(|c| c.code()), Some("58030"), "{e}");
    assert!(message(&e).contains("not available"), "{e:?}");
    let listed: Vec<String> = c
        .query("SELECT DISTINCT table_name FROM quiver_shards()", &[])
        .await
        .expect("quiver_shards")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(listed, ["hot"]);
    // A load balancer sees the server is not ready, and why.
    let metrics = format!("http://{}", server.metrics_addr.expect("metrics listener"));
    let (status, body) = http(&metrics, "GET", "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"cold\" is not available"), "{body}");
    assert_eq!(http(&metrics, "GET", "/healthz").await.0, 200);
    faults.clear();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.query_one("SELECT count(*) FROM cold", &[]).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the cold table did not come back: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert_eq!(checksum(&c, "cold").await, expected);
    same_answers(&c, "cold", "hot", &queries).await;
    let (status, body) = http(&metrics, "GET", "/readyz").await;
    assert_eq!(status, 200, "{body}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_object_store_fails_cleanly_and_hot_tables_serve_on() {
    let Some(moto) = moto_server("stopped store") else {
        return;
    };
    let port = crate::common::free_port();
    let mut store = tokio::process::Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "moto_server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bucket = bucket(&endpoint, "stopped").await;
    let dir = TempDir::new("tier-stopped");
    let server = quiver::start(&config(dir.path(), &endpoint, &bucket))
        .await
        .expect("start");
    let c = connect(&server).await;
    c.batch_execute(
        "SET quiver.result_cache = off;
         CREATE TABLE cold (id BIGINT, cat INT, emb VECTOR(16)) WITH (tier = 'cold');
         CREATE TABLE hot (id BIGINT, cat INT, emb VECTOR(16))",
    )
    .await
    .expect("create");
    let (payload, vectors) = rows(2000, 0, 41);
    for t in ["cold", "hot"] {
        copy_text(&c, &format!("COPY {t} FROM STDIN"), payload.clone()).await;
    }
    assert_eq!(count(&c, "cold").await, 2000);

    store.kill().await.expect("stop moto");
    let _ = store.wait().await;
    let q = vector_text(&vectors[7]);
    for sql in [
        "SELECT count(*) FROM cold WHERE cat = 3 AND id % 2 = 0".to_string(),
        format!("SELECT id FROM cold ORDER BY emb <-> '{q}' LIMIT 5"),
    ] {
        let started = Instant::now();
        let e = c.query(&sql, &[]).await.expect_err("the store is down");
        let took = started.elapsed();
        assert_eq!(e.code().map(|c| c.code()), Some("58030"), "{sql}: {e}");
        assert!(message(&e).contains("object storage"), "{e:?}");
        // Timeouts and retries are config keys: 3 s, one retry.
        assert!(
            took < Duration::from_secs(20),
            "{sql} failed after {took:?}"
        );
    }
    // A COPY into the cold table fails whole.
    let (more, _) = rows(500, 10_000, 42);
    let e = copy_fails(&c, "COPY cold FROM STDIN", more).await;
    assert_eq!(e.code().map(|c| c.code()), Some("58030"), "{e}");
    // The connection, the server and the hot table serve on.
    assert_eq!(count(&c, "hot").await, 2000);
    c.batch_execute("INSERT INTO hot VALUES (5, 5, '[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]')")
        .await
        .expect("hot insert");
    let near = hits(
        &c,
        &format!("SELECT id, emb <-> '{q}' FROM hot ORDER BY emb <-> '{q}' LIMIT 3"),
    )
    .await;
    assert_eq!(near[0].0, 7);
    server.shutdown().await.expect("shutdown");
}

/// A folder on the object store that no table names (another server's
/// table being created, or what a crash left) is removed at start-up only
/// once nothing in it was written for `version_retention`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unnamed_folder_on_the_store_is_removed_only_when_old() {
    let Some(endpoint) = s3_endpoint("unnamed folder") else {
        return;
    };
    let bucket = bucket(&endpoint, "stray").await;
    let dir = TempDir::new("tier-stray");
    let mut cfg = config(dir.path(), &endpoint, &bucket);
    let server = quiver::start(&cfg).await.expect("start");
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE keep (id BIGINT, cat INT, emb VECTOR(16)) WITH (tier = 'cold')")
        .await
        .expect("create");
    copy_text(&c, "COPY keep FROM STDIN", rows(500, 0, 41).0).await;
    server.shutdown().await.expect("shutdown");
    // The folder the cold tables are in, and a stray table folder beside them.
    let stored = keys(&endpoint, &bucket).await;
    let table_key = stored
        .iter()
        .find(|k| k.contains("/keep-") && k.contains(".lance/"))
        .expect("the table's files");
    let parent = &table_key[..table_key.find("/keep-").expect("folder")];
    let stray = format!("{parent}/stray-1.lance/_versions/1.manifest");
    let (status, body) = http(&endpoint, "PUT", &format!("/{bucket}/{stray}")).await;
    assert_eq!(status, 200, "put {stray}: {body}");
    let has_stray = |keys: &[String]| keys.iter().any(|k| k.contains("/stray-1.lance/"));

    // Written just now: kept.
    cfg.storage.version_retention = "1h".into();
    let server = quiver::start(&cfg).await.expect("restart");
    assert!(
        has_stray(&keys(&endpoint, &bucket).await),
        "a fresh folder is kept"
    );
    let c = connect(&server).await;
    assert_eq!(count(&c, "keep").await, 500);
    server.shutdown().await.expect("shutdown");

    // Older than the retention: removed, the table untouched.
    cfg.storage.version_retention = "0".into();
    let server = quiver::start(&cfg).await.expect("restart");
    assert!(
        !has_stray(&keys(&endpoint, &bucket).await),
        "an old folder is removed"
    );
    let c = connect(&server).await;
    assert_eq!(count(&c, "keep").await, 500);
    server.shutdown().await.expect("shutdown");
}
