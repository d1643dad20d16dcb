//! One table: a Lance dataset, the latest committed version, the tail of
//! logged rows not yet in it, and its writes.
//!
//! Small appends (an INSERT of at most [`LOG_MAX_ROWS`] rows) are written to
//! the table's write-ahead log ([`crate::wal`]) and, once synced, join the
//! tail: rows held in memory and searched beside the Lance version. A flush
//! (in the background, when the tail holds [`FLUSH_BATCHES`] appends, a
//! chunk's worth of rows, its byte limit, or is [`FLUSH_AGE`] old; and before
//! every DELETE, UPDATE and index build) writes the tail to Lance as one
//! version and drops it from memory in the same step. Larger appends (COPY,
//! big INSERTs) are written to Lance directly, one version per statement
//! (concurrent ones share a commit).
//!
//! Writers take the table's write lock to commit to Lance and then publish
//! the version; readers take the published snapshot (version and tail) and
//! never wait for a writer. Compaction commits outside the write lock (see
//! [`crate::housekeeping`]), so a version is published only when it is newer
//! than the one already published.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch, RecordBatchIterator};
use arrow::datatypes::Float32Type;
use datafusion::logical_expr::Expr;
use lance::Dataset;
use lance::dataset::builder::DatasetBuilder;
use lance::dataset::transaction::Transaction;
use lance::dataset::write::delete::DeleteBuilder;
use lance::dataset::{CommitBuilder, InsertBuilder};
use lance::dataset::{WriteMode, WriteParams};
use lance::index::DatasetIndexExt;
use lance::session::Session;
use lance_index::optimize::OptimizeOptions;
use quiver_tiering::Location;

use crate::chunks::ChunkCache;
use crate::engine_err;
use crate::error::Result;
use crate::fresh::FreshRows;
use crate::housekeeping::{self, Pin, Pins};
use crate::index::{BuildParams, IndexDef};
use crate::metrics::Work;
use crate::schema::{ColumnType, TableDef};
use crate::view::{TableView, ViewCache};
use crate::wal::{self, Segment};
use lance::table::format::IndexMetadata;

/// Appends of at most this many rows go through the write-ahead log (each is
/// one in-memory fragment of a view, which must fit one chunk).
pub const LOG_MAX_ROWS: usize = crate::chunks::CHUNK_ROWS as usize / 2;
/// The tail is flushed once it holds this many appends …
pub const FLUSH_BATCHES: usize = 64;
/// … or this many rows …
pub const FLUSH_ROWS: usize = crate::chunks::CHUNK_ROWS as usize;
/// … or its oldest row has waited this long (the default of `[storage]
/// log_flush_interval`).
pub const FLUSH_AGE: Duration = Duration::from_secs(1);
/// Appenders wait for a flush when the tail has grown this many times past
/// its limits (the flush is falling behind).
const BACKPRESSURE: usize = 4;
/// How many of the latest versions start-up reads for the flush mark.
const MARK_SEARCH_VERSIONS: u64 = 64;

/// What every table of one engine shares: the one Lance session (index and
/// metadata caches) and the one chunk cache, both sized from the memory budget.
#[derive(Debug, Clone)]
pub struct Shared {
    pub session: Arc<Session>,
    pub chunks: Arc<ChunkCache>,
    /// How long superseded versions are kept (`[storage] version_retention`).
    pub retention: Duration,
    /// Log records are synced before they are acknowledged (`[storage] fsync`).
    pub fsync: bool,
    /// Tails are flushed once all of them together pass this many bytes.
    pub tail_bytes: usize,
    /// The bytes all tables' tails hold.
    pub tail_total: Arc<std::sync::atomic::AtomicUsize>,
    /// How long logged rows may wait before a flush.
    pub flush_age: Duration,
    /// The prepared fresh fragments of all tables hold at most this many bytes.
    pub fresh_bytes: u64,
    /// The bytes they hold.
    pub fresh_used: Arc<AtomicU64>,
    /// Index builds, index updates and compactions, timed.
    pub maintenance: Arc<crate::metrics::MaintenanceMetrics>,
    /// The requests the cold tier sends its object store.
    pub store_requests: Arc<quiver_tiering::StoreMetrics>,
    /// Long work running now (`quiver_progress()`).
    pub progress: Arc<crate::progress::Progress>,
}

impl Shared {
    pub fn new(options: &crate::EngineOptions) -> Shared {
        let budget = &options.budget;
        Shared {
            session: budget.lance_session(options.fsync),
            chunks: Arc::new(ChunkCache::new(budget.chunk_bytes(), options.vector_ttl)),
            retention: options.version_retention,
            fsync: options.fsync,
            tail_bytes: budget.tail_bytes() as usize,
            tail_total: Default::default(),
            flush_age: options.log_flush_interval,
            fresh_bytes: budget.fresh_bytes(),
            fresh_used: Default::default(),
            maintenance: Default::default(),
            store_requests: Default::default(),
            progress: Default::default(),
        }
    }

    /// Write parameters of every commit to a table of `columns` columns:
    /// this session, row addresses as row ids (the search path relies on it,
    /// see [`crate::view`]), and [`WRITER_COLUMN_BYTES`] of buffer a column.
    fn write_params(&self, mode: WriteMode, columns: usize) -> WriteParams {
        WriteParams {
            mode,
            session: Some(self.session.clone()),
            enable_stable_row_ids: false,
            file_writer_options: Some(lance_file::writer::FileWriterOptions {
                data_cache_bytes: Some(WRITER_COLUMN_BYTES * columns.max(1) as u64),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Rows acknowledged through the log and not yet flushed to Lance.
#[derive(Debug, Clone, Default)]
pub struct Tail {
    /// One batch per logged append, with its lsn.
    pub batches: Vec<(u64, RecordBatch)>,
    pub rows: usize,
    pub bytes: usize,
    /// The highest lsn made visible: changes with every logged append.
    pub stamp: u64,
}

/// Bytes a column's values are buffered in while a data file is written,
/// before they are encoded into a page. Lance's default is 8 MiB a column:
/// on wordnet (5 columns) a COPY's peak memory was 30 MB above what it is
/// with this, at the same rows/s.
pub const WRITER_COLUMN_BYTES: u64 = 2 << 20;

impl Tail {
    /// This tail with `ready` appended (the highest lsn visible: `upto`).
    fn with(&self, ready: Vec<(u64, RecordBatch)>, upto: u64) -> Tail {
        let mut t = self.clone();
        for (lsn, b) in ready {
            t.rows += b.num_rows();
            t.bytes += b.get_array_memory_size();
            t.batches.push((lsn, b));
        }
        t.stamp = t.stamp.max(upto);
        t
    }

    /// This tail without the batches up to `upto` (flushed).
    fn without_upto(&self, upto: u64) -> Tail {
        let kept = self.batches.iter().filter(|(l, _)| *l > upto).cloned();
        Tail::default().with(kept.collect(), self.stamp)
    }

    /// Past `times` its limits, or all tails together past `times` their share.
    fn over_limits(&self, shared: &Shared, times: usize) -> bool {
        self.batches.len() >= FLUSH_BATCHES * times
            || self.rows >= FLUSH_ROWS * times
            || shared.tail_total.load(Ordering::Relaxed) >= shared.tail_bytes.saturating_mul(times)
    }
}

/// What a reader takes: one Lance version and the tail beside it. Published
/// as a pair, so a flush moves rows from the tail into the version at once.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub dataset: Arc<Dataset>,
    pub tail: Arc<Tail>,
    /// The Lance version at which the rows last changed: a flush, which
    /// moves rows from the tail into a new Lance version, keeps it, so that
    /// ([`Snapshot::rows_version`], the tail's stamp) names the rows.
    pub rows_version: u64,
}

impl Snapshot {
    /// `dataset` with `tail` beside it, its rows named by its own version.
    pub fn new(dataset: Arc<Dataset>, tail: Arc<Tail>) -> Snapshot {
        let rows_version = dataset.version().version;
        Snapshot {
            dataset,
            tail,
            rows_version,
        }
    }
}

/// An index's segments (its base, then its deltas, as Lance lists them),
/// index by index; Lance's own system indexes (`__…`) left out.
fn segments_by_name(indices: &[IndexMetadata]) -> Vec<(&str, Vec<&IndexMetadata>)> {
    let mut out: Vec<(&str, Vec<&IndexMetadata>)> = Vec::new();
    for i in indices.iter().filter(|i| !i.name.starts_with("__")) {
        match out.iter_mut().find(|(n, _)| *n == i.name) {
            Some((_, segments)) => segments.push(i),
            None => out.push((&i.name, vec![i])),
        }
    }
    out
}

/// Whether one of `segments` covers fragment `fragment`.
fn covers(segments: &[&IndexMetadata], fragment: u32) -> bool {
    segments.iter().any(|s| {
        s.fragment_bitmap
            .as_ref()
            .is_some_and(|b| b.contains(fragment))
    })
}

/// The table's write-ahead log and its records not yet visible.
struct Log {
    dir: PathBuf,
    state: std::sync::Mutex<LogState>,
    /// One sync (or segment switch) at a time; waiters share its result.
    sync_lock: tokio::sync::Mutex<()>,
    /// Every record up to this lsn is durable and in the tail (or flushed).
    visible: AtomicU64,
}

struct LogState {
    /// The segment records are appended to; `None` until the log is
    /// recovered, and after a write to it failed in a way that could not be
    /// undone (appends then go to Lance directly).
    segment: Option<Segment>,
    next_lsn: u64,
    /// Written, not yet synced: made visible by the sync that covers them.
    pending: Vec<(u64, RecordBatch)>,
    /// Segments whose records are all in the tail, removed once flushed.
    closed: Vec<PathBuf>,
}

/// A table's size as the catalog reports it ([`Shard::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    pub rows: u64,
    pub data_bytes: u64,
    /// Rows acknowledged but not yet flushed to data files: their size in memory.
    pub tail_bytes: u64,
    pub fragments: u64,
    /// Rows deleted in the data files and not yet compacted away (read
    /// past by scans, skipped by index searches).
    pub deleted_rows: u64,
}

impl TableStats {
    /// The table's size as `pg_table_size` reports it: its data files and
    /// the rows still waiting in its log.
    pub fn bytes(&self) -> u64 {
        self.data_bytes + self.tail_bytes
    }
}

pub struct Shard {
    pub def: TableDef,
    shared: Shared,
    latest: RwLock<Snapshot>,
    log: Log,
    /// A background flush task is running.
    flusher: AtomicBool,
    /// Wakes the flush task before the flush age (the tail passed a limit).
    flush_now: tokio::sync::Notify,
    /// Set when the table is dropped: nothing more is flushed.
    closed: AtomicBool,
    write_lock: Arc<tokio::sync::Mutex<()>>,
    views: ViewCache,
    /// Versions readers hold (cleanup keeps them).
    pins: Arc<Pins>,
    /// One compaction at a time.
    compaction: Arc<tokio::sync::Mutex<()>>,
    /// Held by a writer of a table with unique constraints from its check
    /// to its commit (by a transaction block, until it ends); taken
    /// before the write lock.
    constraint_lock: Arc<tokio::sync::Mutex<()>>,
    /// A background housekeeping task is running.
    housekeeping: AtomicBool,
    /// When the background housekeeping last ran a cleanup.
    last_cleanup: std::sync::Mutex<Option<std::time::Instant>>,
    /// One cleanup at a time (a pass lists the versions another may delete).
    cleanup_lock: tokio::sync::Mutex<()>,
    /// Writes committed since the table was opened.
    writes: AtomicU64,
    /// Appends whose files are written, waiting for the next commit.
    queued_appends: std::sync::Mutex<Vec<QueuedAppend>>,
    /// Held (shared) by appends from writing their files until their commit;
    /// cleanup takes it exclusively, so it never deletes uncommitted files.
    uncommitted: Arc<tokio::sync::RwLock<()>>,
    /// The rows the vector indexes do not cover, prepared for searches.
    fresh: Arc<FreshRows>,
    /// Searches served since the table was opened, and their time
    /// ([`Shard::note_search`]).
    searches: AtomicU64,
    search_nanos: AtomicU64,
    /// CPU time of those searches, as [`crate::cpu::timed`] measures it.
    search_cpu_nanos: AtomicU64,
}

/// The searches a shard served since it was opened ([`Shard::searches`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchFigures {
    pub count: u64,
    /// Their wall time, summed.
    pub wall: Duration,
    /// Their CPU time, summed.
    pub cpu: Duration,
}

/// The locks of a table taken out of service ([`Shard::retire`]).
pub struct Retired {
    _locks: (
        tokio::sync::OwnedMutexGuard<()>,
        tokio::sync::OwnedMutexGuard<()>,
        tokio::sync::OwnedMutexGuard<()>,
    ),
}

/// An append being written batch by batch ([`Shard::append_stream`]).
pub struct ShardAppend {
    table: Arc<Shard>,
    batches: Option<tokio::sync::mpsc::Sender<RecordBatch>>,
    writer: tokio::task::JoinHandle<lance::Result<Transaction>>,
    rows: u64,
    _uncommitted: tokio::sync::OwnedRwLockReadGuard<()>,
}

impl Drop for ShardAppend {
    /// Not finished (the statement failed): stop writing; the files written
    /// are unreferenced and cleanup removes them.
    fn drop(&mut self) {
        self.writer.abort();
    }
}

impl ShardAppend {
    /// Writes one batch (the table's schema) to the statement's data files.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.table.validate(&batch)?;
        let rows = batch.num_rows() as u64;
        let sent = match &self.batches {
            Some(tx) => tx.send(batch).await.is_ok(),
            None => false,
        };
        if !sent {
            // The writer stopped: its error is the statement's.
            self.batches = None;
            return match (&mut self.writer).await {
                Ok(Err(e)) => Err(e.into()),
                Ok(Ok(_)) => engine_err!(Internal, "the append's writer ended early"),
                Err(e) => engine_err!(Internal, "the append's writer failed: {e}"),
            };
        }
        self.rows += rows;
        Ok(())
    }

    /// Commits everything written as one version; the rows appended.
    pub async fn finish(mut self) -> Result<u64> {
        if let Some(transaction) = self.written().await? {
            self.table.commit_append(transaction).await?;
        }
        Ok(self.rows)
    }

    /// Commits everything written into a transaction's next private
    /// version ([`crate::txn`]); the rows appended.
    pub async fn finish_in(mut self, txn: &mut crate::txn::ShardWrites) -> Result<u64> {
        if let Some(transaction) = self.written().await? {
            txn.commit_written(transaction).await?;
        }
        Ok(self.rows)
    }

    /// Ends the stream and waits for its files: the append to commit (none
    /// when no row was written).
    async fn written(&mut self) -> Result<Option<Transaction>> {
        self.batches = None;
        if self.rows == 0 {
            self.writer.abort();
            return Ok(None);
        }
        match (&mut self.writer).await {
            Ok(r) => Ok(Some(r?)),
            Err(e) => engine_err!(Internal, "the append's writer failed: {e}"),
        }
    }
}

/// An append whose data files are written, waiting to be committed.
struct QueuedAppend {
    transaction: Transaction,
    done: tokio::sync::oneshot::Sender<Result<()>>,
}

/// What one `OPTIMIZE TABLE` (or background pass) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HousekeepingReport {
    pub fragments_removed: usize,
    pub fragments_added: usize,
    pub indexes_updated: bool,
    pub versions_removed: u64,
    pub bytes_removed: u64,
}

impl Shard {
    /// Creates the empty dataset for a new table (and its log in `log_dir`).
    pub async fn create(
        at: Location,
        def: TableDef,
        shared: &Shared,
        log_dir: PathBuf,
    ) -> Result<Shard> {
        let schema = def.arrow_schema();
        let empty = RecordBatchIterator::new(Vec::<Result<RecordBatch, _>>::new(), schema);
        let mut params = shared.write_params(WriteMode::Create, def.columns.len());
        params.store_params = at.params;
        let ds = Dataset::write(empty, at.uri.as_str(), Some(params)).await?;
        let table = Self::with_dataset(def, ds, shared, log_dir);
        table.recover_log().await?;
        Ok(table)
    }

    /// Opens a table: its latest version, then its log, whose records that
    /// Lance does not have yet are written to it as one version.
    pub async fn open(
        at: Location,
        def: TableDef,
        shared: &Shared,
        log_dir: PathBuf,
    ) -> Result<Shard> {
        let mut builder = DatasetBuilder::from_uri(&at.uri).with_session(shared.session.clone());
        if let Some(params) = at.params {
            builder = builder.with_store_params(params);
        }
        let ds = builder.load().await?;
        // A transaction the last process did not end is rolled back first.
        let mut ds = crate::txn::recover(&log_dir, ds, shared.fsync).await?;
        Box::pin(crate::alter::reconcile_columns(&mut ds, &def)).await?;
        if ds.manifest().uses_stable_row_ids() {
            return engine_err!(
                Unsupported,
                "table {} was written with stable row ids, which this version does not read",
                def.name
            );
        }
        let table = Self::with_dataset(def, ds, shared, log_dir);
        table.recover_log().await?;
        Ok(table)
    }

    fn with_dataset(def: TableDef, ds: Dataset, shared: &Shared, log_dir: PathBuf) -> Shard {
        Shard {
            def,
            shared: shared.clone(),
            latest: RwLock::new(Snapshot::new(Arc::new(ds), Default::default())),
            log: Log {
                dir: log_dir,
                state: std::sync::Mutex::new(LogState {
                    segment: None,
                    next_lsn: 1,
                    pending: Vec::new(),
                    closed: Vec::new(),
                }),
                sync_lock: Default::default(),
                visible: AtomicU64::new(0),
            },
            flusher: AtomicBool::new(false),
            flush_now: Default::default(),
            closed: AtomicBool::new(false),
            write_lock: Default::default(),
            views: ViewCache::default(),
            pins: Default::default(),
            compaction: Default::default(),
            constraint_lock: Default::default(),
            housekeeping: AtomicBool::new(false),
            last_cleanup: Default::default(),
            cleanup_lock: Default::default(),
            writes: AtomicU64::new(0),
            queued_appends: Default::default(),
            uncommitted: Default::default(),
            fresh: Arc::new(FreshRows::new(
                shared.fresh_used.clone(),
                shared.fresh_bytes,
            )),
            searches: AtomicU64::new(0),
            search_nanos: AtomicU64::new(0),
            search_cpu_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one search of this shard that took `elapsed` (wall time)
    /// and `cpu` (CPU time).
    pub fn note_search(&self, elapsed: Duration, cpu: Duration) {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.searches.fetch_add(1, Ordering::Relaxed);
        self.search_nanos
            .fetch_add(nanos(elapsed), Ordering::Relaxed);
        self.search_cpu_nanos
            .fetch_add(nanos(cpu), Ordering::Relaxed);
    }

    /// The searches this shard served since it was opened.
    pub fn searches(&self) -> SearchFigures {
        let load = |n: &AtomicU64| Duration::from_nanos(n.load(Ordering::Relaxed));
        SearchFigures {
            count: self.searches.load(Ordering::Relaxed),
            wall: load(&self.search_nanos),
            cpu: load(&self.search_cpu_nanos),
        }
    }

    /// The latest committed version.
    pub fn dataset(&self) -> Arc<Dataset> {
        self.snapshot().dataset
    }

    /// The latest committed version and the tail beside it.
    pub fn snapshot(&self) -> Snapshot {
        match self.latest.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn latest_mut(&self) -> std::sync::RwLockWriteGuard<'_, Snapshot> {
        match self.latest.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The latest snapshot, its version held against cleanup while the pin lives.
    pub fn pinned_snapshot(&self) -> (Snapshot, Pin) {
        let snap = self.snapshot();
        let pin = self.pins.pin(snap.dataset.version().version);
        (snap, pin)
    }

    /// The write lock, held across statements by a transaction ([`crate::txn`]).
    pub(crate) async fn write_lock_owned(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.write_lock.clone().lock_owned().await
    }

    /// The compaction lock, held by a transaction so that no compaction
    /// commits on top of its private versions.
    pub(crate) async fn compaction_lock_owned(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.compaction.clone().lock_owned().await
    }

    /// The constraint lock (see the field), held until the guard drops.
    pub async fn constraint_guard(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.constraint_lock.clone().lock_owned().await
    }

    /// Flushes the tail; the caller holds the write lock.
    pub(crate) async fn flush_held(self: &Arc<Self>) -> Result<usize> {
        self.flush_locked().await
    }

    /// Whether commits sync to disk (`[storage] fsync`).
    pub(crate) fn syncs(&self) -> bool {
        self.shared.fsync
    }

    pub(crate) fn write_params_for(&self, mode: WriteMode) -> WriteParams {
        self.shared.write_params(mode, self.def.columns.len())
    }

    pub(crate) fn lance_session(&self) -> Arc<Session> {
        self.shared.session.clone()
    }

    pub(crate) fn validate_batch(&self, batch: &RecordBatch) -> Result<()> {
        self.validate(batch)
    }

    /// Publishes a version a transaction committed (or rolled back to) and
    /// counts it as a write.
    pub(crate) async fn publish_committed(self: &Arc<Self>, ds: Arc<Dataset>) {
        self.publish(ds, false).await;
        self.after_write();
    }

    /// Publishes a version that holds the rows of the latest one (a rolled
    /// back transaction's restored base): [`Snapshot::rows_version`] stays.
    pub(crate) async fn publish_restored(self: &Arc<Self>, ds: Arc<Dataset>) {
        self.publish(ds, true).await;
        self.after_write();
    }

    /// The first half of [`Shard::publish_committed`] for a commit that
    /// publishes several shards at once: prepares `ds` for searches.
    pub(crate) async fn warm_committed(&self, ds: &Arc<Dataset>) {
        self.warm(ds, self.snapshot().tail).await;
    }

    /// The second half: makes `ds` (warmed) the latest version. Does not
    /// wait, so a caller can publish several shards under one lock.
    pub(crate) fn publish_warmed(self: &Arc<Self>, ds: Arc<Dataset>) {
        {
            let mut g = self.latest_mut();
            if ds.version().version >= g.dataset.version().version {
                g.rows_version = ds.version().version;
                g.dataset = ds;
            }
        }
        self.after_write();
    }

    /// Makes `ds` the latest version unless a newer one is already published,
    /// after warming it ([`Shard::warm`]).
    async fn publish(&self, ds: Arc<Dataset>, same_rows: bool) {
        self.warm(&ds, self.snapshot().tail).await;
        let mut g = self.latest_mut();
        if ds.version().version >= g.dataset.version().version {
            if !same_rows {
                g.rows_version = ds.version().version;
            }
            g.dataset = ds;
        }
    }

    /// Prepares version `ds` (with `tail` beside it) for the searches that
    /// will read it once it is published: builds its view and opens on it
    /// the vector indexes the latest view has opened, which reads the new
    /// fragments' metadata and prepares their fresh rows ([`crate::fresh`]).
    /// The writer that made the version pays for what it changed, not the
    /// next search. A failure is left to that search to meet again.
    async fn warm(&self, ds: &Arc<Dataset>, tail: Arc<Tail>) {
        let opened = self.views.opened().await;
        if opened.is_empty() {
            return;
        }
        let snapshot = Snapshot::new(ds.clone(), tail);
        let pin = self.pins.pin(ds.version().version);
        let view = match self.view_of(snapshot, pin).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(table = self.def.name, error = %e, "warming a new version failed");
                return;
            }
        };
        for (name, column, distance) in opened {
            // A dropped index is not there to open.
            if let Err(e) = view.ann(&name, &column, distance).await {
                tracing::debug!(table = self.def.name, index = name, error = %e, "warming an index failed");
            }
        }
    }

    /// Fresh rows prepared for the searches of the indexes, and the rows
    /// the last index handle opened leaves to exact scoring.
    pub fn fresh_rows(&self) -> (usize, usize) {
        self.fresh.rows()
    }

    /// What the latest version holds, from its manifest (no I/O): live rows
    /// (with the tail's) and the bytes of the data files.
    pub fn stats(&self) -> TableStats {
        let snap = self.snapshot();
        let mut stats = TableStats {
            rows: snap.tail.rows as u64,
            tail_bytes: snap.tail.bytes as u64,
            ..TableStats::default()
        };
        for f in snap.dataset.fragments().iter() {
            let deleted = f
                .deletion_file
                .as_ref()
                .and_then(|d| d.num_deleted_rows)
                .unwrap_or(0);
            stats.rows += f.physical_rows.unwrap_or(0).saturating_sub(deleted) as u64;
            stats.deleted_rows += deleted as u64;
            stats.data_bytes += f
                .files
                .iter()
                .filter_map(|d| d.file_size_bytes.get())
                .map(u64::from)
                .sum::<u64>();
            stats.fragments += 1;
        }
        stats
    }

    /// Rows in the tail (acknowledged, not yet flushed to Lance).
    pub fn tail_rows(&self) -> usize {
        self.snapshot().tail.rows
    }

    /// Version `ds` (a transaction's private head) with the current tail,
    /// held against cleanup while the pin lives.
    pub fn pinned_at(&self, ds: Arc<Dataset>) -> (Snapshot, Pin) {
        let pin = self.pins.pin(ds.version().version);
        let snap = Snapshot::new(ds, self.snapshot().tail);
        (snap, pin)
    }

    /// The search view of version `ds` when given (a transaction reading its
    /// own writes), else of the latest snapshot.
    pub async fn view_at(&self, ds: Option<Arc<Dataset>>) -> Result<Arc<TableView>> {
        let (snap, pin) = match ds {
            Some(ds) => self.pinned_at(ds),
            None => self.pinned_snapshot(),
        };
        self.view_of(snap, pin).await
    }

    /// The search view of the latest snapshot (built from the previous view:
    /// only what changed is read).
    pub async fn view(&self) -> Result<Arc<TableView>> {
        self.view_at(None).await
    }

    /// The search view of `snap`, held by `pin`, from the view cache.
    pub(crate) async fn view_of(&self, snap: Snapshot, pin: Pin) -> Result<Arc<TableView>> {
        self.views
            .get(
                snap,
                pin,
                &self.def,
                &self.shared.chunks,
                self.fresh.clone(),
            )
            .await
    }

    /// Appends rows in one commit. The batches must have the table's schema.
    ///
    /// Two phases, so that concurrent appends share a commit (group commit):
    /// the statement's data files are written beside other writers (Lance's
    /// `execute_uncommitted`); then its transaction joins the queue, and
    /// whichever appender holds the write lock commits every queued append as
    /// one version (`CommitBuilder::execute_batch`: one manifest, one sync of
    /// the disk). Each appender returns once the version holding its rows is
    /// committed and published.
    pub async fn append(self: &Arc<Self>, batches: Vec<RecordBatch>) -> Result<u64> {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return Ok(0);
        }
        for b in &batches {
            self.validate(b)?;
        }
        if rows <= LOG_MAX_ROWS {
            let batch = match batches.as_slice() {
                [one] => one.clone(),
                _ => arrow::compute::concat_batches(&self.def.arrow_schema(), &batches)?,
            };
            if let Some(lsn) = self.log_append(&batch)? {
                self.log_sync(lsn).await?;
                self.after_logged_append().await;
                return Ok(rows as u64);
            }
        }
        // Files written but not committed must not look like garbage to cleanup.
        let _uncommitted = self.uncommitted.clone().read_owned().await;
        let transaction = InsertBuilder::new(self.dataset())
            .with_params(
                &self
                    .shared
                    .write_params(WriteMode::Append, self.def.columns.len()),
            )
            .execute_uncommitted(batches)
            .await?;
        self.commit_append(transaction).await?;
        Ok(rows as u64)
    }

    /// An append fed batch by batch (COPY FROM STDIN): each batch is written
    /// to data files as it comes, so memory holds a batch, not the statement;
    /// [`ShardAppend::finish`] commits all of them as one version.
    pub async fn append_stream(self: &Arc<Self>) -> ShardAppend {
        let uncommitted = self.uncommitted.clone().read_owned().await;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(2);
        let batches = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|b| b.map(Ok)));
        let stream: datafusion::physical_plan::SendableRecordBatchStream = Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                self.def.arrow_schema(),
                batches,
            ),
        );
        let dest = self.dataset();
        let mut params = self
            .shared
            .write_params(WriteMode::Append, self.def.columns.len());
        // The batches are the stream's own (a COPY piece's, each decoded into
        // new arrays): Lance may keep them until encoded instead of copying
        // them into its buffers (2 MiB less at a 1M-row COPY's peak).
        if let Some(options) = params.file_writer_options.as_mut() {
            options.keep_original_array = Some(true);
        }
        let writer = tokio::spawn(async move {
            InsertBuilder::new(dest)
                .with_params(&params)
                .execute_uncommitted_stream(stream)
                .await
        });
        ShardAppend {
            table: self.clone(),
            batches: Some(tx),
            writer,
            rows: 0,
            _uncommitted: uncommitted,
        }
    }

    /// Queues a written append for the next commit and waits for it: whoever
    /// holds the write lock commits every queued append as one version.
    async fn commit_append(self: &Arc<Self>, transaction: Transaction) -> Result<()> {
        let (done, committed) = tokio::sync::oneshot::channel();
        self.queued().push(QueuedAppend { transaction, done });
        {
            let _w = self.write_lock.lock().await;
            // Empty when an earlier lock holder already committed this one.
            let queued = std::mem::take(&mut *self.queued());
            if let Err(e) = self.check_open() {
                for q in queued {
                    let _ = q.done.send(Err(e.clone()));
                }
            } else if !queued.is_empty() {
                self.commit_appends(queued).await;
            }
        }
        match committed.await {
            Ok(result) => result,
            Err(_) => engine_err!(Internal, "the commit of this append was abandoned"),
        }
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, Vec<QueuedAppend>> {
        match self.queued_appends.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Commits queued appends as one version (under the write lock) and tells each.
    async fn commit_appends(self: &Arc<Self>, queued: Vec<QueuedAppend>) {
        let (transactions, waiters): (Vec<_>, Vec<_>) =
            queued.into_iter().map(|q| (q.transaction, q.done)).unzip();
        let result = CommitBuilder::new(self.dataset())
            .with_session(self.shared.session.clone())
            .use_stable_row_ids(false)
            .execute_batch(transactions)
            .await;
        match result {
            Ok(r) => {
                self.publish(Arc::new(r.dataset), false).await;
                self.after_write();
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
            }
            Err(e) => {
                let e = crate::error::EngineError::from(e);
                for w in waiters {
                    let _ = w.send(Err(e.clone()));
                }
            }
        }
    }

    /// Rejects vectors with NaN or infinite components; dimensions are fixed by the type.
    fn validate(&self, batch: &RecordBatch) -> Result<()> {
        if batch.schema().fields().len() != self.def.columns.len() {
            return engine_err!(
                Internal,
                "batch has {} columns, table {} has {}",
                batch.num_columns(),
                self.def.name,
                self.def.columns.len()
            );
        }
        for (col, def) in batch.columns().iter().zip(&self.def.columns) {
            if !def.nullable && col.null_count() > 0 {
                return engine_err!(
                    NotNullViolation,
                    "null value in column \"{}\" violates not-null constraint",
                    def.name
                );
            }
            if let ColumnType::Vector(dim) = def.ty {
                let list = col.as_fixed_size_list();
                let values = list.values().as_primitive::<Float32Type>().values();
                let dim = dim as usize;
                let bad = (0..list.len()).filter(|&i| list.is_valid(i)).any(|i| {
                    values[i * dim..(i + 1) * dim]
                        .iter()
                        .any(|x| !x.is_finite())
                });
                if bad {
                    return engine_err!(
                        InvalidData,
                        "NaN or Infinity is not allowed in vector column \"{}\"",
                        def.name
                    );
                }
            }
        }
        Ok(())
    }

    /// Deletes the rows matching `filter` in one commit; returns how many.
    pub async fn delete(self: &Arc<Self>, filter: Expr) -> Result<u64> {
        let _w = self.write_lock.lock().await;
        self.check_open()?;
        // Lance deletes only what it has: the tail goes first.
        self.flush_locked().await?;
        let res = DeleteBuilder::from_expr(self.dataset(), filter)
            .execute()
            .await?;
        self.publish(res.new_dataset, false).await;
        self.after_write();
        Ok(res.num_deleted_rows)
    }

    /// Builds (or with `replace`, rebuilds) a Lance index, one commit.
    pub async fn create_index(self: &Arc<Self>, def: &IndexDef, replace: bool) -> Result<()> {
        let _w = self.write_lock.lock().await;
        // A background compaction committing meanwhile would make Lance
        // refuse the index's commit (a retryable conflict): wait for it.
        let _c = self.compaction.lock().await;
        self.check_open()?;
        // The index covers every acknowledged row.
        self.flush_locked().await?;
        let mut ds = (*self.dataset()).clone();
        let rows = ds.count_rows(None).await?;
        let dim = self
            .def
            .column(&def.column)
            .and_then(|c| c.ty.vector_dim())
            .unwrap_or(0);
        let lance_type = BuildParams::lance_type(def);
        let started = std::time::Instant::now();
        let params = BuildParams::for_index(def, rows, dim)?;
        let kind = match &params {
            BuildParams::Vector(_) => "vector",
            BuildParams::Scalar(_) => "scalar",
        };
        let built = match params {
            BuildParams::Vector(p) => {
                ds.create_index(
                    &[def.column.as_str()],
                    lance_type,
                    Some(def.name.clone()),
                    p.as_ref(),
                    replace,
                )
                .await
            }
            BuildParams::Scalar(p) => {
                ds.create_index(
                    &[def.column.as_str()],
                    lance_type,
                    Some(def.name.clone()),
                    &p,
                    replace,
                )
                .await
            }
        };
        let metrics = &self.shared.maintenance;
        if let Err(e) = built {
            metrics.failed(Work::IndexBuild);
            return Err(e.into());
        }
        self.publish(Arc::new(ds), false).await;
        metrics.index_built(kind, started.elapsed());
        Ok(())
    }

    pub async fn drop_index(&self, name: &str) -> Result<()> {
        let _w = self.write_lock.lock().await;
        self.check_open()?;
        let mut ds = (*self.dataset()).clone();
        ds.drop_index(name).await?;
        self.publish(Arc::new(ds), false).await;
        self.fresh.forget(name);
        Ok(())
    }

    /// The segments (the base and its deltas) of each index, by name.
    pub async fn index_segments(&self) -> Result<Vec<(String, usize)>> {
        let indices = self.dataset().load_indices().await?;
        Ok(segments_by_name(&indices)
            .into_iter()
            .map(|(name, segments)| (name.to_string(), segments.len()))
            .collect())
    }

    /// Folds rows written since the indexes were built into them (no
    /// retraining) when at least `min_rows` rows are not covered, as a delta
    /// segment per index or merged into its newest deltas (see
    /// [`housekeeping::index_segments_to_merge`]); true when it did.
    /// `optimize`: OPTIMIZE asked for it (the metrics' trigger label).
    pub async fn optimize_indexes(&self, min_rows: usize, optimize: bool) -> Result<bool> {
        // Judged before taking the write lock: the background pass asks every
        // few writes, and most times there is nothing to do.
        let ds = self.dataset();
        if Self::unindexed_rows(&ds, &ds.load_indices().await?) < min_rows.max(1) {
            return Ok(false);
        }
        let _w = self.write_lock.lock().await;
        if self.closed.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let mut ds = (*self.dataset()).clone();
        let indices = ds.load_indices().await?;
        if Self::unindexed_rows(&ds, &indices) < min_rows.max(1) {
            return Ok(false);
        }
        // Index by index: each takes its own merge count (one count for all
        // would rebuild the base of an index with fewer deltas).
        let rows_covered = |segments: &[&IndexMetadata]| -> usize {
            ds.fragments()
                .iter()
                .filter(|f| covers(segments, f.id as u32))
                .map(|f| f.physical_rows.unwrap_or(0))
                .sum()
        };
        let all_rows: usize = ds
            .fragments()
            .iter()
            .map(|f| f.physical_rows.unwrap_or(0))
            .sum();
        let started = std::time::Instant::now();
        let mut plans = Vec::new();
        for (name, segments) in segments_by_name(&indices) {
            let rows: Vec<usize> = segments.iter().map(|s| rows_covered(&[s])).collect();
            let new_rows = all_rows - rows_covered(&segments);
            let merge = housekeeping::index_segments_to_merge(&rows, new_rows);
            plans.push((name.to_string(), merge));
        }
        for (name, merge) in plans {
            let options = if merge == 0 {
                OptimizeOptions::append()
            } else {
                OptimizeOptions::merge(merge)
            };
            if let Err(e) = ds.optimize_indices(&options.index_names(vec![name])).await {
                self.shared.maintenance.failed(Work::IndexUpdate);
                return Err(e.into());
            }
        }
        self.publish(Arc::new(ds), false).await;
        self.shared
            .maintenance
            .index_updated(optimize, started.elapsed());
        Ok(true)
    }

    /// Whether the rows written since the indexes were last updated are due
    /// to be folded into them (see [`housekeeping::fold_in_due`]).
    async fn fold_in_due(&self) -> Result<bool> {
        let ds = self.dataset();
        let indices = ds.load_indices().await?;
        let (fragments, rows) = Self::unindexed(&ds, &indices);
        Ok(housekeeping::fold_in_due(
            rows,
            fragments,
            self.fresh.rows().1,
        ))
    }

    /// Rows in fragments that some index of the dataset (none of its
    /// segments) does not cover (0 without indexes).
    fn unindexed_rows(ds: &Dataset, indices: &[IndexMetadata]) -> usize {
        Self::unindexed(ds, indices).1
    }

    /// The fragments that some index of the dataset (none of its segments)
    /// does not cover, and their rows.
    fn unindexed(ds: &Dataset, indices: &[IndexMetadata]) -> (usize, usize) {
        let by_name = segments_by_name(indices);
        ds.fragments()
            .iter()
            .filter(|f| by_name.iter().any(|(_, s)| !covers(s, f.id as u32)))
            .fold((0, 0), |(n, rows), f| {
                (n + 1, rows + f.physical_rows.unwrap_or(0))
            })
    }

    /// Rewrites small fragments and fragments with many deleted rows into
    /// larger ones (indexes remapped): every small fragment when `all`
    /// (OPTIMIZE), else one size tier of them (see [`housekeeping::FANOUT`]).
    /// Runs beside writers: Lance commits it with conflict resolution; a
    /// conflict (a DELETE of the same rows) fails this pass, and the next one
    /// tries again.
    pub async fn compact(&self, all: bool) -> Result<(usize, usize)> {
        use lance::dataset::optimize::{DefaultCompactionPlanner, compact_files_with_planner};
        let _c = self.compaction.lock().await;
        // A table retired by ALTER TABLE or dropped: its successor compacts.
        if self.closed.load(Ordering::SeqCst) {
            return Ok((0, 0));
        }
        let mut ds = (*self.dataset()).clone();
        let started = std::time::Instant::now();
        let compacted = if all {
            let planner = DefaultCompactionPlanner::new(housekeeping::compaction_options())?;
            compact_files_with_planner(&mut ds, None, &planner).await
        } else {
            compact_files_with_planner(&mut ds, None, &housekeeping::TieredPlanner).await
        };
        let m = match compacted {
            Ok(m) => m,
            Err(e) => {
                self.shared.maintenance.failed(Work::Compaction);
                return Err(e.into());
            }
        };
        if m.fragments_removed > 0 {
            self.publish(Arc::new(ds), false).await;
            self.shared.maintenance.compacted(all, started.elapsed());
        }
        Ok((m.fragments_removed, m.fragments_added))
    }

    /// Removes versions older than `retention` that no reader holds (never the
    /// latest). Holds the write lock, the compaction lock and excludes appends
    /// with files written but not committed (skipping the pass while there
    /// are any), so no write is in progress and files not yet committed
    /// cannot be mistaken for garbage.
    pub async fn cleanup(&self, retention: Duration) -> Result<(u64, u64)> {
        let _one = self.cleanup_lock.lock().await;
        // Listed before taking the writers' locks, since it reads every
        // version's manifest; a version listed as old stays old, and the
        // latest is taken again under the locks.
        let versions = self.dataset().versions().await?;
        // Not waited for: a COPY holds it for as long as its client sends
        // data, and waiting would stall every append queued behind. The next
        // pass cleans up instead.
        let Ok(_u) = self.uncommitted.try_write() else {
            return Ok((0, 0));
        };
        let _w = self.write_lock.lock().await;
        let _c = self.compaction.lock().await;
        let ds = self.dataset();
        let latest = ds.version().version;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let cutoff_ms = now_ms.saturating_sub(retention.as_millis() as i64);
        let old: Vec<u64> = versions
            .into_iter()
            .filter(|v| {
                v.version < latest
                    && v.timestamp.timestamp_millis() <= cutoff_ms
                    && !self.pins.is_held(v.version)
            })
            .map(|v| v.version)
            .collect();
        if old.is_empty() {
            return Ok((0, 0));
        }
        let policy = lance::dataset::cleanup::CleanupPolicyBuilder::default()
            .versions(old)?
            .delete_unverified(true)
            .build();
        let stats = ds.cleanup_with_policy(policy).await?;
        Ok((stats.old_versions, stats.bytes_removed))
    }

    /// `OPTIMIZE TABLE`: compaction, index update, cleanup past the retention.
    pub async fn optimize(self: &Arc<Self>) -> Result<HousekeepingReport> {
        self.flush().await?;
        let (fragments_removed, fragments_added) = self.compact(true).await?;
        let indexes_updated = self.optimize_indexes(1, true).await?;
        let (versions_removed, bytes_removed) = self.cleanup(self.shared.retention).await?;
        Ok(HousekeepingReport {
            fragments_removed,
            fragments_added,
            indexes_updated,
            versions_removed,
            bytes_removed,
        })
    }

    /// Whether a background cleanup may run now (at most one per
    /// [`housekeeping::CLEANUP_INTERVAL`], or per retention when shorter);
    /// if so, the pass counts from now.
    fn cleanup_due(&self) -> bool {
        let interval = self.shared.retention.min(housekeeping::CLEANUP_INTERVAL);
        let mut last = match self.last_cleanup.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < interval) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Writes `batch` to the log as one record; its lsn, or `None` when the
    /// log cannot take it (not recovered, or broken: the caller writes to
    /// Lance directly). Not durable nor visible until [`Shard::log_sync`].
    fn log_append(&self, batch: &RecordBatch) -> Result<Option<u64>> {
        let mut st = self.log_state();
        // Checked under the log's lock: `retire` sets it under the same lock.
        self.check_open()?;
        let lsn = st.next_lsn;
        let Some(seg) = st.segment.as_mut() else {
            return Ok(None);
        };
        let record = wal::encode(lsn, batch)?;
        if let Err((e, undone)) = seg.write(&record) {
            if !undone {
                tracing::error!(table = self.def.name, error = %e, "the log is unusable; appends go to Lance");
                // The records before this one stay: synced now, flushed later.
                if let Some(s) = st.segment.take()
                    && let Err(e) = s.sync()
                {
                    tracing::error!(table = self.def.name, error = %e, "the log could not be synced");
                }
            }
            return Err(e.into());
        }
        st.next_lsn += 1;
        st.pending.push((lsn, batch.clone()));
        Ok(Some(lsn))
    }

    fn log_state(&self) -> std::sync::MutexGuard<'_, LogState> {
        match self.log.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Returns once record `lsn` is durable and visible: one sync of the
    /// segment covers every record written before it (group commit).
    async fn log_sync(&self, lsn: u64) -> Result<()> {
        if self.log.visible.load(Ordering::SeqCst) >= lsn {
            return Ok(());
        }
        let _one = self.log.sync_lock.lock().await;
        if self.log.visible.load(Ordering::SeqCst) >= lsn {
            return Ok(());
        }
        let (file, upto) = {
            let st = self.log_state();
            let file = match (&st.segment, self.shared.fsync) {
                (Some(s), true) => Some(s.sync_handle()?),
                _ => None,
            };
            (file, st.next_lsn - 1)
        };
        if let Some(f) = file {
            match tokio::task::spawn_blocking(move || f.sync_data()).await {
                Ok(r) => r?,
                Err(e) => return engine_err!(Internal, "the log sync failed: {e}"),
            }
        }
        self.make_visible(upto);
        Ok(())
    }

    /// Moves the records up to `upto` (synced) from pending into the tail.
    fn make_visible(&self, upto: u64) {
        let ready: Vec<(u64, RecordBatch)> = {
            let mut st = self.log_state();
            let n = st.pending.partition_point(|(l, _)| *l <= upto);
            st.pending.drain(..n).collect()
        };
        if !ready.is_empty() {
            let mut g = self.latest_mut();
            let tail = g.tail.with(ready, upto);
            self.shared
                .tail_total
                .fetch_add(tail.bytes - g.tail.bytes, Ordering::Relaxed);
            g.tail = Arc::new(tail);
        }
        self.log.visible.fetch_max(upto, Ordering::SeqCst);
    }

    /// After a logged append is visible: asks for a flush (at once when the
    /// tail is past a limit), and waits for one when far past them.
    async fn after_logged_append(self: &Arc<Self>) {
        let tail = self.snapshot().tail;
        if tail.over_limits(&self.shared, BACKPRESSURE) {
            // The append is durable and visible already: a failed flush is
            // not its failure (the flush task retries).
            if let Err(e) = self.flush().await {
                tracing::warn!(table = self.def.name, error = %e, "flush failed");
            }
        }
        self.request_flush(tail.over_limits(&self.shared, 1));
    }

    /// Makes sure a flush task runs: it flushes after the flush age, or at
    /// once when `urgent`, and keeps going while rows are in the tail.
    fn request_flush(self: &Arc<Self>, urgent: bool) {
        if urgent {
            self.flush_now.notify_one();
        }
        if self.flusher.swap(true, Ordering::SeqCst) {
            return;
        }
        let table = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(table.shared.flush_age) => {}
                    _ = table.flush_now.notified() => {}
                }
                if let Err(e) = table.flush().await {
                    tracing::warn!(table = table.def.name, error = %e, "flush failed; retrying");
                }
                table.flusher.store(false, Ordering::SeqCst);
                // An append that found this task running relies on it.
                if table.closed.load(Ordering::SeqCst)
                    || table.snapshot().tail.batches.is_empty()
                    || table.flusher.swap(true, Ordering::SeqCst)
                {
                    break;
                }
            }
        });
    }

    /// Writes the tail to Lance as one version; the rows written.
    pub async fn flush(self: &Arc<Self>) -> Result<usize> {
        let _w = self.write_lock.lock().await;
        self.flush_locked().await
    }

    /// [`Shard::flush`] under the write lock. Closes the log segment first
    /// (synced: every record in it is visible), so that the rows flushed are
    /// exactly those of the closed segments; commits them with the last lsn
    /// as the flush mark; publishes the version with those rows out of the
    /// tail in one step; then removes the closed segments.
    async fn flush_locked(self: &Arc<Self>) -> Result<usize> {
        if self.closed.load(Ordering::SeqCst) {
            return Ok(0);
        }
        self.flush_tail().await
    }

    /// Writes the log's records to Lance (see [`Shard::flush_locked`]),
    /// closed table or not.
    async fn flush_tail(self: &Arc<Self>) -> Result<usize> {
        let upto = {
            let _one = self.log.sync_lock.lock().await;
            let upto = {
                let mut st = self.log_state();
                if st.segment.as_ref().is_some_and(|s| s.records() > 0) {
                    let next = st.next_lsn;
                    let fresh = Segment::create(&self.log.dir, next, self.shared.fsync)?;
                    if let Some(old) = st.segment.replace(fresh) {
                        if self.shared.fsync {
                            old.sync()?;
                        }
                        st.closed.push(old.path().to_path_buf());
                    }
                }
                st.next_lsn - 1
            };
            self.make_visible(upto);
            upto
        };
        let snap = self.snapshot();
        let batches: Vec<RecordBatch> = snap
            .tail
            .batches
            .iter()
            .filter(|(l, _)| *l <= upto)
            .map(|(_, b)| b.clone())
            .collect();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if !batches.is_empty() {
            let ds = InsertBuilder::new(snap.dataset.clone())
                .with_params(&self.flush_params(upto))
                .execute(batches)
                .await?;
            crate::engine::crash_point("flush:lance_committed");
            let ds = Arc::new(ds);
            // With the tail as it is once the rows leave it.
            self.warm(&ds, Arc::new(self.snapshot().tail.without_upto(upto)))
                .await;
            {
                let mut g = self.latest_mut();
                // The same rows as before: `rows_version` stays.
                if ds.version().version >= g.dataset.version().version {
                    g.dataset = ds;
                }
                let tail = g.tail.without_upto(upto);
                self.shared
                    .tail_total
                    .fetch_sub(g.tail.bytes - tail.bytes, Ordering::Relaxed);
                g.tail = Arc::new(tail);
            }
        }
        let closed = std::mem::take(&mut self.log_state().closed);
        if !closed.is_empty() {
            for p in &closed {
                std::fs::remove_file(p)?;
            }
            if self.shared.fsync {
                wal::sync_dir(&self.log.dir)?;
            }
        }
        if rows > 0 {
            self.after_write();
        }
        Ok(rows)
    }

    /// Parameters of a commit of the log's records up to `lsn` (the flush mark).
    fn flush_params(&self, lsn: u64) -> WriteParams {
        let mut params = self
            .shared
            .write_params(WriteMode::Append, self.def.columns.len());
        params.transaction_properties = Some(Arc::new(HashMap::from([(
            wal::FLUSHED_LSN.to_string(),
            lsn.to_string(),
        )])));
        params
    }

    /// Reads the log back at open: records Lance does not have yet (after
    /// the flush mark) are committed as one version; then a fresh segment
    /// takes new records and the old ones are removed.
    async fn recover_log(&self) -> Result<()> {
        let segments = wal::segments(&self.log.dir)?;
        let mut records = Vec::new();
        for (_, path) in &segments {
            let (mut recs, intact, torn) = wal::read_segment(path)?;
            if torn {
                tracing::warn!(segment = %path.display(), "cutting off a log record a crash left torn");
            }
            if intact < std::fs::metadata(path)?.len() {
                wal::truncate(path, intact)?;
            }
            records.append(&mut recs);
        }
        let mark = if records.is_empty() {
            0
        } else {
            self.flush_mark().await?
        };
        let last = records.last().map_or(0, |r| r.lsn);
        let next = (last + 1)
            .max(mark + 1)
            .max(segments.last().map_or(1, |(first, _)| *first));
        let replay: Vec<RecordBatch> = records
            .into_iter()
            .filter(|r| r.lsn > mark)
            .map(|r| r.batch)
            .collect();
        if !replay.is_empty() {
            let rows: usize = replay.iter().map(|b| b.num_rows()).sum();
            tracing::info!(table = self.def.name, rows, "replaying the log");
            let ds = InsertBuilder::new(self.dataset())
                .with_params(&self.flush_params(last))
                .execute(replay)
                .await?;
            self.publish(Arc::new(ds), false).await;
        }
        let fresh = Segment::create(&self.log.dir, next, self.shared.fsync)?;
        for (first, path) in &segments {
            if *first != next {
                std::fs::remove_file(path)?;
            }
        }
        if self.shared.fsync {
            wal::sync_dir(&self.log.dir)?;
        }
        let mut st = self.log_state();
        st.segment = Some(fresh);
        st.next_lsn = next;
        self.log.visible.store(next - 1, Ordering::SeqCst);
        Ok(())
    }

    /// The last lsn a flush wrote to Lance, from the transaction property
    /// of the latest versions (0 when none of them has it). Only a crash
    /// between a flush's commit and its removal of the closed segments leaves
    /// records Lance has, and then the flush is the latest version but for
    /// compactions (which commit outside the write lock): a few versions back.
    async fn flush_mark(&self) -> Result<u64> {
        let ds = self.dataset();
        let latest = ds.version().version;
        for v in (1..=latest).rev().take(MARK_SEARCH_VERSIONS as usize) {
            let t = match ds.read_transaction_by_version(v).await {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                // Cleaned up: older versions are too.
                Err(_) => break,
            };
            if let Some(m) = t
                .transaction_properties
                .as_ref()
                .and_then(|p| p.get(wal::FLUSHED_LSN))
                .and_then(|m| m.parse::<u64>().ok())
            {
                return Ok(m);
            }
        }
        Ok(0)
    }

    /// Fails once the table is closed (dropped, or retired by ALTER TABLE):
    /// a write that reaches it then goes nowhere, and says so.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return engine_err!(
                Conflict,
                "relation \"{}\" was altered or dropped while this statement ran; nothing was written, retry it",
                self.def.name
            );
        }
        Ok(())
    }

    /// Takes the table out of service for `ALTER TABLE`: waits for its
    /// writers (a transaction holding it included), writes its logged rows
    /// to Lance, and closes it, so that the dataset holds every acknowledged
    /// row and nothing writes through this table object again (a writer
    /// that comes later fails with 40001). The caller then changes the
    /// dataset and opens a new table object on it; the returned locks are
    /// held until then.
    pub async fn retire(self: &Arc<Self>) -> Result<Retired> {
        let constraint = self.constraint_guard().await;
        let write = self.write_lock_owned().await;
        let compaction = self.compaction_lock_owned().await;
        {
            let _st = self.log_state();
            if self.closed.swap(true, Ordering::SeqCst) {
                return engine_err!(
                    Conflict,
                    "relation \"{}\" was altered or dropped concurrently",
                    self.def.name
                );
            }
        }
        if let Err(e) = self.flush_tail().await {
            self.closed.store(false, Ordering::SeqCst);
            return Err(e);
        }
        let bytes = self.snapshot().tail.bytes;
        self.shared.tail_total.fetch_sub(bytes, Ordering::Relaxed);
        Ok(Retired {
            _locks: (constraint, write, compaction),
        })
    }

    /// The table is being dropped: no flush runs after this returns.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let _w = self.write_lock.lock().await;
        let bytes = self.snapshot().tail.bytes;
        self.shared.tail_total.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The log folder of this table.
    pub fn log_dir(&self) -> &std::path::Path {
        &self.log.dir
    }

    /// After a write: starts a background pass when fragments or deletions
    /// have piled up, and every [`housekeeping::CHECK_EVERY`] writes to look at
    /// unindexed rows (at most one pass per table at a time).
    fn after_write(self: &Arc<Self>) {
        let n = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.needs_compaction() && !n.is_multiple_of(housekeeping::CHECK_EVERY) {
            return;
        }
        self.start_housekeeping();
    }

    /// Whether the table's fragments call for a background compaction.
    fn needs_compaction(&self) -> bool {
        housekeeping::needs_compaction(&housekeeping::fragment_sizes(&self.dataset()))
    }

    /// Whether a background housekeeping pass is running.
    pub fn housekeeping_running(&self) -> bool {
        self.housekeeping.load(Ordering::SeqCst)
    }

    /// Starts a background pass unless one is running. A pass during which
    /// writes were made, and after which compaction is still called for,
    /// starts the next one itself: the last write of a burst may have come
    /// while it ran (and found it running), or it may have lost a conflict
    /// with one of them (a DELETE of rows it rewrote).
    fn start_housekeeping(self: &Arc<Self>) {
        if self.housekeeping.swap(true, Ordering::SeqCst) {
            return;
        }
        let table = self.clone();
        tokio::spawn(async move {
            let writes = table.writes.load(Ordering::Relaxed);
            match table.housekeeping_pass().await {
                Ok(r) => tracing::debug!(table = table.def.name, ?r, "housekeeping"),
                Err(e) => tracing::warn!(table = table.def.name, error = %e, "housekeeping failed"),
            }
            table.housekeeping.store(false, Ordering::SeqCst);
            if table.writes.load(Ordering::Relaxed) != writes && table.needs_compaction() {
                table.start_housekeeping();
            }
        });
    }

    /// One background pass: compaction, tier by tier while one is full; the
    /// index update once enough rows are unindexed; cleanup when due.
    async fn housekeeping_pass(&self) -> Result<HousekeepingReport> {
        let mut r = HousekeepingReport::default();
        if self.closed.load(Ordering::SeqCst) {
            return Ok(r);
        }
        // A merge can fill the next tier, and no later write may come to start
        // another pass.
        for _ in 0..housekeeping::MAX_PASSES {
            if !self.needs_compaction() {
                break;
            }
            let (removed, added) = self.compact(false).await?;
            r.fragments_removed += removed;
            r.fragments_added += added;
            if removed == 0 {
                break;
            }
        }
        r.indexes_updated = self.fold_in_due().await? && self.optimize_indexes(1, false).await?;
        if r.fragments_removed > 0 && self.cleanup_due() {
            (r.versions_removed, r.bytes_removed) = self.cleanup(self.shared.retention).await?;
        }
        Ok(r)
    }
}
