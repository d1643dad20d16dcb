//! A table version as the search path sees it: the version's fragments, each
//! with its deletion vector, over data that stays in Lance and is read in
//! chunks through the process-wide [`ChunkCache`]; and the rows of the
//! table's tail (logged, not yet flushed, see [`crate::table`]), one
//! in-memory fragment per logged append, with ids from
//! [`MEMORY_FRAGMENT_BASE`] up.
//!
//! A view holds no table data itself, only per-fragment metadata. A new view is
//! built from the previous one: fragments whose data files and deletion file
//! are unchanged are reused as they are, so a commit that appended r rows
//! costs the next search one new fragment entry (and later the r rows it
//! reads), a DELETE costs one deletion-vector read, and nothing reloads the
//! table. Row addresses are Lance row addresses: `fragment id << 32 | offset`
//! (tables are written without stable row ids, see [`crate::table`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::interleave;
use arrow::datatypes::Schema;
use lance::Dataset;
use lance_core::utils::deletion::DeletionVector;
use lance_linalg::distance::DistanceType;

use crate::ann::AnnHandle;
use crate::chunks::{CHUNK_ROWS, ChunkCache, FragmentKey, open_fragment};
use crate::engine_err;
use crate::error::Result;
use crate::fresh::FreshRows;
use crate::housekeeping::Pin;
use crate::schema::{ColumnType, TableDef};
use crate::table::Snapshot;

/// Fragment ids of a view's in-memory fragments start here (Lance numbers
/// its fragments from 0 up, one per write: never this far).
pub const MEMORY_FRAGMENT_BASE: u32 = 0xF000_0000;

/// The address of row `offset` of fragment `fragment`.
pub fn row_address(fragment: u32, offset: u32) -> u64 {
    ((fragment as u64) << 32) | offset as u64
}

fn split_address(addr: u64) -> (u32, u32) {
    ((addr >> 32) as u32, addr as u32)
}

/// One fragment of a view.
#[derive(Debug, Clone)]
pub struct FragmentView {
    pub id: u32,
    pub key: FragmentKey,
    pub physical_rows: u32,
    pub deletions: Option<Arc<DeletionVector>>,
    /// (id, read_version) of the deletion file the vector came from.
    deletion_file: Option<(u64, u64)>,
    /// The rows of an in-memory fragment (a logged append of the tail).
    pub memory: Option<RecordBatch>,
}

impl FragmentView {
    pub fn is_deleted(&self, offset: u32) -> bool {
        self.deletions.as_ref().is_some_and(|d| d.contains(offset))
    }

    pub fn deleted_rows(&self) -> usize {
        self.deletions.as_ref().map_or(0, |d| d.len())
    }

    pub fn live_rows(&self) -> usize {
        (self.physical_rows as usize).saturating_sub(self.deleted_rows())
    }

    pub fn num_chunks(&self) -> u32 {
        self.physical_rows.div_ceil(CHUNK_ROWS)
    }

    /// A fragment of `rows` rows with no deletions, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(id: u32, rows: u32) -> FragmentView {
        FragmentView {
            id,
            key: FragmentKey {
                dataset: "test".into(),
                fragment: id,
                files: 0,
            },
            physical_rows: rows,
            deletions: None,
            deletion_file: None,
            memory: None,
        }
    }

    /// Physical offsets `chunk * CHUNK_ROWS ..` covered by `chunk`.
    pub fn chunk_range(&self, chunk: u32) -> std::ops::Range<u32> {
        let start = chunk * CHUNK_ROWS;
        start..(start + CHUNK_ROWS).min(self.physical_rows)
    }
}

pub struct TableView {
    pub version: u64,
    /// The tail's stamp (highest visible lsn) this view holds the rows of.
    pub tail_stamp: u64,
    pub dataset: Arc<Dataset>,
    pub def: TableDef,
    pub fragments: Vec<FragmentView>,
    by_id: HashMap<u32, usize>,
    pub chunks: Arc<ChunkCache>,
    /// Keeps this version from cleanup while the view is in use.
    _pin: Pin,
    /// Vector indexes opened on this version, by index name (shared by the
    /// views of one version that differ in their tail).
    ann: Arc<tokio::sync::Mutex<HashMap<String, Arc<AnnHandle>>>>,
    /// The table's fresh fragments, prepared for each index's searches.
    pub fresh: Arc<FreshRows>,
}

impl std::fmt::Debug for TableView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableView")
            .field("table", &self.def.name)
            .field("version", &self.version)
            .field("fragments", &self.fragments.len())
            .finish()
    }
}

impl TableView {
    /// The view of a snapshot (version and tail), reusing what `prev`
    /// already knows: all of its Lance fragments when the version is the same.
    pub async fn build(
        snapshot: Snapshot,
        pin: Pin,
        def: &TableDef,
        prev: Option<&TableView>,
        chunks: Arc<ChunkCache>,
        fresh: Arc<FreshRows>,
    ) -> Result<TableView> {
        let Snapshot { dataset, tail, .. } = snapshot;
        let version = dataset.version().version;
        let name: Arc<str> = dataset.uri().into();
        let same = prev.filter(|p| p.version == version);
        let mut fragments = Vec::with_capacity(dataset.fragments().len() + tail.batches.len());
        if let Some(p) = same {
            fragments.extend(p.fragments.iter().filter(|f| f.memory.is_none()).cloned());
        }
        for f in dataset.fragments().iter().filter(|_| same.is_none()) {
            let key = FragmentKey::new(&name, f);
            let deletion_file = f.deletion_file.as_ref().map(|d| (d.id, d.read_version));
            let reuse = prev
                .and_then(|p| p.fragment(f.id as u32))
                .filter(|old| old.key == key && old.deletion_file == deletion_file);
            if let Some(old) = reuse {
                fragments.push(old.clone());
                continue;
            }
            let Some(physical_rows) = f.physical_rows else {
                return engine_err!(Internal, "fragment {} has no row count", f.id);
            };
            let deletions = match f.deletion_file {
                None => None,
                Some(_) => {
                    let ff =
                        lance::dataset::fragment::FileFragment::new(dataset.clone(), f.clone());
                    ff.get_deletion_vector().await?
                }
            };
            fragments.push(FragmentView {
                id: f.id as u32,
                key,
                physical_rows: physical_rows as u32,
                deletions,
                deletion_file,
                memory: None,
            });
        }
        for (i, (lsn, batch)) in tail.batches.iter().enumerate() {
            let id = MEMORY_FRAGMENT_BASE + i as u32;
            fragments.push(FragmentView {
                id,
                key: FragmentKey {
                    dataset: name.clone(),
                    fragment: id,
                    files: *lsn,
                },
                physical_rows: batch.num_rows() as u32,
                deletions: None,
                deletion_file: None,
                memory: Some(batch.clone()),
            });
        }
        let by_id = fragments
            .iter()
            .enumerate()
            .map(|(i, f)| (f.id, i))
            .collect();
        Ok(TableView {
            version,
            tail_stamp: tail.stamp,
            dataset,
            def: def.clone(),
            fragments,
            by_id,
            chunks,
            _pin: pin,
            ann: same.map(|p| p.ann.clone()).unwrap_or_default(),
            fresh,
        })
    }

    /// What a view is cached by: its version and its tail's stamp.
    fn key(&self) -> (u64, u64) {
        (self.version, self.tail_stamp)
    }

    pub fn fragment(&self, id: u32) -> Option<&FragmentView> {
        self.by_id.get(&id).map(|&i| &self.fragments[i])
    }

    pub fn live_rows(&self) -> usize {
        self.fragments.iter().map(|f| f.live_rows()).sum()
    }

    /// The in-memory fragments (the tail's rows), after all Lance fragments.
    pub fn memory_fragments(&self) -> impl Iterator<Item = &FragmentView> {
        self.fragments.iter().filter(|f| f.memory.is_some())
    }

    /// True when the address names a live row of this version.
    pub fn is_live(&self, addr: u64) -> bool {
        let (frag, offset) = split_address(addr);
        self.fragment(frag)
            .is_some_and(|f| offset < f.physical_rows && !f.is_deleted(offset))
    }

    /// One chunk of one column of a fragment (deleted rows included).
    pub async fn chunk(&self, frag: &FragmentView, column: &str, chunk: u32) -> Result<ArrayRef> {
        if let Some(b) = &frag.memory {
            let Some(col) = b.column_by_name(column) else {
                return engine_err!(ColumnNotFound, "column \"{column}\" does not exist");
            };
            let range = frag.chunk_range(chunk);
            return Ok(col.slice(range.start as usize, range.len()));
        }
        self.chunks
            .chunk(&self.dataset, &frag.key, frag.physical_rows, column, chunk)
            .await
    }

    /// A batch of `columns` (in table order) for one chunk of a fragment.
    pub async fn chunk_batch(
        &self,
        frag: &FragmentView,
        schema: &Arc<Schema>,
        chunk: u32,
    ) -> Result<RecordBatch> {
        let mut cols = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            cols.push(self.chunk(frag, f.name(), chunk).await?);
        }
        let rows = frag.chunk_range(chunk).len();
        Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?)
    }

    /// Whether this version has the named index.
    pub async fn has_index(&self, index: &str) -> Result<bool> {
        use lance::index::DatasetIndexExt;
        if self.ann.lock().await.contains_key(index) {
            return Ok(true);
        }
        Ok(!self.dataset.load_indices_by_name(index).await?.is_empty())
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

    /// About how many bytes one chunk of `column` takes in memory.
    fn chunk_estimate(&self, column: &str) -> u64 {
        let per_row = match self.def.column(column).map(|c| c.ty) {
            Some(ColumnType::Vector(d)) => d as u64 * 4,
            Some(ColumnType::Text) | None => 64,
            Some(_) => 8,
        };
        per_row * CHUNK_ROWS as u64
    }

    /// The rows at `addrs` (rows of this version), `columns` of them, in the
    /// order given. Read from cached chunks; a missing chunk is loaded when
    /// the cache admits it ([`ChunkCache::admits`]: it has room, or the chunk
    /// keeps being asked for), else only the rows asked for are read (so a
    /// scattered ANN result over a table larger than the budget does not pull
    /// whole chunks through the cache).
    pub async fn take(&self, addrs: &[u64], columns: &[&str]) -> Result<Vec<ArrayRef>> {
        // Distinct (fragment, chunk) pairs, and each row's slot among them.
        let mut slots: HashMap<(u32, u32), usize> = HashMap::new();
        let mut order: Vec<(u32, u32)> = Vec::new();
        let mut wanted: Vec<Vec<u32>> = Vec::new();
        let mut picks = Vec::with_capacity(addrs.len());
        for &a in addrs {
            let (frag, offset) = split_address(a);
            let slot = *slots.entry((frag, offset / CHUNK_ROWS)).or_insert_with(|| {
                order.push((frag, offset / CHUNK_ROWS));
                wanted.push(Vec::new());
                order.len() - 1
            });
            wanted[slot].push(offset);
            picks.push((slot, offset));
        }
        for w in &mut wanted {
            w.sort_unstable();
            w.dedup();
        }
        let mut out = Vec::with_capacity(columns.len());
        for col in columns {
            let estimate = self.chunk_estimate(col);
            let mut arrays = Vec::with_capacity(order.len());
            // Per slot: its array, and `None` when that array is the whole
            // chunk, else the position of each offset in the rows read.
            let mut source: Vec<(usize, Option<HashMap<u32, usize>>)> =
                Vec::with_capacity(order.len());
            // Slots whose rows are read one by one, by fragment.
            let mut point: Vec<(u32, Vec<usize>)> = Vec::new();
            for (slot, &(frag, chunk)) in order.iter().enumerate() {
                let Some(f) = self.fragment(frag) else {
                    return engine_err!(Internal, "row of fragment {frag} is not in the version");
                };
                let whole = if f.memory.is_some() {
                    Some(self.chunk(f, col, chunk).await?)
                } else {
                    match self.chunks.get_cached(&f.key, col, chunk).await {
                        Some(a) => Some(a),
                        None if self.chunks.admits(
                            &f.key,
                            col,
                            chunk,
                            estimate,
                            wanted[slot].len(),
                        ) =>
                        {
                            Some(self.chunk(f, col, chunk).await?)
                        }
                        None => None,
                    }
                };
                source.push((arrays.len(), None));
                match whole {
                    Some(a) => arrays.push(a),
                    None => match point.iter_mut().find(|(g, _)| *g == frag) {
                        Some((_, slots)) => slots.push(slot),
                        None => point.push((frag, vec![slot])),
                    },
                }
            }
            // One read per fragment for the rows of all its uncached chunks.
            for (frag, slots) in point {
                let mut offsets: Vec<u32> = slots
                    .iter()
                    .flat_map(|&s| wanted[s].iter().copied())
                    .collect();
                offsets.sort_unstable();
                let reader = open_fragment(&self.dataset, frag, &[col]).await?;
                let batch = reader.take_as_batch(&offsets, None).await?;
                let a = batch.column(0).clone();
                self.chunks
                    .count_point_read(slots.len(), a.len(), a.get_array_memory_size());
                for &s in &slots {
                    let at = wanted[s]
                        .iter()
                        .filter_map(|o| offsets.binary_search(o).ok().map(|j| (*o, j)))
                        .collect();
                    source[s] = (arrays.len(), Some(at));
                }
                arrays.push(a);
            }
            if arrays.is_empty() {
                let Ok(field) = self.def.arrow_schema().field_with_name(col).cloned() else {
                    return engine_err!(ColumnNotFound, "column \"{col}\" does not exist");
                };
                out.push(arrow::array::new_empty_array(field.data_type()));
                continue;
            }
            let mut indices = Vec::with_capacity(picks.len());
            for &(slot, offset) in &picks {
                let (array, at) = &source[slot];
                let i = match at {
                    None => (offset % CHUNK_ROWS) as usize,
                    Some(m) => match m.get(&offset) {
                        Some(&j) => j,
                        None => return engine_err!(Internal, "row {offset} was not read"),
                    },
                };
                indices.push((*array, i));
            }
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            out.push(interleave(&refs, &indices)?);
        }
        Ok(out)
    }
}

/// Views a cache keeps: the latest one readers use, and the one a writer
/// builds for its version before publishing it (readers go on with the
/// other meanwhile).
const KEPT_VIEWS: usize = 2;

/// Holds the views of the newest versions asked for.
#[derive(Default)]
pub struct ViewCache {
    views: tokio::sync::Mutex<Vec<Arc<TableView>>>,
}

impl ViewCache {
    /// The view of a snapshot. Concurrent readers of a new snapshot share
    /// one build; the build reads only what changed since the view it starts
    /// from: one of the same version when there is one (it shares that
    /// version's opened indexes), else the newest.
    pub async fn get(
        &self,
        snapshot: Snapshot,
        pin: Pin,
        def: &TableDef,
        chunks: &Arc<ChunkCache>,
        fresh: Arc<FreshRows>,
    ) -> Result<Arc<TableView>> {
        let key = (snapshot.dataset.version().version, snapshot.tail.stamp);
        let mut views = self.views.lock().await;
        if let Some(v) = views.iter().find(|v| v.key() == key) {
            return Ok(v.clone());
        }
        let prev = views
            .iter()
            .rev()
            .find(|v| v.version == key.0)
            .or(views.last());
        let view = Arc::new(
            TableView::build(
                snapshot,
                pin,
                def,
                prev.map(|v| &**v),
                chunks.clone(),
                fresh,
            )
            .await?,
        );
        views.push(view.clone());
        views.sort_by_key(|v| v.key());
        if views.len() > KEPT_VIEWS {
            views.remove(0);
        }
        Ok(view)
    }

    /// The vector indexes opened on the newest view, as (index, column,
    /// distance): what a writer opens on its version before publishing it.
    pub async fn opened(&self) -> Vec<(String, String, DistanceType)> {
        let Some(newest) = self.views.lock().await.last().cloned() else {
            return Vec::new();
        };
        let ann = newest.ann.lock().await;
        ann.iter()
            .map(|(name, h)| (name.clone(), h.column.clone(), h.distance))
            .collect()
    }
}
