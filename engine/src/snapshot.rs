//! An in-memory copy of one table version: every row, its Lance row id, and the
//! vectors as contiguous `f32` — the hot data the search path reads instead of
//! paying Lance's scanner set-up on each query.
//!
//! A snapshot is loaded on first use after a commit and shared by all readers
//! of that version; a newer version replaces it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{Float32Type, UInt64Type};
use futures::TryStreamExt;
use lance::Dataset;

use lance_linalg::distance::DistanceType;

use crate::ann::AnnHandle;
use crate::error::Result;
use crate::schema::TableDef;

pub struct Snapshot {
    pub version: u64,
    pub dataset: Arc<Dataset>,
    /// All rows, with exactly the table's columns.
    pub rows: RecordBatch,
    /// Lance `_rowid` of each row.
    pub row_ids: Vec<u64>,
    id_to_row: HashMap<u64, u32>,
    /// Vector indexes opened on this version, by index name.
    ann: tokio::sync::Mutex<HashMap<String, Arc<AnnHandle>>>,
}

impl Snapshot {
    async fn load(dataset: Arc<Dataset>, def: &TableDef) -> Result<Snapshot> {
        let schema = def.arrow_schema();
        let mut scan = dataset.scan();
        scan.with_row_id();
        let batches: Vec<RecordBatch> = scan.try_into_stream().await?.try_collect().await?;
        let mut row_ids = Vec::new();
        let mut cols = Vec::with_capacity(batches.len());
        for b in &batches {
            let ids = b
                .column_by_name("_rowid")
                .map(|c| c.as_primitive::<UInt64Type>().values().to_vec());
            row_ids.extend(ids.unwrap_or_default());
            cols.push(
                b.project(
                    &schema
                        .fields()
                        .iter()
                        .map(|f| b.schema().index_of(f.name()))
                        .collect::<Result<Vec<_>, _>>()?,
                )?,
            );
        }
        let rows = if cols.is_empty() {
            RecordBatch::new_empty(schema.clone())
        } else {
            let merged = concat_batches(&cols[0].schema(), &cols)?;
            RecordBatch::try_new(schema.clone(), merged.columns().to_vec())?
        };
        let id_to_row = row_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u32))
            .collect();
        Ok(Snapshot {
            version: dataset.version().version,
            dataset,
            rows,
            row_ids,
            id_to_row,
            ann: Default::default(),
        })
    }

    /// The same rows on a newer version of the dataset whose data files are unchanged.
    fn with_dataset(&self, dataset: Arc<Dataset>) -> Snapshot {
        Snapshot {
            version: dataset.version().version,
            dataset,
            rows: self.rows.clone(),
            row_ids: self.row_ids.clone(),
            id_to_row: self.id_to_row.clone(),
            ann: Default::default(),
        }
    }

    /// The named vector index, opened on this version on first use.
    pub async fn ann(
        &self,
        index: &str,
        column: &str,
        distance: DistanceType,
    ) -> Result<Arc<AnnHandle>> {
        let mut open = self.ann.lock().await;
        if let Some(h) = open.get(index) {
            return Ok(h.clone());
        }
        let h = Arc::new(AnnHandle::open(self, index, column, distance).await?);
        open.insert(index.to_string(), h.clone());
        Ok(h)
    }

    pub fn row_of(&self, row_id: u64) -> Option<u32> {
        self.id_to_row.get(&row_id).copied()
    }

    /// The vectors of column `col` as one slice of `num_rows * dim` floats,
    /// with the validity of each row.
    pub fn vectors(&self, col: usize) -> (&[f32], usize, Option<&arrow::buffer::NullBuffer>) {
        let list = self.rows.column(col).as_fixed_size_list();
        let dim = list.value_length() as usize;
        (
            list.values().as_primitive::<Float32Type>().values(),
            dim,
            list.nulls(),
        )
    }
}

/// Holds the snapshot of the latest version a reader asked for.
#[derive(Default)]
pub struct SnapshotCache {
    current: tokio::sync::Mutex<Option<Arc<Snapshot>>>,
}

impl SnapshotCache {
    pub async fn get(&self, dataset: Arc<Dataset>, def: &TableDef) -> Result<Arc<Snapshot>> {
        let version = dataset.version().version;
        let mut cur = self.current.lock().await;
        if let Some(s) = cur.as_ref()
            && s.version == version
        {
            return Ok(s.clone());
        }
        // A commit that changed only indexes (CREATE INDEX, OPTIMIZE) keeps the rows.
        if let Some(s) = cur.as_ref()
            && s.dataset.manifest().fragments == dataset.manifest().fragments
        {
            let snap = Arc::new(s.with_dataset(dataset));
            *cur = Some(snap.clone());
            return Ok(snap);
        }
        let snap = Arc::new(Snapshot::load(dataset, def).await?);
        *cur = Some(snap.clone());
        Ok(snap)
    }
}
