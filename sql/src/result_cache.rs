//! The result cache: the rows of a read-only query, served again while
//! nothing it read has changed.
//!
//! An entry is found by its [`ResultKey`]: the statement as parsed and
//! printed back (so spacing and keyword case do not matter), its parameter
//! values, the session settings that can change an answer (search knobs,
//! `search_path`, …), the user, and the catalog and function generations
//! (any DDL makes every older entry unreachable). It holds the rows and the
//! exact data version of every table the query read ([`Table::data_version`]:
//! each shard's Lance version and the rows still in its write-ahead log),
//! taken before the query was planned and checked again once its last row
//! was produced, so the rows are exactly those of that version. A hit
//! compares those versions with the tables' current ones: a committed write
//! makes the entries of its table unreachable at once (and the stale entry
//! is dropped when next looked up).
//!
//! Not cached: statements that read anything but Quiver's tables (the
//! catalogs, `quiver_shards()`, …), that call a function not declared
//! IMMUTABLE (`random()`, `now()`, volatile user functions), that run in a
//! transaction block which has written (it reads its own rows), whose rows
//! the client did not read to the end, or with `SET quiver.result_cache =
//! off`. An entry is bounded (a 32nd of the cache) and expires after
//! `[cache] result_ttl`; the cache's bytes are the budget's result share.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::DefaultTableSource;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::expr::WindowFunctionDefinition;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::memory::MemoryStream;
use futures::Stream;
use quiver_engine::Engine;
use quiver_engine::table::{DataVersion, Table};

use crate::session::Output;

/// What a cached result is found by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResultKey {
    pub statement: Arc<str>,
    pub params: String,
    pub settings: Arc<str>,
    pub user: Arc<str>,
    pub catalog: u64,
    pub functions: u64,
}

impl ResultKey {
    fn bytes(&self) -> usize {
        self.statement.len() + self.params.len() + self.settings.len() + self.user.len() + 64
    }
}

/// One table a cached result read, at the version it read.
struct Read {
    table: Weak<Table>,
    version: DataVersion,
}

struct CachedResult {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    reads: Vec<Read>,
    bytes: usize,
    /// The k of the vector search that made it (the metrics label a hit
    /// as the search it answers).
    search_k: Option<usize>,
}

impl CachedResult {
    /// Whether every table it read is still at the version it read.
    fn current(&self) -> bool {
        self.reads.iter().all(|r| {
            r.table
                .upgrade()
                .is_some_and(|t| t.data_version() == r.version)
        })
    }
}

/// The counters `quiver_caches()` shows. `misses` counts the queries that
/// could have been answered from the cache and were run (not those that
/// may not be cached at all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResultCacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: u64,
    pub bytes: u64,
    pub capacity: u64,
}

pub struct ResultCache {
    cache: moka::sync::Cache<ResultKey, Arc<CachedResult>>,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCache")
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// The tables a query's plan reads, or `None` when its result may not be
/// cached (it reads something else, or calls a function that is not
/// IMMUTABLE).
pub(crate) fn plan_reads(plan: &LogicalPlan) -> Option<BTreeSet<String>> {
    let mut tables = BTreeSet::new();
    let mut ok = true;
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => {
                let provider = (scan.source.as_ref() as &dyn std::any::Any)
                    .downcast_ref::<DefaultTableSource>()
                    .map(|s| s.table_provider.clone());
                match provider.as_ref().and_then(|p| {
                    let any = p.as_ref() as &dyn std::any::Any;
                    crate::tables::table_name(any).or_else(|| crate::vector_search::table_name(any))
                }) {
                    Some(t) => {
                        tables.insert(t.to_string());
                    }
                    None => ok = false,
                }
            }
            LogicalPlan::Extension(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) => ok = false,
            LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) => ok = false,
            _ => {}
        }
        if !ok {
            return Ok(TreeNodeRecursion::Stop);
        }
        node.apply_expressions(|e| {
            e.apply(|e| {
                let volatility = match e {
                    Expr::ScalarFunction(f) => Some(f.func.signature().volatility),
                    Expr::AggregateFunction(f) => Some(f.func.signature().volatility),
                    Expr::WindowFunction(w) => match &w.fun {
                        WindowFunctionDefinition::AggregateUDF(f) => Some(f.signature().volatility),
                        WindowFunctionDefinition::WindowUDF(f) => Some(f.signature().volatility),
                    },
                    _ => None,
                };
                if volatility.is_some_and(|v| v != Volatility::Immutable) {
                    ok = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    (ok && !tables.is_empty()).then_some(tables)
}

/// What a statement's plans read, gathered while it runs (a statement can
/// plan several queries: subqueries run before it).
#[derive(Debug, Default)]
pub(crate) struct StatementReads {
    pub tables: BTreeSet<String>,
    /// Something it read or called rules caching out.
    pub uncacheable: bool,
}

impl StatementReads {
    /// Adds what one plan reads ([`plan_reads`]: `None` rules caching out).
    pub fn add(&mut self, tables: Option<&BTreeSet<String>>) {
        match tables {
            Some(t) => self.tables.extend(t.iter().cloned()),
            None => self.uncacheable = true,
        }
    }
}

/// Every table's data version, taken before a statement is planned.
pub(crate) struct Before(HashMap<String, (Arc<Table>, DataVersion)>);

impl Before {
    pub fn take(engine: &Engine) -> Before {
        let mut m = HashMap::new();
        for name in engine.table_names() {
            if let Ok(t) = engine.table(&name) {
                let v = t.data_version();
                m.insert(name, (t, v));
            }
        }
        Before(m)
    }
}

impl ResultCache {
    pub fn new(capacity: u64, ttl: std::time::Duration) -> ResultCache {
        ResultCache {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .weigher(|k: &ResultKey, v: &Arc<CachedResult>| {
                    (k.bytes() + v.bytes).min(u32::MAX as usize) as u32
                })
                .time_to_live(ttl)
                .build(),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Whether results are kept at all (`[cache] result_share` above 0).
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The largest result kept.
    fn max_entry(&self) -> usize {
        (self.capacity / 32) as usize
    }

    pub fn stats(&self) -> ResultCacheStats {
        self.cache.run_pending_tasks();
        ResultCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.cache.entry_count(),
            bytes: self.cache.weighted_size(),
            capacity: self.capacity,
        }
    }

    /// Its row of `quiver_caches()` and of the cache metrics.
    pub fn figures(&self) -> quiver_engine::engine::CacheFigures {
        let r = self.stats();
        quiver_engine::engine::CacheFigures {
            name: "results",
            hits: Some(r.hits),
            misses: Some(r.misses),
            entries: Some(r.entries),
            bytes: r.bytes,
            capacity: r.capacity,
            ..Default::default()
        }
    }

    /// The rows cached under `key`, if every table they were read from is
    /// still at that version, with the k of the vector search that made
    /// them; a stale entry is dropped.
    pub fn get(&self, key: &ResultKey) -> Option<(Output, Option<usize>)> {
        let hit = match self.cache.get(key) {
            Some(r) if r.current() => Some(r),
            Some(_) => {
                self.cache.invalidate(key);
                None
            }
            None => None,
        };
        // A miss is counted once the statement proves cacheable ([`ResultCache::keep`]).
        let r = hit?;
        let stream = MemoryStream::try_new(r.batches.clone(), r.schema.clone(), None).ok()?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some((
            Output::Rows {
                schema: r.schema.clone(),
                stream: Box::pin(stream),
            },
            r.search_k,
        ))
    }

    /// `out` (a statement's result), passed through; once its last row has
    /// gone by, kept under `key` if the tables `reads` names are still at
    /// the versions `before` holds (nothing was written meanwhile).
    pub(crate) fn keep(
        self: &Arc<Self>,
        key: ResultKey,
        before: Before,
        reads: StatementReads,
        search_k: Option<usize>,
        out: Output,
    ) -> Output {
        let Output::Rows { schema, stream } = out else {
            return out;
        };
        if reads.uncacheable || reads.tables.is_empty() {
            return Output::Rows { schema, stream };
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let mut before = before.0;
        let mut read = Vec::with_capacity(reads.tables.len());
        for t in &reads.tables {
            match before.remove(t) {
                Some(tv) => read.push(tv),
                // Created while the statement was planned.
                None => return Output::Rows { schema, stream },
            }
        }
        Output::Rows {
            schema: schema.clone(),
            stream: Box::pin(Keeping {
                schema,
                inner: stream,
                batches: Vec::new(),
                bytes: 0,
                search_k,
                pending: Some((self.clone(), key, read)),
            }),
        }
    }

    fn insert(&self, key: ResultKey, entry: CachedResult) {
        self.cache.insert(key, Arc::new(entry));
    }
}

/// A result stream that keeps a copy of its batches for the cache.
struct Keeping {
    schema: SchemaRef,
    inner: SendableRecordBatchStream,
    batches: Vec<RecordBatch>,
    bytes: usize,
    search_k: Option<usize>,
    /// Where the result goes once complete; dropped when it cannot be kept.
    #[allow(clippy::type_complexity)]
    pending: Option<(Arc<ResultCache>, ResultKey, Vec<(Arc<Table>, DataVersion)>)>,
}

impl Stream for Keeping {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let item = match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        match &item {
            Some(Ok(batch)) => {
                if let Some((cache, ..)) = &self.pending {
                    let bytes = self.bytes + batch.get_array_memory_size();
                    if bytes > cache.max_entry() {
                        self.pending = None;
                        self.batches.clear();
                    } else {
                        self.bytes = bytes;
                        self.batches.push(batch.clone());
                    }
                }
            }
            Some(Err(_)) => {
                self.pending = None;
                self.batches.clear();
            }
            None => {
                if let Some((cache, key, read)) = self.pending.take()
                    && read.iter().all(|(t, v)| t.data_version() == *v)
                {
                    let entry = CachedResult {
                        schema: self.schema.clone(),
                        batches: std::mem::take(&mut self.batches),
                        reads: read
                            .into_iter()
                            .map(|(t, version)| Read {
                                table: Arc::downgrade(&t),
                                version,
                            })
                            .collect(),
                        bytes: self.bytes,
                        search_k: self.search_k,
                    };
                    cache.insert(key, entry);
                }
            }
        }
        Poll::Ready(item)
    }
}

impl datafusion::physical_plan::RecordBatchStream for Keeping {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
