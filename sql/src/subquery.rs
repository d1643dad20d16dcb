//! Subqueries in the filter of a vector search, run before it.
//!
//! DataFusion turns `x IN (SELECT …)`, `EXISTS (SELECT …)` and scalar
//! subqueries into joins above the table scan before filter pushdown runs, so
//! a `vector_search` would take its top k first and the join would drop rows
//! afterwards: fewer than k rows, and the wrong ones. Here, in a query that
//! reads `vector_search` (directly or through the pgvector rewrite), every
//! uncorrelated subquery of the WHERE is run first and replaced by its result
//! (an `IN` list of at most [`MAX_INLINE_VALUES`] constants, a boolean, a
//! constant), which the search then applies before its top k. A correlated
//! subquery there is refused (0A000) rather than answered wrongly.

use datafusion::arrow::array::Array;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArguments, Query, SetExpr, TableFactor, Value,
};
use futures::TryStreamExt;

use crate::error::{Result, SqlError, StatusCode};
use crate::session::{Output, Session};
use crate::sql_err;

/// The most values a subquery may hand a vector search as an `IN` list.
pub const MAX_INLINE_VALUES: usize = 10_000;

/// Whether the query's FROM reads `vector_search(…)`.
fn reads_vector_search(select: &ast::Select) -> bool {
    select.from.iter().any(|t| {
        matches!(&t.relation, TableFactor::Table { name, args: Some(_), .. }
            if name.to_string().eq_ignore_ascii_case("vector_search"))
            || matches!(&t.relation, TableFactor::TableFunction { expr: Expr::Function(f), .. }
            if f.name.to_string().eq_ignore_ascii_case("vector_search")
                && !matches!(f.args, FunctionArguments::None))
    })
}

/// Runs the WHERE's subqueries of a vector-search query and puts their results in place.
pub async fn inline_subqueries(session: &Session, q: &mut Query) -> Result<()> {
    let SetExpr::Select(select) = q.body.as_mut() else {
        return Ok(());
    };
    if !reads_vector_search(select) {
        return Ok(());
    }
    if let Some(filter) = select.selection.as_mut() {
        inline(session, filter).await?;
    }
    Ok(())
}

/// `x IN (SELECT …)` in the select list or ORDER BY of a statement's query
/// (Grafana's table list: `CASE WHEN quote_ident(table_schema) IN (SELECT
/// … search_path …) THEN …`), which DataFusion cannot plan there: an
/// uncorrelated subquery is run first and becomes the list of its values
/// (at most [`MAX_INLINE_VALUES`]). Anything else — a correlated subquery,
/// a longer result — is left for DataFusion to plan or refuse as before.
pub async fn inline_select_list(session: &Session, q: &mut Query) {
    let SetExpr::Select(select) = q.body.as_mut() else {
        return;
    };
    let mut exprs: Vec<&mut Expr> = select
        .projection
        .iter_mut()
        .filter_map(|item| match item {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                Some(e)
            }
            _ => None,
        })
        .collect();
    if let Some(order) = q.order_by.as_mut()
        && let ast::OrderByKind::Expressions(keys) = &mut order.kind
    {
        exprs.extend(keys.iter_mut().map(|k| &mut k.expr));
    }
    for e in exprs {
        in_lists(session, e).await;
    }
}

/// Replaces the uncorrelated `IN (SELECT …)` of `e` by lists, through the
/// operators, CASE and function arguments around them.
fn in_lists<'a>(session: &'a Session, e: &'a mut Expr) -> futures::future::BoxFuture<'a, ()> {
    Box::pin(async move {
        match e {
            Expr::BinaryOp { left, right, .. } => {
                in_lists(session, left).await;
                in_lists(session, right).await;
            }
            Expr::UnaryOp { expr, .. }
            | Expr::Nested(expr)
            | Expr::IsNull(expr)
            | Expr::IsNotNull(expr)
            | Expr::Cast { expr, .. } => in_lists(session, expr).await,
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(o) = operand {
                    in_lists(session, o).await;
                }
                for w in conditions {
                    in_lists(session, &mut w.condition).await;
                    in_lists(session, &mut w.result).await;
                }
                if let Some(r) = else_result {
                    in_lists(session, r).await;
                }
            }
            Expr::InSubquery {
                expr,
                subquery,
                negated,
            } => {
                let Ok((values, rows)) = run(session, subquery, MAX_INLINE_VALUES).await else {
                    return;
                };
                if rows > MAX_INLINE_VALUES {
                    return;
                }
                *e = in_list(expr, values, *negated);
            }
            _ => {}
        }
    })
}

/// `expr [NOT] IN (values)`, the subquery's result in place.
fn in_list(expr: &Expr, values: Vec<Expr>, negated: bool) -> Expr {
    if values.is_empty() {
        // `x IN ()` is false for every row, `x NOT IN ()` true.
        return Expr::value(Value::Boolean(negated));
    }
    Expr::InList {
        expr: Box::new(expr.clone()),
        list: values,
        negated,
    }
}

/// Replaces the subqueries in `e` (depth first), boxed for async recursion.
fn inline<'a>(session: &'a Session, e: &'a mut Expr) -> futures::future::BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        match e {
            Expr::BinaryOp { left, right, .. } => {
                inline(session, left).await?;
                inline(session, right).await?;
            }
            Expr::UnaryOp { expr, .. } | Expr::Nested(expr) => inline(session, expr).await?,
            Expr::IsNull(expr)
            | Expr::IsNotNull(expr)
            | Expr::IsTrue(expr)
            | Expr::IsFalse(expr) => inline(session, expr).await?,
            Expr::InSubquery {
                expr,
                subquery,
                negated,
            } => {
                inline(session, expr).await?;
                let (values, rows) = run(session, subquery, MAX_INLINE_VALUES).await?;
                if rows > MAX_INLINE_VALUES {
                    return sql_err!(
                        ProgramLimitExceeded,
                        "a subquery in the filter of a vector search returned {rows} rows; \
                         at most {MAX_INLINE_VALUES} are allowed"
                    );
                }
                *e = in_list(expr, values, *negated);
            }
            Expr::Exists { subquery, negated } => {
                let found = run(session, subquery, 1).await?.1 > 0;
                *e = Expr::value(Value::Boolean(found != *negated));
            }
            Expr::Subquery(subquery) => {
                let (mut values, rows) = run(session, subquery, 1).await?;
                if rows > 1 {
                    return sql_err!(
                        CardinalityViolation,
                        "more than one row returned by a subquery used as an expression"
                    );
                }
                *e = values.pop().unwrap_or_else(|| Expr::value(Value::Null));
            }
            _ => {}
        }
        Ok(())
    })
}

/// Runs an uncorrelated subquery of one column: its first `limit` values as
/// constants, and how many rows it returned.
async fn run(session: &Session, q: &Query, limit: usize) -> Result<(Vec<Expr>, usize)> {
    let out = session
        .query(ast::Statement::Query(Box::new(q.clone())))
        .await
        .map_err(|e| match e.code {
            StatusCode::UndefinedColumn => SqlError::new(
                StatusCode::FeatureNotSupported,
                format!(
                    "a correlated subquery in the filter of a vector search is not supported ({})",
                    e.message
                ),
            ),
            _ => e,
        })?;
    let Output::Rows { schema, stream } = out else {
        return sql_err!(Internal, "subquery returned no rows");
    };
    if schema.fields().len() != 1 {
        return sql_err!(
            SyntaxError,
            "subquery has too many columns ({})",
            schema.fields().len()
        );
    }
    let batches: Vec<_> = stream.try_collect().await?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut out = Vec::with_capacity(rows.min(limit));
    'all: for b in &batches {
        let col = b.column(0);
        for i in 0..col.len() {
            if out.len() == limit {
                break 'all;
            }
            out.push(literal(ScalarValue::try_from_array(col, i)?)?);
        }
    }
    Ok((out, rows))
}

/// A constant as SQL.
fn literal(v: ScalarValue) -> Result<Expr> {
    let number = |s: String| Ok(Expr::value(Value::Number(s, false)));
    let text = |s: String| Expr::value(Value::SingleQuotedString(s));
    match v {
        v if v.is_null() => Ok(Expr::value(Value::Null)),
        ScalarValue::Boolean(Some(b)) => Ok(Expr::value(Value::Boolean(b))),
        ScalarValue::Int8(Some(n)) => number(n.to_string()),
        ScalarValue::Int16(Some(n)) => number(n.to_string()),
        ScalarValue::Int32(Some(n)) => number(n.to_string()),
        ScalarValue::Int64(Some(n)) => number(n.to_string()),
        ScalarValue::UInt8(Some(n)) => number(n.to_string()),
        ScalarValue::UInt16(Some(n)) => number(n.to_string()),
        ScalarValue::UInt32(Some(n)) => number(n.to_string()),
        ScalarValue::UInt64(Some(n)) => number(n.to_string()),
        ScalarValue::Float32(Some(f)) if f.is_finite() => number(format!("{f:?}")),
        ScalarValue::Float64(Some(f)) if f.is_finite() => number(format!("{f:?}")),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Ok(text(s)),
        other => sql_err!(
            FeatureNotSupported,
            "a subquery in the filter of a vector search returned a {} value; \
             only numbers, text and booleans can be used",
            other.data_type()
        ),
    }
}
