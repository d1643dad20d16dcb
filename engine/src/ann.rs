//! The ANN hot path: search an opened Lance vector index directly.
//!
//! Lance's scanner sets up a whole DataFusion plan for every query (the
//! measured bulk of a query's cost, see DESIGN.md "Where the time goes"). Here
//! the index is opened once per table version and kept with its view;
//! each query ranks the IVF partitions and searches the probed ones through
//! the prepared-partition API, and the fragments not yet covered by the
//! index (rows written after the build) through the in-memory graph of fresh
//! rows ([`crate::fresh`]) where it holds them; the search path scores the
//! rest exactly and recomputes exact distances for the candidates from their
//! vectors.
//!
//! This uses Lance's internal index traits (`DatasetIndexInternalExt`,
//! `VectorIndex`): Lance is pinned to one version and this module is the only
//! place that touches them.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Float32Array};
use arrow::datatypes::UInt64Type;
use lance::index::DatasetIndexExt;
use lance_index::metrics::NoOpMetricsCollector;
use lance_index::prefilter::NoFilter;
use lance_index::vector::{Query, VectorIndex};
use lance_linalg::distance::DistanceType;

use crate::distance::unit_length;
use crate::engine_err;
use crate::error::Result;
use crate::fresh::FreshIndex;
use crate::search::SearchKnobs;
use crate::view::{FragmentView, TableView};

/// Default number of IVF partitions probed when `quiver.nprobes` is not set.
pub const DEFAULT_NPROBES: usize = 20;

/// The most candidates one index search asks for, whatever k and the refine
/// factor multiply to.
pub const MAX_CANDIDATES: usize = 1 << 20;

/// One index (all its delta segments), opened for one table version.
pub struct AnnHandle {
    segments: Vec<Arc<dyn VectorIndex>>,
    partitions: usize,
    distance: DistanceType,
    /// Fragments of the version the index does not cover (written after it
    /// was built): searched exactly.
    pub unindexed_fragments: Vec<u32>,
    /// Indexed rows that are deleted: the search asks for this many more.
    deleted_in_index: usize,
    /// The graph of fresh rows, and the fragments this handle takes from it.
    fresh: Arc<FreshIndex>,
    fresh_fragments: std::collections::HashSet<u32>,
    deleted_in_fresh: usize,
}

impl std::fmt::Debug for AnnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnHandle")
            .field("segments", &self.segments.len())
            .field("partitions", &self.partitions)
            .field("unindexed_fragments", &self.unindexed_fragments.len())
            .field("fresh_fragments", &self.fresh_fragments.len())
            .finish()
    }
}

impl AnnHandle {
    /// Opens every segment of index `name` on the view's dataset version.
    pub async fn open(
        view: &TableView,
        name: &str,
        column: &str,
        distance: DistanceType,
    ) -> Result<AnnHandle> {
        use lance::index::DatasetIndexInternalExt;
        let ds = &view.dataset;
        let metas = ds.load_indices_by_name(name).await?;
        if metas.is_empty() {
            return engine_err!(IndexNotFound, "index {name} is missing from the dataset");
        }
        let mut segments = Vec::with_capacity(metas.len());
        let mut covered = std::collections::HashSet::new();
        for m in &metas {
            segments.push(
                ds.open_vector_index(column, &m.uuid, &NoOpMetricsCollector)
                    .await?,
            );
            if let Some(b) = &m.fragment_bitmap {
                covered.extend(b.iter());
            }
        }
        let partitions = segments
            .iter()
            .map(|s| s.total_partitions())
            .max()
            .unwrap_or(1);
        // Lance's fragments only: the tail's rows are the search's to add (a
        // handle outlives the tail it was opened with, see [`crate::view`]).
        let (indexed, unindexed): (Vec<_>, Vec<_>) = view
            .fragments
            .iter()
            .filter(|f| f.memory.is_none())
            .partition(|f| covered.contains(&f.id));
        // Fresh fragments the graph holds are searched through it; the rest
        // (not inserted yet, or past its capacity) exactly.
        let fresh = view.fresh.get_or_create(name, column, distance);
        let fresh_fragments: std::collections::HashSet<u32> =
            fresh.covered(&unindexed).into_iter().collect();
        let (in_graph, exact): (Vec<&FragmentView>, Vec<&FragmentView>) = unindexed
            .iter()
            .copied()
            .partition(|f| fresh_fragments.contains(&f.id));
        Ok(AnnHandle {
            segments,
            partitions,
            distance,
            unindexed_fragments: exact.iter().map(|f| f.id).collect(),
            deleted_in_index: indexed.iter().map(|f| f.deleted_rows()).sum(),
            deleted_in_fresh: in_graph.iter().map(|f| f.deleted_rows()).sum(),
            fresh,
            fresh_fragments,
        })
    }

    /// How many fresh fragments this handle searches through the graph.
    pub fn fresh_fragment_count(&self) -> usize {
        self.fresh_fragments.len()
    }

    /// Row ids of the index's nearest candidates for `query`.
    pub async fn candidates(
        &self,
        query: &[f32],
        k: usize,
        knobs: &SearchKnobs,
    ) -> Result<Vec<u64>> {
        let key: Arc<dyn Array> = if self.distance == DistanceType::Cosine {
            Arc::new(Float32Array::from_iter_values(unit_length(query)))
        } else {
            Arc::new(Float32Array::from(query.to_vec()))
        };
        let nprobes = knobs
            .nprobes
            .unwrap_or(DEFAULT_NPROBES)
            .clamp(1, self.partitions);
        let fetch = k
            .saturating_mul(knobs.refine_factor.unwrap_or(1).max(1) as usize)
            .saturating_add(self.deleted_in_index.min(k.saturating_mul(10)))
            .min(MAX_CANDIDATES);
        let mut q = Query {
            column: String::new(),
            key,
            k: fetch,
            lower_bound: None,
            upper_bound: None,
            minimum_nprobes: nprobes,
            maximum_nprobes: Some(nprobes),
            search_effort: 0.5,
            ef: knobs.ef.map(|ef| ef.max(fetch)),
            refine_factor: None,
            metric_type: Some(self.distance),
            use_index: true,
            query_parallelism: 1,
            dist_q_c: 0.0,
            approx_mode: Default::default(),
        };
        let metrics = NoOpMetricsCollector;
        let mut ids = Vec::with_capacity(fetch.saturating_mul(nprobes).min(1 << 16));
        for seg in &self.segments {
            let (parts, dists) = seg.find_partitions(&q)?;
            for i in 0..parts.len().min(nprobes) {
                q.dist_q_c = dists.value(i);
                let part = parts.value(i) as usize;
                let batch = if seg.supports_prepared_partition_search() {
                    let h = seg
                        .prepare_partition_search(part, &q, Arc::new(NoFilter), &metrics)
                        .await?;
                    seg.search_prepared_partition(h, &metrics)?
                } else {
                    seg.search_in_partition(part, &q, Arc::new(NoFilter), &metrics)
                        .await?
                };
                if let Some(col) = batch.column_by_name("_rowid") {
                    ids.extend_from_slice(col.as_primitive::<UInt64Type>().values());
                }
            }
        }
        if !self.fresh_fragments.is_empty() {
            let fetch = k
                .saturating_mul(knobs.refine_factor.unwrap_or(1).max(1) as usize)
                .saturating_add(self.deleted_in_fresh.min(k.saturating_mul(10)))
                .min(MAX_CANDIDATES);
            let ef = knobs.ef.map(|ef| ef.max(fetch));
            for addr in self.fresh.search(query, fetch, ef)? {
                if self.fresh_fragments.contains(&((addr >> 32) as u32)) {
                    ids.push(addr);
                }
            }
        }
        Ok(ids)
    }
}
