//! Moving a table to another number of shards, online:
//! `ALTER TABLE t SET (shards = M)`.
//!
//! Rows are placed on a consistent-hash ring ([`crate::ring`]), so only the
//! rows whose owner changes move: growing from N to M shards moves about
//! (M − N) / M of them, all to the new shards; shrinking moves the rows of
//! the shards removed. The move:
//!
//! 1. The new shards' datasets are created, then the catalog records the
//!    table at M shards moving from N ([`ShardingDef::moving_from`]). A
//!    crash before the record leaves folders start-up removes; after it,
//!    start-up resumes the move.
//! 2. The layout switches while no write is placing rows (the table's
//!    routing lock): from then on rows are placed by the M-shard ring, a key
//!    is looked up on its owners under both rings, and readers read every
//!    shard of both counts.
//! 3. Each shard's misplaced rows (those the M-shard ring owns elsewhere)
//!    move in steps of about [`STEP_ROWS`] rows. A step deletes them from
//!    their shard and appends them to their owners in one commit over the
//!    shards ([`crate::table`]): readers see each row exactly once at every
//!    moment and after any crash; a writer waits for at most one step.
//!    Writes during the move place rows by the new ring, so they never add
//!    misplaced rows: one pass over the shards moves them all.
//! 4. The catalog records the move done and the layout drops the old ring
//!    (and the shards a shrink emptied; their folders go once no reader
//!    can hold them).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, BooleanArray};
use datafusion::common::Column;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use futures::TryStreamExt;
use lance::index::DatasetIndexExt;

use crate::engine::{Engine, WAL_DIR, crash_point};
use crate::engine_err;
use crate::error::Result;
use crate::ring::{DEFAULT_VNODES, Ring};
use crate::schema::{ShardMethod, ShardingDef, TableDef};
use crate::shard::Shard;
use crate::table::{Layout, Rule, Table};

/// Rows one step of a move rewrites, about (rows of one key move
/// together), unless `[storage] reshard_step_rows` says otherwise.
pub const STEP_ROWS: u64 = 8192;
/// How long the switch at the start of a move keeps trying (an open
/// transaction block holding the table can delay it): then 55P03.
const START_WAIT: Duration = Duration::from_secs(60);

/// `ALTER TABLE t SET (shards = M[, shard_key = col][, vnodes = V])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reshard {
    pub shards: u32,
    /// The shard key (a table of one shard only: a sharded table keeps its own).
    pub key: Option<String>,
    pub vnodes: Option<u32>,
}

/// What a move did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReshardReport {
    pub from: u32,
    pub to: u32,
    /// Rows in the table when the rows started moving.
    pub rows: u64,
    /// Rows rewritten onto another shard.
    pub moved: u64,
    /// Commits the move took.
    pub steps: u64,
    pub elapsed: Duration,
}

impl ReshardReport {
    /// The fraction of the rows that moved.
    pub fn moved_fraction(&self) -> f64 {
        match self.rows {
            0 => 0.0,
            n => self.moved as f64 / n as f64,
        }
    }
}

impl Engine {
    /// Moves table `name` to `change.shards` shards (see the module
    /// documentation); returns once every row is on its owner.
    pub async fn reshard(self: &Arc<Self>, name: &str, change: Reshard) -> Result<ReshardReport> {
        // Locks are taken in the order writes take them: the routing lock
        // before the DDL lock (a write in a transaction block may reserve
        // serial values, under the DDL lock, while it holds the routing lock).
        let (table, moving, def, sharding) = {
            let _ddl = self.ddl.lock().await;
            let table = self.table(name)?;
            let Ok(moving) = table.moving.clone().try_lock_owned() else {
                return engine_err!(
                    InUse,
                    "table \"{name}\" is being resharded by another statement"
                );
            };
            let Some(def) = self.catalog().tables.get(name).cloned() else {
                return engine_err!(TableNotFound, "relation \"{name}\" does not exist");
            };
            let sharding = match &def.sharding {
                Some(s) if s.moving_from.is_some() => {
                    // An interrupted move whose resumption failed: go on with it.
                    if s.shards != change.shards {
                        return engine_err!(
                            InUse,
                            "table \"{name}\" is still moving to {} shards",
                            s.shards
                        );
                    }
                    s.clone()
                }
                current => match next_sharding(&def, current.as_ref(), &change)? {
                    Some(s) => s,
                    None => {
                        let n = def.shard_count() as u32;
                        return Ok(ReshardReport {
                            from: n,
                            to: n,
                            rows: table.stats().rows,
                            ..ReshardReport::default()
                        });
                    }
                },
            };
            (table, moving, def, sharding)
        };
        // Other DDL on the table is refused from here on (its move lock is held).
        let (from, to) = (sharding.moving_from.unwrap_or(1), sharding.shards);
        if def
            .sharding
            .as_ref()
            .is_none_or(|s| s.moving_from.is_none())
        {
            self.start_move(&table, &def, sharding).await?;
        }
        let mut report = self.finish_move_in_task(name, table, moving).await?;
        report.from = from;
        report.to = to;
        Ok(report)
    }

    /// Creates the new shards, records the move in the catalog and switches
    /// the table's layout (steps 1 and 2).
    pub(crate) async fn start_move(
        &self,
        table: &Arc<Table>,
        def: &TableDef,
        next: ShardingDef,
    ) -> Result<()> {
        let mut next_def = def.clone();
        next_def.sharding = Some(next);
        let old_dirs = def.shard_dirs();
        let log_root = self.data_dir.join(WAL_DIR);
        let mut shards = table.shards();
        let mut created = Vec::new();
        for dir in next_def.shard_dirs().into_iter().skip(old_dirs.len()) {
            let made = match self.storage.location(def.tier, &dir) {
                Ok(at) => {
                    Shard::create(at, next_def.clone(), &self.shared, log_root.join(&dir)).await
                }
                Err(e) => Err(e.into()),
            };
            match made {
                Ok(s) => {
                    shards.push(Arc::new(s));
                    created.push(dir);
                }
                Err(e) => {
                    self.remove_shard_files(def.tier, &created).await;
                    return Err(e);
                }
            }
        }
        crash_point("reshard:created");
        let layout = Layout::of(&next_def, shards)?;
        let Some(_routing) = table.pause_writes(Some(START_WAIT)).await else {
            self.remove_shard_files(def.tier, &created).await;
            return engine_err!(
                LockTimeout,
                "could not reshard table \"{}\": its writes did not pause within {} s (an open transaction block or a COPY holds it)",
                def.name,
                START_WAIT.as_secs()
            );
        };
        let _ddl = self.ddl.lock().await;
        if self.catalog().tables.get(&def.name) != Some(def) {
            self.remove_shard_files(def.tier, &created).await;
            return engine_err!(
                Conflict,
                "table \"{}\" was altered while its move started; try again",
                def.name
            );
        }
        if let Err(e) = self
            .update_catalog(|c| {
                c.tables.insert(next_def.name.clone(), next_def.clone());
            })
            .await
        {
            self.remove_shard_files(def.tier, &created).await;
            return Err(e);
        }
        crash_point("reshard:recorded");
        {
            let _publish = table.publish_exclusive().await;
            table.set_layout(layout);
        }
        self.bump_generation();
        tracing::info!(
            table = def.name,
            from = def.shard_count(),
            to = next_def.sharding.as_ref().map_or(1, |s| s.shards),
            "rows start moving between shard counts"
        );
        Ok(())
    }

    /// [`Engine::finish_move`] in its own task: a client going away does
    /// not stop a move half way (it would be safe; it would only wait for
    /// the next start-up).
    pub(crate) async fn finish_move_in_task(
        self: &Arc<Self>,
        name: &str,
        table: Arc<Table>,
        moving: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<ReshardReport> {
        let engine = self.clone();
        let name = name.to_string();
        let run = tokio::spawn(async move { engine.finish_move(&name, &table, moving).await });
        match run.await {
            Ok(r) => r,
            Err(e) => engine_err!(Internal, "the move of the table's rows failed: {e}"),
        }
    }

    /// Moves every misplaced row, then records the move done (steps 3
    /// and 4); `moving` is the table's move lock.
    pub(crate) async fn finish_move(
        self: &Arc<Self>,
        name: &str,
        table: &Arc<Table>,
        moving: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<ReshardReport> {
        let started = Instant::now();
        let task = self.shared.progress.start("reshard", name);
        let mut report = ReshardReport {
            rows: table.stats().rows,
            ..ReshardReport::default()
        };
        let layout = table.layout();
        task.phase(
            "counting the rows to move",
            layout.shards.len() as u64,
            "shards",
        );
        let mut misplaced = Vec::with_capacity(layout.shards.len());
        for i in 0..layout.shards.len() {
            misplaced.push(count_misplaced(&table.def, &layout, i).await?);
            task.advance(1);
        }
        task.phase("moving rows", misplaced.iter().sum(), "rows");
        for (i, &misplaced) in misplaced.iter().enumerate() {
            if misplaced == 0 {
                continue;
            }
            let buckets = misplaced.div_ceil(self.options().reshard_step_rows.max(1));
            for bucket in 0..buckets {
                let moved = move_step(table, i, buckets, bucket).await?;
                report.moved += moved;
                report.steps += u64::from(moved > 0);
                task.advance(moved);
                crash_point("reshard:step");
            }
        }
        let indexes = self.indexes_of(name);
        task.phase(
            "building indexes on the new shards",
            (indexes.len() * layout.shards.len()) as u64,
            "shards",
        );
        // Shards the move created get the table's indexes (CREATE INDEX
        // is refused while rows move, so the list holds still).
        for index in indexes {
            for s in &layout.shards {
                task.advance(1);
                let has = s
                    .dataset()
                    .load_indices()
                    .await?
                    .iter()
                    .any(|i| i.name == index.name);
                if !has && let Err(e) = s.create_index(&index, false).await {
                    tracing::warn!(table = name, index = index.name, error = %e, "a new shard was left without an index: searches scan it exactly until REINDEX");
                }
            }
        }
        task.phase("switching the table to its new shards", 1, "steps");
        crash_point("reshard:moved");
        // Without a limit: the steps above waited for the same writes.
        let _routing = table.pause_writes(None).await;
        let _ddl = self.ddl.lock().await;
        let Some(mut def) = self.catalog().tables.get(name).cloned() else {
            return engine_err!(
                TableNotFound,
                "relation \"{name}\" was dropped while it moved"
            );
        };
        let all_dirs = def.shard_dirs();
        let Some(sharding) = def.sharding.as_mut() else {
            return engine_err!(
                Internal,
                "table \"{name}\" lost its sharding while it moved"
            );
        };
        let keep = sharding.shards as usize;
        sharding.moving_from = None;
        sharding.dirs.truncate(keep);
        let mut shards = table.shards();
        let removed = shards.split_off(keep.min(shards.len()));
        let layout = Layout::of(&def, shards)?;
        let removed_dirs: Vec<String> = all_dirs.into_iter().skip(keep).collect();
        let tier = table.def.tier;
        self.update_catalog(|c| {
            c.tables.insert(def.name.clone(), def.clone());
        })
        .await?;
        {
            let _publish = table.publish_exclusive().await;
            table.set_layout(layout);
        }
        self.bump_generation();
        drop(moving);
        for s in &removed {
            s.close().await;
        }
        if !removed.is_empty() {
            // Readers may still hold versions of the removed shards: their
            // files go once old versions may (start-up removes them in any
            // case; a folder is never named twice).
            let engine = self.clone();
            let retention = self.options().version_retention;
            tokio::spawn(async move {
                tokio::time::sleep(retention).await;
                let in_use: std::collections::HashSet<String> = engine
                    .catalog()
                    .tables
                    .values()
                    .flat_map(TableDef::shard_dirs)
                    .collect();
                let unused: Vec<String> = removed_dirs
                    .into_iter()
                    .filter(|d| !in_use.contains(d))
                    .collect();
                engine.remove_shard_files(tier, &unused).await;
            });
        }
        report.elapsed = started.elapsed();
        tracing::info!(
            table = name,
            rows = report.rows,
            moved = report.moved,
            fraction = report.moved_fraction(),
            steps = report.steps,
            ms = report.elapsed.as_millis() as u64,
            "rows moved between shard counts"
        );
        Ok(report)
    }

    /// Finishes the moves a stopped process left (at start-up, in the background).
    pub(crate) fn resume_moves(self: &Arc<Self>) {
        for name in self.table_names() {
            let Ok(table) = self.table(&name) else {
                continue;
            };
            if !table.is_moving() {
                continue;
            }
            let Ok(moving) = table.moving.clone().try_lock_owned() else {
                continue;
            };
            let engine = self.clone();
            tokio::spawn(async move {
                tracing::warn!(table = name, "resuming a move between shard counts");
                if let Err(e) = engine.finish_move(&name, &table, moving).await {
                    tracing::error!(table = name, error = %e, "the move between shard counts did not finish; ALTER TABLE … SET (shards = …) again resumes it");
                }
            });
        }
    }

    /// Removes the files of shards a move created and will not use.
    pub(crate) async fn remove_shard_files(&self, tier: quiver_tiering::Tier, dirs: &[String]) {
        for dir in dirs {
            let _ = std::fs::remove_dir_all(self.data_dir.join(WAL_DIR).join(dir));
            if let Err(e) = self.storage.remove_dataset(tier, dir).await {
                tracing::warn!(dir, error = %e, "an unused shard's files were not deleted; start-up deletes them");
            }
        }
    }
}

/// The sharding `change` gives a table sharded as `current` (`None`: one
/// shard); `None` when it already is.
fn next_sharding(
    def: &TableDef,
    current: Option<&ShardingDef>,
    change: &Reshard,
) -> Result<Option<ShardingDef>> {
    let next = match current {
        None => {
            let key = change
                .key
                .clone()
                .unwrap_or_else(|| def.columns[0].name.clone());
            let Some(column) = def.column(&key) else {
                return engine_err!(ColumnNotFound, "shard key column \"{key}\" does not exist");
            };
            if !crate::ring::can_place(&column.ty.arrow_type()) {
                return engine_err!(
                    InvalidDefinition,
                    "column \"{key}\" cannot be a shard key: use an integer, text, date, timestamp, float or boolean column"
                );
            }
            if change.shards == 1 {
                return Ok(None);
            }
            ShardingDef {
                shards: change.shards,
                key,
                vnodes: change.vnodes.unwrap_or(DEFAULT_VNODES),
                moving_from: Some(1),
                dirs: std::iter::once(def.dir.clone())
                    .chain((1..change.shards).map(|i| def.new_shard_dir(i)))
                    .collect(),
                method: ShardMethod::Hash,
                centroids: None,
                train_rows: 0,
            }
        }
        Some(s) if s.is_ivf() => {
            if change.shards == s.shards && change.key.as_ref().is_none_or(|k| *k == s.key) {
                return Ok(None);
            }
            return engine_err!(
                Unsupported,
                "the shards of ivf-sharded table \"{}\" cannot change: its centroids are trained once",
                def.name
            );
        }
        Some(s) => {
            if change.key.as_ref().is_some_and(|k| *k != s.key) {
                return engine_err!(
                    Unsupported,
                    "the shard key of sharded table \"{}\" cannot change",
                    def.name
                );
            }
            if change.vnodes.is_some_and(|v| v != s.vnodes) {
                return engine_err!(
                    Unsupported,
                    "the virtual nodes of sharded table \"{}\" cannot change",
                    def.name
                );
            }
            if change.shards == s.shards {
                return Ok(None);
            }
            let mut dirs = def.shard_dirs();
            dirs.extend((s.shards..change.shards).map(|i| def.new_shard_dir(i)));
            ShardingDef {
                shards: change.shards,
                moving_from: Some(s.shards),
                dirs,
                ..s.clone()
            }
        }
    };
    Ring::new(next.shards, next.vnodes)?;
    Ok(Some(next))
}

/// How many rows of shard `i` (its latest version and tail) the layout's
/// ring owns elsewhere.
async fn count_misplaced(def: &TableDef, layout: &Layout, i: usize) -> Result<u64> {
    let Some(p) = &layout.placement else {
        return Ok(0);
    };
    let i = i as u32;
    let key = &def.columns[p.key].name;
    let snap = layout.shards[i as usize].snapshot();
    let mut n = 0u64;
    let mut count = |keys: &dyn Array| -> Result<()> {
        n += p.rule.owners(keys)?.iter().filter(|&&o| o != i).count() as u64;
        Ok(())
    };
    let mut scan = snap.dataset.scan();
    scan.project(&[key])?;
    let mut stream = scan.try_into_stream().await?;
    while let Some(batch) = stream.try_next().await? {
        count(batch.column(0).as_ref())?;
    }
    for (_, b) in snap.tail.batches.iter() {
        count(b.column(p.key).as_ref())?;
    }
    Ok(n)
}

/// One step: moves the misplaced rows of shard `i` whose key hash falls in
/// bucket `bucket` of `buckets` to their owners, in one commit. The rows moved.
async fn move_step(table: &Arc<Table>, i: usize, buckets: u64, bucket: u64) -> Result<u64> {
    let routing = table.route().await;
    let mut w = table.begin_statement(routing).await?;
    let layout = table.layout();
    let Some(p) = &layout.placement else {
        return Ok(0);
    };
    let misplaced = Misplaced {
        rule: Arc::new(p.rule.clone()),
        shard: i as u32,
        buckets,
        bucket,
        signature: Signature::any(1, Volatility::Immutable),
    };
    let key = Expr::Column(Column::new_unqualified(&table.def.columns[p.key].name));
    let filter = ScalarUDF::new_from_impl(misplaced).call(vec![key]);
    let rows = w.part_mut(i)?.scan(Some(filter.clone())).await?;
    if rows.num_rows() == 0 {
        w.rollback().await?;
        return Ok(0);
    }
    let n = rows.num_rows() as u64;
    let deleted = w.part_mut(i)?.delete(filter).await?;
    if deleted != n {
        w.rollback().await?;
        return engine_err!(
            Internal,
            "a move step read {n} rows of shard {i} and deleted {deleted}"
        );
    }
    w.append(vec![rows]).await?;
    w.commit().await?;
    Ok(n)
}

/// `misplaced(key)`: whether the rule places the key on a shard other
/// than `shard`, for keys whose hash falls in bucket `bucket` of `buckets`
/// (false for the others).
#[derive(Debug)]
struct Misplaced {
    rule: Arc<Rule>,
    shard: u32,
    buckets: u64,
    bucket: u64,
    signature: Signature,
}

impl PartialEq for Misplaced {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.rule, &other.rule)
            && (self.shard, self.buckets, self.bucket) == (other.shard, other.buckets, other.bucket)
    }
}

impl Eq for Misplaced {}

impl Hash for Misplaced {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.shard, self.buckets, self.bucket).hash(state);
    }
}

impl ScalarUDFImpl for Misplaced {
    fn name(&self) -> &str {
        "quiver_misplaced"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(
        &self,
        _args: &[arrow::datatypes::DataType],
    ) -> datafusion::error::Result<arrow::datatypes::DataType> {
        Ok(arrow::datatypes::DataType::Boolean)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let keys = match &args.args[0] {
            ColumnarValue::Array(a) => a.clone(),
            ColumnarValue::Scalar(s) => s.to_array_of_size(args.number_rows)?,
        };
        let ext = |e| datafusion::error::DataFusionError::External(Box::new(e));
        let hashes = bucket_hashes(keys.as_ref()).map_err(ext)?;
        let owners = self.rule.owners(keys.as_ref()).map_err(ext)?;
        let out: BooleanArray = hashes
            .iter()
            .zip(owners)
            .map(|(&h, o)| Some(h % self.buckets == self.bucket && o != self.shard))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// The hash that puts each key in a move step's bucket: the key's
/// ([`crate::ring::key_hashes`]), or for a vector key its values' bytes.
fn bucket_hashes(keys: &dyn Array) -> Result<Vec<u64>> {
    use arrow_array::cast::AsArray;
    let Some(list) = keys.as_fixed_size_list_opt() else {
        return crate::ring::key_hashes(keys);
    };
    let values = list.values().to_data();
    let width = list.value_length() as usize * 4;
    let bytes = &values.buffers()[0].as_slice()[values.offset() * 4..];
    Ok((0..list.len())
        .map(|i| match list.is_null(i) {
            true => crate::ring::NULL_KEY_HASH,
            false => crate::ring::key_hash(&bytes[i * width..(i + 1) * width]),
        })
        .collect())
}
