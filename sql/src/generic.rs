//! Generic plans of prepared vector searches.
//!
//! A statement is otherwise planned again at each Execute with its parameters
//! bound as literals (DataFusion plans `vector_search` with constant
//! arguments). For the statement applications repeat most — a k-nearest
//! search whose only parameter is the query vector, in the `vector_search`
//! form or the pgvector `ORDER BY col <=> $1 LIMIT k` form — turning SQL into
//! a physical plan costs about as much CPU as the search itself. So, like
//! PostgreSQL's generic plans, such a statement is planned once with the
//! vector left unbound; each Execute binds the vector into the plan's one
//! `VectorSearchExec` and runs fresh copies of the operators
//! (`reset_state`), which read the latest table version as a newly planned
//! query would.
//!
//! A plan is valid for one [`PlanKey`]: the catalog generation (tables,
//! indexes and functions created or dropped), the user-function generation
//! and the session's settings generation (the search knobs are planned in).
//! Any change plans again. A plan qualifies only when nothing in it depends on
//! the moment it was made or on data it read while planning: no subquery, no
//! call DataFusion folds to the planning time (`now()`, `current_date`,
//! `current_time`), no other parameter, and only operators that keep no
//! state between runs once reset, with nothing below them but the search.

use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::internal_datafusion_err;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr as DfExpr, LogicalPlan};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, SetExpr, TableFactor, Value,
    visit_expressions,
};

use crate::session::ParamValue;
use crate::vector_search::VectorSearchExec;

/// What a generic plan was made under; it serves while this stays the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlanKey {
    pub catalog: u64,
    pub functions: u64,
    pub settings: u64,
}

/// A statement's generic plan — or the finding that it has none — for one key.
#[derive(Debug, Default)]
pub struct GenericSlot(Mutex<Option<(PlanKey, Option<Arc<GenericPlan>>)>>);

impl GenericSlot {
    /// `None` when nothing is known for `key`; `Some(None)` when the statement
    /// has no generic plan under it.
    pub(crate) fn get(&self, key: PlanKey) -> Option<Option<Arc<GenericPlan>>> {
        let slot = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match slot.as_ref() {
            Some((k, plan)) if *k == key => Some(plan.clone()),
            _ => None,
        }
    }

    pub(crate) fn set(&self, key: PlanKey, plan: Option<Arc<GenericPlan>>) {
        let mut slot = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *slot = Some((key, plan));
    }
}

/// A physical plan with its query vector unbound, and what running it needs.
pub(crate) struct GenericPlan {
    /// The query vector's position among the parameters (`$1` is 0).
    pub param: usize,
    /// The tables it reads, `None` when its rows may not be cached
    /// ([`crate::result_cache::plan_reads`]).
    pub reads: Option<std::collections::BTreeSet<String>>,
    /// The k of its vector search ([`crate::vector_search::plan_search_k`]).
    pub search_k: Option<usize>,
    pub plan: Arc<dyn ExecutionPlan>,
    pub schema: SchemaRef,
    pub task: Arc<TaskContext>,
}

impl std::fmt::Debug for GenericPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericPlan")
            .field("param", &self.param)
            .field("plan", &self.plan.name())
            .finish_non_exhaustive()
    }
}

impl GenericPlan {
    /// Runs the plan once with `query` as its search vector: fresh operators
    /// (their metrics and dynamic filters start empty), the search bound.
    pub(crate) fn execute(&self, query: Vec<f32>) -> DfResult<SendableRecordBatchStream> {
        let mut query = Some(query);
        let plan = Arc::clone(&self.plan)
            .transform_up(|node| {
                if let Some(search) = node.downcast_ref::<VectorSearchExec>() {
                    let q = query.take().ok_or_else(|| {
                        internal_datafusion_err!("a generic plan has two searches")
                    })?;
                    let bound: Arc<dyn ExecutionPlan> = Arc::new(search.with_query(q));
                    return Ok(Transformed::yes(bound));
                }
                Ok(Transformed::yes(node.reset_state()?))
            })?
            .data;
        execute_stream(plan, Arc::clone(&self.task))
    }
}

/// The query vector a parameter holds, when it is a well-formed vector in
/// text form (anything else is left to the statement's ordinary planning,
/// which reports it as it always has).
pub(crate) fn query_vector(p: Option<&ParamValue>) -> Option<Vec<f32>> {
    match p {
        Some(ParamValue::Text(t)) => crate::vector::parse_vector(t).ok(),
        _ => None,
    }
}

/// The position of the query-vector parameter (`$1` is 0) when `stmt` — with
/// operators, casts and the k-NN form rewritten, parameters unbound — can
/// have a generic plan: one `vector_search(…)` in FROM, no join, no CTE, whose
/// query argument (`$n` or `to_vector($n)`) is the statement's only
/// parameter, and no subquery anywhere.
pub(crate) fn vector_parameter(stmt: &ast::Statement) -> Option<usize> {
    let ast::Statement::Query(q) = stmt else {
        return None;
    };
    if q.with.is_some() {
        return None;
    }
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    let [from] = select.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let TableFactor::Table {
        name,
        args: Some(args),
        ..
    } = &from.relation
    else {
        return None;
    };
    if name.0.len() != 1 || name.to_string() != "vector_search" {
        return None;
    }
    let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))) = args.args.get(2) else {
        return None;
    };
    let arg = match arg {
        Expr::Function(f) if f.name.to_string() == "to_vector" => match &f.args {
            FunctionArguments::List(l) => match l.args.as_slice() {
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(inner))] => inner,
                _ => return None,
            },
            _ => return None,
        },
        other => other,
    };
    let Expr::Value(v) = arg else {
        return None;
    };
    let Value::Placeholder(p) = &v.value else {
        return None;
    };
    let n: usize = p.strip_prefix('$')?.parse().ok().filter(|n| *n >= 1)?;
    let mut parameters = 0;
    let mut subquery = false;
    let _ = visit_expressions(stmt, |e| {
        match e {
            Expr::Value(v) if matches!(v.value, Value::Placeholder(_)) => parameters += 1,
            Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => subquery = true,
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    (parameters == 1 && !subquery).then_some(n - 1)
}

/// Whether the (unoptimized) plan calls a function DataFusion replaces by
/// the planning time's value: such a plan is made per execution.
pub(crate) fn reads_clock(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let DfExpr::ScalarFunction(f) = e
                    && matches!(f.name(), "now" | "current_date" | "current_time")
                {
                    found = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

/// Whether a physical plan can run again and again: exactly one
/// `VectorSearchExec`, its query unbound, under operators that keep no state
/// between runs once reset.
pub(crate) fn reusable(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut searches = 0;
    let mut ok = true;
    let _ = plan.apply(|node| {
        if let Some(s) = node.downcast_ref::<VectorSearchExec>() {
            searches += 1;
            ok &= s.query_unbound();
        } else if !(node.is::<ProjectionExec>()
            || node.is::<SortExec>()
            || node.is::<GlobalLimitExec>()
            || node.is::<LocalLimitExec>()
            || node.is::<FilterExec>()
            || node.is::<CoalescePartitionsExec>()
            || node.is::<CooperativeExec>())
        {
            ok = false;
        }
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok && searches == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> ast::Statement {
        let mut s = crate::statement::parse(sql).expect("parse").remove(0);
        let crate::statement::StatementKind::Sql(stmt) = &mut s.kind else {
            panic!("not SQL");
        };
        crate::rewrite::rewrite_expressions(stmt, None).expect("rewrite");
        stmt.as_ref().clone()
    }

    #[test]
    fn only_a_search_whose_one_parameter_is_the_vector_qualifies() {
        let q = |sql: &str| vector_parameter(&rewritten(sql));
        assert_eq!(
            q("SELECT id FROM vector_search('t', 'e', $1::vector, 10)"),
            Some(0)
        );
        assert_eq!(
            q(
                "SELECT id, _distance FROM vector_search('t', 'e', $2, 5) WHERE b < 3 ORDER BY _distance"
            ),
            Some(1)
        );
        // A second parameter, a subquery, a join or a CTE: planned per execution.
        assert_eq!(
            q("SELECT id FROM vector_search('t', 'e', $1::vector, 10) WHERE b = $2"),
            None
        );
        assert_eq!(
            q(
                "SELECT id FROM vector_search('t', 'e', $1::vector, 10) WHERE b IN (SELECT b FROM u)"
            ),
            None
        );
        assert_eq!(
            q("SELECT id FROM vector_search('t', 'e', $1::vector, 10) v JOIN u ON v.id = u.id"),
            None
        );
        assert_eq!(
            q("WITH c AS (SELECT 1) SELECT id FROM vector_search('t', 'e', $1::vector, 10)"),
            None
        );
        // The parameter is not the query vector; no parameter at all.
        assert_eq!(
            q("SELECT id FROM vector_search('t', 'e', '[1,2]', $1)"),
            None
        );
        assert_eq!(
            q("SELECT id FROM vector_search('t', 'e', '[1,2]', 3)"),
            None
        );
        assert_eq!(q("SELECT id FROM t WHERE id = $1"), None);
    }

    #[test]
    fn a_parameter_is_a_query_vector_only_in_well_formed_text() {
        assert_eq!(
            query_vector(Some(&ParamValue::Text("[1, 2.5]".into()))),
            Some(vec![1.0, 2.5])
        );
        assert_eq!(query_vector(Some(&ParamValue::Text("[1,".into()))), None);
        assert_eq!(query_vector(Some(&ParamValue::Null)), None);
        assert_eq!(query_vector(Some(&ParamValue::Int(3))), None);
        assert_eq!(query_vector(None), None);
    }

    /// A session on a fresh data directory, removed on drop.
    struct Scratch {
        dir: std::path::PathBuf,
        session: crate::Session,
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn scratch() -> Scratch {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "quiver-generic-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let db = crate::Database::open(&dir).await.expect("open");
        let session = db.new_session();
        Scratch { dir, session }
    }

    async fn run(
        s: &crate::Session,
        sql: &str,
        params: &[ParamValue],
    ) -> crate::Result<Vec<String>> {
        let stmt = crate::statement::parse(sql)?.remove(0);
        run_stmt(s, &stmt, params).await
    }

    /// Every row of the result, its columns formatted and joined by `|`.
    async fn run_stmt(
        s: &crate::Session,
        stmt: &crate::Statement,
        params: &[ParamValue],
    ) -> crate::Result<Vec<String>> {
        use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
        use futures::TryStreamExt;
        match s.execute(stmt, params).await? {
            crate::Output::Rows { stream, .. } => {
                let batches: Vec<_> = stream.try_collect().await?;
                let mut rows = Vec::new();
                for b in batches {
                    let opts = FormatOptions::default();
                    let cols: Vec<_> = b
                        .columns()
                        .iter()
                        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
                        .collect::<Result<_, _>>()?;
                    for i in 0..b.num_rows() {
                        rows.push(
                            cols.iter()
                                .map(|c| c.value(i).to_string())
                                .collect::<Vec<_>>()
                                .join("|"),
                        );
                    }
                }
                Ok(rows)
            }
            _ => Ok(vec![]),
        }
    }

    fn text(v: &str) -> ParamValue {
        ParamValue::Text(v.to_string())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_prepared_search_runs_its_generic_plan_and_answers_as_a_planned_one() {
        let t = scratch().await;
        let s = &t.session;
        run(s, "CREATE TABLE t (id BIGINT, b INT, e VECTOR(2))", &[])
            .await
            .expect("create");
        run(
            s,
            "INSERT INTO t VALUES (1, 0, '[1,0]'), (2, 1, '[0,1]'), (3, 0, '[1,1]'), (4, 1, '[-1,0]')",
            &[],
        )
        .await
        .expect("insert");
        let forms = [
            "SELECT id, _distance FROM vector_search('t', 'e', $1::vector, 2)",
            "SELECT id FROM vector_search('t', 'e', $1, 3, 'cosine') WHERE b = 0",
            "SELECT id, b FROM t ORDER BY e <-> $1::vector LIMIT 2",
            "SELECT * FROM t WHERE b = 1 ORDER BY e <=> $1 LIMIT 1",
        ];
        let queries = ["[1,0]", "[0,2]", "[-1,-1]"];
        for sql in forms {
            let stmt = crate::statement::parse(sql).expect("parse").remove(0);
            for q in queries {
                let before = s.generic_plan_runs();
                let got = run_stmt(s, &stmt, &[text(q)]).await.expect("generic");
                assert_eq!(
                    s.generic_plan_runs(),
                    before + 1,
                    "{sql} ran its generic plan"
                );
                let literal = sql.replace("$1", &format!("'{q}'"));
                let want = run(s, &literal, &[]).await.expect("planned");
                assert_eq!(got, want, "{sql} with {q}");
            }
        }

        // Writes, a new index, a changed knob: each run sees them.
        let stmt = crate::statement::parse(forms[0]).expect("parse").remove(0);
        let top = |rows: Vec<String>| rows[0].split('|').next().map(str::to_string);
        run(s, "INSERT INTO t VALUES (5, 0, '[0.1,2]')", &[])
            .await
            .expect("insert");
        let rows = run_stmt(s, &stmt, &[text("[0,2]")])
            .await
            .expect("after insert");
        assert_eq!(top(rows).as_deref(), Some("5"), "the new row is found");
        let runs = s.generic_plan_runs();
        run(
            s,
            "CREATE INDEX t_e ON t USING ivf_flat (e) WITH (num_partitions = 1)",
            &[],
        )
        .await
        .expect("index");
        run(s, "SET quiver.nprobes = 1", &[]).await.expect("set");
        let rows = run_stmt(s, &stmt, &[text("[0,2]")])
            .await
            .expect("after index");
        assert_eq!(top(rows).as_deref(), Some("5"));
        assert_eq!(
            s.generic_plan_runs(),
            runs + 1,
            "planned again, still generic"
        );

        // The table dropped and made again with other columns: the new shape.
        run(s, "DROP TABLE t", &[]).await.expect("drop");
        assert!(
            run_stmt(s, &stmt, &[text("[1,0]")]).await.is_err(),
            "no table"
        );
        run(s, "CREATE TABLE t (id TEXT, e VECTOR(2))", &[])
            .await
            .expect("create again");
        run(s, "INSERT INTO t VALUES ('x', '[1,0]')", &[])
            .await
            .expect("insert");
        let rows = run_stmt(s, &stmt, &[text("[1,0]")])
            .await
            .expect("new table");
        assert_eq!(rows, vec!["x|0.0".to_string()]);

        // Planned per execution: a clock read, a second parameter, a bad vector.
        let runs = s.generic_plan_runs();
        let rows = run(
            s,
            "SELECT id, now() > '2000-01-01' FROM vector_search('t', 'e', $1, 1)",
            &[text("[1,0]")],
        )
        .await
        .expect("now");
        assert_eq!(rows, vec!["x|true".to_string()]);
        let rows = run(
            s,
            "SELECT id FROM vector_search('t', 'e', $1, 1) WHERE id = $2",
            &[text("[1,0]"), text("x")],
        )
        .await
        .expect("two parameters");
        assert_eq!(rows, vec!["x".to_string()]);
        let err = run(
            s,
            "SELECT id FROM vector_search('t', 'e', $1, 1)",
            &[text("[1,")],
        )
        .await
        .expect_err("bad vector");
        assert_eq!(err.code, crate::StatusCode::InvalidTextRepresentation);
        let err = run(
            s,
            "SELECT id FROM vector_search('t', 'e', $1, 1)",
            &[text("[1,0,0]")],
        )
        .await
        .expect_err("wrong dimension");
        assert_eq!(err.code, crate::StatusCode::DataException, "{err:?}");
        assert_eq!(
            s.generic_plan_runs(),
            runs + 1,
            "only the wrong dimension was generic"
        );
    }
}
