//! A table: its definition and its shards ([`Shard`], each one Lance
//! dataset with its own log and tail).
//!
//! A table of one shard (the default) is that shard. A table created
//! `WITH (shards = N)` places each row on the shard its shard key's hash
//! falls to on a consistent-hash ring ([`crate::ring`]); every write is
//! split by owner, and a read takes one snapshot of every shard it reads.
//!
//! A statement that writes one shard is that shard's write (a small INSERT
//! goes through its log). A statement that writes several is one
//! transaction over those shards ([`crate::txn`]): each shard's rows become
//! a private version, then a commit record naming every shard's new version
//! is written durably — the table version, and the commit point — before
//! the versions are published together under the table's publish lock (a
//! reader takes its shard snapshots under the same lock, so it sees all of
//! the statement or none of it). A crash before the record rolls every
//! shard back at start-up; after it, keeps every shard's new version.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, Operator};
use lance::Dataset;
use lance::index::DatasetIndexExt;
use quiver_tiering::StorageRoot;

use crate::engine_err;
use crate::error::Result;
use crate::housekeeping::Pin;
use crate::index::IndexDef;
use crate::ivf::Centroids;
use crate::ring::Ring;
use crate::schema::{ShardMethod, TableDef};
use crate::view::TableView;

pub use crate::shard::{
    FLUSH_AGE, HousekeepingReport, LOG_MAX_ROWS, Retired, Shard, ShardAppend, Shared, Snapshot,
    TableStats, Tail,
};
pub use crate::txn::TxnWrites;

pub struct Table {
    /// The definition the table was opened with (its `sharding` as then:
    /// a move between shard counts changes the layout, not this).
    pub def: TableDef,
    layout: std::sync::RwLock<Arc<Layout>>,
    /// Counts layout changes ([`Table::data_version`]).
    layouts: std::sync::atomic::AtomicU64,
    /// Held shared by every write from placing its rows until its commit
    /// (a transaction's, until it ends); exclusively while the layout
    /// changes, so no row is written by a placement that is gone.
    routing: Arc<tokio::sync::RwLock<()>>,
    /// Held exclusively while a commit publishes several shards (or the
    /// layout changes), shared while a reader takes its shard snapshots.
    publish: tokio::sync::RwLock<()>,
    /// Where a commit over several shards records their versions.
    record: PathBuf,
    fsync: bool,
    /// Held by the move between shard counts under way ([`crate::reshard`]).
    pub(crate) moving: Arc<tokio::sync::Mutex<()>>,
}

/// The exact version of a table's data ([`Table::data_version`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataVersion(Vec<u64>);

/// The shards a table reads and writes and how its rows are placed on
/// them; replaced whole when a move between shard counts starts or ends.
pub(crate) struct Layout {
    pub(crate) shards: Vec<Arc<Shard>>,
    pub(crate) placement: Option<Placement>,
    /// [`Table::tie_column`].
    tie: Option<usize>,
}

/// How a sharded table places its rows.
#[derive(Clone)]
pub(crate) struct Placement {
    pub(crate) rule: Rule,
    /// The shard key's position among the columns.
    pub(crate) key: usize,
    /// While rows move to `rule`'s shards: the rule they were placed by
    /// (a row is on its owner under one rule or the other).
    pub(crate) from: Option<Rule>,
}

/// Which shard owns a row, by its shard key.
#[derive(Clone, Debug)]
pub(crate) enum Rule {
    /// The consistent-hash ring (`sharding = 'hash'`).
    Ring(Ring),
    /// The nearest centroid (`sharding = 'ivf'`, trained).
    Centroids(Arc<Centroids>),
    /// Shard 0, the pending shard (`sharding = 'ivf'`, not trained yet).
    Pending,
}

impl Rule {
    /// The shard of each row of a shard-key column.
    pub(crate) fn owners(&self, keys: &dyn arrow::array::Array) -> Result<Vec<u32>> {
        match self {
            Rule::Ring(r) => r.owners(keys),
            Rule::Centroids(c) => c.owners(keys),
            Rule::Pending => Ok(vec![0; keys.len()]),
        }
    }
}

impl Layout {
    /// The layout `def` describes, over `shards` (its shards, in order).
    pub(crate) fn of(def: &TableDef, shards: Vec<Arc<Shard>>) -> Result<Layout> {
        let placement = match &def.sharding {
            None => None,
            Some(s) => {
                let Some(key) = def.columns.iter().position(|c| c.name == s.key) else {
                    return engine_err!(
                        InvalidDefinition,
                        "shard key \"{}\" is not a column of \"{}\"",
                        s.key,
                        def.name
                    );
                };
                let (rule, from) = match (s.method, &s.centroids) {
                    (ShardMethod::Hash, _) => (
                        Rule::Ring(Ring::new(s.shards, s.vnodes)?),
                        match s.moving_from {
                            Some(n) => Some(Rule::Ring(Ring::new(n, s.vnodes)?)),
                            None => None,
                        },
                    ),
                    (ShardMethod::Ivf, None) => (Rule::Pending, None),
                    (ShardMethod::Ivf, Some(c)) => (
                        Rule::Centroids(Arc::new(Centroids::new(c)?)),
                        s.moving_from.map(|_| Rule::Pending),
                    ),
                };
                Some(Placement { rule, key, from })
            }
        };
        let tie = match &placement {
            Some(p) if matches!(p.rule, Rule::Ring(_)) => Some(p.key),
            _ => def
                .columns
                .iter()
                .position(|c| crate::ring::can_place(&c.ty.arrow_type())),
        };
        Ok(Layout {
            shards,
            placement,
            tie,
        })
    }
}

/// How long one try of [`Table::pause_writes`] waits for the writes under
/// way, and how long the waiting writes then go on before the next try.
const PAUSE_TRY: std::time::Duration = std::time::Duration::from_millis(250);
const PAUSE_GAP: std::time::Duration = std::time::Duration::from_millis(250);

/// A write's hold on a table's placement ([`Table::route`]).
pub(crate) type Routing = tokio::sync::OwnedRwLockReadGuard<()>;

/// One shard's search view, as [`Table::views`] returns it.
pub struct ShardView {
    /// The shard's position in the table.
    pub index: usize,
    pub shard: Arc<Shard>,
    pub view: Arc<TableView>,
}

/// The record of a commit over several shards (see the module documentation).
#[derive(serde::Serialize, serde::Deserialize)]
struct CommitRecord {
    /// Each shard's version, in shard order.
    versions: Vec<u64>,
}

impl Table {
    /// The logs and commit record of a table defined as `def`, whether
    /// open or not ([`Table::log_paths`] of an open one).
    pub fn log_paths_of(def: &TableDef, log_root: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = def.shard_dirs().iter().map(|d| log_root.join(d)).collect();
        out.push(Self::record_path(def, log_root));
        out
    }

    fn record_path(def: &TableDef, log_root: &Path) -> PathBuf {
        log_root.join(format!("{}.commit", def.dir))
    }

    fn assemble(def: TableDef, shards: Vec<Shard>, log_root: &Path, fsync: bool) -> Result<Table> {
        let layout = Layout::of(&def, shards.into_iter().map(Arc::new).collect())?;
        Ok(Table {
            record: Self::record_path(&def, log_root),
            def,
            layout: std::sync::RwLock::new(Arc::new(layout)),
            layouts: std::sync::atomic::AtomicU64::new(0),
            routing: Default::default(),
            publish: Default::default(),
            fsync,
            moving: Default::default(),
        })
    }

    /// Creates the empty datasets of a new table, its shards' logs under `log_root`.
    pub async fn create(
        storage: &StorageRoot,
        def: TableDef,
        shared: &Shared,
        log_root: &Path,
    ) -> Result<Table> {
        let mut shards = Vec::with_capacity(def.shard_count());
        for dir in def.shard_dirs() {
            let at = storage.location(def.tier, &dir)?;
            shards.push(Shard::create(at, def.clone(), shared, log_root.join(&dir)).await?);
        }
        Self::assemble(def, shards, log_root, shared.fsync)
    }

    /// Opens a table's shards, after settling a commit over several shards
    /// that a crash interrupted (see the module documentation).
    pub async fn open(
        storage: &StorageRoot,
        def: TableDef,
        shared: &Shared,
        log_root: &Path,
    ) -> Result<Table> {
        let record = Self::record_path(&def, log_root);
        let committed = match std::fs::read(&record) {
            Ok(bytes) => match serde_json::from_slice::<CommitRecord>(&bytes) {
                Ok(r) => Some(r),
                Err(e) => {
                    return engine_err!(
                        Internal,
                        "commit record {} is unreadable: {e}",
                        record.display()
                    );
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(r) = &committed {
            tracing::warn!(
                table = def.name,
                versions = ?r.versions,
                "keeping a commit over several shards that was recorded before the process stopped"
            );
            for (dir, &version) in def.shard_dirs().iter().zip(&r.versions) {
                crate::txn::settle_marker(&log_root.join(dir), version, shared.fsync)?;
            }
        }
        let mut shards = Vec::with_capacity(def.shard_count());
        for dir in def.shard_dirs() {
            let at = storage.location(def.tier, &dir)?;
            shards.push(Shard::open(at, def.clone(), shared, log_root.join(&dir)).await?);
        }
        if committed.is_some() {
            crate::txn::remove_file_synced(&record, shared.fsync)?;
        }
        Self::assemble(def, shards, log_root, shared.fsync)
    }

    /// The current layout.
    pub(crate) fn layout(&self) -> Arc<Layout> {
        match self.layout.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the layout; the caller holds the routing lock exclusively
    /// (no write is placing rows) and the publish lock (no reader is
    /// taking snapshots).
    pub(crate) fn set_layout(&self, layout: Layout) {
        let mut g = match self.layout.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Arc::new(layout);
        self.layouts
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The routing lock ([`Table::route`]) exclusively: no write is placing
    /// rows while it is held. Each try waits [`PAUSE_TRY`] for the writes
    /// under way to end, then lets the waiting writes go on for
    /// [`PAUSE_GAP`] (a writer is delayed by one try at most); `None` once
    /// `limit` has passed.
    pub(crate) async fn pause_writes(
        &self,
        limit: Option<std::time::Duration>,
    ) -> Option<tokio::sync::RwLockWriteGuard<'_, ()>> {
        let started = std::time::Instant::now();
        loop {
            if let Ok(g) = tokio::time::timeout(PAUSE_TRY, self.routing.write()).await {
                return Some(g);
            }
            if limit.is_some_and(|l| started.elapsed() >= l) {
                return None;
            }
            tokio::time::sleep(PAUSE_GAP).await;
        }
    }

    /// The publish lock, exclusively.
    pub(crate) async fn publish_exclusive(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.publish.write().await
    }

    /// A write's hold on the placement: rows are placed by the layout of
    /// the time, which stays until the hold is dropped.
    pub(crate) async fn route(&self) -> Routing {
        self.routing.clone().read_owned().await
    }

    /// The exact version of the table's data: every shard's Lance version
    /// at which its rows last changed (a flush of logged rows keeps it) and
    /// the last log record made visible beside it, under the layout of the
    /// time. Any committed write changes it (rows still in the log
    /// included); two equal versions hold the same rows. Taken shard by
    /// shard without a lock: a caller that needs what one read saw compares
    /// a version taken before the read with one taken after.
    pub fn data_version(&self) -> DataVersion {
        let (layout, epoch) = {
            let g = match self.layout.read() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            let epoch = self.layouts.load(std::sync::atomic::Ordering::Acquire);
            (g.clone(), epoch)
        };
        let mut v = Vec::with_capacity(layout.shards.len() * 2 + 1);
        v.push(epoch);
        for s in &layout.shards {
            let snap = s.snapshot();
            v.push(snap.rows_version);
            v.push(snap.tail.stamp);
        }
        DataVersion(v)
    }

    /// The shards, in shard order.
    pub fn shards(&self) -> Vec<Arc<Shard>> {
        self.layout().shards.clone()
    }

    pub fn is_sharded(&self) -> bool {
        self.layout().placement.is_some()
    }

    /// Whether rows are moving between shard counts.
    pub fn is_moving(&self) -> bool {
        self.layout()
            .placement
            .as_ref()
            .is_some_and(|p| p.from.is_some())
    }

    /// The column that breaks ties between rows at equal distance: the
    /// shard key, or for a table of one shard the first column the ring
    /// could place rows by (the same column, when a sharded copy keys on
    /// it, so both order ties alike). `None` when no column can.
    pub fn tie_column(&self) -> Option<usize> {
        self.layout().tie
    }

    /// Refuses what sharded tables do not support yet.
    pub fn refuse_sharded(&self, what: &str) -> Result<()> {
        if self.is_sharded() {
            return engine_err!(
                Unsupported,
                "{what} is not supported on sharded table \"{}\" yet",
                self.def.name
            );
        }
        Ok(())
    }

    /// The shard each row of `batches` belongs to: one list of batches per
    /// shard (all of them for shard 0 when the table has one). The caller
    /// holds the placement ([`Table::route`]).
    pub fn split(&self, batches: Vec<RecordBatch>) -> Result<Vec<Vec<RecordBatch>>> {
        split_by(&self.layout(), batches)
    }

    /// The shards that can hold rows matching `filter`: those of the key
    /// values it fixes (`key = v`, `key IN (…)` as a conjunct; while rows
    /// move, a value's owners under both rings), else all.
    pub fn shards_for(&self, filter: Option<&Expr>) -> Vec<usize> {
        shards_for(&self.def, &self.layout(), filter)
    }

    /// Every shard's latest snapshot (or, for shard i, version `heads[i]`:
    /// a transaction's own), taken together: a commit over several shards
    /// is in all of them or none. Each version is pinned against cleanup.
    pub async fn pinned_snapshots(&self, heads: Option<&[Arc<Dataset>]>) -> Vec<(Snapshot, Pin)> {
        let _g = self.publish.read().await;
        let layout = self.layout();
        layout
            .shards
            .iter()
            .enumerate()
            .map(|(i, s)| pinned_shard(s, i, heads))
            .collect()
    }

    /// The shards a search for `query` reads: those that can hold rows
    /// matching `filter` ([`Table::shards_for`]); of an ivf-sharded table,
    /// the shards of the `probes` centroids nearest the query (the pending
    /// shard alone before it is trained; every shard while its rows move).
    pub fn search_shards(
        &self,
        filter: Option<&Expr>,
        query: Option<&[f32]>,
        probes: usize,
    ) -> Vec<usize> {
        search_shards(&self.def, &self.layout(), filter, query, probes)
    }

    /// The search views of the shards a search for `query` (with `probes`
    /// shard probes) reads ([`Table::search_shards`]), of one consistent
    /// set of versions ([`Table::pinned_snapshots`]).
    pub async fn views(
        &self,
        heads: Option<&[Arc<Dataset>]>,
        filter: Option<&Expr>,
        (query, probes): (&[f32], usize),
    ) -> Result<Vec<ShardView>> {
        let snaps: Vec<(usize, Arc<Shard>, Snapshot, Pin)> = {
            let _g = self.publish.read().await;
            let layout = self.layout();
            search_shards(&self.def, &layout, filter, Some(query), probes)
                .into_iter()
                .map(|i| {
                    let s = layout.shards[i].clone();
                    let (snap, pin) = pinned_shard(&s, i, heads);
                    (i, s, snap, pin)
                })
                .collect()
        };
        let mut views = Vec::with_capacity(snaps.len());
        for (index, shard, snap, pin) in snaps {
            let view = shard.view_of(snap, pin).await?;
            views.push(ShardView { index, shard, view });
        }
        Ok(views)
    }

    /// The table's size: its shards' summed.
    pub fn stats(&self) -> TableStats {
        let mut total = TableStats::default();
        for s in &self.layout().shards {
            let t = s.stats();
            total.rows += t.rows;
            total.data_bytes += t.data_bytes;
            total.tail_bytes += t.tail_bytes;
            total.fragments += t.fragments;
            total.deleted_rows += t.deleted_rows;
        }
        total
    }

    /// Whether the table holds no row.
    pub async fn is_empty(&self) -> Result<bool> {
        for s in &self.layout().shards {
            if s.tail_rows() > 0 || s.dataset().count_rows(None).await? > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Appends rows (the table's schema): one shard's rows as that shard's
    /// append, several shards' in one commit over them.
    pub async fn append(self: &Arc<Self>, batches: Vec<RecordBatch>) -> Result<u64> {
        let routing = self.route().await;
        let layout = self.layout();
        let mut parts = split_by(&layout, batches)?;
        let touched: Vec<usize> = (0..parts.len()).filter(|&i| !parts[i].is_empty()).collect();
        match touched.as_slice() {
            [] => Ok(0),
            [one] => {
                layout.shards[*one]
                    .append(std::mem::take(&mut parts[*one]))
                    .await
            }
            _ => {
                let mut w = self.begin_statement(routing).await?;
                let mut n = 0;
                for (i, part) in parts.into_iter().enumerate() {
                    n += w.part_mut(i)?.append(part).await?;
                }
                w.commit().await?;
                Ok(n)
            }
        }
    }

    /// An append fed batch by batch (COPY FROM STDIN), committed by
    /// [`AppendStream::finish`] as one version of every shard it wrote.
    pub async fn append_stream(self: &Arc<Self>) -> AppendStream {
        let routing = self.route().await;
        self.stream_with(Some(routing))
    }

    /// [`Table::append_stream`] for a transaction that holds the table
    /// already ([`Table::begin_writes`]), finished by
    /// [`AppendStream::finish_in`] that transaction: its hold on the
    /// placement covers the stream.
    pub fn append_stream_in(self: &Arc<Self>, _txn: &TxnWrites) -> AppendStream {
        self.stream_with(None)
    }

    fn stream_with(self: &Arc<Self>, routing: Option<Routing>) -> AppendStream {
        let layout = self.layout();
        AppendStream {
            table: self.clone(),
            parts: (0..layout.shards.len()).map(|_| None).collect(),
            layout,
            routing,
        }
    }

    /// Deletes the rows matching `filter` from the shards that can hold
    /// them ([`Table::shards_for`]), in one commit.
    pub async fn delete(self: &Arc<Self>, filter: Expr) -> Result<u64> {
        let routing = self.route().await;
        let layout = self.layout();
        let which = shards_for(&self.def, &layout, Some(&filter));
        if let [one] = which.as_slice() {
            return layout.shards[*one].delete(filter).await;
        }
        let mut w = self.begin_statement(routing).await?;
        let n = w.delete(filter).await?;
        w.commit().await?;
        Ok(n)
    }

    /// Takes every shard for a transaction's writes ([`crate::txn`]), in
    /// shard order; the constraint lock, when given, is shard 0's.
    pub async fn begin_writes(
        self: &Arc<Self>,
        wait: Option<std::time::Duration>,
        constraint: Option<tokio::sync::OwnedMutexGuard<()>>,
    ) -> Result<TxnWrites> {
        let routing = match wait {
            None => self.route().await,
            Some(d) => match tokio::time::timeout(d, self.route()).await {
                Ok(r) => r,
                Err(_) => {
                    return engine_err!(
                        Deadlock,
                        "deadlock detected: table \"{}\" is being resharded while this transaction holds other tables (waited {} ms)",
                        self.def.name,
                        d.as_millis()
                    );
                }
            },
        };
        self.begin_writes_with(routing, wait, constraint, true)
            .await
    }

    /// [`Table::begin_writes`] for a statement's own commit over several
    /// shards, placing rows under `routing`: no constraint lock is taken
    /// (a writer that checks constraints holds the table's, shard 0's,
    /// already).
    pub(crate) async fn begin_statement(self: &Arc<Self>, routing: Routing) -> Result<TxnWrites> {
        self.begin_writes_with(routing, None, None, false).await
    }

    async fn begin_writes_with(
        self: &Arc<Self>,
        routing: Routing,
        wait: Option<std::time::Duration>,
        constraint: Option<tokio::sync::OwnedMutexGuard<()>>,
        lock_constraints: bool,
    ) -> Result<TxnWrites> {
        let layout = self.layout();
        let mut parts = Vec::with_capacity(layout.shards.len());
        let mut constraint = constraint;
        for s in &layout.shards {
            parts.push(Some(
                s.begin_writes_with(wait, constraint.take(), lock_constraints)
                    .await?,
            ));
        }
        Ok(TxnWrites::new(self.clone(), parts, routing))
    }

    /// [`Table::begin_writes`] for one statement (outside a transaction
    /// block) that reads the rows matching `filter` and rewrites them in
    /// place (UPDATE, DELETE … RETURNING): only the shards that can hold
    /// them are taken when the filter fixes the shard key — unless
    /// `moves_rows` (the statement sets the key: its rows may belong
    /// elsewhere) or the table has unique constraints (their checks hold
    /// the table's constraint lock, shard 0's): then every shard.
    pub async fn begin_writes_for(
        self: &Arc<Self>,
        filter: Option<&Expr>,
        moves_rows: bool,
    ) -> Result<TxnWrites> {
        let routing = self.route().await;
        let layout = self.layout();
        if moves_rows || !self.def.unique.is_empty() {
            return self.begin_writes_with(routing, None, None, true).await;
        }
        let which = shards_for(&self.def, &layout, filter);
        let mut parts = Vec::with_capacity(layout.shards.len());
        for (i, s) in layout.shards.iter().enumerate() {
            parts.push(match which.contains(&i) {
                true => Some(s.begin_writes_with(None, None, true).await?),
                false => None,
            });
        }
        Ok(TxnWrites::new(self.clone(), parts, routing))
    }

    /// The shard key's position among the columns, for a sharded table.
    pub fn shard_key(&self) -> Option<usize> {
        self.layout().placement.as_ref().map(|p| p.key)
    }

    /// The table's constraint lock (shard 0's; every writer that checks
    /// constraints takes it first).
    pub async fn constraint_guard(&self) -> tokio::sync::OwnedMutexGuard<()> {
        let first = self.layout().shards[0].clone();
        first.constraint_guard().await
    }

    /// Publishes the heads of a commit over several shards (see the module
    /// documentation); `heads[i]` is `None` for a shard it did not change.
    pub(crate) async fn publish_together(&self, heads: &[Option<Arc<Dataset>>]) -> Result<()> {
        let layout = self.layout();
        let versions = layout
            .shards
            .iter()
            .zip(heads)
            .map(|(s, h)| match h {
                Some(h) => h.version().version,
                None => s.dataset().version().version,
            })
            .collect();
        let bytes = serde_json::to_vec(&CommitRecord { versions }).map_err(|e| {
            crate::error::EngineError::new(crate::error::ErrorKind::Internal, e.to_string())
        })?;
        crate::engine::crash_point("sharded_commit:written");
        crate::txn::write_file_synced(&self.record, &bytes, self.fsync)?;
        crate::engine::crash_point("sharded_commit:recorded");
        for (s, h) in layout.shards.iter().zip(heads) {
            if let Some(h) = h {
                s.warm_committed(h).await;
            }
        }
        let _g = self.publish.write().await;
        for (s, h) in layout.shards.iter().zip(heads) {
            if let Some(h) = h {
                s.publish_warmed(h.clone());
            }
        }
        Ok(())
    }

    /// Ends a commit over several shards once their markers are removed.
    pub(crate) fn commit_settled(&self) -> Result<()> {
        crate::txn::remove_file_synced(&self.record, self.fsync)
    }

    /// Builds (or rebuilds) an index on every shard, counting the shards
    /// built in `task`.
    pub async fn create_index(
        &self,
        def: &IndexDef,
        replace: bool,
        task: Option<&crate::progress::Task>,
    ) -> Result<()> {
        let shards = self.layout().shards.clone();
        if let Some(t) = task {
            t.phase(
                format!("building index {} on {}", def.name, self.def.name),
                shards.len() as u64,
                "shards",
            );
        }
        for (i, s) in shards.iter().enumerate() {
            let built = s.create_index(def, replace).await;
            if let Some(t) = task {
                t.advance(1);
            }
            if let Err(e) = built {
                // A new index is taken back off the shards built so far
                // (a rebuilt one stays: it was there before).
                if !replace
                    && i > 0
                    && let Err(undo) = self.drop_index(&def.name).await
                {
                    tracing::warn!(index = def.name, error = %undo, "index left on some shards until restart");
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Drops an index from every shard (a shard without it is fine).
    pub async fn drop_index(&self, name: &str) -> Result<()> {
        for s in &self.layout().shards {
            let has = s
                .dataset()
                .load_indices()
                .await?
                .iter()
                .any(|i| i.name == name);
            if has {
                s.drop_index(name).await?;
            }
        }
        Ok(())
    }

    /// `OPTIMIZE TABLE` on every shard (counted in `task`); the reports summed.
    pub async fn optimize(
        &self,
        task: Option<&crate::progress::Task>,
    ) -> Result<HousekeepingReport> {
        let mut total = HousekeepingReport::default();
        let shards = self.layout().shards.clone();
        if let Some(t) = task {
            t.phase(
                "compacting, updating indexes, removing old versions",
                shards.len() as u64,
                "shards",
            );
        }
        for s in &shards {
            let r = s.optimize().await?;
            if let Some(t) = task {
                t.advance(1);
            }
            total.fragments_removed += r.fragments_removed;
            total.fragments_added += r.fragments_added;
            total.indexes_updated |= r.indexes_updated;
            total.versions_removed += r.versions_removed;
            total.bytes_removed += r.bytes_removed;
        }
        Ok(total)
    }

    /// Writes every shard's logged rows to Lance; how many.
    pub async fn flush(&self) -> Result<usize> {
        let mut n = 0;
        for s in &self.layout().shards {
            n += s.flush().await?;
        }
        Ok(n)
    }

    /// Takes every shard out of service ([`Shard::retire`]).
    pub async fn retire(&self) -> Result<Vec<Retired>> {
        let layout = self.layout();
        let mut out = Vec::with_capacity(layout.shards.len());
        for s in &layout.shards {
            out.push(s.retire().await?);
        }
        Ok(out)
    }

    /// The table is being dropped.
    pub async fn close(&self) {
        for s in &self.layout().shards {
            s.close().await;
        }
    }

    /// The shards' log folders, and the commit record's path.
    pub fn log_paths(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self
            .layout()
            .shards
            .iter()
            .map(|s| s.log_dir().to_path_buf())
            .collect();
        out.push(self.record.clone());
        out
    }
}

/// Shard `s` (number `i`)'s latest snapshot, or version `heads[i]`, pinned.
fn pinned_shard(s: &Shard, i: usize, heads: Option<&[Arc<Dataset>]>) -> (Snapshot, Pin) {
    match heads.and_then(|h| h.get(i)) {
        Some(head) => s.pinned_at(head.clone()),
        None => s.pinned_snapshot(),
    }
}

/// [`Table::split`] by `layout`.
fn split_by(layout: &Layout, batches: Vec<RecordBatch>) -> Result<Vec<Vec<RecordBatch>>> {
    let Some(p) = &layout.placement else {
        return Ok(vec![batches]);
    };
    let n = layout.shards.len();
    let mut out: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
    for b in batches {
        if b.num_rows() == 0 {
            continue;
        }
        let owners = p.rule.owners(b.column(p.key).as_ref())?;
        if owners.iter().all(|&o| o == owners[0]) {
            out[owners[0] as usize].push(b);
            continue;
        }
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (i, &o) in owners.iter().enumerate() {
            rows[o as usize].push(i as u32);
        }
        for (shard, rows) in rows.into_iter().enumerate() {
            if !rows.is_empty() {
                let idx = UInt32Array::from(rows);
                out[shard].push(arrow::compute::take_record_batch(&b, &idx)?);
            }
        }
    }
    Ok(out)
}

/// [`Table::shards_for`] in `layout`.
fn shards_for(def: &TableDef, layout: &Layout, filter: Option<&Expr>) -> Vec<usize> {
    let all = || (0..layout.shards.len()).collect();
    let (Some(p), Some(filter)) = (&layout.placement, filter) else {
        return all();
    };
    let column = &def.columns[p.key];
    let ty = column.ty.arrow_type();
    let mut rings: Vec<&Ring> = Vec::new();
    for rule in std::iter::once(&p.rule).chain(p.from.as_ref()) {
        match rule {
            Rule::Ring(r) => rings.push(r),
            // A vector key is never fixed by a filter.
            Rule::Centroids(_) | Rule::Pending => return all(),
        }
    }
    let mut best: Option<Vec<usize>> = None;
    for conjunct in datafusion::logical_expr::utils::split_conjunction(filter) {
        let Some(values) = fixed_key_values(conjunct, &column.name, ty.is_integer()) else {
            continue;
        };
        let mut shards = Vec::new();
        for v in values {
            // The value as the column's type, as it is stored and hashed.
            let Ok(v) = v.cast_to(&ty) else {
                return all();
            };
            let Ok(arr) = v.to_array_of_size(1) else {
                return all();
            };
            for ring in &rings {
                let Ok(owner) = ring.owners(arr.as_ref()) else {
                    return all();
                };
                shards.push(owner[0] as usize);
            }
        }
        shards.sort_unstable();
        shards.dedup();
        if best.as_ref().is_none_or(|b| shards.len() < b.len()) {
            best = Some(shards);
        }
    }
    best.unwrap_or_else(all)
}

/// [`Table::search_shards`] in `layout`.
fn search_shards(
    def: &TableDef,
    layout: &Layout,
    filter: Option<&Expr>,
    query: Option<&[f32]>,
    probes: usize,
) -> Vec<usize> {
    let Some(p) = &layout.placement else {
        return shards_for(def, layout, filter);
    };
    match (&p.rule, &p.from, query) {
        (Rule::Pending, None, _) => vec![0],
        (Rule::Centroids(c), None, Some(q)) => {
            let mut probed = c.probe(q, probes);
            probed.sort_unstable();
            probed
        }
        _ => shards_for(def, layout, filter),
    }
}

/// The key values a conjunct fixes the column `key` to, when it is
/// `key = v`, `v = key` or `key IN (v, …)` with constants (an integer key
/// also when widened to another integer type to meet the constant).
fn fixed_key_values(e: &Expr, key: &str, integer_key: bool) -> Option<Vec<ScalarValue>> {
    fn constant(e: &Expr) -> Option<ScalarValue> {
        match e {
            Expr::Literal(v, _) if !v.is_null() => Some(v.clone()),
            Expr::Cast(c) => constant(&c.expr)?.cast_to(c.field.data_type()).ok(),
            Expr::TryCast(c) => constant(&c.expr)?.cast_to(c.field.data_type()).ok(),
            _ => None,
        }
    }
    let is_key = |e: &Expr| match e {
        Expr::Column(c) => c.name == key,
        // An integer key widened to compare with a wider literal: equal
        // values are equal integers, which hash alike at any width.
        Expr::Cast(c) if integer_key && c.field.data_type().is_integer() => {
            matches!(c.expr.as_ref(), Expr::Column(col) if col.name == key)
        }
        _ => false,
    };
    match e {
        Expr::BinaryExpr(b) if b.op == Operator::Eq => {
            if is_key(&b.left) {
                constant(&b.right).map(|v| vec![v])
            } else if is_key(&b.right) {
                constant(&b.left).map(|v| vec![v])
            } else {
                None
            }
        }
        Expr::InList(l) if !l.negated && is_key(&l.expr) => l.list.iter().map(constant).collect(),
        _ => None,
    }
}

/// An append being written batch by batch to the shards its rows belong
/// to ([`Table::append_stream`]).
pub struct AppendStream {
    table: Arc<Table>,
    /// The layout its rows are placed by, held by `routing` (or by the
    /// transaction it is finished in).
    layout: Arc<Layout>,
    routing: Option<Routing>,
    /// Each shard's stream, opened by its first row.
    parts: Vec<Option<ShardAppend>>,
}

impl AppendStream {
    /// Writes one batch (the table's schema).
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        for (i, part) in split_by(&self.layout, vec![batch])?.into_iter().enumerate() {
            for b in part {
                if self.parts[i].is_none() {
                    self.parts[i] = Some(self.layout.shards[i].append_stream().await);
                }
                if let Some(p) = self.parts[i].as_mut() {
                    p.write(b).await?;
                }
            }
        }
        Ok(())
    }

    /// Commits everything written: one shard's as its append, several
    /// shards' in one commit over them. The rows appended.
    pub async fn finish(mut self) -> Result<u64> {
        let touched: Vec<usize> = (0..self.parts.len())
            .filter(|&i| self.parts[i].is_some())
            .collect();
        match touched.as_slice() {
            [] => Ok(0),
            [one] => match self.parts[*one].take() {
                Some(p) => p.finish().await,
                None => Ok(0),
            },
            _ => {
                let table = self.table.clone();
                let Some(routing) = self.routing.take() else {
                    return engine_err!(
                        Internal,
                        "an append stream made for a transaction was finished outside it"
                    );
                };
                let mut w = table.begin_statement(routing).await?;
                let n = self.finish_in(&mut w).await?;
                w.commit().await?;
                Ok(n)
            }
        }
    }

    /// Commits everything written into a transaction's next private
    /// versions ([`crate::txn`]); the rows appended.
    pub async fn finish_in(mut self, txn: &mut TxnWrites) -> Result<u64> {
        let mut n = 0;
        for (i, part) in self.parts.iter_mut().enumerate() {
            if let Some(p) = part.take() {
                n += p.finish_in(txn.part_mut(i)?).await?;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{cast, col, lit};

    /// The conjuncts that fix the shard key, and those that do not.
    #[test]
    fn fixed_key_values_are_found() {
        assert_eq!(
            fixed_key_values(&col("id").eq(lit(5i64)), "id", true),
            Some(vec![ScalarValue::Int64(Some(5))])
        );
        assert_eq!(
            fixed_key_values(&lit("a").eq(col("id")), "id", false),
            Some(vec![ScalarValue::from("a")])
        );
        assert_eq!(
            fixed_key_values(
                &col("id").in_list(vec![lit(1i32), lit(2i32)], false),
                "id",
                true
            ),
            Some(vec![
                ScalarValue::Int32(Some(1)),
                ScalarValue::Int32(Some(2))
            ])
        );
        for not_fixed in [
            col("id").gt(lit(5i64)),
            col("other").eq(lit(5i64)),
            col("id").in_list(vec![lit(1i32)], true),
            col("id").eq(col("other")),
            col("id").eq(lit(ScalarValue::Int64(None))),
            cast(col("id"), arrow::datatypes::DataType::Float64).eq(lit(5.0)),
        ] {
            assert_eq!(
                fixed_key_values(&not_fixed, "id", true),
                None,
                "{not_fixed}"
            );
        }
    }
}
