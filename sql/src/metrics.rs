//! The server's Prometheus metrics: what every statement cost, and the
//! state of the tables, shards and caches at the time of a scrape.
//!
//! Statements are measured by the wire layer, which sees them end (rows
//! sent, or an error): [`Metrics::statement_done`] with the statement's
//! [`StatementClass`] and, for a vector search, its k. Latencies go to two
//! histograms in seconds, `quiver_query_latency_seconds` (reads, vector
//! searches by k bucket, DDL, the rest) and `quiver_ingest_latency_seconds`
//! (INSERT, UPDATE, DELETE, COPY FROM); failed statements are counted by
//! SQLSTATE class, not timed. Tables, shards and caches are read when
//! scraped ([`Metrics::encode`]), so a dropped table leaves no series.
//!
//! Labels never hold query text or parameters: a statement's kind and k
//! bucket, a SQLSTATE class (two characters), table and shard (at most
//! `max_shard_series` shard series; a table past that budget is one series
//! with `shard="all"`), and a cache's name.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use quiver_engine::Engine;

use crate::result_cache::ResultCache;

/// Histogram buckets in seconds, from 0.1 ms to a minute; 0.12 s and 0.2 s
/// are the thresholds of the shipped alert rules (top-10 search p95 and
/// ingest p95), so `histogram_quantile` is exact there.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.12, 0.2, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Shard series a scrape shows unless `[metrics] max_shard_series` says otherwise.
pub const DEFAULT_MAX_SHARD_SERIES: usize = 256;

/// What kind of statement ran, as its metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementClass {
    /// A query (SELECT, VALUES, EXPLAIN, SHOW of a table, …): a vector
    /// search when its plan holds one ([`Metrics::statement_done`]'s k).
    Read,
    /// INSERT, UPDATE, DELETE, MERGE, COPY FROM.
    Write(WriteKind),
    /// CREATE / DROP / ALTER, CREATE INDEX, OPTIMIZE, REINDEX, functions.
    Ddl,
    /// SET, SHOW, BEGIN, COMMIT, PREPARE, DEALLOCATE, COPY TO, …
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Insert,
    Update,
    Delete,
    Copy,
    Other,
}

impl WriteKind {
    fn label(self) -> &'static str {
        match self {
            WriteKind::Insert => "insert",
            WriteKind::Update => "update",
            WriteKind::Delete => "delete",
            WriteKind::Copy => "copy",
            WriteKind::Other => "other",
        }
    }
}

/// The k bucket of a vector search: `10` (k ≤ 10), `100`, or `more`.
fn k_bucket(k: usize) -> &'static str {
    match k {
        0..=10 => "10",
        11..=100 => "100",
        _ => "more",
    }
}

/// The statement metrics and the registry they are in.
pub struct Metrics {
    registry: Registry,
    query_latency: HistogramVec,
    ingest_latency: HistogramVec,
    statements: IntCounterVec,
    errors: IntCounterVec,
    rows_ingested: IntCounter,
    connections: IntGauge,
    connections_total: IntCounter,
    wasm_calls: IntCounterVec,
    wasm_seconds: HistogramVec,
    wasm_limits: IntCounterVec,
    max_shard_series: AtomicUsize,
}

/// The outcomes a WebAssembly call is counted under.
const WASM_OUTCOMES: [&str; 2] = ["ok", "error"];
/// The limits a WebAssembly call can hit.
const WASM_LIMITS: [&str; 4] = ["time", "memory", "stack", "busy"];

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(max_shard_series: usize) -> Metrics {
        let registry = Registry::new();
        let query_latency = HistogramVec::new(
            HistogramOpts::new(
                "quiver_query_latency_seconds",
                "Time of statements that do not write rows, from execution to their last row \
                 (kind: vector_search, read, ddl, other; k: the k bucket of a vector search)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["kind", "k"],
        )
        .expect("valid histogram");
        let ingest_latency = HistogramVec::new(
            HistogramOpts::new(
                "quiver_ingest_latency_seconds",
                "Time of statements that write rows (kind: insert, update, delete, copy, other)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["kind"],
        )
        .expect("valid histogram");
        let statements = IntCounterVec::new(
            Opts::new(
                "quiver_statements_total",
                "Statements run, failed ones included (kind: vector_search, read, write, ddl, other)",
            ),
            &["kind"],
        )
        .expect("valid counter");
        let errors = IntCounterVec::new(
            Opts::new(
                "quiver_errors_total",
                "Errors sent to clients, by SQLSTATE class (the code's first two characters)",
            ),
            &["class"],
        )
        .expect("valid counter");
        let rows_ingested = IntCounter::new(
            "quiver_rows_ingested_total",
            "Rows written by INSERT and COPY FROM",
        )
        .expect("valid counter");
        let connections = IntGauge::new("quiver_connections_active", "Client connections open now")
            .expect("valid gauge");
        let connections_total = IntCounter::new(
            "quiver_connections_total",
            "Client connections accepted since start",
        )
        .expect("valid counter");
        let wasm_calls = IntCounterVec::new(
            Opts::new(
                "quiver_wasm_calls_total",
                "Calls of a WebAssembly function (one per batch of rows), by outcome: ok, error",
            ),
            &["function", "outcome"],
        )
        .expect("valid counter");
        let wasm_seconds = HistogramVec::new(
            HistogramOpts::new(
                "quiver_wasm_call_seconds",
                "Time of WebAssembly function calls, failed ones included",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["function"],
        )
        .expect("valid histogram");
        let wasm_limits = IntCounterVec::new(
            Opts::new(
                "quiver_wasm_limit_hits_total",
                "WebAssembly calls stopped by a limit (limit: time, memory, stack; busy: \
                 every instance slot was in use)",
            ),
            &["function", "limit"],
        )
        .expect("valid counter");
        for c in [
            Box::new(query_latency.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(wasm_calls.clone()),
            Box::new(wasm_seconds.clone()),
            Box::new(wasm_limits.clone()),
            Box::new(ingest_latency.clone()),
            Box::new(statements.clone()),
            Box::new(errors.clone()),
            Box::new(rows_ingested.clone()),
            Box::new(connections.clone()),
            Box::new(connections_total.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            query_latency,
            ingest_latency,
            statements,
            errors,
            rows_ingested,
            connections,
            connections_total,
            wasm_calls,
            wasm_seconds,
            wasm_limits,
            max_shard_series: AtomicUsize::new(max_shard_series),
        }
    }

    /// A call of WebAssembly function `function` that took `took` and
    /// ended with `error`, if any.
    pub fn wasm_call(
        &self,
        function: &str,
        took: std::time::Duration,
        error: Option<&quiver_udf::UdfError>,
    ) {
        use quiver_udf::UdfError;
        let outcome = WASM_OUTCOMES[usize::from(error.is_some())];
        self.wasm_calls
            .with_label_values(&[function, outcome])
            .inc();
        self.wasm_seconds
            .with_label_values(&[function])
            .observe(took.as_secs_f64());
        let limit = match error {
            Some(UdfError::Timeout { .. }) => WASM_LIMITS[0],
            Some(UdfError::ResourceLimit { .. }) => WASM_LIMITS[1],
            Some(UdfError::StackOverflow { .. }) => WASM_LIMITS[2],
            Some(UdfError::Busy(_)) => WASM_LIMITS[3],
            _ => return,
        };
        self.wasm_limits.with_label_values(&[function, limit]).inc();
    }

    /// A dropped function's series go (its name may come back as another function).
    pub fn forget_function(&self, function: &str) {
        for outcome in WASM_OUTCOMES {
            let _ = self.wasm_calls.remove_label_values(&[function, outcome]);
        }
        let _ = self.wasm_seconds.remove_label_values(&[function]);
        for limit in WASM_LIMITS {
            let _ = self.wasm_limits.remove_label_values(&[function, limit]);
        }
    }

    /// Sets how many shard series a scrape shows (`[metrics] max_shard_series`).
    pub fn set_max_shard_series(&self, n: usize) {
        self.max_shard_series.store(n, Ordering::Relaxed);
    }

    /// A statement that ran to its end: `search_k` when its plan held a
    /// vector search, `rows` the rows it wrote.
    pub fn statement_done(
        &self,
        class: StatementClass,
        search_k: Option<usize>,
        elapsed: std::time::Duration,
        rows: u64,
    ) {
        let seconds = elapsed.as_secs_f64();
        match (class, search_k) {
            (StatementClass::Write(w), _) => {
                self.statements.with_label_values(&["write"]).inc();
                self.ingest_latency
                    .with_label_values(&[w.label()])
                    .observe(seconds);
                self.rows_ingested.inc_by(rows);
            }
            (StatementClass::Read, Some(k)) => {
                self.statements.with_label_values(&["vector_search"]).inc();
                self.query_latency
                    .with_label_values(&["vector_search", k_bucket(k)])
                    .observe(seconds);
            }
            (class, _) => {
                let kind = match class {
                    StatementClass::Read => "read",
                    StatementClass::Ddl => "ddl",
                    _ => "other",
                };
                self.statements.with_label_values(&[kind]).inc();
                self.query_latency
                    .with_label_values(&[kind, ""])
                    .observe(seconds);
            }
        }
    }

    /// A statement that failed: counted, not timed (its error is counted
    /// by [`Metrics::error`] where it is sent).
    pub fn statement_failed(&self, class: StatementClass) {
        let kind = match class {
            StatementClass::Read => "read",
            StatementClass::Write(_) => "write",
            StatementClass::Ddl => "ddl",
            StatementClass::Other => "other",
        };
        self.statements.with_label_values(&[kind]).inc();
    }

    /// An error sent to a client with SQLSTATE `code`.
    pub fn error(&self, code: &str) {
        let class = code.get(..2).filter(|c| c.is_ascii()).unwrap_or("XX");
        self.errors.with_label_values(&[class]).inc();
    }

    /// A client connected; the guard counts it until dropped.
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.inc();
        self.connections_total.inc();
        ConnectionGuard(self.clone())
    }

    /// Every metric in the Prometheus text format (version 0.0.4): the
    /// statement figures, then the tables', shards' and caches' state read now.
    pub async fn encode(&self, engine: &Engine, results: &ResultCache) -> String {
        let mut families = self.registry.gather();
        let budget = self.max_shard_series.load(Ordering::Relaxed);
        families.extend(state_families(engine, results, budget).await);
        families.extend(engine.metric_families());
        // A family with no series yet (a histogram nothing was observed in)
        // is left out: the text format has no way to show it.
        families.retain(|f| !f.get_metric().is_empty());
        let mut out = Vec::new();
        // Encoding into a Vec fails only on an invalid family, which these are not.
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Counts one open connection in `quiver_connections_active`.
pub struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.dec();
    }
}

/// A metric family of samples taken now.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str, kind: MetricType) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push((labels, value));
    }

    fn build(self) -> MetricFamily {
        let mut f = MetricFamily::default();
        f.set_name(self.name.to_string());
        f.set_help(self.help.to_string());
        f.set_field_type(self.kind);
        let metrics = self
            .samples
            .into_iter()
            .map(|(labels, value)| {
                let mut m = proto::Metric::from_label(
                    labels
                        .into_iter()
                        .map(|(k, v)| {
                            let mut l = proto::LabelPair::default();
                            l.set_name(k.to_string());
                            l.set_value(v);
                            l
                        })
                        .collect(),
                );
                match self.kind {
                    MetricType::COUNTER => {
                        let mut c = proto::Counter::default();
                        c.set_value(value);
                        m.set_counter(c);
                    }
                    _ => {
                        let mut g = proto::Gauge::default();
                        g.set_value(value);
                        m.set_gauge(g);
                    }
                }
                m
            })
            .collect();
        f.set_metric(metrics);
        f
    }
}

/// Per-shard figures summed (a table past the shard-series budget).
#[derive(Default)]
struct ShardFigures {
    rows: u64,
    bytes: u64,
    fragments: u64,
    searches: u64,
    search_seconds: f64,
    search_cpu_seconds: f64,
}

impl ShardFigures {
    fn of(shard: &quiver_engine::shard::Shard) -> ShardFigures {
        let stats = shard.stats();
        let searches = shard.searches();
        ShardFigures {
            rows: stats.rows,
            bytes: stats.bytes(),
            fragments: stats.fragments,
            searches: searches.count,
            search_seconds: searches.wall.as_secs_f64(),
            search_cpu_seconds: searches.cpu.as_secs_f64(),
        }
    }

    fn add(&mut self, o: &ShardFigures) {
        self.rows += o.rows;
        self.bytes += o.bytes;
        self.fragments += o.fragments;
        self.searches += o.searches;
        self.search_seconds += o.search_seconds;
        self.search_cpu_seconds += o.search_cpu_seconds;
    }
}

/// The tables', shards' and caches' figures as metric families.
async fn state_families(
    engine: &Engine,
    results: &ResultCache,
    max_shard_series: usize,
) -> Vec<MetricFamily> {
    use MetricType::{COUNTER, GAUGE};
    let mut rows = Family::new("quiver_shard_rows", "Rows in a shard", GAUGE);
    let mut bytes = Family::new("quiver_shard_bytes", "Bytes of a shard's data files", GAUGE);
    let mut fragments = Family::new(
        "quiver_shard_fragments",
        "Lance fragments of a shard",
        GAUGE,
    );
    let mut searches = Family::new(
        "quiver_shard_searches_total",
        "Vector searches a shard served since the server started",
        COUNTER,
    );
    let mut search_seconds = Family::new(
        "quiver_shard_search_seconds_total",
        "Wall time of a shard's vector searches",
        COUNTER,
    );
    let mut search_cpu = Family::new(
        "quiver_shard_search_cpu_seconds_total",
        "CPU time of a shard's vector searches (the threads polling each search; \
         compare with process_cpu_seconds_total)",
        COUNTER,
    );
    let mut process_cpu = Family::new(
        "process_cpu_seconds_total",
        "CPU time (user and system) of the whole process",
        COUNTER,
    );
    process_cpu.add(Vec::new(), quiver_engine::cpu::process_time().as_secs_f64());
    let mut tables = engine.table_names();
    tables.sort();
    let mut budget = max_shard_series;
    for name in tables {
        let Ok(table) = engine.table(&name) else {
            continue;
        };
        let tier = table.def.tier.name().to_string();
        let figures: Vec<ShardFigures> =
            table.shards().iter().map(|s| ShardFigures::of(s)).collect();
        let series: Vec<(String, ShardFigures)> = if figures.len() <= budget {
            budget -= figures.len();
            figures
                .into_iter()
                .enumerate()
                .map(|(i, f)| (i.to_string(), f))
                .collect()
        } else {
            let mut all = ShardFigures::default();
            for f in &figures {
                all.add(f);
            }
            vec![("all".to_string(), all)]
        };
        for (shard, f) in series {
            let labels = vec![
                ("shard", shard),
                ("table", name.clone()),
                ("tier", tier.clone()),
            ];
            rows.add(labels.clone(), f.rows as f64);
            bytes.add(labels.clone(), f.bytes as f64);
            fragments.add(labels.clone(), f.fragments as f64);
            searches.add(labels.clone(), f.searches as f64);
            search_seconds.add(labels.clone(), f.search_seconds);
            search_cpu.add(labels, f.search_cpu_seconds);
        }
    }
    let mut hits = Family::new(
        "quiver_cache_hits_total",
        "Lookups a cache answered",
        COUNTER,
    );
    let mut misses = Family::new(
        "quiver_cache_misses_total",
        "Lookups a cache could not answer",
        COUNTER,
    );
    let mut entries = Family::new("quiver_cache_entries", "Entries a cache holds", GAUGE);
    let mut cache_bytes = Family::new("quiver_cache_bytes", "Bytes a cache holds", GAUGE);
    let mut capacity = Family::new(
        "quiver_cache_capacity_bytes",
        "Bytes a cache may hold",
        GAUGE,
    );
    // Long work running now: one series a task while it runs.
    let mut running = Family::new(
        "quiver_work_running",
        "Long work running now (command: create_index, reindex, optimize, reshard, tier_move)",
        GAUGE,
    );
    let mut work_done = Family::new(
        "quiver_work_progress_ratio",
        "How much of its current phase a running task has done (0 to 1; quiver_progress() \
         shows the phase)",
        GAUGE,
    );
    let mut work_elapsed = Family::new(
        "quiver_work_elapsed_seconds",
        "How long a running task has run",
        GAUGE,
    );
    let tasks = engine.progress();
    let mut per_command: std::collections::BTreeMap<&str, u64> = Default::default();
    for t in &tasks {
        *per_command.entry(t.command).or_default() += 1;
        let labels = vec![
            ("command", t.command.to_string()),
            ("id", t.id.to_string()),
            ("table", t.table.clone()),
        ];
        if t.total > 0 {
            work_done.add(labels.clone(), (t.done as f64 / t.total as f64).min(1.0));
        }
        work_elapsed.add(labels, t.elapsed.as_secs_f64());
    }
    for (command, n) in per_command {
        running.add(vec![("command", command.to_string())], n as f64);
    }
    let mut caches = vec![results.figures()];
    caches.extend(engine.cache_figures().await);
    for c in caches {
        let labels = || vec![("cache", c.name.to_string())];
        if let Some(h) = c.hits {
            hits.add(labels(), h as f64);
        }
        if let Some(m) = c.misses {
            misses.add(labels(), m as f64);
        }
        if let Some(e) = c.entries {
            entries.add(labels(), e as f64);
        }
        cache_bytes.add(labels(), c.bytes as f64);
        capacity.add(labels(), c.capacity as f64);
    }
    [
        rows,
        bytes,
        fragments,
        searches,
        search_seconds,
        search_cpu,
        process_cpu,
        running,
        work_done,
        work_elapsed,
        hits,
        misses,
        entries,
        cache_bytes,
        capacity,
    ]
    .into_iter()
    .filter(|f| !f.samples.is_empty())
    .map(Family::build)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn text(m: &Metrics) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&m.registry.gather(), &mut out)
            .expect("encode");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn statements_land_in_their_kind_and_k_bucket() {
        let m = Metrics::new(8);
        let ms = Duration::from_millis(3);
        m.statement_done(StatementClass::Read, Some(10), ms, 0);
        m.statement_done(StatementClass::Read, Some(11), ms, 0);
        m.statement_done(StatementClass::Read, Some(5000), ms, 0);
        m.statement_done(StatementClass::Read, None, ms, 0);
        m.statement_done(StatementClass::Write(WriteKind::Copy), None, ms, 1000);
        m.statement_done(StatementClass::Ddl, None, ms, 0);
        let t = text(&m);
        for line in [
            r#"quiver_query_latency_seconds_count{k="10",kind="vector_search"} 1"#,
            r#"quiver_query_latency_seconds_count{k="100",kind="vector_search"} 1"#,
            r#"quiver_query_latency_seconds_count{k="more",kind="vector_search"} 1"#,
            r#"quiver_query_latency_seconds_count{k="",kind="read"} 1"#,
            r#"quiver_query_latency_seconds_count{k="",kind="ddl"} 1"#,
            r#"quiver_ingest_latency_seconds_count{kind="copy"} 1"#,
            r#"quiver_ingest_latency_seconds_bucket{kind="copy",le="0.0025"} 0"#,
            r#"quiver_ingest_latency_seconds_bucket{kind="copy",le="0.005"} 1"#,
            r#"quiver_statements_total{kind="vector_search"} 3"#,
            "quiver_rows_ingested_total 1000",
        ] {
            assert!(t.contains(line), "missing {line} in\n{t}");
        }
    }

    #[test]
    fn errors_count_by_sqlstate_class_and_connections_by_guard() {
        let m = Arc::new(Metrics::new(8));
        m.statement_failed(StatementClass::Read);
        m.error("42P01");
        m.error("22P02");
        m.error("42703");
        m.error("");
        {
            let _a = m.connection();
            let _b = m.connection();
            assert!(text(&m).contains("quiver_connections_active 2"));
        }
        let t = text(&m);
        for line in [
            r#"quiver_errors_total{class="42"} 2"#,
            r#"quiver_errors_total{class="22"} 1"#,
            r#"quiver_errors_total{class="XX"} 1"#,
            r#"quiver_statements_total{kind="read"} 1"#,
            "quiver_connections_active 0",
            "quiver_connections_total 2",
        ] {
            assert!(t.contains(line), "missing {line} in\n{t}");
        }
    }
}
