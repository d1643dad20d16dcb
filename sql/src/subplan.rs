//! Correlated subqueries DataFusion leaves in a plan run as PostgreSQL runs
//! every correlated subquery: a SubPlan, evaluated for an outer row with that
//! row's values bound.
//!
//! DataFusion's optimizer turns the correlated subqueries it can into joins;
//! the others (one inside a CASE branch, one whose correlation sits in a
//! recursive CTE, as asyncpg's type introspection sends) stay in the plan,
//! and its physical planner refuses them. Here each one left after
//! optimization becomes a call of a function whose arguments are the outer
//! columns it reads. Called, the function binds each distinct set of values
//! (outer references replaced by literals), plans the subquery so bound and
//! runs it: a scalar subquery gives its one value (NULL for no row, 21000 for
//! more), `EXISTS` whether it has a row. A CASE evaluates the branch holding
//! it only for the rows that take that branch. Meant for catalog-sized
//! work: one statement binds at most [`MAX_RUNS`] values (else 54000).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::{Exists, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Subquery, TypeSignature, Volatility,
};
use datafusion::physical_plan::ExecutionPlan;

use crate::error::{SqlError, StatusCode};
use crate::interrupt::Interrupt;

/// The most outer values one statement's subplans may be run for.
pub const MAX_RUNS: usize = 10_000;

/// Whether a plan holds a subquery expression anywhere (then it is
/// optimized and checked for ones left correlated before it runs).
pub fn has_subquery(plan: &LogicalPlan) -> bool {
    holds(plan, true, |x| {
        matches!(
            x,
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
        )
    })
}

/// Whether an expression of `plan` (of its subqueries' plans too, if
/// `subqueries`) is one `wanted` is true of.
fn holds(plan: &LogicalPlan, subqueries: bool, wanted: impl Fn(&Expr) -> bool) -> bool {
    let mut found = false;
    let mut visit = |node: &LogicalPlan| {
        for e in node.expressions() {
            let _ = e.apply(|x| {
                found |= wanted(x);
                Ok(stop_if(found))
            });
        }
        Ok(stop_if(found))
    };
    let _ = match subqueries {
        true => plan.apply_with_subqueries(&mut visit),
        false => plan.apply(&mut visit),
    };
    found
}

fn stop_if(found: bool) -> TreeNodeRecursion {
    match found {
        true => TreeNodeRecursion::Stop,
        false => TreeNodeRecursion::Continue,
    }
}

/// The physical plan of a (not yet optimized) logical plan, with the
/// subqueries its optimization leaves correlated turned into subplans.
pub async fn physical_plan(
    state: &SessionState,
    plan: &LogicalPlan,
) -> Result<Arc<dyn ExecutionPlan>> {
    let budget = Arc::new(AtomicUsize::new(0));
    plan_bound(state, plan, &budget).await
}

async fn plan_bound(
    state: &SessionState,
    plan: &LogicalPlan,
    budget: &Arc<AtomicUsize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let optimized = match state.optimize(plan) {
        Ok(o) if !has_outer_reference(&o) => o,
        // The optimizer pulled a subquery up that it could not decorrelate
        // (an unnest of an outer column, as psql's `\d+` sends), or failed
        // at it (a correlation inside a recursive CTE): every subquery of
        // the statement runs as a subplan instead. If that fails too, the
        // optimizer's error is the one to report.
        first => match to_subplans(plan.clone(), state, budget).and_then(|p| state.optimize(&p)) {
            Ok(o) => o,
            Err(e) => return Err(first.err().unwrap_or(e)),
        },
    };
    let bound = to_subplans(optimized, state, budget)?;
    state
        .query_planner()
        .create_physical_plan(&bound, state)
        .await
}

/// Whether a plan reads an outer reference outside any subquery.
fn has_outer_reference(plan: &LogicalPlan) -> bool {
    holds(plan, false, |x| matches!(x, Expr::OuterReferenceColumn(..)))
}

/// Replaces each subquery expression left in `plan` with a subplan call.
fn to_subplans(
    plan: LogicalPlan,
    state: &SessionState,
    budget: &Arc<AtomicUsize>,
) -> Result<LogicalPlan> {
    plan.transform_up(|node| {
        let names = NamePreserver::new(&node);
        node.map_expressions(|e| {
            let name = names.save(&e);
            e.transform_up(|x| {
                let (subquery, exists, negated) = match x {
                    Expr::ScalarSubquery(s) => (s, false, false),
                    Expr::Exists(Exists { subquery, negated }) => (subquery, true, negated),
                    other => return Ok(Transformed::no(other)),
                };
                let call = SubPlan::call(subquery, exists, state, budget)?;
                Ok(Transformed::yes(if negated { !call } else { call }))
            })
            .map(|t| t.update_data(|e| name.restore(e)))
        })?
        .map_data(|p| p.recompute_schema())
    })
    .map(|t| t.data)
}

/// One subquery as a function of the outer columns it reads.
struct SubPlan {
    plan: Arc<LogicalPlan>,
    outer: Vec<Column>,
    exists: bool,
    return_type: DataType,
    signature: Signature,
    state: Arc<SessionState>,
    budget: Arc<AtomicUsize>,
    /// The session's statement timeout and cancel: the runs hold the
    /// statement's task, so they look at it themselves.
    interrupt: Option<(Arc<Interrupt>, crate::interrupt::Token)>,
    /// Results by outer values, kept across the batches of the statement.
    done: Mutex<HashMap<Vec<ScalarValue>, ScalarValue>>,
}

impl SubPlan {
    fn call(
        subquery: Subquery,
        exists: bool,
        state: &SessionState,
        budget: &Arc<AtomicUsize>,
    ) -> Result<Expr> {
        let mut outer: Vec<Column> = Vec::new();
        for e in &subquery.outer_ref_columns {
            if let Expr::OuterReferenceColumn(_, c) = e
                && !outer.contains(c)
            {
                outer.push(c.clone());
            }
        }
        let return_type = match exists {
            true => DataType::Boolean,
            false => subquery
                .subquery
                .schema()
                .fields()
                .first()
                .map(|f| f.data_type().clone())
                .ok_or_else(|| DataFusionError::Plan("a subquery without columns".into()))?,
        };
        let udf = SubPlan {
            plan: subquery.subquery,
            outer: outer.clone(),
            exists,
            return_type,
            signature: Signature::one_of(
                vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
                Volatility::Volatile,
            ),
            state: Arc::new(state.clone()),
            budget: budget.clone(),
            interrupt: state.config().get_extension::<Interrupt>().map(|i| {
                let token = i.token();
                (i, token)
            }),
            done: Mutex::new(HashMap::new()),
        };
        Ok(Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::new(ScalarUDF::new_from_impl(udf)),
            outer.into_iter().map(Expr::Column).collect(),
        )))
    }

    /// The subquery with the outer references bound to `values`.
    fn bind(&self, values: &[ScalarValue]) -> Result<LogicalPlan> {
        let plan = self.plan.as_ref().clone();
        plan.transform_up_with_subqueries(|node| {
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let name = names.save(&e);
                e.transform_up(|x| match &x {
                    Expr::OuterReferenceColumn(_, c) => {
                        match self.outer.iter().position(|o| o == c) {
                            Some(i) => Ok(Transformed::yes(Expr::Literal(values[i].clone(), None))),
                            None => Ok(Transformed::no(x)),
                        }
                    }
                    _ => Ok(Transformed::no(x)),
                })
                .map(|t| t.update_data(|e| name.restore(e)))
            })?
            .map_data(|p| p.recompute_schema())
        })?
        .data
        // A relation over outer columns (`unnest(t.col)` in FROM), bound
        // now: its plan as it is (a plan child, so not inside the subquery
        // expressions the pass above went into).
        .transform_up(|node| match node {
            LogicalPlan::Subquery(s) => Ok(Transformed::yes(Arc::unwrap_or_clone(s.subquery))),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }

    /// Runs the subquery bound to `values`.
    async fn run(&self, values: &[ScalarValue]) -> Result<ScalarValue> {
        if let Some((i, token)) = &self.interrupt {
            i.check(token).map_err(external)?;
        }
        if self.budget.fetch_add(1, Ordering::Relaxed) >= MAX_RUNS {
            return Err(external(SqlError::new(
                StatusCode::ProgramLimitExceeded,
                format!(
                    "a correlated subquery runs once per outer row; this statement needs more than {MAX_RUNS} runs"
                ),
            )));
        }
        // EXISTS needs one row, a scalar subquery two (a second is 21000).
        let bound = datafusion::logical_expr::LogicalPlanBuilder::from(self.bind(values)?)
            .limit(0, Some(if self.exists { 1 } else { 2 }))?
            .build()?;
        let physical = Box::pin(plan_bound(&self.state, &bound, &self.budget)).await?;
        let batches: Vec<RecordBatch> =
            datafusion::physical_plan::collect(physical, self.state.task_ctx()).await?;
        let mut rows = batches.iter().filter(|b| b.num_rows() > 0);
        if self.exists {
            return Ok(ScalarValue::Boolean(Some(rows.next().is_some())));
        }
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        match (total, rows.next()) {
            (0, _) | (_, None) => ScalarValue::try_from(&self.return_type),
            (1, Some(b)) => ScalarValue::try_from_array(b.column(0), 0),
            _ => Err(external(SqlError::new(
                StatusCode::CardinalityViolation,
                "more than one row returned by a subquery used as an expression",
            ))),
        }
    }
}

impl std::fmt::Debug for SubPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubPlan")
            .field("outer", &self.outer)
            .field("exists", &self.exists)
            .finish()
    }
}

impl PartialEq for SubPlan {
    fn eq(&self, other: &Self) -> bool {
        self.plan == other.plan && self.outer == other.outer && self.exists == other.exists
    }
}

impl Eq for SubPlan {}

impl Hash for SubPlan {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.plan.hash(state);
        self.outer.hash(state);
        self.exists.hash(state);
    }
}

impl ScalarUDFImpl for SubPlan {
    fn name(&self) -> &str {
        "subplan"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.return_type.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(n))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let keys = (0..n)
            .map(|row| {
                arrays
                    .iter()
                    .map(|a| ScalarValue::try_from_array(a, row))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let missing: Vec<Vec<ScalarValue>> = {
            let done = self.done.lock().map_err(|_| poisoned())?;
            let mut missing: Vec<Vec<ScalarValue>> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for k in &keys {
                if !done.contains_key(k) && seen.insert(k) {
                    missing.push(k.clone());
                }
            }
            missing
        };
        if !missing.is_empty() {
            // The function is called from a synchronous evaluation inside
            // the statement's own task: the subqueries run to completion on
            // a runtime of their own, on a thread of their own.
            let run_all = || {
                std::thread::scope(|s| {
                    s.spawn(|| -> Result<Vec<ScalarValue>> {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()?;
                        rt.block_on(async {
                            let runs = async {
                                let mut out = Vec::with_capacity(missing.len());
                                for k in &missing {
                                    out.push(self.run(k).await?);
                                }
                                Ok(out)
                            };
                            // A run itself may be long (a scan): the
                            // timeout or a cancel stops it where it is.
                            match &self.interrupt {
                                None => runs.await,
                                Some((i, token)) => tokio::select! {
                                    out = runs => out,
                                    e = i.wait(token) => Err(external(e)),
                                },
                            }
                        })
                    })
                    .join()
                    .map_err(|_| DataFusionError::Execution("a subplan thread panicked".into()))?
                })
            };
            // The waiting worker hands its other tasks on meanwhile.
            let multi_thread = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            let results = if multi_thread {
                tokio::task::block_in_place(run_all)?
            } else {
                run_all()?
            };
            let mut done = self.done.lock().map_err(|_| poisoned())?;
            done.extend(missing.into_iter().zip(results));
        }
        let done = self.done.lock().map_err(|_| poisoned())?;
        let values = keys
            .iter()
            .map(|k| done.get(k).cloned().unwrap_or(ScalarValue::Null))
            .collect::<Vec<_>>();
        if values.is_empty() {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_empty_array(&self.return_type),
            ));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(values)?))
    }
}

fn external(e: SqlError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn poisoned() -> DataFusionError {
    DataFusionError::Execution("a subplan's results were poisoned by a panic".into())
}
