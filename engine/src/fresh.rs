//! Fresh rows: the rows of a table that its Lance vector index does not cover
//! yet (written after the index was built or last updated), searched through
//! one in-memory HNSW graph per index instead of exactly.
//!
//! Without it every search scores each fresh row exactly (about 120 ns a
//! 384-d row with its overheads), and the rows are folded into the Lance index
//! often, as small delta segments, each one more HNSW search per query. The
//! graph is Lance's own MemWAL index (`mem_wal::index::HnswMemIndex`): inserts
//! while readers search, exact `f32` distances, vectors held by reference
//! from the Arrow arrays of the chunk cache (no copy; for cosine, unit-length
//! copies searched by dot product). Its row positions are
//! Lance row addresses (`fragment << 32 | offset`), which stay valid while a
//! fragment exists; fresh fragments are therefore not compacted until they are
//! folded into the Lance index (see [`crate::housekeeping`]), and when the
//! fragments the graph holds stop being fresh (folded in, rewritten, gone)
//! the graph is rebuilt from the fragments still fresh, which are few then.
//!
//! A search uses the graph only for the fragments it held when the search's
//! index handle was opened ([`FreshIndex::covered`]); fragments added to the
//! graph later, or that did not fit its capacity, are scored exactly as
//! before, so what a search returns never depends on the timing of the
//! background inserts. Deleted rows stay in the graph and are dropped by the
//! search (the view's deletion vectors), which asks for that many more.
//!
//! Memory: a graph's fixed part is allocated for its capacity, which starts
//! small and is doubled by a rebuild as the fresh rows grow (up to
//! [`FRESH_MAX_ROWS`]); the graphs of all tables hold at most the budget's
//! fresh share ([`crate::memory::MemoryBudget::fresh_bytes`]) of vectors
//! beside their fixed parts; a fragment that would pass it stays exactly
//! searched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, FixedSizeListArray, RecordBatch};
use arrow::datatypes::{Field, Schema};
use lance::dataset::mem_wal::index::HnswMemIndex;
use lance_index::vector::hnsw::builder::HnswBuildParams;
use lance_linalg::distance::DistanceType;

use crate::chunks::{CHUNK_ROWS, FragmentKey};
use crate::distance::unit_length;
use crate::error::Result;
use crate::view::{FragmentView, TableView, row_address};

/// Rows one graph holds at most.
pub const FRESH_MAX_ROWS: usize = 32_768;

/// Rows a new graph has room for; a graph that fills up is rebuilt with room
/// for twice the fresh rows (its fixed part is allocated for its capacity).
const MIN_CAPACITY: usize = 1_024;

/// The capacity of a graph built for `rows` fresh rows.
fn capacity_for(rows: usize) -> usize {
    rows.saturating_mul(2)
        .min(FRESH_MAX_ROWS)
        .next_power_of_two()
        .clamp(MIN_CAPACITY, FRESH_MAX_ROWS)
}

/// Chunk arrays one graph references at most (a fragment has one per
/// [`CHUNK_ROWS`] rows; fresh fragments are mostly one flush each).
const MAX_ARRAYS: usize = 8_192;

/// Graph bytes per row of capacity (neighbour lists, id maps), allocated
/// when the graph is first inserted into.
const GRAPH_BYTES_PER_ROW: usize = 256;

/// The build parameters Lance's MemWAL uses for its in-memory graphs
/// (`mem_wal_hnsw_default`: fast inserts, recall close to the static index).
fn build_params() -> HnswBuildParams {
    HnswBuildParams::default()
        .num_edges(16)
        .ef_construction(100)
}

/// One index's graph of fresh rows.
pub struct FreshIndex {
    pub column: String,
    pub distance: DistanceType,
    capacity: usize,
    /// A fragment did not fit the capacity.
    full: std::sync::atomic::AtomicBool,
    graph: HnswMemIndex,
    /// Fragments whose rows are all in the graph, with the key of the data
    /// they were read from.
    fragments: Mutex<HashMap<u32, FragmentKey>>,
    rows: AtomicU64,
    /// Chunk arrays the graph references.
    arrays: AtomicU64,
    /// The process-wide bytes all graphs account for.
    used: Arc<AtomicU64>,
    reserved: AtomicU64,
    /// One inserter at a time (the graph's single-writer contract).
    insert: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for FreshIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreshIndex")
            .field("column", &self.column)
            .field("rows", &self.rows.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for FreshIndex {
    fn drop(&mut self) {
        self.used
            .fetch_sub(self.reserved.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Cosine is searched as the dot product of unit vectors: one multiply-add
/// per dimension instead of three (the candidates' distances are recomputed
/// exactly by the search path).
fn graph_distance(distance: DistanceType) -> DistanceType {
    match distance {
        DistanceType::Cosine => DistanceType::Dot,
        other => other,
    }
}

/// The vectors of `list` scaled to unit length, nulls kept.
fn unit_vectors(list: &FixedSizeListArray) -> Result<FixedSizeListArray> {
    let dim = list.value_length() as usize;
    let values = list
        .values()
        .as_primitive::<arrow::datatypes::Float32Type>();
    let values = values.values();
    let mut out = Vec::with_capacity(values.len());
    for row in values.chunks(dim.max(1)) {
        out.extend(unit_length(row));
    }
    let field = Arc::new(Field::new(
        "item",
        arrow::datatypes::DataType::Float32,
        true,
    ));
    Ok(FixedSizeListArray::try_new(
        field,
        dim as i32,
        Arc::new(arrow::array::Float32Array::from(out)),
        list.nulls().cloned(),
    )?)
}

impl FreshIndex {
    fn new(
        column: &str,
        distance: DistanceType,
        used: Arc<AtomicU64>,
        capacity: usize,
    ) -> FreshIndex {
        let fixed = (capacity * GRAPH_BYTES_PER_ROW) as u64;
        used.fetch_add(fixed, Ordering::Relaxed);
        FreshIndex {
            column: column.to_string(),
            distance,
            capacity,
            full: Default::default(),
            graph: HnswMemIndex::with_capacity(
                0,
                column.to_string(),
                graph_distance(distance),
                build_params(),
                capacity,
                MAX_ARRAYS,
            ),
            fragments: Mutex::new(HashMap::new()),
            rows: AtomicU64::new(0),
            arrays: AtomicU64::new(0),
            used,
            reserved: AtomicU64::new(fixed),
            insert: tokio::sync::Mutex::new(()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u32, FragmentKey>> {
        match self.fragments.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The fragments among `fresh` whose rows the graph holds (same data).
    pub fn covered(&self, fresh: &[&FragmentView]) -> Vec<u32> {
        let held = self.held();
        fresh
            .iter()
            .filter(|f| held.get(&f.id) == Some(&f.key))
            .map(|f| f.id)
            .collect()
    }

    /// Whether the graph holds a fragment that is not in `fresh` (folded into
    /// the Lance index, rewritten or removed): it is then rebuilt.
    fn stale(&self, fresh: &[&FragmentView]) -> bool {
        let now: HashMap<u32, &FragmentKey> = fresh.iter().map(|f| (f.id, &f.key)).collect();
        self.held()
            .iter()
            .any(|(id, key)| now.get(id) != Some(&key))
    }

    /// Adds the rows of the fragments of `fresh` it does not hold yet, in
    /// order, while the process-wide limit `limit` (bytes) and the graph's
    /// capacity have room. Returns the rows added.
    async fn add(&self, view: &TableView, fresh: &[&FragmentView], limit: u64) -> Result<usize> {
        let _one = self.insert.lock().await;
        let mut added = 0;
        for frag in fresh {
            if self.held().contains_key(&frag.id) {
                continue;
            }
            let rows = frag.physical_rows as u64;
            let chunks = frag.num_chunks() as u64;
            if self.rows.load(Ordering::Relaxed) + rows > self.capacity as u64
                || self.arrays.load(Ordering::Relaxed) + chunks > MAX_ARRAYS as u64
            {
                self.full.store(true, Ordering::Relaxed);
                break;
            }
            let mut arrays = Vec::with_capacity(frag.num_chunks() as usize);
            for chunk in 0..frag.num_chunks() {
                arrays.push(view.chunk(frag, &self.column, chunk).await?);
            }
            let Some(dim) = arrays
                .first()
                .and_then(|a| a.as_fixed_size_list_opt())
                .map(|l| l.value_length() as usize)
            else {
                continue;
            };
            let bytes = rows * (dim * 4) as u64;
            if self.used.fetch_add(bytes, Ordering::Relaxed) + bytes > limit {
                self.used.fetch_sub(bytes, Ordering::Relaxed);
                break;
            }
            self.reserved.fetch_add(bytes, Ordering::Relaxed);
            for (chunk, array) in arrays.into_iter().enumerate() {
                let array: arrow::array::ArrayRef = match array.as_fixed_size_list_opt() {
                    Some(list) if self.distance == DistanceType::Cosine => {
                        Arc::new(unit_vectors(list)?)
                    }
                    _ => array,
                };
                let field = Field::new(&self.column, array.data_type().clone(), true);
                let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![array])?;
                let first = row_address(frag.id, chunk as u32 * CHUNK_ROWS);
                self.graph.insert(&batch, first)?;
            }
            self.rows.fetch_add(rows, Ordering::Relaxed);
            self.arrays.fetch_add(chunks, Ordering::Relaxed);
            self.held().insert(frag.id, frag.key.clone());
            added += rows as usize;
        }
        Ok(added)
    }

    /// Row addresses of the graph's `k` nearest rows to `query` (deleted
    /// rows and rows of fragments a search does not take from the graph
    /// included: the caller filters).
    pub fn search(&self, query: &[f32], k: usize, ef: Option<usize>) -> Result<Vec<u64>> {
        let values = if self.distance == DistanceType::Cosine {
            arrow::array::Float32Array::from_iter_values(unit_length(query))
        } else {
            arrow::array::Float32Array::from(query.to_vec())
        };
        let field = Arc::new(Field::new(
            "item",
            arrow::datatypes::DataType::Float32,
            false,
        ));
        let q = FixedSizeListArray::try_new(field, query.len() as i32, Arc::new(values), None)?;
        let hits = self.graph.search(&q, k, ef, u64::MAX)?;
        Ok(hits.into_iter().map(|(_, addr)| addr).collect())
    }
}

/// The fresh-row graphs of one table, by index name.
pub struct FreshIndexes {
    by_index: Mutex<HashMap<String, Arc<FreshIndex>>>,
    /// The bytes the graphs of all tables hold.
    used: Arc<AtomicU64>,
}

impl FreshIndexes {
    /// No graphs yet; `used` counts the bytes of every table's graphs.
    pub fn new(used: Arc<AtomicU64>) -> FreshIndexes {
        FreshIndexes {
            by_index: Default::default(),
            used,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<FreshIndex>>> {
        match self.by_index.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Rows the graphs hold, all indexes together.
    pub fn rows(&self) -> usize {
        self.map()
            .values()
            .map(|g| g.rows.load(Ordering::Relaxed) as usize)
            .sum()
    }

    /// The fragments among `fresh` the graph of index `name` holds.
    pub fn covered(&self, name: &str, fresh: &[&FragmentView]) -> Vec<u32> {
        let graph = self.map().get(name).cloned();
        graph.map(|g| g.covered(fresh)).unwrap_or_default()
    }

    /// The graph of index `name`, made (empty) on first use: the next
    /// refresh after a write fills it.
    pub fn get_or_create(
        &self,
        name: &str,
        column: &str,
        distance: DistanceType,
    ) -> Arc<FreshIndex> {
        let mut map = self.map();
        match map.get(name) {
            Some(f) if f.column == column && f.distance == distance => f.clone(),
            _ => {
                let f = Arc::new(FreshIndex::new(
                    column,
                    distance,
                    self.used.clone(),
                    MIN_CAPACITY,
                ));
                map.insert(name.to_string(), f.clone());
                f
            }
        }
    }

    /// Brings every graph up to date with `view` (the latest version):
    /// `fresh_of(name)` gives the fragments index `name` does not cover, or
    /// `None` when the index is gone. A graph holding fragments that are no
    /// longer fresh is replaced by one built from those still fresh. Returns
    /// the rows added.
    pub async fn refresh(
        &self,
        view: &TableView,
        fresh_of: impl Fn(&str) -> Option<Vec<u32>>,
        limit: u64,
    ) -> Result<usize> {
        let graphs: Vec<(String, Arc<FreshIndex>)> = self
            .map()
            .iter()
            .map(|(n, f)| (n.clone(), f.clone()))
            .collect();
        let mut added = 0;
        for (name, graph) in graphs {
            let Some(ids) = fresh_of(&name) else {
                self.map().remove(&name);
                continue;
            };
            let fresh: Vec<&FragmentView> =
                ids.iter().filter_map(|id| view.fragment(*id)).collect();
            let rows: usize = fresh.iter().map(|f| f.physical_rows as usize).sum();
            let capacity = capacity_for(rows);
            // Rebuilt when it holds what is no longer fresh, or has no room
            // (full, or empty and too small) where a larger one would.
            let grow = capacity > graph.capacity
                && (graph.full.load(Ordering::Relaxed) || graph.rows.load(Ordering::Relaxed) == 0);
            let graph = if grow || graph.stale(&fresh) {
                let rebuilt = Arc::new(FreshIndex::new(
                    &graph.column,
                    graph.distance,
                    graph.used.clone(),
                    capacity,
                ));
                // Readers holding the old graph keep it for their version.
                self.map().insert(name.clone(), rebuilt.clone());
                drop(graph);
                rebuilt
            } else {
                graph
            };
            added += graph.add(view, &fresh, limit).await?;
        }
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_graph_has_room_for_twice_the_fresh_rows_within_its_bounds() {
        assert_eq!(capacity_for(0), MIN_CAPACITY);
        assert_eq!(capacity_for(300), MIN_CAPACITY);
        assert_eq!(capacity_for(3_000), 8_192);
        assert_eq!(capacity_for(16_384), FRESH_MAX_ROWS);
        assert_eq!(capacity_for(usize::MAX), FRESH_MAX_ROWS);
    }
}
