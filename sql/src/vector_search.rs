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
use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{
    Session as DfSession, TableFunctionArgs, TableFunctionImpl, TableProvider,
};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
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
}

#[derive(Debug)]
struct VectorSearchProvider {
    search: SearchRequest,
    schema: SchemaRef,
}

fn references_distance(e: &Expr) -> bool {
    e.column_refs().iter().any(|c| c.name == DISTANCE_COLUMN)
}

/// Removes table qualifiers so the expression evaluates against the bare table schema.
pub(crate) fn unqualify(e: Expr) -> DfResult<Expr> {
    e.transform(|e| match e {
        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
            Column::new_unqualified(c.name),
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
        let schema = Arc::new(self.schema.project(&projection)?);
        let mut search = self.search.clone();
        search.k = limit.map_or(search.k, |l| l.min(search.k));
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(VectorSearchExec {
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
            schema,
            properties,
        }))
    }
}

/// Runs one vector search and emits its rows, nearest first.
#[derive(Debug, Clone)]
pub struct VectorSearchExec {
    search: SearchRequest,
    filter: Option<Expr>,
    /// Indices into table columns + `_distance` (the last).
    projection: Vec<usize>,
    table_columns: usize,
    /// Names of the table's columns (+ `_distance`), by position.
    table_schema_names: Arc<Vec<String>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
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

    fn execute(
        &self,
        partition: usize,
        _ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return plan_err!("VectorSearchExec has one partition, asked for {partition}");
        }
        let SearchRequest {
            engine,
            reads,
            table,
            plan,
            query,
            k,
            knobs,
        } = self.search.clone();
        let filter = self.filter.clone();
        let projection = self.projection.clone();
        let table_columns = self.table_columns;
        let schema = self.schema.clone();
        let out_schema = schema.clone();
        let schema_names = self.table_schema_names.clone();
        let fut = async move {
            let Some(query) = query else {
                return plan_err!("vector_search: the query vector is missing (unbound parameter)");
            };
            if k == 0 {
                return plan_err!("vector_search: k must be a positive integer");
            }
            let at = crate::transaction::read_at(&reads, &table);
            let hits = engine
                .search(&table, at, &plan, &query, k, filter.as_ref(), &knobs)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            tracing::debug!(table, k, strategy = ?hits.strategy, "vector search");
            let names: Vec<&str> = projection
                .iter()
                .filter(|&&p| p != table_columns)
                .map(|&p| schema_names[p].as_str())
                .collect();
            let mut fetched = hits
                .view
                .take(&hits.rows, &names)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?
                .into_iter();
            let mut cols: Vec<ArrayRef> = Vec::with_capacity(projection.len());
            for &p in &projection {
                if p == table_columns {
                    cols.push(Arc::new(Float64Array::from(
                        hits.distances.iter().map(|d| *d as f64).collect::<Vec<_>>(),
                    )));
                } else if let Some(c) = fetched.next() {
                    cols.push(c);
                }
            }
            let opts = datafusion::arrow::array::RecordBatchOptions::new()
                .with_row_count(Some(hits.rows.len()));
            Ok(RecordBatch::try_new_with_options(schema, cols, &opts)?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            out_schema,
            futures::stream::once(fut),
        )))
    }
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
