//! Correlated scalar subqueries in a select list that DataFusion cannot
//! even plan (a table function over an outer column, as psql's `\d table`
//! sends: `generate_series(1, array_upper(pr.prattrs, 1))`) run the way
//! PostgreSQL runs every correlated subquery: once per row of the outer
//! query, with that row's values bound. (Those it plans but cannot
//! decorrelate run as subplans: [`crate::subplan`].)
//!
//! The outer query runs first with each such item replaced by NULL and the
//! outer columns the items read added as hidden columns; then each item is
//! evaluated per row as an uncorrelated `SELECT item` with those values as
//! literals. It is meant for catalog-sized outer results: more than
//! [`MAX_ROWS`] outer rows is an error (54000) rather than that many queries.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::sqlparser::ast::{
    self, Expr, Ident, Query, Select, SelectItem, SetExpr, TableFactor, Value, visit_expressions,
    visit_expressions_mut,
};
use futures::TryStreamExt;

use crate::error::Result;
use crate::session::{Output, Session};
use crate::sql_err;

/// Outer rows a query may have when its subqueries run per row.
pub const MAX_ROWS: usize = 10_000;

/// Whether a select list (of the query or of a branch of its set
/// operation) holds a scalar subquery (then the plan is checked for one
/// DataFusion left correlated).
pub fn projection_has_subquery(s: &ast::Statement) -> bool {
    let ast::Statement::Query(q) = s else {
        return false;
    };
    fn body(b: &SetExpr) -> bool {
        match b {
            SetExpr::Select(select) => select.projection.iter().any(|item| match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    contains_subquery(e)
                }
                _ => false,
            }),
            SetExpr::SetOperation { left, right, .. } => body(left) || body(right),
            _ => false,
        }
    }
    body(&q.body)
}

fn contains_subquery(e: &Expr) -> bool {
    visit_expressions(e, |x| match x {
        Expr::Subquery(_) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// The names the outer query's FROM gives its relations (aliases, else table names).
fn outer_names(select: &Select) -> Vec<String> {
    let mut names = Vec::new();
    let mut add = |f: &TableFactor| match f {
        TableFactor::Table { name, alias, .. } => match alias {
            Some(a) => names.push(a.name.value.to_ascii_lowercase()),
            None => {
                if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                    names.push(last.value.to_ascii_lowercase());
                }
            }
        },
        TableFactor::Derived { alias: Some(a), .. } => {
            names.push(a.name.value.to_ascii_lowercase())
        }
        _ => {}
    };
    for t in &select.from {
        add(&t.relation);
        for j in &t.joins {
            add(&j.relation);
        }
    }
    names
}

/// The relation names the subqueries inside an item give (they shadow an
/// outer relation of the same name there).
fn inner_names(item: &Expr) -> Vec<String> {
    let mut names = Vec::new();
    let _ = visit_expressions(item, |x| {
        let q = match x {
            Expr::Subquery(q) | Expr::Exists { subquery: q, .. } => Some(q),
            Expr::InSubquery { subquery, .. } => Some(subquery),
            _ => None,
        };
        if let Some(q) = q
            && let SetExpr::Select(select) = q.body.as_ref()
        {
            names.extend(outer_names(select));
        }
        ControlFlow::<()>::Continue(())
    });
    names
}

/// The `relation.column` references of an item that name an outer relation.
fn outer_refs(item: &Expr, outer: &[String]) -> Vec<Vec<Ident>> {
    let mut refs: Vec<Vec<Ident>> = Vec::new();
    let _ = visit_expressions(item, |x| {
        if let Expr::CompoundIdentifier(parts) = x
            && parts.len() == 2
            && outer.contains(&parts[0].value.to_ascii_lowercase())
            && !refs.contains(parts)
        {
            refs.push(parts.clone());
        }
        ControlFlow::<()>::Continue(())
    });
    refs
}

fn literal(v: &ScalarValue) -> Expr {
    if v.is_null() {
        return Expr::value(Value::Null);
    }
    match v {
        ScalarValue::Boolean(Some(b)) => Expr::value(Value::Boolean(*b)),
        // A `"char"` (catalog columns such as `attidentity`): its character,
        // '' for none, so that `attidentity != ''` compares as text.
        ScalarValue::Int8(Some(c)) => Expr::value(Value::SingleQuotedString(if *c == 0 {
            String::new()
        } else {
            char::from(*c as u8).to_string()
        })),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Expr::value(Value::SingleQuotedString(s.clone())),
        v if v.data_type().is_numeric() => Expr::value(Value::Number(v.to_string(), false)),
        v => Expr::value(Value::SingleQuotedString(v.to_string())),
    }
}

/// Runs a query and collects its rows. `per_row`: see
/// [`Session::query_with`]; `bounded`: more than [`MAX_ROWS`] rows is an
/// error (54000), met as the rows arrive.
async fn collect(
    session: &Session,
    s: ast::Statement,
    per_row: bool,
    bounded: bool,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let Output::Rows { schema, mut stream } = Box::pin(session.query_with(s, per_row)).await?
    else {
        return sql_err!(Internal, "a query returned no rows");
    };
    let (mut batches, mut rows) = (Vec::new(), 0);
    while let Some(b) = stream.try_next().await? {
        rows += b.num_rows();
        if bounded && rows > MAX_ROWS {
            return sql_err!(
                ProgramLimitExceeded,
                "a correlated subquery in the select list runs once per row; this query has more than {MAX_ROWS} rows"
            );
        }
        batches.push(b);
    }
    Ok((schema, batches))
}

/// Runs a query whose select lists hold correlated subqueries (see the
/// module); a set operation runs each branch so, then combines them.
pub async fn run(session: &Session, q: &Query) -> Result<Output> {
    match q.body.as_ref() {
        SetExpr::Select(_) => run_select(session, q).await,
        SetExpr::SetOperation { .. } => run_set_operation(session, q).await,
        _ => sql_err!(
            FeatureNotSupported,
            "this correlated subquery is not supported"
        ),
    }
}

/// Replaces each SELECT of a set operation by a read of `_branch_<i>`.
fn take_branches(body: &mut SetExpr, branches: &mut Vec<Select>) {
    match body {
        SetExpr::Select(select) => {
            let table = format!("_branch_{}", branches.len());
            branches.push(select.as_ref().clone());
            let star = datafusion::sql::sqlparser::parser::Parser::new(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            )
            .try_with_sql(&format!("SELECT * FROM {table}"))
            .and_then(|mut p| p.parse_query());
            if let Ok(star) = star
                && let SetExpr::Select(s) = *star.body
            {
                *select = s;
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            take_branches(left, branches);
            take_branches(right, branches);
        }
        _ => {}
    }
}

async fn run_set_operation(session: &Session, q: &Query) -> Result<Output> {
    let mut body = q.body.as_ref().clone();
    let mut branches = Vec::new();
    take_branches(&mut body, &mut branches);
    let scratch = datafusion::prelude::SessionContext::new();
    for (i, select) in branches.into_iter().enumerate() {
        let branch = Query {
            body: Box::new(SetExpr::Select(Box::new(select))),
            order_by: None,
            limit_clause: None,
            fetch: None,
            ..q.clone()
        };
        let (schema, batches) = collect(
            session,
            ast::Statement::Query(Box::new(branch)),
            true,
            false,
        )
        .await?;
        let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])?;
        scratch.register_table(format!("_branch_{i}"), Arc::new(table))?;
    }
    let combined = Query {
        body: Box::new(body),
        with: None,
        ..q.clone()
    };
    let state = scratch.state();
    let plan = state
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            ast::Statement::Query(Box::new(combined)),
        )))
        .await?;
    let df = datafusion::dataframe::DataFrame::new(state, plan);
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let stream = df.execute_stream().await?;
    Ok(Output::Rows { schema, stream })
}

/// A select-list item run per row: its position, expression, alias, and
/// the outer `relation.column` references it reads.
type Applied = (usize, Expr, Option<String>, Vec<Vec<Ident>>);

async fn run_select(session: &Session, q: &Query) -> Result<Output> {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return sql_err!(
            FeatureNotSupported,
            "this correlated subquery is not supported"
        );
    };
    // Positions below are select-list positions: a wildcard would shift them.
    if select.projection.iter().any(|item| {
        matches!(
            item,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    }) {
        return sql_err!(
            FeatureNotSupported,
            "a correlated subquery beside * in a select list is not supported; list the columns"
        );
    }
    let outer = outer_names(select);
    // Items run per row, with the outer references each reads.
    let mut applied: Vec<Applied> = Vec::new();
    let mut first = select.as_ref().clone();
    let mut hidden: Vec<Vec<Ident>> = Vec::new();
    for (i, item) in select.projection.iter().enumerate() {
        let (e, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
            _ => continue,
        };
        if !contains_subquery(e) {
            continue;
        }
        // A name a subquery of the item gives one of its own relations
        // refers to that relation there (the innermost scope wins), not to
        // the outer one.
        let shadowed = inner_names(e);
        let refs: Vec<Vec<Ident>> = outer_refs(e, &outer)
            .into_iter()
            .filter(|r| !shadowed.contains(&r[0].value.to_ascii_lowercase()))
            .collect();
        for r in &refs {
            if !hidden.contains(r) {
                hidden.push(r.clone());
            }
        }
        first.projection[i] = SelectItem::ExprWithAlias {
            expr: Expr::value(Value::Null),
            alias: Ident::new(format!("_apply_{i}")),
        };
        applied.push((i, e.clone(), alias, refs));
    }
    let visible = first.projection.len();
    for (j, r) in hidden.iter().enumerate() {
        first.projection.push(SelectItem::ExprWithAlias {
            expr: Expr::CompoundIdentifier(r.clone()),
            alias: Ident::new(format!("_outer_{j}")),
        });
    }
    let mut outer_query = q.clone();
    outer_query.body = Box::new(SetExpr::Select(Box::new(first)));
    let (schema, batches) = collect(
        session,
        ast::Statement::Query(Box::new(outer_query)),
        false,
        true,
    )
    .await?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let batch = datafusion::arrow::compute::concat_batches(&schema, &batches)?;
    // Each applied item, row by row.
    let mut values: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(rows); applied.len()];
    let mut names: Vec<String> = Vec::new();
    for (k, (_, item, alias, refs)) in applied.iter().enumerate() {
        let mut name = alias.clone();
        for row in 0..rows {
            let mut e = item.clone();
            let bound: Vec<(Vec<Ident>, ScalarValue)> = refs
                .iter()
                .map(|r| {
                    let j = hidden.iter().position(|h| h == r).unwrap_or(0);
                    let col = batch.column(visible + j);
                    ScalarValue::try_from_array(col, row).map(|v| (r.clone(), v))
                })
                .collect::<std::result::Result<_, _>>()?;
            let _ = visit_expressions_mut(&mut e, |x| {
                if let Expr::CompoundIdentifier(parts) = x
                    && let Some((_, v)) = bound.iter().find(|(r, _)| r == parts)
                {
                    *x = literal(v);
                }
                ControlFlow::<()>::Continue(())
            });
            let select_item = ast::Statement::Query(Box::new(Query {
                body: Box::new(SetExpr::Select(Box::new(Select {
                    projection: vec![SelectItem::UnnamedExpr(e)],
                    from: vec![],
                    selection: None,
                    ..select.as_ref().clone()
                }))),
                order_by: None,
                limit_clause: None,
                fetch: None,
                with: q.with.clone(),
                ..q.clone()
            }));
            let (s, b) = collect(session, select_item, false, false).await?;
            if name.is_none() {
                name = Some(s.field(0).name().clone());
            }
            let v = match b.iter().find(|b| b.num_rows() > 0) {
                Some(b) => ScalarValue::try_from_array(b.column(0), 0)?,
                None => ScalarValue::Null,
            };
            values[k].push(v);
        }
        names.push(name.unwrap_or_else(|| "?column?".into()));
    }
    // The result: the outer columns, the applied items in their places.
    let mut fields: Vec<Field> = Vec::with_capacity(visible);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(visible);
    for i in 0..visible {
        match applied.iter().position(|(pos, ..)| *pos == i) {
            Some(k) => {
                let t = values[k]
                    .iter()
                    .find(|v| !v.is_null())
                    .map(|v| v.data_type())
                    .unwrap_or(DataType::Utf8);
                let col = if rows == 0 {
                    new_null_array(&t, 0)
                } else {
                    let typed: Vec<ScalarValue> = values[k]
                        .iter()
                        .map(|v| {
                            if v.is_null() {
                                ScalarValue::try_from(&t)
                            } else {
                                Ok(v.clone())
                            }
                        })
                        .collect::<std::result::Result<_, _>>()?;
                    ScalarValue::iter_to_array(typed)?
                };
                fields.push(Field::new(names[k].clone(), t, true));
                columns.push(col);
            }
            None => {
                fields.push(schema.field(i).clone());
                columns.push(batch.column(i).clone());
            }
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let out = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Output::Rows {
        schema: schema.clone(),
        stream: Box::pin(MemoryStream::try_new(vec![out], schema, None)?),
    })
}
