//! Transaction blocks: `BEGIN` … `COMMIT` / `ROLLBACK`, savepoints, and the
//! failed state, as PostgreSQL has them.
//!
//! Outside a block every statement commits on its own. Inside one, the
//! first write to a table takes it for the transaction
//! ([`quiver_engine::txn`]): the writes become private Lance versions that
//! this session reads (its scans and searches of that table use the
//! transaction's head, [`TxnReads`]) and other sessions do not, until
//! `COMMIT` publishes them; `ROLLBACK` undoes them. Other statements that
//! write a held table wait for the transaction to end (a transaction that
//! already holds a table waits at most [`DEADLOCK_WAIT`], then fails with
//! 40P01). After an error the block is failed: every statement but `COMMIT`
//! / `ROLLBACK` (`ROLLBACK TO SAVEPOINT`) is refused with 25P02, and
//! `COMMIT` rolls back. Schema statements (CREATE / DROP) are not
//! transactional: they take effect at once, and are refused on a table
//! the block has written.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use lance::Dataset;
use quiver_engine::table::Table;
use quiver_engine::txn::TxnWrites;

use crate::error::Result;
use crate::session::TransactionStatus;
use crate::sql_err;

/// How long a transaction that holds a table waits for another.
pub const DEADLOCK_WAIT: Duration = Duration::from_secs(2);

/// The private heads (one per shard) of each table the session's open
/// transaction wrote: what the session's own reads of that table see.
pub type TxnReads = Arc<std::sync::RwLock<HashMap<String, Vec<Arc<Dataset>>>>>;

/// The heads a session reads `table` at: its transaction's, if it wrote it.
pub fn read_at(reads: &TxnReads, table: &str) -> Option<Vec<Arc<Dataset>>> {
    let g = match reads.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    g.get(table).cloned()
}

#[derive(Default)]
struct Block {
    open: bool,
    failed: bool,
    tables: HashMap<String, TxnWrites>,
    /// Each savepoint with the head versions (one per shard) of the tables
    /// held when it was made.
    savepoints: Vec<(String, HashMap<String, Vec<u64>>)>,
}

/// One session's transaction block.
#[derive(Default)]
pub struct Transactions {
    block: tokio::sync::Mutex<Block>,
    reads: TxnReads,
    /// The block's state for ReadyForQuery, readable without the lock:
    /// 0 idle, 1 in a block, 2 failed.
    state: AtomicU8,
}

impl Transactions {
    pub fn reads(&self) -> TxnReads {
        self.reads.clone()
    }

    /// Publishes the block's state: what its reads see and its status.
    fn set_reads(&self, block: &Block) {
        let state = match (block.open, block.failed) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => 2,
        };
        self.state.store(state, Ordering::SeqCst);
        let mut g = match self.reads.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.clear();
        for (name, w) in &block.tables {
            g.insert(name.clone(), w.heads());
        }
    }

    /// Whether a transaction block is open.
    pub async fn is_open(&self) -> bool {
        self.block.lock().await.open
    }

    /// Whether the block has written any table.
    pub async fn holds_any(&self) -> bool {
        !self.block.lock().await.tables.is_empty()
    }

    /// Refuses a statement in a failed block (25P02).
    pub async fn check_usable(&self) -> Result<()> {
        if self.block.lock().await.failed {
            return sql_err!(
                InFailedTransaction,
                "current transaction is aborted, commands ignored until end of transaction block"
            );
        }
        Ok(())
    }

    /// A statement failed: an open block becomes failed.
    pub async fn statement_failed(&self) {
        let mut b = self.block.lock().await;
        if b.open {
            b.failed = true;
            self.set_reads(&b);
        }
    }

    /// The transaction status the wire reports.
    pub fn status(&self) -> TransactionStatus {
        match self.state.load(Ordering::SeqCst) {
            0 => TransactionStatus::Idle,
            1 => TransactionStatus::InBlock,
            _ => TransactionStatus::Failed,
        }
    }

    pub async fn begin(&self) -> String {
        let mut b = self.block.lock().await;
        // PostgreSQL warns and carries on when a block is already open.
        b.open = true;
        self.set_reads(&b);
        "BEGIN".into()
    }

    /// COMMIT: publishes every table's writes (a failed block rolls back).
    pub async fn commit(&self) -> Result<String> {
        let mut b = self.block.lock().await;
        let failed = b.failed;
        let tables = std::mem::take(&mut b.tables);
        *b = Block::default();
        self.set_reads(&b);
        drop(b);
        let mut first_error = None;
        for (_, w) in tables {
            let r = if failed {
                w.rollback().await
            } else {
                w.commit().await
            };
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e.into());
        }
        Ok(if failed { "ROLLBACK" } else { "COMMIT" }.into())
    }

    /// ROLLBACK: undoes every table's writes.
    pub async fn rollback(&self) -> Result<String> {
        let mut b = self.block.lock().await;
        let tables = std::mem::take(&mut b.tables);
        *b = Block::default();
        self.set_reads(&b);
        drop(b);
        let mut first_error = None;
        for (_, w) in tables {
            if let Err(e) = w.rollback().await {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok("ROLLBACK".into()),
        }
    }

    pub async fn savepoint(&self, name: &str) -> Result<String> {
        let mut b = self.block.lock().await;
        if !b.open {
            return sql_err!(
                NoActiveTransaction,
                "SAVEPOINT can only be used in transaction blocks"
            );
        }
        let heads = b
            .tables
            .iter()
            .map(|(t, w)| (t.clone(), w.head_versions()))
            .collect();
        b.savepoints.push((name.to_string(), heads));
        Ok("SAVEPOINT".into())
    }

    fn savepoint_index(b: &Block, name: &str, what: &str) -> Result<usize> {
        if !b.open {
            return sql_err!(
                NoActiveTransaction,
                "{what} can only be used in transaction blocks"
            );
        }
        match b.savepoints.iter().rposition(|(n, _)| n == name) {
            Some(i) => Ok(i),
            None => sql_err!(InvalidSavepoint, "savepoint \"{name}\" does not exist"),
        }
    }

    pub async fn release(&self, name: &str) -> Result<String> {
        let mut b = self.block.lock().await;
        let i = Self::savepoint_index(&b, name, "RELEASE SAVEPOINT")?;
        b.savepoints.truncate(i);
        Ok("RELEASE".into())
    }

    /// ROLLBACK TO SAVEPOINT: each table back to its head at the savepoint
    /// (a table first written after it, to its base); the block is usable again.
    pub async fn rollback_to(&self, name: &str) -> Result<String> {
        let mut b = self.block.lock().await;
        let i = Self::savepoint_index(&b, name, "ROLLBACK TO SAVEPOINT")?;
        b.savepoints.truncate(i + 1);
        let heads = b.savepoints[i].1.clone();
        for (table, w) in b.tables.iter_mut() {
            let versions = match heads.get(table) {
                Some(v) => v.clone(),
                None => w.base_versions(),
            };
            w.restore(&versions).await?;
        }
        b.failed = false;
        self.set_reads(&b);
        Ok("ROLLBACK".into())
    }

    /// Writes every table's buffered appends (before a statement that may
    /// read them).
    pub async fn flush_pending(&self) -> Result<()> {
        let mut b = self.block.lock().await;
        if !b.tables.values().any(TxnWrites::has_pending) {
            return Ok(());
        }
        for w in b.tables.values_mut() {
            w.flush_pending().await?;
        }
        self.set_reads(&b);
        Ok(())
    }

    /// Takes `table` for the open block (its first write does so anyway):
    /// a constrained table's checks must run with its constraint lock held.
    pub async fn take(&self, table: &Arc<Table>) -> Result<()> {
        self.write(table, async |_| Ok(())).await
    }

    /// [`Transactions::write`] for an operation that reports SQL errors.
    pub async fn write_sql<R>(
        &self,
        table: &Arc<Table>,
        op: impl AsyncFnOnce(&mut TxnWrites) -> Result<R>,
    ) -> Result<R> {
        let mut b = self.block.lock().await;
        let w = Self::held(&mut b, table).await?;
        let r = op(w).await;
        self.set_reads(&b);
        r
    }

    /// The block's writes to `table`, taken on its first write.
    async fn held<'b>(b: &'b mut Block, table: &Arc<Table>) -> Result<&'b mut TxnWrites> {
        let name = table.def.name.clone();
        if !b.tables.contains_key(&name) {
            let wait = (!b.tables.is_empty()).then_some(DEADLOCK_WAIT);
            let w = table.begin_writes(wait, None).await?;
            b.tables.insert(name.clone(), w);
        }
        match b.tables.get_mut(&name) {
            Some(w) => Ok(w),
            None => sql_err!(Internal, "the transaction lost table {name}"),
        }
    }

    /// Runs a write to `table` inside the open block: the table's writes of
    /// this transaction, taken on its first write.
    pub async fn write<R>(
        &self,
        table: &Arc<Table>,
        op: impl AsyncFnOnce(&mut TxnWrites) -> quiver_engine::error::Result<R>,
    ) -> Result<R> {
        let mut b = self.block.lock().await;
        let w = Self::held(&mut b, table).await?;
        let r = op(w).await;
        self.set_reads(&b);
        Ok(r?)
    }
}
