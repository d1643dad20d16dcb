//! One vector search: the k nearest rows of a table to a query vector, among
//! the rows that pass an optional filter (filter-first, never post-filtered).
//!
//! Strategy, chosen per query:
//! - no usable ANN index (none on the column, or its metric differs from the
//!   requested one) → exact search over the in-memory snapshot;
//! - a filter that few rows pass (≤ [`EXACT_FILTER_MAX_ROWS`]) → exact search
//!   over just those rows, evaluated on the snapshot: recall 1.0 and cheaper
//!   than any ANN prefilter at that size;
//! - otherwise → Lance's ANN index (with the filter as a Lance prefilter), then
//!   the candidates' exact distances are recomputed from memory.
//!
//! Distances always have pgvector's meaning (see [`crate::distance`]).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, Float32Array};
use arrow::datatypes::UInt64Type;
use datafusion::common::DFSchema;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::create_physical_expr;

use crate::distance::Metric;
use crate::engine_err;
use crate::error::Result;
use crate::index::IndexDef;
use crate::schema::TableDef;
use crate::snapshot::Snapshot;

/// Filters passed by at most this many rows are searched exactly.
pub const EXACT_FILTER_MAX_ROWS: usize = 20_000;

/// Per-session search knobs (`SET quiver.nprobes` …).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchKnobs {
    pub nprobes: Option<usize>,
    pub refine_factor: Option<u32>,
    pub ef: Option<usize>,
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
        Ok(SearchPlan {
            column: column.to_string(),
            column_index,
            dim,
            metric,
            index,
            exact_reason,
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

/// The rows found, nearest first, as positions in the snapshot.
pub struct SearchHits {
    pub snapshot: Arc<Snapshot>,
    pub rows: Vec<u32>,
    pub distances: Vec<f32>,
    pub strategy: Strategy,
}

/// A candidate in the bounded max-heap of exact search.
#[derive(PartialEq)]
struct Cand(f32, u32);
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

/// Rows of the snapshot passing `filter` (all rows when `None`).
fn filter_rows(snap: &Snapshot, filter: Option<&Expr>) -> Result<Option<Vec<u32>>> {
    let Some(filter) = filter else {
        return Ok(None);
    };
    let schema = DFSchema::try_from(snap.rows.schema().as_ref().clone())?;
    let phys = create_physical_expr(filter, &schema, &ExecutionProps::new())?;
    let mask = phys
        .evaluate(&snap.rows)?
        .into_array(snap.rows.num_rows())?;
    let Some(mask) = mask.as_any().downcast_ref::<BooleanArray>() else {
        return engine_err!(InvalidRequest, "filter is not a boolean expression");
    };
    Ok(Some(
        (0..mask.len())
            .filter(|&i| mask.is_valid(i) && mask.value(i))
            .map(|i| i as u32)
            .collect(),
    ))
}

/// Exact top-k over `candidates` (all rows when `None`).
fn exact(
    snap: &Snapshot,
    plan: &SearchPlan,
    query: &[f32],
    k: usize,
    candidates: Option<&[u32]>,
) -> (Vec<u32>, Vec<f32>) {
    let (values, dim, nulls) = snap.vectors(plan.column_index);
    let mut heap: BinaryHeap<Cand> = BinaryHeap::with_capacity(k + 1);
    let mut consider = |row: u32| {
        if nulls.is_some_and(|n| n.is_null(row as usize)) {
            return;
        }
        let r = row as usize;
        let d = plan.metric.distance(query, &values[r * dim..(r + 1) * dim]);
        if heap.len() < k {
            heap.push(Cand(d, row));
        } else if let Some(top) = heap.peek()
            && Cand(d, row) < *top
        {
            heap.pop();
            heap.push(Cand(d, row));
        }
    };
    match candidates {
        Some(c) => c.iter().for_each(|&r| consider(r)),
        None => (0..snap.rows.num_rows() as u32).for_each(&mut consider),
    }
    let sorted = heap.into_sorted_vec();
    (
        sorted.iter().map(|c| c.1).collect(),
        sorted.iter().map(|c| c.0).collect(),
    )
}

/// Runs a search planned by `plan` against `snap`.
pub async fn run(
    snap: Arc<Snapshot>,
    plan: &SearchPlan,
    query: &[f32],
    k: usize,
    filter: Option<&Expr>,
    knobs: &SearchKnobs,
) -> Result<SearchHits> {
    plan.check_query(query)?;
    if k == 0 || snap.rows.num_rows() == 0 {
        return Ok(SearchHits {
            snapshot: snap,
            rows: vec![],
            distances: vec![],
            strategy: Strategy::Exact { candidates: 0 },
        });
    }
    let passing = filter_rows(&snap, filter)?;
    let small = passing
        .as_ref()
        .is_some_and(|p| p.len() <= EXACT_FILTER_MAX_ROWS);
    let index = match &plan.index {
        Some(i) if !small => i,
        _ => {
            let candidates = passing.as_ref().map_or(snap.rows.num_rows(), |p| p.len());
            let (rows, distances) = exact(&snap, plan, query, k, passing.as_deref());
            return Ok(SearchHits {
                snapshot: snap,
                rows,
                distances,
                strategy: Strategy::Exact { candidates },
            });
        }
    };
    let Some(lance_metric) = plan.metric.lance() else {
        return engine_err!(Internal, "metric {} has no ANN index", plan.metric.name());
    };
    let handle = match filter {
        None => Some(snap.ann(&index.name, &plan.column, lance_metric).await?),
        Some(_) => None,
    };
    let ids: Vec<u64> = match (filter, &handle) {
        // Unfiltered: the opened index directly, plus the rows it does not cover yet.
        (None, Some(h)) => h.candidates(query, k, knobs).await?,
        (None, None) => return engine_err!(Internal, "vector index was not opened"),
        // Many rows pass the filter: Lance's ANN with the filter as a prefilter.
        (Some(f), _) => {
            let mut scan = snap.dataset.scan();
            scan.project::<&str>(&[])?;
            scan.with_row_id();
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
            let Some(ids) = batch.column_by_name("_rowid") else {
                return engine_err!(Internal, "vector search returned no row ids");
            };
            ids.as_primitive::<UInt64Type>().values().to_vec()
        }
    };
    let (values, dim, _) = snap.vectors(plan.column_index);
    let unindexed: &[u32] = handle.as_ref().map_or(&[], |h| &h.unindexed_rows);
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let mut found: Vec<Cand> = ids
        .iter()
        .filter_map(|id| snap.row_of(*id))
        .chain(unindexed.iter().copied())
        .filter(|row| seen.insert(*row))
        .map(|row| {
            let r = row as usize;
            Cand(
                plan.metric.distance(query, &values[r * dim..(r + 1) * dim]),
                row,
            )
        })
        .collect();
    found.sort();
    found.truncate(k);
    Ok(SearchHits {
        snapshot: snap,
        rows: found.iter().map(|c| c.1).collect(),
        distances: found.iter().map(|c| c.0).collect(),
        strategy: Strategy::Ann {
            index: index.name.clone(),
        },
    })
}
