//! A transaction's writes to one table: private versions under the table's
//! write lock, published at COMMIT, undone at ROLLBACK.
//!
//! The first write of a transaction block to a table ([`Shard::begin_writes`])
//! takes the table's write and compaction locks (other statements that write
//! the table through Lance, and compaction, wait until the transaction ends;
//! one-row INSERTs of other sessions still go to the log and are seen at
//! once), flushes the log's tail, and records the published version as the
//! transaction's base in a marker file beside the log. Each write of the
//! transaction is then committed to Lance as a new version that is *not*
//! published: other sessions keep reading the base (they never see
//! uncommitted rows), while the transaction reads its own head
//! ([`ShardWrites::snapshot`]). COMMIT publishes the head; ROLLBACK (or a
//! savepoint rollback) restores an earlier version as a new one (Lance's
//! `restore`: a version whose manifest is the earlier one's), so the base's
//! rows are what the next version holds. A crash with a marker present is
//! rolled back at the next start-up ([`recover`]): the base is restored
//! before anything reads the table.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use datafusion::logical_expr::Expr;
use lance::Dataset;
use lance::dataset::transaction::Transaction;
use lance::dataset::write::delete::DeleteBuilder;
use lance::dataset::{CommitBuilder, InsertBuilder, WriteMode};

use crate::engine_err;
use crate::error::Result;
use crate::shard::{Shard, Snapshot};
use crate::table::Table;

/// The marker a table's log folder holds while a transaction has private versions.
const MARKER: &str = "txn-base";

/// One transaction's hold on one table (see the module documentation).
/// Dropped without [`ShardWrites::commit`] or [`ShardWrites::rollback`] (the
/// connection went away), it rolls back in the background.
pub struct ShardWrites {
    inner: Option<Held>,
}

struct Held {
    table: Arc<Shard>,
    /// The table's constraint lock, when it has unique constraints.
    _constraint: Option<tokio::sync::OwnedMutexGuard<()>>,
    _write: tokio::sync::OwnedMutexGuard<()>,
    _compaction: tokio::sync::OwnedMutexGuard<()>,
    /// The version published when the transaction took the table.
    base: u64,
    /// The transaction's latest version (private until COMMIT).
    head: Arc<Dataset>,
    /// Appends not written yet ([`ShardWrites::append_later`]).
    pending: Vec<RecordBatch>,
    pending_rows: usize,
}

/// Buffered appends are written once they hold this many rows.
const PENDING_ROWS: usize = 16_384;

impl Shard {
    /// Takes the table for a transaction's writes: waits for its write lock
    /// (at most `wait`, when given: a transaction that already holds another
    /// table could be waiting in a cycle, reported as a deadlock), and
    /// first for its constraint lock when it has unique constraints (unless
    /// the caller holds it already and passes it in).
    pub async fn begin_writes(
        self: &Arc<Self>,
        wait: Option<Duration>,
        constraint: Option<tokio::sync::OwnedMutexGuard<()>>,
    ) -> Result<ShardWrites> {
        self.begin_writes_with(wait, constraint, true).await
    }

    /// [`Shard::begin_writes`]; without `lock_constraints`, a table with
    /// unique constraints is taken without its constraint lock (the caller
    /// holds the table's, or writes nothing the constraints check).
    pub(crate) async fn begin_writes_with(
        self: &Arc<Self>,
        wait: Option<Duration>,
        constraint: Option<tokio::sync::OwnedMutexGuard<()>>,
        lock_constraints: bool,
    ) -> Result<ShardWrites> {
        let locks = async {
            let k = match constraint {
                Some(g) => Some(g),
                None if lock_constraints && !self.def.unique.is_empty() => {
                    Some(self.constraint_guard().await)
                }
                None => None,
            };
            let w = self.write_lock_owned().await;
            let c = self.compaction_lock_owned().await;
            (k, w, c)
        };
        let (constraint, write, compaction) = match wait {
            None => locks.await,
            Some(d) => match tokio::time::timeout(d, locks).await {
                Ok(l) => l,
                Err(_) => {
                    return engine_err!(
                        Deadlock,
                        "deadlock detected: table \"{}\" is held by another transaction \
                         while this one holds other tables (waited {} ms)",
                        self.def.name,
                        d.as_millis()
                    );
                }
            },
        };
        self.check_open()?;
        self.flush_held().await?;
        let head = self.dataset();
        let base = head.version().version;
        write_marker(self.log_dir(), base, self.syncs())?;
        Ok(ShardWrites {
            inner: Some(Held {
                table: self.clone(),
                _constraint: constraint,
                _write: write,
                _compaction: compaction,
                base,
                head,
                pending: Vec::new(),
                pending_rows: 0,
            }),
        })
    }
}

impl ShardWrites {
    fn held(&self) -> &Held {
        self.inner
            .as_ref()
            .expect("a transaction's table is held until it ends")
    }

    fn held_mut(&mut self) -> &mut Held {
        self.inner
            .as_mut()
            .expect("a transaction's table is held until it ends")
    }

    pub fn table(&self) -> &Arc<Shard> {
        &self.held().table
    }

    /// The transaction's latest version of this shard.
    pub fn head(&self) -> Arc<Dataset> {
        self.held().head.clone()
    }

    /// Whether the transaction wrote this shard.
    fn changed(&self) -> bool {
        let h = self.held();
        h.head.version().version != h.base
    }

    /// Ends the hold once the caller has published the head (a commit over
    /// several shards, [`TxnWrites::commit`]): removes the marker; the locks
    /// are in the returned hold, released when the caller drops it. Never
    /// rolls back, even when the marker could not be removed.
    fn release(mut self) -> (Option<Held>, Result<()>) {
        match self.inner.take() {
            Some(h) => {
                let removed = remove_marker(h.table.log_dir(), h.table.syncs());
                (Some(h), removed)
            }
            None => (None, Ok(())),
        }
    }

    /// The version the transaction's next statement reads and writes.
    pub fn head_version(&self) -> u64 {
        self.held().head.version().version
    }

    /// What the transaction reads: its head, and the log's tail (rows other
    /// sessions committed through the log since).
    pub fn snapshot(&self) -> Snapshot {
        let h = self.held();
        Snapshot::new(h.head.clone(), h.table.snapshot().tail)
    }

    /// The rows of the head matching `filter` (all rows without one), all
    /// columns: what an UPDATE rewrites (after [`ShardWrites::flush_pending`]).
    pub async fn scan(&self, filter: Option<Expr>) -> Result<RecordBatch> {
        let h = self.held();
        let mut scanner = h.head.scan();
        if let Some(f) = filter {
            scanner.filter_expr(f);
        }
        let batch = scanner.try_into_batch().await?;
        // Lance's schema (nullability as stored) to the table's.
        Ok(RecordBatch::try_new(
            h.table.def.arrow_schema(),
            batch.columns().to_vec(),
        )?)
    }

    /// Appends rows to be written with the next write, read or commit
    /// ([`ShardWrites::flush_pending`]): a block's one-row INSERTs become one
    /// version, not one each. The caller flushes before anything reads the
    /// table.
    pub async fn append_later(&mut self, batches: Vec<RecordBatch>) -> Result<u64> {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let h = self.held_mut();
        for b in &batches {
            h.table.validate_batch(b)?;
        }
        h.pending.extend(batches);
        h.pending_rows += rows;
        if h.pending_rows >= PENDING_ROWS {
            self.flush_pending().await?;
        }
        Ok(rows as u64)
    }

    /// Whether appends wait to be written.
    pub fn has_pending(&self) -> bool {
        self.inner.as_ref().is_some_and(|h| !h.pending.is_empty())
    }

    /// Writes the buffered appends as a private version.
    pub async fn flush_pending(&mut self) -> Result<()> {
        let h = self.held_mut();
        if h.pending.is_empty() {
            return Ok(());
        }
        let batches = std::mem::take(&mut h.pending);
        h.pending_rows = 0;
        self.append(batches).await?;
        Ok(())
    }

    /// Appends rows as a private version.
    pub async fn append(&mut self, batches: Vec<RecordBatch>) -> Result<u64> {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return Ok(0);
        }
        let h = self.held();
        for b in &batches {
            h.table.validate_batch(b)?;
        }
        let params = h.table.write_params_for(WriteMode::Append);
        let transaction = InsertBuilder::new(h.head.clone())
            .with_params(&params)
            .execute_uncommitted(batches)
            .await?;
        self.commit_transaction(transaction).await?;
        Ok(rows as u64)
    }

    /// Commits an append whose files are written (a COPY's) as a private version.
    pub async fn commit_written(&mut self, transaction: Transaction) -> Result<()> {
        self.flush_pending().await?;
        self.commit_transaction(transaction).await
    }

    async fn commit_transaction(&mut self, transaction: Transaction) -> Result<()> {
        let h = self.held_mut();
        let ds = CommitBuilder::new(h.head.clone())
            .with_session(h.table.lance_session())
            .use_stable_row_ids(false)
            .execute(transaction)
            .await?;
        h.head = Arc::new(ds);
        Ok(())
    }

    /// Deletes the rows matching `filter`, as a private version.
    pub async fn delete(&mut self, filter: Expr) -> Result<u64> {
        self.flush_pending().await?;
        let h = self.held_mut();
        let res = DeleteBuilder::from_expr(h.head.clone(), filter)
            .execute()
            .await?;
        h.head = res.new_dataset;
        Ok(res.num_deleted_rows)
    }

    /// Makes the transaction's head hold what `version` held (a savepoint's
    /// or the base's), as a new private version.
    pub async fn restore(&mut self, version: u64) -> Result<()> {
        self.flush_pending().await?;
        let h = self.held_mut();
        if h.head.version().version == version {
            return Ok(());
        }
        h.head = Arc::new(restored(&h.head, version).await?);
        Ok(())
    }

    /// The base version: what a rollback returns to.
    pub fn base_version(&self) -> u64 {
        self.held().base
    }

    /// Publishes the head: every statement of the transaction on this table
    /// becomes visible at once.
    pub async fn commit(mut self) -> Result<()> {
        self.flush_pending().await?;
        let Some(h) = self.inner.take() else {
            return Ok(());
        };
        if h.head.version().version != h.base {
            h.table.publish_committed(h.head.clone()).await;
        }
        remove_marker(h.table.log_dir(), h.table.syncs())
    }

    /// Undoes the transaction's writes to this table.
    pub async fn rollback(mut self) -> Result<()> {
        match self.inner.take() {
            Some(h) => roll_back(h).await,
            None => Ok(()),
        }
    }
}

impl Drop for ShardWrites {
    fn drop(&mut self) {
        if let Some(h) = self.inner.take() {
            let name = h.table.def.name.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        if let Err(e) = roll_back(h).await {
                            tracing::error!(table = name, error = %e, "rolling back an abandoned transaction failed; the next start-up rolls it back");
                        }
                    });
                }
                Err(_) => {
                    tracing::error!(
                        table = name,
                        "a transaction was abandoned outside the runtime; the next start-up rolls it back"
                    );
                }
            }
        }
    }
}

async fn roll_back(h: Held) -> Result<()> {
    if h.head.version().version != h.base {
        let ds = restored(&h.head, h.base).await?;
        // Newer than the published base, with the base's rows: writers
        // after this one build on it.
        h.table.publish_restored(Arc::new(ds)).await;
    }
    remove_marker(h.table.log_dir(), h.table.syncs())
}

/// A new latest version of `ds`'s dataset holding what `version` held.
async fn restored(ds: &Dataset, version: u64) -> Result<Dataset> {
    let mut old = ds.checkout_version(version).await?;
    old.restore().await?;
    Ok(old)
}

/// Writes `bytes` to `path` and, with `sync`, makes the file and its
/// folder durable.
/// A crash leaves the old file or the new one, never part of it
/// (a temporary file renamed into place).
pub(crate) fn write_file_synced(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    if sync {
        std::fs::File::open(&tmp)?.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if sync && let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Removes `path` (gone already is fine) and, with `sync`, syncs its folder.
pub(crate) fn remove_file_synced(path: &Path, sync: bool) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if sync && let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// At start-up, for a commit over several shards that was recorded with
/// version `recorded` of this shard: when the shard's transaction marker
/// names an older base, that transaction is the recorded commit, whose
/// versions are kept (the marker goes without a rollback). A marker at or
/// past the recorded version is a later transaction's (the record was
/// left over): it is rolled back as usual when the shard opens.
pub(crate) fn settle_marker(dir: &Path, recorded: u64, sync: bool) -> Result<()> {
    let base = match std::fs::read_to_string(marker_path(dir)) {
        Ok(t) => t.trim().parse::<u64>().ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    match base {
        Some(base) if base < recorded => remove_file_synced(&marker_path(dir), sync),
        _ => Ok(()),
    }
}

fn marker_path(dir: &Path) -> PathBuf {
    dir.join(MARKER)
}

fn write_marker(dir: &Path, base: u64, sync: bool) -> Result<()> {
    write_file_synced(&marker_path(dir), base.to_string().as_bytes(), sync)
}

fn remove_marker(dir: &Path, sync: bool) -> Result<()> {
    remove_file_synced(&marker_path(dir), sync)
}

/// At start-up: a marker left by a transaction that did not end (the
/// process died) names the version to return to; restores it when newer
/// versions exist. Returns the dataset to open the table at.
pub(crate) async fn recover(dir: &Path, ds: Dataset, sync: bool) -> Result<Dataset> {
    let text = match std::fs::read_to_string(marker_path(dir)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ds),
        Err(e) => return Err(e.into()),
    };
    let Ok(base) = text.trim().parse::<u64>() else {
        return engine_err!(
            Internal,
            "unreadable transaction marker {}: {text:?}",
            marker_path(dir).display()
        );
    };
    let ds = if ds.version().version > base {
        tracing::warn!(
            path = %dir.display(),
            base,
            latest = ds.version().version,
            "rolling back a transaction that did not end"
        );
        restored(&ds, base).await?
    } else {
        ds
    };
    remove_marker(dir, sync)?;
    Ok(ds)
}

/// A transaction's writes to one table: one [`ShardWrites`] per shard it
/// took (every shard, but for a statement that rewrites the rows of a
/// fixed shard key in place: [`Table::begin_writes_for`]), rows routed by
/// the table's placement ([`Table::split`]).
pub struct TxnWrites {
    table: Arc<Table>,
    parts: Vec<Option<ShardWrites>>,
    /// The placement rows are routed by, held until the transaction ends.
    _routing: crate::table::Routing,
}

impl TxnWrites {
    pub(crate) fn new(
        table: Arc<Table>,
        parts: Vec<Option<ShardWrites>>,
        routing: crate::table::Routing,
    ) -> TxnWrites {
        TxnWrites {
            table,
            parts,
            _routing: routing,
        }
    }

    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// Shard `i`'s writes (an error when the transaction did not take it).
    pub fn part_mut(&mut self, i: usize) -> Result<&mut ShardWrites> {
        let name = &self.table.def.name;
        self.parts
            .get_mut(i)
            .and_then(Option::as_mut)
            .ok_or_else(|| not_taken(name, i))
    }

    fn part(&self, i: usize) -> Result<&ShardWrites> {
        self.parts
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| not_taken(&self.table.def.name, i))
    }

    fn held(&self) -> impl Iterator<Item = &ShardWrites> {
        self.parts.iter().flatten()
    }

    /// What the transaction reads: each shard's head (the latest version
    /// of a shard it did not take), in shard order.
    pub fn heads(&self) -> Vec<Arc<Dataset>> {
        let shards = self.table.shards();
        self.parts
            .iter()
            .zip(&shards)
            .map(|(p, s)| p.as_ref().map_or_else(|| s.dataset(), ShardWrites::head))
            .collect()
    }

    /// The versions the transaction's next statement reads, shard by shard.
    pub fn head_versions(&self) -> Vec<u64> {
        self.heads().iter().map(|h| h.version().version).collect()
    }

    /// The versions a rollback returns to, shard by shard (a shard not
    /// taken: its latest).
    pub fn base_versions(&self) -> Vec<u64> {
        let shards = self.table.shards();
        self.parts
            .iter()
            .zip(&shards)
            .map(|(p, s)| {
                p.as_ref()
                    .map_or_else(|| s.dataset().version().version, ShardWrites::base_version)
            })
            .collect()
    }

    /// The rows matching `filter` (all without one), from the shards that
    /// can hold them (after [`TxnWrites::flush_pending`]).
    pub async fn scan(&self, filter: Option<Expr>) -> Result<RecordBatch> {
        let mut out = Vec::new();
        for i in self.table.shards_for(filter.as_ref()) {
            out.push(self.part(i)?.scan(filter.clone()).await?);
        }
        Ok(arrow::compute::concat_batches(
            &self.table.def.arrow_schema(),
            &out,
        )?)
    }

    /// [`ShardWrites::append_later`], shard by shard.
    pub async fn append_later(&mut self, batches: Vec<RecordBatch>) -> Result<u64> {
        let mut n = 0;
        for (i, part) in self.table.split(batches)?.into_iter().enumerate() {
            if !part.is_empty() {
                n += self.part_mut(i)?.append_later(part).await?;
            }
        }
        Ok(n)
    }

    pub fn has_pending(&self) -> bool {
        self.held().any(ShardWrites::has_pending)
    }

    pub async fn flush_pending(&mut self) -> Result<()> {
        for p in self.parts.iter_mut().flatten() {
            p.flush_pending().await?;
        }
        Ok(())
    }

    /// Appends rows as private versions of the shards they belong to.
    pub async fn append(&mut self, batches: Vec<RecordBatch>) -> Result<u64> {
        let mut n = 0;
        for (i, part) in self.table.split(batches)?.into_iter().enumerate() {
            if !part.is_empty() {
                n += self.part_mut(i)?.append(part).await?;
            }
        }
        Ok(n)
    }

    /// Deletes the rows matching `filter` from the shards that can hold them.
    pub async fn delete(&mut self, filter: Expr) -> Result<u64> {
        let mut n = 0;
        for i in self.table.shards_for(Some(&filter)) {
            n += self.part_mut(i)?.delete(filter.clone()).await?;
        }
        Ok(n)
    }

    /// Makes each shard's head hold what `versions[i]` held.
    pub async fn restore(&mut self, versions: &[u64]) -> Result<()> {
        for (p, &v) in self.parts.iter_mut().zip(versions) {
            if let Some(p) = p {
                p.restore(v).await?;
            }
        }
        Ok(())
    }

    /// Publishes the heads: every statement of the transaction on this
    /// table becomes visible at once, on every shard ([`crate::table`]).
    pub async fn commit(mut self) -> Result<()> {
        self.flush_pending().await?;
        let changed = self.held().filter(|p| p.changed()).count();
        if changed <= 1 {
            for p in self.parts.into_iter().flatten() {
                p.commit().await?;
            }
            return Ok(());
        }
        let heads: Vec<Option<Arc<Dataset>>> = self
            .parts
            .iter()
            .map(|p| p.as_ref().filter(|p| p.changed()).map(ShardWrites::head))
            .collect();
        self.table.publish_together(&heads).await?;
        // Published: from here on nothing rolls back. The shards stay held
        // until the record is gone, so no other commit starts meanwhile.
        let mut result = Ok(());
        let mut held = Vec::with_capacity(self.parts.len());
        for p in self.parts.into_iter().flatten() {
            let (h, removed) = p.release();
            held.push(h);
            if result.is_ok() {
                result = removed;
            }
        }
        if result.is_ok() {
            result = self.table.commit_settled();
        }
        drop(held);
        result
    }

    /// Undoes the transaction's writes to every shard.
    pub async fn rollback(self) -> Result<()> {
        let mut result = Ok(());
        for p in self.parts.into_iter().flatten() {
            let r = p.rollback().await;
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

/// A statement reached shard `i`, which it did not take.
fn not_taken(table: &str, i: usize) -> crate::error::EngineError {
    crate::error::EngineError::new(
        crate::error::ErrorKind::Internal,
        format!("table \"{table}\": shard {i} was not taken by this statement"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit record keeps the versions of the transaction it recorded
    /// (marker base below the recorded version) and leaves a later
    /// transaction's marker (at or past it) to be rolled back.
    #[test]
    fn a_record_settles_only_its_own_transaction() {
        let dir = std::env::temp_dir().join(format!("quiver-settle-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_marker(&dir, 5, false).expect("marker");
        settle_marker(&dir, 7, false).expect("settle");
        assert!(
            !marker_path(&dir).exists(),
            "the recorded commit keeps its versions"
        );
        write_marker(&dir, 7, false).expect("marker");
        settle_marker(&dir, 7, false).expect("settle");
        settle_marker(&dir, 3, false).expect("settle");
        assert!(
            marker_path(&dir).exists(),
            "a later transaction is rolled back"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
