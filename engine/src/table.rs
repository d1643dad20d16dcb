//! One table: a Lance dataset, the latest committed version, and its writes.
//!
//! Writers take the table's write lock, commit exactly one Lance version per
//! statement and then publish it; readers take the published `Arc<Dataset>` and
//! never wait for a writer.

use std::sync::{Arc, RwLock};

use arrow::array::{Array, AsArray, RecordBatch, RecordBatchIterator};
use arrow::datatypes::Float32Type;
use datafusion::logical_expr::Expr;
use lance::Dataset;
use lance::dataset::builder::DatasetBuilder;
use lance::dataset::write::delete::DeleteBuilder;
use lance::dataset::write::update::UpdateBuilder;
use lance::dataset::{WriteMode, WriteParams};
use lance::index::DatasetIndexExt;
use lance::session::Session;
use lance_index::optimize::OptimizeOptions;

use crate::chunks::ChunkCache;
use crate::engine_err;
use crate::error::Result;
use crate::index::{BuildParams, IndexDef};
use crate::memory::MemoryBudget;
use crate::schema::{ColumnType, TableDef};
use crate::view::{TableView, ViewCache};

/// What every table of one engine shares: the one Lance session (index and
/// metadata caches) and the one chunk cache, both sized from the memory budget.
#[derive(Debug, Clone)]
pub struct Shared {
    pub session: Arc<Session>,
    pub chunks: Arc<ChunkCache>,
}

impl Shared {
    pub fn new(budget: &MemoryBudget) -> Shared {
        Shared {
            session: budget.lance_session(),
            chunks: Arc::new(ChunkCache::new(budget.chunk_bytes())),
        }
    }

    /// Write parameters of every commit: this session, and row addresses as
    /// row ids (the search path relies on it, see [`crate::view`]).
    fn write_params(&self, mode: WriteMode) -> WriteParams {
        WriteParams {
            mode,
            session: Some(self.session.clone()),
            enable_stable_row_ids: false,
            ..Default::default()
        }
    }
}

pub struct Table {
    pub def: TableDef,
    shared: Shared,
    latest: RwLock<Arc<Dataset>>,
    write_lock: tokio::sync::Mutex<()>,
    views: ViewCache,
}

impl Table {
    /// Creates the empty dataset for a new table.
    pub async fn create(uri: String, def: TableDef, shared: &Shared) -> Result<Table> {
        let schema = def.arrow_schema();
        let empty = RecordBatchIterator::new(Vec::<Result<RecordBatch, _>>::new(), schema);
        let params = shared.write_params(WriteMode::Create);
        let ds = Dataset::write(empty, uri.as_str(), Some(params)).await?;
        Ok(Self::with_dataset(def, ds, shared))
    }

    pub async fn open(uri: String, def: TableDef, shared: &Shared) -> Result<Table> {
        let ds = DatasetBuilder::from_uri(&uri)
            .with_session(shared.session.clone())
            .load()
            .await?;
        if ds.manifest().uses_stable_row_ids() {
            return engine_err!(
                Unsupported,
                "table {} was written with stable row ids, which this version does not read",
                def.name
            );
        }
        Ok(Self::with_dataset(def, ds, shared))
    }

    fn with_dataset(def: TableDef, ds: Dataset, shared: &Shared) -> Table {
        Table {
            def,
            shared: shared.clone(),
            latest: RwLock::new(Arc::new(ds)),
            write_lock: tokio::sync::Mutex::new(()),
            views: ViewCache::default(),
        }
    }

    /// The latest committed version.
    pub fn dataset(&self) -> Arc<Dataset> {
        match self.latest.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn publish(&self, ds: Arc<Dataset>) {
        match self.latest.write() {
            Ok(mut g) => *g = ds,
            Err(p) => *p.into_inner() = ds,
        }
    }

    /// The search view of the latest version (built from the previous view:
    /// only what changed is read).
    pub async fn view(&self) -> Result<Arc<TableView>> {
        self.views
            .get(self.dataset(), &self.def, &self.shared.chunks)
            .await
    }

    /// Appends rows in one commit. The batches must have the table's schema.
    pub async fn append(&self, batches: Vec<RecordBatch>) -> Result<u64> {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return Ok(0);
        }
        for b in &batches {
            self.validate(b)?;
        }
        let _w = self.write_lock.lock().await;
        let mut ds = (*self.dataset()).clone();
        let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), self.def.arrow_schema());
        ds.append(reader, Some(self.shared.write_params(WriteMode::Append)))
            .await?;
        self.publish(Arc::new(ds));
        Ok(rows as u64)
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
                    InvalidData,
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
    pub async fn delete(&self, filter: Expr) -> Result<u64> {
        let _w = self.write_lock.lock().await;
        let res = DeleteBuilder::from_expr(self.dataset(), filter)
            .execute()
            .await?;
        self.publish(res.new_dataset);
        Ok(res.num_deleted_rows)
    }

    /// Sets columns to SQL expressions on the rows matching `filter`, in one commit.
    pub async fn update(&self, filter: Option<Expr>, sets: &[(String, String)]) -> Result<u64> {
        let _w = self.write_lock.lock().await;
        let mut b = UpdateBuilder::new(self.dataset());
        if let Some(f) = filter {
            b = b.update_where_expr(f)?;
        }
        for (col, value) in sets {
            b = b.set(col, value)?;
        }
        let res = b.build()?.execute().await?;
        self.publish(res.new_dataset);
        Ok(res.rows_updated)
    }

    /// Builds (or with `replace`, rebuilds) a Lance index, one commit.
    pub async fn create_index(&self, def: &IndexDef, replace: bool) -> Result<()> {
        let _w = self.write_lock.lock().await;
        let mut ds = (*self.dataset()).clone();
        let rows = ds.count_rows(None).await?;
        let dim = self
            .def
            .column(&def.column)
            .and_then(|c| c.ty.vector_dim())
            .unwrap_or(0);
        let lance_type = BuildParams::lance_type(def);
        match BuildParams::for_index(def, rows, dim)? {
            BuildParams::Vector(p) => {
                ds.create_index(
                    &[def.column.as_str()],
                    lance_type,
                    Some(def.name.clone()),
                    p.as_ref(),
                    replace,
                )
                .await?;
            }
            BuildParams::Scalar(p) => {
                ds.create_index(
                    &[def.column.as_str()],
                    lance_type,
                    Some(def.name.clone()),
                    &p,
                    replace,
                )
                .await?;
            }
        }
        self.publish(Arc::new(ds));
        Ok(())
    }

    pub async fn drop_index(&self, name: &str) -> Result<()> {
        let _w = self.write_lock.lock().await;
        let mut ds = (*self.dataset()).clone();
        ds.drop_index(name).await?;
        self.publish(Arc::new(ds));
        Ok(())
    }

    /// Folds rows written since the indexes were built into them (no retraining).
    pub async fn optimize_indexes(&self) -> Result<()> {
        let _w = self.write_lock.lock().await;
        let mut ds = (*self.dataset()).clone();
        if ds.load_indices().await?.is_empty() {
            return Ok(());
        }
        ds.optimize_indices(&OptimizeOptions::append()).await?;
        self.publish(Arc::new(ds));
        Ok(())
    }
}
