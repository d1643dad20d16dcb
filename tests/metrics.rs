//! The metrics listener: `/metrics` counts what statements ran, by kind,
//! k bucket and SQLSTATE class, and shows tables, shards and caches;
//! `/healthz` and `/readyz` answer load balancers. (A cold table that could
//! not be opened makes `/readyz` answer 503: `tiering::injected_store_faults…`.)

use std::time::{Duration, Instant};

use quiver::Config;

use crate::common::{
    TempDir, Vector, connect, copy_text, http, metrics_on_any_port, random_vectors, vector_text,
};

/// The body of `/metrics`, checked to be the Prometheus text format.
pub(crate) async fn scrape(server: &quiver::RunningServer) -> String {
    let addr = format!("http://{}", server.metrics_addr.expect("metrics listener"));
    let (status, response) = http(&addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "{response}");
    let (head, body) = response.split_once("\r\n\r\n").expect("a body");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

/// The value of the sample `series` (`name{labels}` exactly as printed), or 0.
pub(crate) fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_are_counted_by_kind_k_and_error_class() {
    let dir = TempDir::new("metrics");
    let server = crate::common::start_server(dir.path()).await;
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE t (id BIGINT, emb VECTOR(8))")
        .await
        .expect("create");
    let vectors = random_vectors(100, 8, 7);
    let payload: String = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{i}\t{}\n", vector_text(v)))
        .collect();
    // The client looks the vector type up (a catalog read) the first time
    // it sends one: once, before the figures are read.
    c.query(
        "SELECT id FROM t ORDER BY emb <-> $1 LIMIT 1",
        &[&Vector(vec![0.0; 8])],
    )
    .await
    .expect("type lookup");
    let before = scrape(&server).await;
    assert_eq!(
        copy_text(&c, "COPY t (id, emb) FROM STDIN", payload).await,
        100
    );
    c.execute(
        "INSERT INTO t VALUES (100, '[1,1,1,1,1,1,1,1]'), (101, '[2,2,2,2,2,2,2,2]'), \
         (102, '[3,3,3,3,3,3,3,3]')",
        &[],
    )
    .await
    .expect("insert");
    // Five searches for 5 neighbours over the extended protocol (the
    // pgvector form), two for 50 over the simple one (vector_search()):
    // two of them run, five are answered by the result cache, all seven
    // are vector searches.
    let q = vector_text(&vectors[3]);
    let param = Vector(vectors[3].clone());
    for _ in 0..5 {
        let rows = c
            .query("SELECT id FROM t ORDER BY emb <-> $1 LIMIT 5", &[&param])
            .await
            .expect("search");
        assert_eq!(rows.len(), 5);
    }
    for _ in 0..2 {
        c.simple_query(&format!(
            "SELECT id FROM vector_search('t', 'emb', '{q}', 50)"
        ))
        .await
        .expect("search");
    }
    c.query("SELECT count(*) FROM t", &[]).await.expect("count");
    assert!(c.query("SELECT * FROM nope", &[]).await.is_err());
    assert!(c.simple_query("SELEC 1").await.is_err());
    assert!(
        c.simple_query("SELECT id FROM t ORDER BY emb <-> '[1,2]' LIMIT 3")
            .await
            .is_err(),
        "a vector of the wrong dimension"
    );
    let after = scrape(&server).await;
    let grew = |series: &str| value(&after, series) - value(&before, series);
    for (series, by) in [
        (
            r#"quiver_query_latency_seconds_count{k="10",kind="vector_search"}"#,
            5.0,
        ),
        (
            r#"quiver_query_latency_seconds_count{k="100",kind="vector_search"}"#,
            2.0,
        ),
        (
            r#"quiver_query_latency_seconds_count{k="",kind="read"}"#,
            1.0,
        ),
        (r#"quiver_ingest_latency_seconds_count{kind="copy"}"#, 1.0),
        (r#"quiver_ingest_latency_seconds_count{kind="insert"}"#, 1.0),
        ("quiver_rows_ingested_total", 103.0),
        (r#"quiver_statements_total{kind="vector_search"}"#, 7.0),
        (r#"quiver_statements_total{kind="write"}"#, 2.0),
        // count(*) and the bad dimension; the unknown table failed at
        // Parse/Describe and the syntax error at parsing, before either
        // was executed (their errors count all the same).
        (r#"quiver_statements_total{kind="read"}"#, 2.0),
        (r#"quiver_errors_total{class="42"}"#, 2.0),
        (r#"quiver_errors_total{class="22"}"#, 1.0),
        (r#"quiver_cache_hits_total{cache="results"}"#, 5.0),
    ] {
        assert_eq!(grew(series), by, "{series} in\n{after}");
    }
    // A search's time is in the bucket its latency says: every sample of
    // the histogram is in its +Inf bucket, and its sum is positive.
    assert_eq!(
        value(
            &after,
            r#"quiver_query_latency_seconds_bucket{k="10",kind="vector_search",le="+Inf"}"#
        ),
        value(
            &after,
            r#"quiver_query_latency_seconds_count{k="10",kind="vector_search"}"#
        )
    );
    assert!(
        value(
            &after,
            r#"quiver_query_latency_seconds_sum{k="10",kind="vector_search"}"#
        ) > 0.0
    );
    assert_eq!(value(&after, "quiver_connections_active"), 1.0);

    // The table's one shard, once the logged rows are flushed, and the
    // searches it served (the type lookup's and the two run); the caches'
    // figures.
    let deadline = Instant::now() + Duration::from_secs(20);
    let shard = r#"{shard="0",table="t",tier="hot"}"#;
    loop {
        let text = scrape(&server).await;
        if value(&text, &format!("quiver_shard_rows{shard}")) == 103.0 {
            assert_eq!(
                value(&text, &format!("quiver_shard_searches_total{shard}")),
                3.0,
                "{text}"
            );
            assert!(value(&text, &format!("quiver_shard_bytes{shard}")) > 0.0);
            assert!(value(&text, &format!("quiver_shard_fragments{shard}")) >= 1.0);
            for cache in ["results", "chunks"] {
                assert!(
                    text.contains(&format!("quiver_cache_capacity_bytes{{cache=\"{cache}\"}}")),
                    "{cache} in\n{text}"
                );
            }
            break;
        }
        assert!(Instant::now() < deadline, "rows never reached 103:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(10);
    while value(&scrape(&server).await, "quiver_connections_active") != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the closed connection is still counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await.expect("shutdown");
}

/// The sum of every sample of metric `name` (any labels) whose labels
/// include each of `with` (`key="value"` as printed).
fn sum(text: &str, name: &str, with: &[&str]) -> f64 {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, v) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            with.iter()
                .all(|w| labels.split(',').any(|l| l == *w))
                .then(|| v.parse::<f64>().ok())?
        })
        .sum()
}

/// Index builds, index updates and compactions are timed per shard; each
/// shard's searches count their CPU time, which stays within their wall
/// time and the process's CPU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_builds_compactions_and_shard_cpu_are_measured() {
    let dir = TempDir::new("metrics-work");
    let server = crate::common::start_server(dir.path()).await;
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE t (id BIGINT, emb VECTOR(8)) WITH (shards = 2, shard_key = id)")
        .await
        .expect("create");
    let rows = |from: usize| -> String {
        random_vectors(300, 8, from as u64)
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{}\t{}\n", from + i, vector_text(v)))
            .collect()
    };
    // Two fragments a shard (OPTIMIZE flushes the logged rows into one),
    // no index yet: OPTIMIZE (or the background pass before it) compacts
    // each shard.
    copy_text(&c, "COPY t (id, emb) FROM STDIN", rows(0)).await;
    c.batch_execute("OPTIMIZE TABLE t").await.expect("optimize");
    copy_text(&c, "COPY t (id, emb) FROM STDIN", rows(300)).await;
    c.batch_execute("OPTIMIZE TABLE t").await.expect("optimize");
    let compacted = scrape(&server).await;
    assert!(
        sum(&compacted, "quiver_compaction_seconds_count", &[]) >= 2.0,
        "{compacted}"
    );
    assert_eq!(
        sum(&compacted, "quiver_index_build_seconds_count", &[]),
        0.0,
        "{compacted}"
    );
    c.batch_execute(
        "CREATE INDEX t_emb ON t USING ivf_flat (emb) WITH (metric = 'l2', num_partitions = 2)",
    )
    .await
    .expect("index");
    let built = scrape(&server).await;
    // One build a shard.
    assert_eq!(
        value(&built, r#"quiver_index_build_seconds_count{kind="vector"}"#),
        2.0,
        "{built}"
    );
    assert!(value(&built, r#"quiver_index_build_seconds_sum{kind="vector"}"#) > 0.0);
    // Rows the index does not cover: OPTIMIZE (or the background pass
    // before it) folds them into each shard's index.
    copy_text(&c, "COPY t (id, emb) FROM STDIN", rows(600)).await;
    c.batch_execute("OPTIMIZE TABLE t").await.expect("optimize");
    let optimized = scrape(&server).await;
    assert!(
        sum(&optimized, "quiver_index_update_seconds_count", &[]) >= 2.0,
        "{optimized}"
    );
    let unindexed: i64 = c
        .query_one(
            "SELECT sum(unindexed_rows)::BIGINT FROM quiver_shards('t')",
            &[],
        )
        .await
        .expect("quiver_shards")
        .get(0);
    assert_eq!(unindexed, 0, "OPTIMIZE folded every row into the index");
    assert_eq!(
        sum(&optimized, "quiver_maintenance_failures_total", &[]),
        0.0
    );

    for i in 0..20 {
        let q = Vector(random_vectors(1, 8, 5000 + i).remove(0));
        c.query("SELECT id FROM t ORDER BY emb <-> $1 LIMIT 10", &[&q])
            .await
            .expect("search");
    }
    let text = scrape(&server).await;
    let cpu = sum(
        &text,
        "quiver_shard_search_cpu_seconds_total",
        &[r#"table="t""#],
    );
    let wall = sum(
        &text,
        "quiver_shard_search_seconds_total",
        &[r#"table="t""#],
    );
    let process = value(&text, "process_cpu_seconds_total");
    assert_eq!(
        sum(&text, "quiver_shard_searches_total", &[r#"table="t""#]),
        40.0,
        "{text}"
    );
    assert!(cpu > 0.0, "no search CPU counted:\n{text}");
    // Polls happen within the search's wall time, and on the process's CPU.
    assert!(cpu <= wall * 1.05 + 0.001, "cpu {cpu} s > wall {wall} s");
    assert!(process >= cpu, "process {process} s < searches {cpu} s");
    // EXPLAIN ANALYZE shows each shard's CPU beside its wall time.
    let q = vector_text(&random_vectors(1, 8, 1).remove(0));
    let plan: Vec<String> = c
        .simple_query(&format!(
            "EXPLAIN ANALYZE SELECT id FROM t ORDER BY emb <-> '{q}' LIMIT 3"
        ))
        .await
        .expect("explain")
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .filter_map(|i| r.get(i))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        })
        .collect();
    let plan = plan.join("\n");
    for shard in 0..2 {
        assert!(
            plan.contains(&format!("shard {shard}: ")) && plan.contains(" ms (cpu "),
            "{plan}"
        );
    }
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn health_readiness_and_unknown_paths() {
    let dir = TempDir::new("metrics-paths");
    let server = crate::common::start_server(dir.path()).await;
    let addr = format!("http://{}", server.metrics_addr.expect("metrics listener"));
    let (status, body) = http(&addr, "GET", "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(&addr, "GET", "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("ready\n"), "{body}");
    let (status, body) = http(&addr, "GET", "/metrics?x=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(http(&addr, "POST", "/metrics").await.0, 405);
    assert_eq!(http(&addr, "GET", "/nope").await.0, 404);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_series_are_capped_and_the_rest_summed_per_table() {
    let dir = TempDir::new("metrics-cap");
    let cfg = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        metrics: quiver::config::MetricsConfig {
            max_shard_series: 3,
            ..metrics_on_any_port()
        },
        ..Config::default()
    };
    let server = quiver::start(&cfg).await.expect("start");
    let c = connect(&server).await;
    let rows: Vec<String> = (1..=40).map(|i| format!("({i}, '[1,2]')")).collect();
    c.batch_execute(&format!(
        "CREATE TABLE a (id BIGINT, emb VECTOR(2)) WITH (shards = 4, shard_key = id);
         CREATE TABLE b (id BIGINT, emb VECTOR(2)) WITH (shards = 2, shard_key = id);
         INSERT INTO a VALUES {};",
        rows.join(", ")
    ))
    .await
    .expect("tables");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(&server).await;
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("quiver_shard_rows{"))
            .collect();
        // `a` (4 shards) does not fit in 3 series: one summed series; `b` fits.
        if value(
            &text,
            r#"quiver_shard_rows{shard="all",table="a",tier="hot"}"#,
        ) == 40.0
        {
            assert_eq!(
                series,
                [
                    r#"quiver_shard_rows{shard="all",table="a",tier="hot"} 40"#,
                    r#"quiver_shard_rows{shard="0",table="b",tier="hot"} 0"#,
                    r#"quiver_shard_rows{shard="1",table="b",tier="hot"} 0"#,
                ],
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a's rows never reached 40:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_taken_metrics_port_stops_the_start_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = TempDir::new("metrics-taken");
    let cfg = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        metrics: quiver::config::MetricsConfig {
            listen: format!("127.0.0.1:{port}"),
            ..Default::default()
        },
        ..Config::default()
    };
    let Err(e) = quiver::start(&cfg).await else {
        panic!("started with its metrics port taken");
    };
    let message = e.to_string();
    assert!(message.contains("[metrics] listen"), "{message}");
    assert!(message.contains(&port.to_string()), "{message}");
}

/// An instant query through Prometheus's HTTP API: the status and body.
async fn prometheus_query(api: &str, query: &str) -> (u16, String) {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    http(api, "GET", &format!("/api/v1/query?query={encoded}")).await
}

/// The PromQL of every panel of `deploy/grafana/quiver.json`.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/quiver.json"
    ))
    .expect("dashboard");
    let json: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    json["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("a target's expr").to_string())
        .collect()
}

/// The `expr` of every rule of `deploy/prometheus/quiver.rules.yml`: the
/// rest of its line, or the block of lines indented under it.
fn rule_queries() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/quiver.rules.yml"
    ))
    .expect("rules");
    let indent = |l: &str| l.len() - l.trim_start().len();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((_, rest)) = line.split_once("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest != "|" {
            out.push(rest.to_string());
            continue;
        }
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
            .map(|l| l.trim())
            .collect();
        out.push(block.join("\n"));
    }
    out
}

/// The metric names a PromQL query reads: `quiver_…` and `process_…` words.
fn metric_names(query: &str) -> Vec<String> {
    query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("quiver_") || w.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// The value of a Prometheus instant query that returns one sample, from
/// its HTTP API's JSON (`"value":[<time>,"<value>"]`); `None` while it
/// returns none.
async fn prometheus_value(api: &str, query: &str) -> Option<f64> {
    let (status, body) = prometheus_query(api, query).await;
    assert_eq!(status, 200, "{body}");
    let after = body.split("\"value\":[").nth(1)?;
    let value = after.split(",\"").nth(1)?.split('"').next()?;
    value.parse().ok()
}

/// Runs `n` top-10 vector searches (prepared, the pgvector form).
async fn searches(c: &tokio_postgres::Client, n: usize) {
    for i in 0..n {
        let q = Vector(random_vectors(1, 8, 1000 + i as u64).remove(0));
        c.query("SELECT id FROM t ORDER BY emb <-> $1 LIMIT 10", &[&q])
            .await
            .expect("search");
    }
}

/// A real Prometheus (Debian's `prometheus`, installed by .ci/run) scrapes a
/// running Quiver; through its HTTP API the count of vector searches grows by
/// exactly the searches run. `promtool` checks the scraped text and the
/// shipped alert rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_exactly_the_searches_run() {
    let test = "a_real_prometheus_scrapes_exactly_the_searches_run";
    if !crate::common::tool_available("prometheus", test)
        || !crate::common::tool_available("promtool", test)
    {
        return;
    }
    let dir = TempDir::new("metrics-prometheus");
    let server = crate::common::start_server(&dir.path().join("data")).await;
    let c = connect(&server).await;
    let rows: Vec<String> = random_vectors(50, 8, 3)
        .iter()
        .enumerate()
        .map(|(i, v)| format!("({i}, '{}')", vector_text(v)))
        .collect();
    c.batch_execute(&format!(
        "CREATE TABLE t (id BIGINT, emb VECTOR(8)); INSERT INTO t VALUES {};",
        rows.join(", ")
    ))
    .await
    .expect("table");

    // promtool's lint of the exposition, and of the shipped rules.
    searches(&c, 1).await;
    let text = scrape(&server).await;
    let metrics_file = dir.path().join("metrics.txt");
    std::fs::write(&metrics_file, &text).expect("write");
    let lint = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&metrics_file).expect("open"))
        .output()
        .expect("promtool");
    assert!(
        lint.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/quiver.rules.yml"
    );
    let checked = std::process::Command::new("promtool")
        .args(["check", "rules", rules])
        .output()
        .expect("promtool");
    assert!(
        checked.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let port = crate::common::free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: quiver\n    \
             static_configs:\n      - targets: ['{}']\n",
            server.metrics_addr.expect("metrics listener")
        ),
    )
    .expect("config");
    let mut prometheus = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus");
    let api = format!("http://127.0.0.1:{port}");
    let count =
        r#"sum(quiver_query_latency_seconds_count{job="quiver",kind="vector_search",k="10"})"#;
    // Waits until Prometheus has a scrape with `want` searches, then checks
    // that a later scrape still says exactly that.
    async fn settle(api: &str, count: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = tokio::net::TcpStream::connect(api.trim_start_matches("http://"))
                .await
                .is_ok();
            if ready && prometheus_value(api, count).await == Some(want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus never saw {want} searches (last: {:?})",
                if ready {
                    prometheus_value(api, count).await
                } else {
                    None
                }
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(prometheus_value(api, count).await, Some(want));
    }
    settle(&api, count, 1.0).await;
    searches(&c, 25).await;
    settle(&api, count, 26.0).await;
    searches(&c, 17).await;
    settle(&api, count, 43.0).await;
    assert_eq!(
        prometheus_value(&api, r#"up{job="quiver"}"#).await,
        Some(1.0)
    );
    // Every query of the shipped Grafana dashboard and alert rules is valid
    // PromQL that this Prometheus evaluates, over metric names Quiver
    // exports: present in the scrape, or (object store, WebAssembly,
    // maintenance: only once such work ran) defined in the sources.
    let text = scrape(&server).await;
    let defined = [
        include_str!("../sql/src/metrics.rs"),
        include_str!("../engine/src/metrics.rs"),
        include_str!("../tiering/src/metered.rs"),
    ]
    .concat();
    let dashboard = dashboard_queries();
    assert!(dashboard.len() >= 30, "{} queries", dashboard.len());
    let rules = rule_queries();
    assert!(rules.len() >= 11, "{rules:?}");
    for query in dashboard.iter().chain(&rules) {
        for name in metric_names(query) {
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                text.contains(&format!("# TYPE {family} "))
                    || defined.contains(&format!("\"{family}\"")),
                "{name}, in {query}, is not a metric Quiver exports"
            );
        }
        let query = query
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*");
        let (status, body) = prometheus_query(&api, &query).await;
        assert!(
            status == 200 && body.contains(r#""status":"success""#),
            "{query}: {status} {body}"
        );
    }
    prometheus.kill().await.expect("stop prometheus");
    server.shutdown().await.expect("shutdown");
}
