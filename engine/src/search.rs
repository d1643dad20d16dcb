//! One vector search: the k nearest rows of a table to a query vector, among
//! the rows that pass an optional filter (filter-first, never post-filtered).
//!
//! Strategy, chosen per query:
//! - no usable ANN index (none on the column, or its metric differs from the
//!   requested one) → exact search over the version's fragments, chunk by
//!   chunk through the chunk cache ([`crate::view`]);
//! - a filter that few rows pass (≤ [`EXACT_FILTER_MAX_ROWS`]) → exact search
//!   over just those rows: recall 1.0 and cheaper than any ANN prefilter at
//!   that size. The filter is evaluated with the table's scalar indexes when
//!   it names an indexed column, otherwise over its own columns only;
//! - otherwise → the ANN index (unfiltered: the opened index directly, plus
//!   the rows it does not cover yet, scanned by their 8-bit codes with the
//!   best of them scored exactly, see [`crate::fresh`]; filtered: Lance's ANN
//!   with the filter as a prefilter), then the candidates' exact distances
//!   are recomputed from their vectors.
//!
//! Ties in distance are broken by row address, so results are deterministic.
//!
//! Distances always have pgvector's meaning (see [`crate::distance`]).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, Float32Array};
use arrow::datatypes::{Float32Type, UInt64Type};
use datafusion::common::DFSchema;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::create_physical_expr;

use crate::distance::Metric;
use crate::engine_err;
use crate::error::Result;
use crate::index::IndexDef;
use crate::memory::SCAN_IO_BUFFER_BYTES;
use crate::schema::TableDef;
use crate::view::{FragmentView, TableView, row_address};

/// Filters passed by at most this many rows are searched exactly.
pub const EXACT_FILTER_MAX_ROWS: usize = 20_000;

/// Per-session search knobs (`SET quiver.nprobes` …).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchKnobs {
    pub nprobes: Option<usize>,
    pub refine_factor: Option<u32>,
    pub ef: Option<usize>,
    /// The shards of an ivf-sharded table a search reads
    /// (`quiver.shard_probes`; [`crate::ivf::DEFAULT_SHARD_PROBES`]).
    pub shard_probes: Option<usize>,
}

impl SearchKnobs {
    pub fn shard_probes(&self) -> usize {
        self.shard_probes
            .unwrap_or(crate::ivf::DEFAULT_SHARD_PROBES)
    }
}

/// What a search will do, known before it runs (shown by EXPLAIN).
#[derive(Debug, Clone)]
pub struct SearchPlan {
    pub column: String,
    pub column_index: usize,
    pub dim: u32,
    pub metric: Metric,
    /// The ANN index to use, when one matches the column and metric.
    pub index: Option<IndexDef>,
    /// Why the search is exact, when it is.
    pub exact_reason: Option<String>,
    /// Columns with a scalar index (btree, bitmap): a filter naming one is
    /// evaluated by Lance with the index.
    pub scalar_indexed: Vec<String>,
}

impl SearchPlan {
    /// Picks the metric and index for a search of `column`.
    pub fn new(
        def: &TableDef,
        indexes: &[IndexDef],
        column: &str,
        metric: Option<Metric>,
    ) -> Result<SearchPlan> {
        let Some(column_index) = def.columns.iter().position(|c| c.name == column) else {
            return engine_err!(
                ColumnNotFound,
                "column \"{column}\" of relation \"{}\" does not exist",
                def.name
            );
        };
        let Some(dim) = def.columns[column_index].ty.vector_dim() else {
            return engine_err!(InvalidRequest, "column \"{column}\" is not a vector column");
        };
        let ann = indexes
            .iter()
            .find(|i| i.column == column && i.kind.is_vector())
            .cloned();
        let index_metric = ann.as_ref().and_then(|i| i.metric);
        let metric = metric.or(index_metric).unwrap_or(Metric::L2);
        let (index, exact_reason) = match ann {
            None => (None, Some("no vector index on the column".to_string())),
            Some(i) if i.metric != Some(metric) => (
                None,
                Some(format!(
                    "index {} uses metric {}, query asks for {}",
                    i.name,
                    i.metric.map(|m| m.name()).unwrap_or("?"),
                    metric.name()
                )),
            ),
            Some(i) => (Some(i), None),
        };
        let scalar_indexed = indexes
            .iter()
            .filter(|i| !i.kind.is_vector())
            .map(|i| i.column.clone())
            .collect();
        Ok(SearchPlan {
            column: column.to_string(),
            column_index,
            dim,
            metric,
            index,
            exact_reason,
            scalar_indexed,
        })
    }

    /// Checks a query vector against the column.
    pub fn check_query(&self, query: &[f32]) -> Result<()> {
        if query.len() != self.dim as usize {
            return engine_err!(
                InvalidData,
                "query vector has {} dimensions, column \"{}\" expects {}",
                query.len(),
                self.column,
                self.dim
            );
        }
        if query.iter().any(|x| !x.is_finite()) {
            return engine_err!(
                InvalidData,
                "NaN or Infinity is not allowed in a query vector"
            );
        }
        Ok(())
    }
}

/// How a search actually ran.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Exact { candidates: usize },
    Ann { index: String },
}

/// The rows found, nearest first, as row addresses in the view's version.
/// Rows at the same distance as the k-th follow it (at most [`MAX_TIES`]
/// of them), so the caller can break the tie by a key rather than by row
/// position: `rows` may hold more than k rows.
pub struct SearchHits {
    pub view: Arc<TableView>,
    pub rows: Vec<u64>,
    pub distances: Vec<f32>,
    pub strategy: Strategy,
}

/// How many rows tied with the k-th nearest a search keeps beyond k.
pub const MAX_TIES: usize = 4096;

/// A candidate: distance, then row address as the tie-break.
#[derive(Debug, PartialEq)]
struct Cand(f32, u64);
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

/// The k nearest seen so far (a bounded max-heap), and the candidates at
/// exactly the k-th's distance that did not fit.
struct TopK {
    k: usize,
    heap: BinaryHeap<Cand>,
    ties: Vec<Cand>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.saturating_add(1).min(1 << 16)),
            ties: Vec::new(),
        }
    }

    fn push(&mut self, d: f32, addr: u64) {
        if self.heap.len() < self.k {
            self.heap.push(Cand(d, addr));
            return;
        }
        let Some(worst) = self.heap.peek() else {
            return;
        };
        match d.total_cmp(&worst.0) {
            Ordering::Greater => {}
            Ordering::Equal => {
                if self.ties.len() < MAX_TIES {
                    self.ties.push(Cand(d, addr));
                }
            }
            Ordering::Less => {
                let Some(out) = self.heap.pop() else {
                    return;
                };
                self.heap.push(Cand(d, addr));
                let still_tied = self
                    .heap
                    .peek()
                    .is_some_and(|w| w.0.total_cmp(&out.0) == Ordering::Equal);
                if still_tied {
                    if self.ties.len() < MAX_TIES {
                        self.ties.push(out);
                    }
                } else {
                    self.ties.clear();
                }
            }
        }
    }

    fn finish(self, view: Arc<TableView>, strategy: Strategy) -> SearchHits {
        let mut sorted = self.heap.into_sorted_vec();
        let mut ties = self.ties;
        ties.sort_unstable();
        sorted.extend(ties);
        SearchHits {
            view,
            rows: sorted.iter().map(|c| c.1).collect(),
            distances: sorted.iter().map(|c| c.0).collect(),
            strategy,
        }
    }
}

/// Rows passing a filter, as addresses in fragment order.
struct Passing {
    rows: Vec<u64>,
    /// False when the evaluation stopped early at its row limit.
    complete: bool,
}

/// The live rows passing `filter`. When a column the filter names has a
/// scalar index (btree, bitmap), Lance evaluates it with the index (and
/// refines what the index cannot decide); otherwise the filter is evaluated
/// over the columns it names only, chunk by chunk. With `stop_after`, may stop
/// once more rows than that pass (the caller will not search them exactly).
async fn filter_rows(
    view: &TableView,
    filter: &Expr,
    scalar_indexed: &[String],
    stop_after: Option<usize>,
) -> Result<Passing> {
    let refs = filter.column_refs();
    if refs.iter().any(|c| scalar_indexed.contains(&c.name)) {
        let mut passing = indexed_filter_rows(view, filter, stop_after).await?;
        // Lance's scan does not see the tail's rows: evaluated here.
        if passing.complete {
            let memory = chunked_filter_rows(view, view.memory_fragments(), filter, None).await?;
            passing.rows.extend(memory.rows);
            passing.complete = stop_after.is_none_or(|n| passing.rows.len() <= n);
        }
        return Ok(passing);
    }
    chunked_filter_rows(view, view.fragments.iter(), filter, stop_after).await
}

/// The live rows of `fragments` passing `filter`, evaluated over the
/// columns it names only, chunk by chunk.
async fn chunked_filter_rows<'a>(
    view: &TableView,
    fragments: impl Iterator<Item = &'a FragmentView>,
    filter: &Expr,
    stop_after: Option<usize>,
) -> Result<Passing> {
    // Mostly called for the tail's fragments, which are mostly none: no
    // expression to build then.
    let mut fragments = fragments.peekable();
    if fragments.peek().is_none() {
        return Ok(Passing {
            rows: Vec::new(),
            complete: true,
        });
    }
    let refs = filter.column_refs();
    let table_schema = view.def.arrow_schema();
    let mut wanted = Vec::new();
    for (i, f) in table_schema.fields().iter().enumerate() {
        if refs.iter().any(|c| c.name == *f.name()) {
            wanted.push(i);
        }
    }
    if let Some(c) = refs
        .iter()
        .find(|c| table_schema.field_with_name(&c.name).is_err())
    {
        return engine_err!(ColumnNotFound, "column \"{}\" does not exist", c.name);
    }
    let schema = Arc::new(table_schema.project(&wanted)?);
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let phys = create_physical_expr(filter, &df_schema, &ExecutionProps::new())?;
    let mut rows = Vec::new();
    for frag in fragments {
        for chunk in 0..frag.num_chunks() {
            let batch = view.chunk_batch(frag, &schema, chunk).await?;
            let mask = phys.evaluate(&batch)?.into_array(batch.num_rows())?;
            let Some(mask) = mask.as_any().downcast_ref::<BooleanArray>() else {
                return engine_err!(InvalidRequest, "filter is not a boolean expression");
            };
            let base = frag.chunk_range(chunk).start;
            // True and not NULL: walk the set bits only (most filters pass few rows).
            let passed = match mask.nulls() {
                Some(n) => mask.values() & n.inner(),
                None => mask.values().clone(),
            };
            for i in passed.set_indices() {
                let offset = base + i as u32;
                if !frag.is_deleted(offset) {
                    rows.push(row_address(frag.id, offset));
                }
            }
            if stop_after.is_some_and(|n| rows.len() > n) {
                return Ok(Passing {
                    rows,
                    complete: false,
                });
            }
        }
    }
    Ok(Passing {
        rows,
        complete: true,
    })
}

/// The rows passing `filter` by Lance's scan of the view's version with its
/// scalar indexes (row addresses only, no column read unless a part of the
/// filter needs refining).
async fn indexed_filter_rows(
    view: &TableView,
    filter: &Expr,
    stop_after: Option<usize>,
) -> Result<Passing> {
    use futures::TryStreamExt;
    let mut scan = view.dataset.scan();
    scan.project::<&str>(&[])?;
    scan.with_row_address();
    scan.io_buffer_size(SCAN_IO_BUFFER_BYTES);
    scan.filter_expr(filter.clone());
    let mut stream = scan.try_into_stream().await?;
    let mut rows = Vec::new();
    while let Some(batch) = stream.try_next().await? {
        let Some(addrs) = batch.column_by_name("_rowaddr") else {
            return engine_err!(Internal, "filter scan returned no row addresses");
        };
        rows.extend_from_slice(addrs.as_primitive::<UInt64Type>().values());
        if stop_after.is_some_and(|n| rows.len() > n) {
            rows.sort_unstable();
            return Ok(Passing {
                rows,
                complete: false,
            });
        }
    }
    // Fragment order, as the chunked evaluation gives them (exact search groups by chunk).
    rows.sort_unstable();
    Ok(Passing {
        rows,
        complete: true,
    })
}

/// Exact distances for every live row of `frag`.
async fn exact_fragment(
    view: &TableView,
    plan: &SearchPlan,
    query: &[f32],
    frag: &FragmentView,
    top: &mut TopK,
) -> Result<usize> {
    let mut scored = 0;
    let dist = plan.metric.from_query(query);
    for chunk in 0..frag.num_chunks() {
        let arr = view.chunk(frag, &plan.column, chunk).await?;
        let list = arr.as_fixed_size_list();
        let dim = list.value_length() as usize;
        let values = list.values().as_primitive::<Float32Type>().values();
        let base = frag.chunk_range(chunk).start;
        for i in 0..list.len() {
            let offset = base + i as u32;
            if list.is_null(i) || frag.is_deleted(offset) {
                continue;
            }
            let d = dist.distance(&values[i * dim..(i + 1) * dim]);
            top.push(d, row_address(frag.id, offset));
            scored += 1;
        }
    }
    Ok(scored)
}

/// Exact distances for the rows at `addrs` (live, in fragment order).
async fn exact_rows(
    view: &TableView,
    plan: &SearchPlan,
    query: &[f32],
    addrs: &[u64],
    top: &mut TopK,
) -> Result<()> {
    let chunk_of = |a: u64| (a >> 32, (a as u32) / crate::chunks::CHUNK_ROWS);
    let dist = plan.metric.from_query(query);
    for group in addrs.chunk_by(|a, b| chunk_of(*a) == chunk_of(*b)) {
        let (frag_id, chunk) = chunk_of(group[0]);
        let Some(frag) = view.fragment(frag_id as u32) else {
            return engine_err!(Internal, "fragment {frag_id} left the version");
        };
        let arr = view.chunk(frag, &plan.column, chunk).await?;
        let list = arr.as_fixed_size_list();
        let dim = list.value_length() as usize;
        let values = list.values().as_primitive::<Float32Type>().values();
        for &a in group {
            let i = ((a as u32) % crate::chunks::CHUNK_ROWS) as usize;
            if list.is_null(i) {
                continue;
            }
            top.push(dist.distance(&values[i * dim..(i + 1) * dim]), a);
        }
    }
    Ok(())
}

/// Exact distances for ANN candidates: deleted and repeated ones dropped.
async fn rescore(
    view: &TableView,
    plan: &SearchPlan,
    query: &[f32],
    ids: Vec<u64>,
    top: &mut TopK,
) -> Result<()> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let live: Vec<u64> = ids
        .into_iter()
        .filter(|a| view.is_live(*a) && seen.insert(*a))
        .collect();
    let Some(arr) = view.take(&live, &[plan.column.as_str()]).await?.pop() else {
        return Ok(());
    };
    let list = arr.as_fixed_size_list();
    let dim = list.value_length() as usize;
    let values = list.values().as_primitive::<Float32Type>().values();
    let dist = plan.metric.from_query(query);
    for (i, a) in live.into_iter().enumerate() {
        if list.is_valid(i) {
            top.push(dist.distance(&values[i * dim..(i + 1) * dim]), a);
        }
    }
    Ok(())
}

/// Runs a search planned by `plan` against the table version of `view`.
pub async fn run(
    view: Arc<TableView>,
    plan: &SearchPlan,
    query: &[f32],
    k: usize,
    filter: Option<&Expr>,
    knobs: &SearchKnobs,
) -> Result<SearchHits> {
    plan.check_query(query)?;
    let mut top = TopK::new(k);
    if k == 0 || view.live_rows() == 0 {
        return Ok(top.finish(view, Strategy::Exact { candidates: 0 }));
    }
    // The plan's index, when this version has it (a shard a move between
    // shard counts created has none until the move's end: searched exactly).
    let index = match &plan.index {
        Some(i) if view.has_index(&i.name).await? => Some(i),
        _ => None,
    };
    let passing = match filter {
        Some(f) => {
            let stop_after = index.map(|_| EXACT_FILTER_MAX_ROWS);
            Some(filter_rows(&view, f, &plan.scalar_indexed, stop_after).await?)
        }
        None => None,
    };
    let index = match (index, &passing) {
        (Some(i), None) => i,
        (Some(i), Some(p)) if !p.complete => i,
        _ => {
            let candidates = match &passing {
                Some(p) => {
                    exact_rows(&view, plan, query, &p.rows, &mut top).await?;
                    p.rows.len()
                }
                None => {
                    let mut n = 0;
                    for frag in &view.fragments {
                        n += exact_fragment(&view, plan, query, frag, &mut top).await?;
                    }
                    n
                }
            };
            return Ok(top.finish(view, Strategy::Exact { candidates }));
        }
    };
    let Some(lance_metric) = plan.metric.lance() else {
        return engine_err!(Internal, "metric {} has no ANN index", plan.metric.name());
    };
    let ids: Vec<u64> = match filter {
        // Unfiltered: the opened index directly, plus the fragments it does
        // not cover yet and the tail's rows.
        None => {
            let h = view.ann(&index.name, &plan.column, lance_metric).await?;
            for id in &h.unindexed_fragments {
                if let Some(frag) = view.fragment(*id) {
                    exact_fragment(&view, plan, query, frag, &mut top).await?;
                }
            }
            for frag in view.memory_fragments() {
                exact_fragment(&view, plan, query, frag, &mut top).await?;
            }
            let dist = plan.metric.from_query(query);
            for (v, addr) in h.fresh_candidates(query, k) {
                top.push(dist.distance(v), addr);
            }
            h.candidates(query, k, knobs).await?
        }
        // Many rows pass the filter: Lance's ANN with the filter as a prefilter.
        Some(f) => {
            let mut scan = view.dataset.scan();
            scan.project::<&str>(&[])?;
            scan.with_row_address();
            scan.io_buffer_size(SCAN_IO_BUFFER_BYTES);
            scan.nearest(&plan.column, &Float32Array::from(query.to_vec()), k)?;
            scan.distance_metric(lance_metric);
            if let Some(n) = knobs.nprobes {
                scan.minimum_nprobes(n);
                scan.maximum_nprobes(n);
            }
            if let Some(ef) = knobs.ef {
                scan.ef(ef);
            }
            if let Some(r) = knobs.refine_factor {
                scan.refine(r);
            }
            scan.filter_expr(f.clone());
            scan.prefilter(true);
            let batch = scan.try_into_batch().await?;
            // The tail's rows, which Lance's scan does not see: exactly.
            let memory = chunked_filter_rows(&view, view.memory_fragments(), f, None).await?;
            exact_rows(&view, plan, query, &memory.rows, &mut top).await?;
            let Some(ids) = batch.column_by_name("_rowaddr") else {
                return engine_err!(Internal, "vector search returned no row addresses");
            };
            ids.as_primitive::<UInt64Type>().values().to_vec()
        }
    };
    rescore(&view, plan, query, ids, &mut top).await?;
    Ok(top.finish(
        view,
        Strategy::Ann {
            index: index.name.clone(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(k: usize, pushes: &[(f32, u64)]) -> (Vec<Cand>, Vec<Cand>) {
        let mut top = TopK::new(k);
        for &(d, a) in pushes {
            top.push(d, a);
        }
        let mut ties = top.ties;
        ties.sort_unstable();
        (top.heap.into_sorted_vec(), ties)
    }

    /// Rows at the k-th distance that did not fit are kept beside the k
    /// (so a key can break the tie), and dropped once nearer rows push the
    /// k-th distance below theirs.
    #[test]
    fn rows_tied_with_the_kth_are_kept() {
        let (top, ties) = kept(2, &[(1.0, 1), (2.0, 2), (2.0, 3), (2.0, 4), (3.0, 5)]);
        assert_eq!(top, vec![Cand(1.0, 1), Cand(2.0, 2)]);
        assert_eq!(ties, vec![Cand(2.0, 3), Cand(2.0, 4)]);
        // A nearer row: the k-th is now the other 2.0, the ties stay.
        let (top, ties) = kept(2, &[(2.0, 2), (2.0, 3), (2.0, 4), (1.0, 1)]);
        assert_eq!(top, vec![Cand(1.0, 1), Cand(2.0, 2)]);
        assert_eq!(ties, vec![Cand(2.0, 3), Cand(2.0, 4)]);
        // Two nearer rows: 2.0 is out of the top k, and so are its ties.
        let (top, ties) = kept(2, &[(2.0, 2), (2.0, 3), (1.0, 1), (0.5, 9)]);
        assert_eq!(top, vec![Cand(0.5, 9), Cand(1.0, 1)]);
        assert!(ties.is_empty());
        // Bounded.
        let many: Vec<(f32, u64)> = (0..MAX_TIES as u64 + 10).map(|a| (1.0, a)).collect();
        let (top, ties) = kept(1, &many);
        assert_eq!(top.len(), 1);
        assert_eq!(ties.len(), MAX_TIES);
    }
}
