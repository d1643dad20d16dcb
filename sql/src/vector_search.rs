//! `vector_search(table, column, query, k [, metric])`: the table function, its
//! provider and the `VectorSearchExec` operator.
//!
//! The provider accepts every `WHERE` conjunct over the table's columns as an
//! exact pushdown, so the filter reaches the engine and is applied *before*
//! the top-k; conjuncts on `_distance` stay above the scan. The pgvector form
//! `ORDER BY col <=> q LIMIT k` is rewritten to this function (see
//! [`crate::rewrite`]), so both surfaces run this one operator.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, RecordBatch, UInt32Array, UInt64Array,
};
use datafusion::arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{
    Session as DfSession, TableFunctionArgs, TableFunctionImpl, TableProvider,
};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::{Column, col};
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use quiver_engine::Engine;
use quiver_engine::distance::Metric;
use quiver_engine::search::{SearchKnobs, SearchPlan};

use crate::vector::array_to_vectors;

pub const DISTANCE_COLUMN: &str = "_distance";

/// The table function, registered per session so it sees the session's knobs.
#[derive(Debug)]
pub struct VectorSearchFunction {
    pub engine: Arc<Engine>,
    pub knobs: Arc<Mutex<SearchKnobs>>,
    /// The session's transaction heads ([`crate::transaction`]).
    pub reads: crate::transaction::TxnReads,
}

fn literal_str(e: &Expr, what: &str) -> DfResult<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Ok(s.clone()),
        _ => plan_err!("vector_search: {what} must be a text constant, got {e}"),
    }
}

/// The query vector of the call; `None` while the statement is only described
/// (a `$n` parameter not yet bound).
fn query_vector(e: &Expr) -> DfResult<Option<Vec<f32>>> {
    match e {
        Expr::Placeholder(_) => Ok(None),
        Expr::Literal(ScalarValue::Null, _) => Ok(None),
        Expr::Literal(v, _) => {
            let arr = v.to_array_of_size(1)?;
            let mut rows =
                array_to_vectors(&arr).map_err(|e| DataFusionError::External(Box::new(e)))?;
            match rows.pop().flatten() {
                Some(v) => Ok(Some(v)),
                None => plan_err!("vector_search: the query vector is NULL"),
            }
        }
        Expr::Cast(c) => query_vector(&c.expr),
        Expr::TryCast(c) => query_vector(&c.expr),
        Expr::ScalarFunction(f) if f.name() == "to_vector" && f.args.len() == 1 => {
            query_vector(&f.args[0])
        }
        _ => plan_err!(
            "vector_search: the query must be a constant vector or a $n parameter, got {e}"
        ),
    }
}

/// A constant k as a count; one too large for any integer type saturates (and
/// is then refused by the engine's k limit, not wrapped around).
fn positive_k(v: &ScalarValue) -> DfResult<usize> {
    let k: i128 = match v.cast_to(&DataType::Int64) {
        Ok(ScalarValue::Int64(Some(k))) => k as i128,
        _ => match v.cast_to(&DataType::Float64) {
            Ok(ScalarValue::Float64(Some(f))) if f.is_finite() && f.fract() == 0.0 => f as i128,
            _ => return plan_err!("vector_search: k must be a positive integer"),
        },
    };
    if k <= 0 {
        return plan_err!("vector_search: k must be a positive integer");
    }
    Ok(usize::try_from(k).unwrap_or(usize::MAX))
}

impl TableFunctionImpl for VectorSearchFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(4..=5).contains(&exprs.len()) {
            return plan_err!(
                "vector_search(table, column, query, k [, metric]) takes 4 or 5 arguments, got {}",
                exprs.len()
            );
        }
        let table = literal_str(&exprs[0], "table")?;
        let column = literal_str(&exprs[1], "column")?;
        let query = query_vector(&exprs[2])?;
        let k = match &exprs[3] {
            Expr::Literal(v, _) if !v.is_null() => positive_k(v)?,
            Expr::Placeholder(_) => 0,
            e => return plan_err!("vector_search: k must be a positive integer constant, got {e}"),
        };
        self.engine
            .check_k(k)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let metric = match exprs.get(4) {
            None => None,
            Some(e) => {
                let m = literal_str(e, "metric")?;
                match Metric::parse(&m) {
                    Some(m) => Some(m),
                    None => {
                        return plan_err!(
                            "vector_search: unknown metric '{m}' (use l2, cosine, dot or l1)"
                        );
                    }
                }
            }
        };
        let plan = self
            .engine
            .plan_search(&table, &column, metric)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let t = self
            .engine
            .table(&table)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut fields: Vec<Field> = t
            .def
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(DISTANCE_COLUMN, DataType::Float64, true));
        let knobs = match self.knobs.lock() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        };
        Ok(Arc::new(VectorSearchProvider {
            search: SearchRequest {
                engine: self.engine.clone(),
                reads: self.reads.clone(),
                table,
                plan,
                query,
                k,
                knobs,
                table_shards: t.shards().len(),
                shards: (0..t.shards().len()).collect(),
                tie_column: t.tie_column(),
            },
            schema: Arc::new(Schema::new(fields)),
        }))
    }
}

/// One search as planned from the `vector_search` arguments: what the table
/// function provides and what its execution plan runs.
#[derive(Debug, Clone)]
struct SearchRequest {
    engine: Arc<Engine>,
    /// The session's transaction heads, looked up when the search runs.
    reads: crate::transaction::TxnReads,
    table: String,
    plan: SearchPlan,
    query: Option<Vec<f32>>,
    k: usize,
    knobs: SearchKnobs,
    /// The table's shard count, and the shards this search reads (those
    /// the filter's shard-key values allow; all without such a filter).
    table_shards: usize,
    shards: Vec<usize>,
    /// The column whose values break distance ties ([`Table::tie_column`]).
    tie_column: Option<usize>,
}

#[derive(Debug)]
struct VectorSearchProvider {
    search: SearchRequest,
    schema: SchemaRef,
}

/// The table a provider searches, when it is a vector search.
pub(crate) fn table_name(provider: &dyn std::any::Any) -> Option<&str> {
    provider
        .downcast_ref::<VectorSearchProvider>()
        .map(|p| p.search.table.as_str())
}

fn references_distance(e: &Expr) -> bool {
    e.column_refs().iter().any(|c| c.name == DISTANCE_COLUMN)
}

/// Removes table qualifiers so the expression evaluates against the bare table schema.
pub(crate) fn unqualify(e: Expr) -> DfResult<Expr> {
    e.transform(|e| match e {
        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
            datafusion::common::Column::new_unqualified(c.name),
        ))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

#[async_trait]
impl TableProvider for VectorSearchProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                // Volatile conjuncts too: the search evaluates them per row
                // before its top k, as PostgreSQL evaluates a WHERE per row.
                if references_distance(f) {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    TableProviderFilterPushDown::Exact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let filter = conjunction(
            filters
                .iter()
                .cloned()
                .map(unqualify)
                .collect::<DfResult<Vec<_>>>()?,
        );
        let projection = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let projected = Arc::new(self.schema.project(&projection)?);
        let mut search = self.search.clone();
        search.k = limit.map_or(search.k, |l| l.min(search.k));
        let table = search
            .engine
            .table(&search.table)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        search.shards = table.search_shards(
            filter.as_ref(),
            search.query.as_deref(),
            search.knobs.shard_probes(),
        );
        let merged = search.shards.len() > 1;
        // Several shards: each partition also returns what the merge sorts by.
        let mut fields: Vec<Field> = projected
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        if merged {
            fields.push(Field::new(SORT_DISTANCE, DataType::Float64, true));
            if let Some(c) = search.tie_column {
                let f = self.schema.field(c);
                fields.push(Field::new(SORT_TIE, f.data_type().clone(), true));
            }
            fields.push(Field::new(SORT_SHARD, DataType::UInt32, false));
            fields.push(Field::new(SORT_ADDR, DataType::UInt64, false));
        }
        let schema = Arc::new(Schema::new(fields));
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(search.shards.len().max(1)),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        let k = search.k;
        let exec: Arc<dyn ExecutionPlan> = Arc::new(VectorSearchExec {
            search,
            filter,
            projection,
            table_columns: self.schema.fields().len() - 1,
            table_schema_names: Arc::new(
                self.schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
            ),
            merged,
            schema: schema.clone(),
            properties,
            run: Default::default(),
        });
        if !merged {
            return Ok(exec);
        }
        // The global top k: the shards' nearest (each its own top k) sorted
        // by distance, ties by the tie column, then shard and row.
        let mut order = vec![PhysicalSortExpr::new_default(col(SORT_DISTANCE, &schema)?)];
        if schema.index_of(SORT_TIE).is_ok() {
            order.push(PhysicalSortExpr::new(
                col(SORT_TIE, &schema)?,
                SortOptions::new(false, false),
            ));
        }
        order.push(PhysicalSortExpr::new_default(col(SORT_SHARD, &schema)?));
        order.push(PhysicalSortExpr::new_default(col(SORT_ADDR, &schema)?));
        let Some(order) = LexOrdering::new(order) else {
            return plan_err!("vector_search: no merge order");
        };
        let sorted = Arc::new(
            SortExec::new(order, Arc::new(CoalescePartitionsExec::new(exec))).with_fetch(Some(k)),
        );
        let outputs: Vec<(Arc<dyn datafusion::physical_expr::PhysicalExpr>, String)> = projected
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    Arc::new(Column::new(f.name(), i))
                        as Arc<dyn datafusion::physical_expr::PhysicalExpr>,
                    f.name().clone(),
                )
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(outputs, sorted)?))
    }
}

/// Columns a partition of a search over several shards adds for the merge.
const SORT_DISTANCE: &str = "__quiver_distance";
const SORT_TIE: &str = "__quiver_tie";
const SORT_SHARD: &str = "__quiver_shard";
const SORT_ADDR: &str = "__quiver_row";

/// One shard's part of a search, for EXPLAIN ANALYZE.
#[derive(Debug, Clone)]
struct ShardRun {
    shard: usize,
    rows: usize,
    elapsed: std::time::Duration,
    /// The CPU time of the shard's search ([`quiver_engine::cpu::timed`]).
    cpu: std::time::Duration,
    strategy: quiver_engine::search::Strategy,
}

/// What one execution of a search shares between its partitions: the
/// views of one consistent set of shard versions, and each shard's figures.
#[derive(Default)]
struct RunState {
    views: tokio::sync::OnceCell<Vec<quiver_engine::table::ShardView>>,
    shards: Mutex<Vec<ShardRun>>,
}

impl fmt::Debug for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunState").finish_non_exhaustive()
    }
}

/// Runs one vector search and emits its rows, nearest first: one partition
/// per shard read, each that shard's nearest (its top k; the merge above
/// keeps the global top k).
#[derive(Debug, Clone)]
pub struct VectorSearchExec {
    search: SearchRequest,
    filter: Option<Expr>,
    /// Indices into table columns + `_distance` (the last).
    projection: Vec<usize>,
    table_columns: usize,
    /// Names of the table's columns (+ `_distance`), by position.
    table_schema_names: Arc<Vec<String>>,
    /// Several shards are read: the merge columns follow the projection.
    merged: bool,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    run: Arc<RunState>,
}

impl VectorSearchExec {
    /// Whether the query vector is a parameter still to bind (a generic plan's).
    pub(crate) fn query_unbound(&self) -> bool {
        self.search.query.is_none()
    }

    /// This search with its query vector bound, for one execution.
    pub(crate) fn with_query(&self, query: Vec<f32>) -> VectorSearchExec {
        let mut bound = self.clone();
        bound.search.query = Some(query);
        bound.run = Default::default();
        bound
    }
}

impl DisplayAs for VectorSearchExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "VectorSearchExec: table={}, column={}, k={}, metric={}",
            self.search.table,
            self.search.plan.column,
            self.search.k,
            self.search.plan.metric.name()
        )?;
        match &self.search.plan.index {
            Some(i) => write!(f, ", index={} ({})", i.name, i.kind.name())?,
            None => write!(
                f,
                ", index=none (exact: {})",
                self.search.plan.exact_reason.as_deref().unwrap_or("-")
            )?,
        }
        if self.search.table_shards > 1 {
            let list: Vec<String> = self.search.shards.iter().map(|s| s.to_string()).collect();
            write!(
                f,
                ", shards=[{}] of {}",
                list.join(","),
                self.search.table_shards
            )?;
        }
        if let Some(flt) = &self.filter {
            write!(f, ", filter=[{flt}] (filter-first)")?;
            let mut indexed: Vec<&str> = flt
                .column_refs()
                .into_iter()
                .filter(|c| self.search.plan.scalar_indexed.contains(&c.name))
                .map(|c| c.name.as_str())
                .collect();
            indexed.sort_unstable();
            if !indexed.is_empty() {
                write!(f, ", filter by scalar index on {}", indexed.join(", "))?;
            }
        }
        let k = &self.search.knobs;
        if let Some(n) = k.nprobes {
            write!(f, ", nprobes={n}")?;
        }
        if let Some(e) = k.ef {
            write!(f, ", ef={e}")?;
        }
        if let Some(r) = k.refine_factor {
            write!(f, ", refine_factor={r}")?;
        }
        if let Some(p) = k.shard_probes {
            write!(f, ", shard_probes={p}")?;
        }
        let runs = match self.run.shards.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        if !runs.is_empty() {
            let mut runs = runs;
            runs.sort_by_key(|r| r.shard);
            let parts: Vec<String> = runs
                .iter()
                .map(|r| {
                    let how = match &r.strategy {
                        quiver_engine::search::Strategy::Exact { candidates } => {
                            format!("exact over {candidates}")
                        }
                        quiver_engine::search::Strategy::Ann { index } => format!("ann {index}"),
                    };
                    format!(
                        "shard {}: {} rows, {:.3} ms (cpu {:.3} ms), {how}",
                        r.shard,
                        r.rows,
                        r.elapsed.as_secs_f64() * 1e3,
                        r.cpu.as_secs_f64() * 1e3
                    )
                })
                .collect();
            write!(f, ", runs=[{}]", parts.join("; "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for VectorSearchExec {
    fn name(&self) -> &str {
        "VectorSearchExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            plan_err!("VectorSearchExec has no children")
        }
    }

    /// A fresh run: new views (the versions then latest) and no figures.
    fn reset_state(self: Arc<Self>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut fresh = self.as_ref().clone();
        fresh.run = Default::default();
        Ok(Arc::new(fresh))
    }

    fn execute(
        &self,
        partition: usize,
        _ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let partitions = self.search.shards.len().max(1);
        if partition >= partitions {
            return plan_err!(
                "VectorSearchExec has {partitions} partitions, asked for {partition}"
            );
        }
        let search = self.search.clone();
        let filter = self.filter.clone();
        let projection = self.projection.clone();
        let table_columns = self.table_columns;
        let schema = self.schema.clone();
        let out_schema = schema.clone();
        let schema_names = self.table_schema_names.clone();
        let merged = self.merged;
        let run = self.run.clone();
        let fut = async move {
            let SearchRequest {
                engine,
                reads,
                table,
                plan,
                query,
                k,
                knobs,
                tie_column,
                ..
            } = search;
            let Some(query) = query else {
                return plan_err!("vector_search: the query vector is missing (unbound parameter)");
            };
            if k == 0 {
                return plan_err!("vector_search: k must be a positive integer");
            }
            let ext = |e: quiver_engine::EngineError| DataFusionError::External(Box::new(e));
            // The shards read are those of the table's layout when the
            // search runs (a move between shard counts may have changed
            // it since planning): partition p searches every p-th of them.
            let views = run
                .views
                .get_or_try_init(|| async {
                    let t = engine.table(&table)?;
                    let heads = crate::transaction::read_at(&reads, &table);
                    let probe = (query.as_slice(), knobs.shard_probes());
                    t.views(heads.as_deref(), filter.as_ref(), probe).await
                })
                .await
                .map_err(ext)?;
            let mine: Vec<&quiver_engine::table::ShardView> =
                views.iter().skip(partition).step_by(partitions).collect();
            if mine.is_empty() {
                // No shard can hold a row the filter passes.
                return Ok(RecordBatch::new_empty(schema));
            }
            let mut names: Vec<&str> = projection
                .iter()
                .filter(|&&p| p != table_columns)
                .map(|&p| schema_names[p].as_str())
                .collect();
            let wanted = names.len();
            // The tie column: one of the projected columns (usually the
            // key), or fetched after them.
            let tie_at = tie_column.map(|c| {
                let name = schema_names[c].as_str();
                names.iter().position(|n| *n == name).unwrap_or_else(|| {
                    names.push(name);
                    wanted
                })
            });
            // Each shard's nearest, with what the cut to k sorts by.
            let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::new(); wanted];
            let mut ties: Vec<ArrayRef> = Vec::new();
            let mut distances: Vec<f64> = Vec::new();
            let mut addrs: Vec<u64> = Vec::new();
            let mut shard_ids: Vec<u32> = Vec::new();
            for sv in mine {
                let started = std::time::Instant::now();
                // The shard's CPU: what the polls of its search and fetch took.
                let (found, cpu) = quiver_engine::cpu::timed(async {
                    let hits = engine
                        .search_view(sv.view.clone(), &plan, &query, k, filter.as_ref(), &knobs)
                        .await?;
                    let fetched = hits.view.take(&hits.rows, &names).await?;
                    Ok::<_, quiver_engine::EngineError>((hits, fetched))
                })
                .await;
                let (hits, mut fetched) = found.map_err(ext)?;
                tracing::debug!(table, shard = sv.index, k, strategy = ?hits.strategy, "vector search");
                if let Some(t) = tie_at.and_then(|i| fetched.get(i)) {
                    ties.push(t.clone());
                }
                fetched.truncate(wanted);
                for (c, a) in fetched.into_iter().enumerate() {
                    columns[c].push(a);
                }
                distances.extend(hits.distances.iter().map(|d| *d as f64));
                addrs.extend_from_slice(&hits.rows);
                shard_ids.extend(std::iter::repeat_n(sv.index as u32, hits.rows.len()));
                let elapsed = started.elapsed();
                sv.shard.note_search(elapsed, cpu);
                if let Ok(mut g) = run.shards.lock() {
                    g.push(ShardRun {
                        shard: sv.index,
                        rows: hits.rows.len().min(k),
                        elapsed,
                        cpu,
                        strategy: hits.strategy.clone(),
                    });
                }
            }
            let concat = |parts: &[ArrayRef]| -> DfResult<ArrayRef> {
                let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                Ok(datafusion::arrow::compute::concat(&refs)?)
            };
            let distances: ArrayRef = Arc::new(Float64Array::from(distances));
            let addrs: ArrayRef = Arc::new(UInt64Array::from(addrs));
            let shard_ids: ArrayRef = Arc::new(UInt32Array::from(shard_ids));
            let tie = match ties.is_empty() {
                true => None,
                false => Some(concat(&ties)?),
            };
            // The nearest k: by distance, ties by the tie column, then shard and row.
            let mut keys = vec![SortColumn {
                values: distances.clone(),
                options: None,
            }];
            if let Some(t) = &tie {
                keys.push(SortColumn {
                    values: t.clone(),
                    options: Some(SortOptions::new(false, false)),
                });
            }
            keys.push(SortColumn {
                values: shard_ids.clone(),
                options: None,
            });
            keys.push(SortColumn {
                values: addrs.clone(),
                options: None,
            });
            let order = lexsort_to_indices(&keys, Some(k))?;
            let pick = |a: &ArrayRef| take(a.as_ref(), &order, None);
            let mut fetched = columns.into_iter();
            let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
            for &p in &projection {
                if p == table_columns {
                    cols.push(pick(&distances)?);
                } else if let Some(c) = fetched.next() {
                    cols.push(pick(&concat(&c)?)?);
                }
            }
            if merged {
                cols.push(pick(&distances)?);
                if let Some(t) = &tie {
                    cols.push(pick(t)?);
                }
                cols.push(pick(&shard_ids)?);
                cols.push(pick(&addrs)?);
            }
            let opts = datafusion::arrow::array::RecordBatchOptions::new()
                .with_row_count(Some(order.len()));
            Ok(RecordBatch::try_new_with_options(schema, cols, &opts)?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            out_schema,
            futures::stream::once(fut),
        )))
    }
}

/// The k of the vector searches a plan holds (the largest, when it holds
/// several), `None` when it holds none: the metrics' k bucket.
pub(crate) fn plan_search_k(plan: &datafusion::logical_expr::LogicalPlan) -> Option<usize> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::datasource::DefaultTableSource;
    use datafusion::logical_expr::LogicalPlan;
    let mut k = None;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(ts) = node
            && let Some(src) =
                (ts.source.as_ref() as &dyn std::any::Any).downcast_ref::<DefaultTableSource>()
            && let Some(p) = (src.table_provider.as_ref() as &dyn std::any::Any)
                .downcast_ref::<VectorSearchProvider>()
        {
            let n = ts.fetch.map_or(p.search.k, |f| f.min(p.search.k));
            k = Some(k.map_or(n, |m: usize| m.max(n)));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    k
}

/// Refuses a filter over a vector search that DataFusion would apply after
/// the top k: it does not push volatile predicates into a scan (a `random()`,
/// or a user function not declared IMMUTABLE or STABLE), and a post-filter would
/// return fewer than k rows, and the wrong ones. Conjuncts on `_distance`
/// are meant to apply to the k rows found and are fine.
pub fn check_post_filters(plan: &datafusion::logical_expr::LogicalPlan) -> crate::Result<()> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::datasource::DefaultTableSource;
    use datafusion::logical_expr::LogicalPlan;
    use datafusion::logical_expr::utils::split_conjunction;
    let mut bad = None;
    plan.apply(|node| {
        if let LogicalPlan::Filter(f) = node {
            let mut input = f.input.as_ref();
            while let LogicalPlan::SubqueryAlias(a) = input {
                input = a.input.as_ref();
            }
            if let LogicalPlan::TableScan(ts) = input
                && let Some(src) =
                    (ts.source.as_ref() as &dyn std::any::Any).downcast_ref::<DefaultTableSource>()
                && (src.table_provider.as_ref() as &dyn std::any::Any).is::<VectorSearchProvider>()
                && let Some(e) = split_conjunction(&f.predicate)
                    .into_iter()
                    .find(|e| e.is_volatile() && !references_distance(e))
            {
                bad = Some(e.human_display().to_string());
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match bad {
        Some(e) => crate::sql_err!(
            FeatureNotSupported,
            "the filter {e} of a vector search is volatile and would be applied after the top k; \
             use a deterministic expression (a user function declared IMMUTABLE or STABLE), \
             or filter the rows in an outer query"
        ),
        None => Ok(()),
    }
}
