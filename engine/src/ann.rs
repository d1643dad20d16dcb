//! The ANN hot path: search an opened Lance vector index directly.
//!
//! Lance's scanner sets up a whole DataFusion plan for every query (the
//! measured bulk of a query's cost, see DESIGN.md "Where the time goes"). Here
//! the index is opened once per table version and kept with its view;
//! each query ranks the IVF partitions and searches the probed ones through
//! the prepared-partition API; the fragments not yet covered by the index
//! (rows written after the build) are prepared when the handle is opened
//! for the two-pass scan of [`crate::fresh`] (within the budget: the rest
//! the search path scores exactly), and the search path recomputes exact
//! distances for the index's candidates from their vectors.
//!
//! This uses Lance's internal index traits (`DatasetIndexInternalExt`,
//! `VectorIndex`): Lance is pinned to one version and this module is the only
//! place that touches them.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Float32Array};
use arrow::datatypes::UInt64Type;
use lance::index::DatasetIndexExt;
use lance_core::utils::deletion::DeletionVector;
use lance_index::metrics::NoOpMetricsCollector;
use lance_index::prefilter::NoFilter;
use lance_index::vector::{Query, VectorIndex};
use lance_linalg::distance::DistanceType;

use crate::distance::unit_length;
use crate::engine_err;
use crate::error::Result;
use crate::fresh::{FreshFragment, FreshScan};
use crate::search::SearchKnobs;
use crate::view::TableView;

/// Default number of IVF partitions probed when `quiver.nprobes` is not set.
pub const DEFAULT_NPROBES: usize = 20;

/// The most candidates one index search asks for, whatever k and the refine
/// factor multiply to.
pub const MAX_CANDIDATES: usize = 1 << 20;

/// One index (all its delta segments), opened for one table version.
pub struct AnnHandle {
    segments: Vec<Arc<dyn VectorIndex>>,
    partitions: usize,
    /// The indexed column and the distance the index ranks by.
    pub column: String,
    pub distance: DistanceType,
    /// Fragments of the version the index does not cover (written after it
    /// was built) and that are not prepared for the fresh scan: searched
    /// exactly.
    pub unindexed_fragments: Vec<u32>,
    /// Indexed rows that are deleted: the search asks for this many more.
    deleted_in_index: usize,
    /// The fresh fragments prepared for the two-pass scan, with the
    /// version's deletion vectors.
    fresh: Vec<(Arc<FreshFragment>, Option<Arc<DeletionVector>>)>,
}

impl std::fmt::Debug for AnnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnHandle")
            .field("segments", &self.segments.len())
            .field("partitions", &self.partitions)
            .field("unindexed_fragments", &self.unindexed_fragments.len())
            .field("fresh_fragments", &self.fresh.len())
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
        // Fresh fragments are prepared for the two-pass scan; the rest (the
        // metric has no coded ranking, or no room in the budget) exactly.
        let (prepared, exact) = view
            .fresh
            .prepare(view, name, column, distance, &unindexed)
            .await?;
        let fresh = prepared
            .into_iter()
            .map(|f| {
                let deletions = view.fragment(f.id).and_then(|v| v.deletions.clone());
                (f, deletions)
            })
            .collect();
        Ok(AnnHandle {
            segments,
            partitions,
            column: column.to_string(),
            distance,
            unindexed_fragments: exact.iter().map(|f| f.id).collect(),
            deleted_in_index: indexed.iter().map(|f| f.deleted_rows()).sum(),
            fresh,
        })
    }

    /// How many fresh fragments this handle scans (coded, then exactly).
    pub fn fresh_fragment_count(&self) -> usize {
        self.fresh.len()
    }

    /// The fresh rows to score exactly for a search of the `k` nearest to
    /// `query`: the best of its prepared fresh fragments by their codes, as
    /// (vector, row address). Deleted rows are left out.
    pub fn fresh_candidates(&self, query: &[f32], k: usize) -> Vec<(&[f32], u64)> {
        let count = k
            .saturating_mul(crate::fresh::CANDIDATES_PER_K)
            .max(crate::fresh::MIN_CANDIDATES);
        FreshScan::new(&self.fresh).candidates(query, count)
    }

    /// Row ids of the index's nearest candidates for `query` (the fresh
    /// rows are [`AnnHandle::fresh_candidates`]).
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
        Ok(ids)
    }
}
