//! PostgreSQL syntax DataFusion does not plan, rewritten into what it does
//! before planning (psql, drivers and tools send all of it):
//! - `pg_catalog.f(…)` calls `f` (the catalog helpers and DataFusion's
//!   functions are registered without the schema); `FROM pg_catalog.t`
//!   reads `t` and `pg_catalog.t.c` is `t.c`;
//! - `a OPERATOR(pg_catalog.~) b` is `a ~ b` (any built-in operator);
//! - `x COLLATE "C"` is `x` (Quiver compares strings by bytes, as the C
//!   collation does);
//! - casts to the `reg*` types become the conversions PostgreSQL's casts
//!   are: a string (`'docs'::regclass`) is looked up to an id
//!   (`regclassin`), an id (`c.oid::regclass`) printed as a name
//!   (`regclassout`); casts to `oid`, `name`, `"char"`, `int2vector` and to
//!   `pg_catalog.`-qualified type names become the Arrow types Quiver
//!   stores them as;
//! - `ARRAY(SELECT e FROM … ORDER BY o)` is the scalar subquery
//!   `(SELECT array_agg(e ORDER BY o) FROM …)` (so that a correlated one
//!   is decorrelated as any scalar subquery is);
//! - a scalar subquery that does not aggregate, `(SELECT e FROM …)`, is
//!   `(SELECT single_value(e) FROM …)` ([`crate::single_value`]: the row's
//!   value, NULL for none, 21000 for several), since DataFusion decorrelates
//!   only aggregated ones;
//! - `EXISTS (…)` in a select list is `(SELECT count(*) > 0 FROM …)`
//!   (DataFusion runs `EXISTS` only as a filter);
//! - `generate_subscripts(a, 1)` is `unnest(generate_series(1,
//!   cardinality(a)))`;
//! - `x = ANY (ARRAY[a, b])` is `x IN (a, b)` and `x <> ALL (ARRAY[a, b])`
//!   is `x NOT IN (a, b)` (SQLAlchemy's `relkind = ANY (ARRAY['r'::VARCHAR,
//!   …])`), the elements' casts of strings to text types dropped so that a
//!   string meets a `"char"` column as PostgreSQL reads it.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    ArrayElemTypeDef, BinaryOperator, DataType, Expr, FunctionArg, FunctionArgExpr,
    FunctionArgumentClause, FunctionArguments, GroupByExpr, ObjectName, OrderByExpr, OrderByKind,
    Query, SelectItem, SetExpr, Statement, UnaryOperator, Value, VisitMut, VisitorMut,
    visit_expressions, visit_expressions_mut,
};

use crate::rewrite::function_call;

/// Applies every rewrite above to a statement.
pub fn rewrite(stmt: &mut Statement) {
    let _ = stmt.visit(&mut Rewriter);
    // The result's own columns: nothing outside reads them by name.
    if let Statement::Query(q) = stmt {
        each_select(q.body.as_mut(), &mut unique_columns);
        order_by_subqueries(q);
    }
}

/// `ORDER BY CASE WHEN x IN (SELECT …) …` (Grafana's table list):
/// DataFusion takes subqueries in a select list, not in ORDER BY — so such a
/// key is computed as a hidden select-list column ([`crate::names::hidden`],
/// dropped from the result) and ordered by.
fn order_by_subqueries(q: &mut Query) {
    use datafusion::sql::sqlparser::ast::{Ident, OrderByKind, visit_expressions};
    let (Some(order), SetExpr::Select(select)) = (q.order_by.as_mut(), q.body.as_mut()) else {
        return;
    };
    let OrderByKind::Expressions(keys) = &mut order.kind else {
        return;
    };
    if select.distinct.is_some() {
        return;
    }
    for (k, key) in keys.iter_mut().enumerate() {
        let subquery = visit_expressions(&key.expr, |e| match e {
            Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => {
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        })
        .is_break();
        if subquery {
            let name = Ident::with_quote('"', crate::names::hidden(k));
            let expr = std::mem::replace(&mut key.expr, Expr::Identifier(name.clone()));
            select
                .projection
                .push(SelectItem::ExprWithAlias { expr, alias: name });
        }
    }
}

struct Rewriter;

impl VisitorMut for Rewriter {
    type Break = ();

    fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        name_cte_columns(q);
        each_select(q.body.as_mut(), &mut |select| {
            unique_names(select);
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item
                {
                    int4_literal(e);
                    let _ = visit_expressions_mut(e, |x| {
                        if let Expr::Exists { subquery, negated } = x
                            && let Some(count) = exists_as_count(subquery)
                        {
                            let test = Expr::Subquery(Box::new(count));
                            *x = if *negated {
                                Expr::UnaryOp {
                                    op: UnaryOperator::Not,
                                    expr: Box::new(test),
                                }
                            } else {
                                test
                            };
                        }
                        ControlFlow::<()>::Continue(())
                    });
                }
            }
        });
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(
        &mut self,
        t: &mut datafusion::sql::sqlparser::ast::TableFactor,
    ) -> ControlFlow<()> {
        // `FROM pg_catalog.f(…)` calls the table function `f`;
        // `FROM pg_catalog.pg_class` reads `pg_class` (found unqualified),
        // so that `pg_catalog.pg_class.oid` ([`rewrite_expr`]) names it.
        if let datafusion::sql::sqlparser::ast::TableFactor::Table { name, .. } = t
            && let Some(short) = without_pg_catalog(name)
        {
            *name = short;
        }
        unnest_as_postgres(t);
        scalar_in_from(t);
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        rewrite_expr(e);
        if let Expr::Subquery(q) = e
            && let Some(single) = single_value_subquery(q)
        {
            **q = single;
        }
        ControlFlow::Continue(())
    }
}

/// The SQL functions `current_catalog` and `user`, written as bare words
/// (also their result columns' names).
pub(crate) fn is_sql_function_word(word: &str) -> bool {
    word.eq_ignore_ascii_case("current_catalog") || word.eq_ignore_ascii_case("user")
}

/// A select-list integer literal that fits in 32 bits is an `integer` in
/// PostgreSQL (`SELECT 1` returns an int4, which drivers read as a number;
/// DataFusion's literal is an int8, which node-postgres reads as a string).
fn int4_literal(e: &mut Expr) {
    if let Expr::Value(v) = e
        && let Value::Number(n, false) = &v.value
        && n.parse::<i32>().is_ok()
    {
        *e = Expr::Cast {
            kind: datafusion::sql::sqlparser::ast::CastKind::DoubleColon,
            expr: Box::new(e.clone()),
            data_type: datafusion::sql::sqlparser::ast::DataType::Int(None),
            array: false,
            format: None,
        };
    }
}

/// The table functions a session has (registered in `Session::new`, and
/// DataFusion's own); any other function called in FROM is a scalar one.
const TABLE_FUNCTIONS: &[&str] = &[
    "generate_series",
    "range",
    "unnest",
    "vector_search",
    "quiver_shards",
    "quiver_progress",
    "quiver_caches",
    "pg_get_keywords",
    "pg_partition_ancestors",
];

/// `FROM string_to_array(…) s` (Grafana's search-path lookup): PostgreSQL
/// takes a scalar function in FROM as a one-row table whose column is named
/// after the alias (else the function), DataFusion only table functions —
/// so it becomes `(SELECT f(…) AS s) s`.
fn scalar_in_from(t: &mut datafusion::sql::sqlparser::ast::TableFactor) {
    use datafusion::sql::sqlparser::ast::TableFactor;
    let TableFactor::Table {
        name,
        args: Some(args),
        alias,
        ..
    } = t
    else {
        return;
    };
    let function = name.to_string().to_ascii_lowercase();
    if name.0.len() != 1 {
        return;
    }
    if TABLE_FUNCTIONS.contains(&function.as_str()) {
        // `generate_series(…) AS i`: one column, named after the alias.
        if matches!(function.as_str(), "generate_series" | "range")
            && let Some(a) = alias.as_mut()
            && a.columns.is_empty()
        {
            a.columns.push(
                datafusion::sql::sqlparser::ast::TableAliasColumnDef::from_name(
                    a.name.value.clone(),
                ),
            );
        }
        return;
    }
    let column = alias
        .as_ref()
        .filter(|a| a.columns.is_empty())
        .map_or_else(|| function.clone(), |a| a.name.value.clone());
    let call = format!(
        "{name}({})",
        args.args
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let column = datafusion::sql::sqlparser::ast::Ident::with_quote('"', column);
    let alias = match alias {
        Some(a) => a.to_string(),
        None => datafusion::sql::sqlparser::ast::Ident::with_quote('"', function).to_string(),
    };
    let Ok(mut parsed) = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        &format!("SELECT * FROM (SELECT {call} AS {column}) AS {alias}"),
    ) else {
        return;
    };
    if let Some(Statement::Query(q)) = parsed.pop()
        && let SetExpr::Select(select) = *q.body
        && let Some(from) = select.from.into_iter().next()
    {
        *t = from.relation;
    }
}

/// `FROM unnest(a) x`: PostgreSQL names the one column of an unnest of one
/// array after the alias (`SELECT x FROM unnest(…) x`), DataFusion after
/// the call; `pg_catalog.unnest(…)` parses as a table function call, which
/// DataFusion does not have (its unnest is a table factor of its own).
fn unnest_as_postgres(t: &mut datafusion::sql::sqlparser::ast::TableFactor) {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, TableFactor};
    if let TableFactor::Table {
        name,
        args: Some(args),
        alias,
        ..
    } = t
        && name.0.len() == 1
        && name.to_string().eq_ignore_ascii_case("unnest")
    {
        let exprs: Option<Vec<Expr>> = args
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                _ => None,
            })
            .collect();
        if let Some(array_exprs) = exprs {
            *t = TableFactor::UNNEST {
                alias: alias.take(),
                array_exprs,
                with_offset: false,
                with_offset_alias: None,
                with_ordinality: false,
            };
        }
    }
    if let TableFactor::UNNEST {
        alias: Some(alias),
        array_exprs,
        ..
    } = t
        && array_exprs.len() == 1
        && alias.columns.is_empty()
    {
        alias
            .columns
            .push(datafusion::sql::sqlparser::ast::TableAliasColumnDef {
                name: alias.name.clone(),
                data_type: None,
            });
    }
}

/// `WITH RECURSIVE t(a, b) AS (SELECT x, 0 UNION ALL SELECT …, t.b + 1
/// FROM t …)`: the names in `t(a, b)` also name the first SELECT's columns
/// (asyncpg's type introspection reads `tt.depth` in the recursive term,
/// and DataFusion names the work table's columns from the first SELECT).
fn name_cte_columns(q: &mut Query) {
    let Some(with) = q.with.as_mut() else {
        return;
    };
    for cte in &mut with.cte_tables {
        let names: Vec<_> = cte.alias.columns.iter().map(|c| c.name.clone()).collect();
        if names.is_empty() {
            continue;
        }
        let mut body = cte.query.body.as_mut();
        while let SetExpr::SetOperation { left, .. } = body {
            body = left.as_mut();
        }
        let SetExpr::Select(select) = body else {
            continue;
        };
        if select.projection.len() != names.len()
            || !select.projection.iter().all(|i| {
                matches!(
                    i,
                    SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }
                )
            })
        {
            continue;
        }
        for (item, name) in select.projection.iter_mut().zip(names) {
            if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
                let expr = std::mem::replace(e, Expr::value(Value::Null));
                *item = SelectItem::ExprWithAlias { expr, alias: name };
            }
        }
    }
}

/// Calls `f` on each SELECT of a query body (each branch of a set operation).
fn each_select(
    body: &mut SetExpr,
    f: &mut dyn FnMut(&mut datafusion::sql::sqlparser::ast::Select),
) {
    match body {
        SetExpr::Select(select) => f(select),
        SetExpr::SetOperation { left, right, .. } => {
            each_select(left, f);
            each_select(right, f);
        }
        _ => {}
    }
}

/// PostgreSQL lets a statement's select list repeat a column (`SELECT id,
/// id`; `SELECT n.oid, n.*`, as DBeaver sends); DataFusion wants unique
/// names: a repeated column, or any column beside a wildcard, gets an alias
/// that [`crate::names`] turns back into the column's name on the result.
fn unique_columns(select: &mut datafusion::sql::sqlparser::ast::Select) {
    let wildcard = select.projection.iter().any(|item| {
        matches!(
            item,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    let mut seen = std::collections::HashSet::new();
    for (i, item) in select.projection.iter_mut().enumerate() {
        let column = match item {
            SelectItem::UnnamedExpr(Expr::Identifier(c)) => Some(c.clone()),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last().cloned(),
            _ => None,
        };
        if let Some(column) = column
            && let SelectItem::UnnamedExpr(e) = item
        {
            let name = match column.quote_style {
                Some(_) => column.value.clone(),
                None => column.value.to_ascii_lowercase(),
            };
            if wildcard || !seen.insert(name.clone()) {
                let alias = crate::names::marked(&name, i);
                let expr = std::mem::replace(e, Expr::value(Value::Null));
                *item = SelectItem::ExprWithAlias {
                    expr,
                    alias: datafusion::sql::sqlparser::ast::Ident::with_quote('"', alias),
                };
            }
        }
    }
}

/// PostgreSQL lets a select list repeat a name (`SELECT NULL, NULL`, as
/// psql sends); DataFusion wants unique ones: a repeated unnamed expression
/// (not a column) is named `?column?` (PostgreSQL's name for it) with a
/// number. DataFusion names a cast by what it casts, so `1.5::numeric(10,2),
/// 1.5::numeric` repeat a name too: expressions are compared without casts.
fn unique_names(select: &mut datafusion::sql::sqlparser::ast::Select) {
    let mut seen = std::collections::HashSet::new();
    for (i, item) in select.projection.iter_mut().enumerate() {
        if let SelectItem::UnnamedExpr(e) = item
            && !matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
            && !seen.insert(without_casts(e))
        {
            let expr = std::mem::replace(e, Expr::value(Value::Null));
            *item = SelectItem::ExprWithAlias {
                expr,
                alias: datafusion::sql::sqlparser::ast::Ident::with_quote(
                    '"',
                    format!("?column?{i}"),
                ),
            };
        }
    }
}

/// An expression's text with its casts left out (the name DataFusion gives it).
fn without_casts(e: &Expr) -> String {
    let mut e = e.clone();
    let _ = visit_expressions_mut(&mut e, |x| {
        while let Expr::Cast { expr, .. } = x {
            *x = std::mem::replace(expr.as_mut(), Expr::value(Value::Null));
        }
        ControlFlow::<()>::Continue(())
    });
    e.to_string()
}

/// Aggregate functions a subquery's select list may already call (then it
/// returns one row by itself).
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "mean",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "median",
    "first_value",
    "last_value",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "bit_and",
    "bit_or",
    "bit_xor",
    "corr",
    "covar_pop",
    "covar_samp",
    "json_agg",
    "jsonb_agg",
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
    "grouping",
    "single_value",
];

/// Whether an expression calls an aggregate or window function, nested
/// subqueries included (then it is left as written: the wrapping is only
/// for plain values).
fn aggregates(e: &Expr) -> bool {
    visit_expressions(e, |x| match x {
        Expr::Function(f)
            if f.over.is_some()
                || AGGREGATES.contains(&f.name.to_string().to_ascii_lowercase().as_str()) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// Whether a SELECT has no GROUP BY, HAVING or DISTINCT, and (with
/// `need_from`) reads some relation.
fn ungrouped(select: &datafusion::sql::sqlparser::ast::Select, need_from: bool) -> bool {
    select.distinct.is_none()
        && select.having.is_none()
        && !(need_from && select.from.is_empty())
        && matches!(&select.group_by, GroupByExpr::Expressions(g, m) if g.is_empty() && m.is_empty())
}

/// The one plain SELECT of a subquery (no grouping, DISTINCT, HAVING,
/// LIMIT or set operation) and its one select-list expression.
fn plain_select(
    q: &Query,
    need_from: bool,
) -> Option<(&datafusion::sql::sqlparser::ast::Select, Expr)> {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    if q.limit_clause.is_some() || q.fetch.is_some() || !ungrouped(select, need_from) {
        return None;
    }
    match select.projection.as_slice() {
        [SelectItem::UnnamedExpr(e)] | [SelectItem::ExprWithAlias { expr: e, .. }] => {
            Some((select, e.clone()))
        }
        _ => None,
    }
}

/// `(SELECT e FROM …)` as `(SELECT single_value(e) FROM …)`, when it does not aggregate.
fn single_value_subquery(q: &Query) -> Option<Query> {
    let (select, value) = plain_select(q, true)?;
    if aggregates(&value) {
        return None;
    }
    let mut select = select.clone();
    select.projection = vec![SelectItem::UnnamedExpr(function_call(
        crate::single_value::NAME,
        vec![value],
    ))];
    let mut out = q.clone();
    out.body = Box::new(SetExpr::Select(Box::new(select)));
    // Without a LIMIT the order chooses nothing.
    out.order_by = None;
    Some(out)
}

/// `EXISTS (SELECT … FROM …)` as `(SELECT count(*) > 0 FROM …)`.
fn exists_as_count(q: &Query) -> Option<Query> {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    if !ungrouped(select, true) {
        return None;
    }
    let mut count = function_call("count", vec![]);
    if let Expr::Function(f) = &mut count
        && let FunctionArguments::List(list) = &mut f.args
    {
        list.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Wildcard)];
    }
    let mut select = select.as_ref().clone();
    select.projection = vec![SelectItem::UnnamedExpr(Expr::BinaryOp {
        left: Box::new(count),
        op: BinaryOperator::Gt,
        right: Box::new(Expr::value(Value::Number("0".into(), false))),
    })];
    let mut out = q.clone();
    out.body = Box::new(SetExpr::Select(Box::new(select)));
    out.order_by = None;
    out.limit_clause = None;
    out.fetch = None;
    Some(out)
}

fn rewrite_expr(e: &mut Expr) {
    match e {
        // SQL's `current_catalog` and `user` (no parentheses): the
        // database's and the user's names.
        Expr::Identifier(i) if i.quote_style.is_none() && is_sql_function_word(&i.value) => {
            let function = match i.value.to_ascii_lowercase().as_str() {
                "user" => "current_user",
                _ => "current_catalog",
            };
            *e = function_call(function, vec![]);
        }
        // (sqlparser reads `user` as a call without arguments.)
        Expr::Function(f)
            if matches!(f.args, FunctionArguments::None)
                && f.name.to_string().eq_ignore_ascii_case("user") =>
        {
            *e = function_call("current_user", vec![]);
        }
        // `pg_catalog.pg_attribute.attrelid` (SQLAlchemy's reflection) is
        // `pg_attribute.attrelid`, as the relation is read unqualified.
        Expr::CompoundIdentifier(parts)
            if parts.len() == 3 && parts[0].value.eq_ignore_ascii_case("pg_catalog") =>
        {
            parts.remove(0);
        }
        Expr::Function(f) => {
            if let Some(short) = without_pg_catalog(&f.name) {
                f.name = short;
            }
            if f.name
                .to_string()
                .eq_ignore_ascii_case("generate_subscripts")
                && let FunctionArguments::List(list) = &f.args
                && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(array))) = list.args.first()
            {
                // The subscripts of a one-dimensional array, 1 to its length
                // (SQLAlchemy reads index and key columns with it).
                let length = Expr::Cast {
                    kind: datafusion::sql::sqlparser::ast::CastKind::Cast,
                    expr: Box::new(function_call("cardinality", vec![array.clone()])),
                    data_type: DataType::BigInt(None),
                    array: false,
                    format: None,
                };
                *e = function_call(
                    "unnest",
                    vec![function_call(
                        "generate_series",
                        vec![Expr::value(Value::Number("1".into(), false)), length],
                    )],
                );
                return;
            }
            // `information_schema._pg_expandarray(a)`: the set of
            // (a[i], i) records, as pgJDBC's key and index metadata reads it.
            if let [schema, name] = f.name.0.as_slice()
                && schema
                    .as_ident()
                    .is_some_and(|s| s.value.eq_ignore_ascii_case("information_schema"))
                && name
                    .as_ident()
                    .is_some_and(|n| n.value.eq_ignore_ascii_case("_pg_expandarray"))
                && let FunctionArguments::List(list) = &f.args
                && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))] = list.args.as_slice()
            {
                *e = function_call(
                    "unnest",
                    vec![function_call("_pg_expandarray", vec![array.clone()])],
                );
                return;
            }
            if f.name.to_string().eq_ignore_ascii_case("array")
                && let FunctionArguments::Subquery(q) = &f.args
                && let Some(agg) = array_subquery(q)
            {
                *e = Expr::Subquery(Box::new(agg));
            }
        }
        // `(record).field`: the field of a struct.
        Expr::CompoundFieldAccess { root, access_chain }
            if access_chain.iter().all(|a| {
                matches!(
                    a,
                    datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(_))
                )
            }) =>
        {
            let mut out = root.as_ref().clone();
            for a in access_chain.iter() {
                if let datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(field)) = a
                {
                    out = function_call(
                        "get_field",
                        vec![
                            out,
                            Expr::value(Value::SingleQuotedString(crate::ddl::ident_name(field))),
                        ],
                    );
                }
            }
            *e = out;
        }
        // `tags && ARRAY['a', 'b']`: the arrays have an element in common.
        Expr::BinaryOp {
            left,
            op: BinaryOperator::PGOverlap,
            right,
        } => {
            let array = |x: &Expr| function_call("pg_array_in", vec![x.clone()]);
            *e = function_call("array_has_any", vec![array(left), array(right)]);
        }
        Expr::BinaryOp { op, .. } => {
            if let BinaryOperator::PGCustomBinaryOperator(parts) = op
                && let Some(builtin) = parts.last().and_then(|o| builtin_operator(o))
                && (parts.len() == 1 || parts[0].eq_ignore_ascii_case("pg_catalog"))
            {
                *op = builtin;
            }
        }
        Expr::AnyOp {
            left,
            compare_op: BinaryOperator::Eq,
            right,
            ..
        }
        | Expr::AllOp {
            left,
            compare_op: BinaryOperator::NotEq,
            right,
        } if matches!(right.as_ref(), Expr::Array(_)) => {
            let negated = matches!(e, Expr::AllOp { .. });
            let (Expr::AnyOp { left, right, .. } | Expr::AllOp { left, right, .. }) = e else {
                return;
            };
            let Expr::Array(array) = right.as_mut() else {
                return;
            };
            let list = std::mem::take(&mut array.elem)
                .into_iter()
                .map(without_text_cast)
                .collect();
            let left = std::mem::replace(left.as_mut(), Expr::value(Value::Null));
            *e = Expr::InList {
                expr: Box::new(left),
                list,
                negated,
            };
        }
        // `name = ANY($1)` with a list sent as its text form: read as a text array.
        Expr::AnyOp { right, .. }
            if matches!(right.as_ref(), Expr::Value(v)
                if matches!(v.value, Value::Placeholder(_) | Value::SingleQuotedString(_))) =>
        {
            let r = std::mem::replace(right.as_mut(), Expr::value(Value::Null));
            **right = function_call("pg_array_in", vec![r]);
        }
        Expr::Collate { expr, .. } => {
            let inner = std::mem::replace(expr.as_mut(), Expr::value(Value::Null));
            *e = inner;
        }
        Expr::Cast {
            expr, data_type, ..
        } => {
            if let Some(conversion) = reg_conversion(data_type, is_text_literal(expr))
                .or_else(|| text_type_input(data_type))
            {
                let inner = std::mem::replace(expr.as_mut(), Expr::value(Value::Null));
                *e = function_call(conversion, vec![inner]);
            } else if let Some(t) = arrow_friendly(data_type) {
                *data_type = t;
            }
        }
        _ => {}
    }
}

/// `ARRAY(SELECT e FROM … [ORDER BY o])` as `(SELECT array_agg(e ORDER BY o)
/// FROM …)`; `None` for a subquery that is not one plain SELECT of one
/// column (grouped, distinct, limited or a set operation).
fn array_subquery(q: &Query) -> Option<Query> {
    let (select, value) = plain_select(q, false)?;
    let mut order: Vec<OrderByExpr> = match &q.order_by {
        None => Vec::new(),
        Some(o) => match &o.kind {
            OrderByKind::Expressions(x) => x.clone(),
            OrderByKind::All(_) => return None,
        },
    };
    // `ORDER BY 1` names the one output column.
    for o in &mut order {
        if let Expr::Value(v) = &o.expr
            && matches!(&v.value, Value::Number(n, _) if n == "1")
        {
            o.expr = value.clone();
        }
    }
    let mut agg = function_call("array_agg", vec![value]);
    if let Expr::Function(f) = &mut agg
        && let FunctionArguments::List(list) = &mut f.args
        && !order.is_empty()
    {
        list.clauses.push(FunctionArgumentClause::OrderBy(order));
    }
    let mut select = select.clone();
    select.projection = vec![SelectItem::UnnamedExpr(agg)];
    let mut out = q.clone();
    out.body = Box::new(SetExpr::Select(Box::new(select)));
    out.order_by = None;
    Some(out)
}

/// `pg_catalog.name` as `name`.
fn without_pg_catalog(name: &ObjectName) -> Option<ObjectName> {
    match name.0.as_slice() {
        [schema, f]
            if schema
                .as_ident()
                .is_some_and(|s| s.value.eq_ignore_ascii_case("pg_catalog")) =>
        {
            Some(ObjectName(vec![f.clone()]))
        }
        _ => None,
    }
}

fn builtin_operator(op: &str) -> Option<BinaryOperator> {
    use BinaryOperator as B;
    Some(match op {
        "~" => B::PGRegexMatch,
        "~*" => B::PGRegexIMatch,
        "!~" => B::PGRegexNotMatch,
        "!~*" => B::PGRegexNotIMatch,
        "~~" => B::PGLikeMatch,
        "!~~" => B::PGNotLikeMatch,
        "~~*" => B::PGILikeMatch,
        "!~~*" => B::PGNotILikeMatch,
        "=" => B::Eq,
        "<>" | "!=" => B::NotEq,
        "<" => B::Lt,
        ">" => B::Gt,
        "<=" => B::LtEq,
        ">=" => B::GtEq,
        "+" => B::Plus,
        "-" => B::Minus,
        "*" => B::Multiply,
        "/" => B::Divide,
        "%" => B::Modulo,
        "||" => B::StringConcat,
        "<->" => B::LtDashGt,
        "<=>" => B::Spaceship,
        "<#>" | "<+>" => B::Custom(op.to_string()),
        _ => return None,
    })
}

/// A string literal, or a parameter (bound to text before planning).
/// A string literal (or parameter) cast to a text type, without the cast.
fn without_text_cast(e: Expr) -> Expr {
    match e {
        Expr::Cast {
            expr, data_type, ..
        } if is_text_literal(&expr)
            && matches!(
                data_type,
                DataType::Varchar(_)
                    | DataType::CharacterVarying(_)
                    | DataType::Text
                    | DataType::String(_)
            ) =>
        {
            *expr
        }
        other => other,
    }
}

fn is_text_literal(e: &Expr) -> bool {
    match e {
        Expr::Value(v) => matches!(
            v.value,
            Value::SingleQuotedString(_)
                | Value::EscapedStringLiteral(_)
                | Value::DollarQuotedString(_)
                | Value::Placeholder(_)
        ),
        Expr::Nested(inner) => is_text_literal(inner),
        _ => false,
    }
}

/// The name of a type written as a custom name, lower case, without a
/// `pg_catalog.` qualifier (`None` for other schemas).
fn custom_name(t: &DataType) -> Option<String> {
    match t {
        DataType::Regclass => Some("regclass".into()),
        DataType::Custom(name, modifiers) if modifiers.is_empty() => {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|p| p.as_ident())
                .map(|i| i.value.to_ascii_lowercase())
                .collect();
            match parts.as_slice() {
                [n] => Some(n.clone()),
                [s, n] if s == "pg_catalog" => Some(n.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The input function a cast to a type Quiver keeps as text is
/// ([`crate::json`]): it checks the value and brings it to normal form.
fn text_type_input(t: &DataType) -> Option<&'static str> {
    match t {
        DataType::JSON => Some("json_in"),
        DataType::JSONB => Some("jsonb_in"),
        DataType::Uuid => Some("uuid_in"),
        _ => match custom_name(t)?.as_str() {
            "jsonpath" => Some("jsonpath_in"),
            "json" => Some("json_in"),
            "jsonb" => Some("jsonb_in"),
            "uuid" => Some("uuid_in"),
            _ => None,
        },
    }
}

/// The conversion a cast to a `reg*` type is, by what is cast.
fn reg_conversion(t: &DataType, from_text: bool) -> Option<&'static str> {
    Some(match (custom_name(t)?.as_str(), from_text) {
        ("regclass", true) => "regclassin",
        ("regclass", false) => "regclassout",
        ("regtype", true) => "regtypein",
        ("regtype", false) => "regtypeout",
        ("regnamespace", true) => "regnamespacein",
        ("regnamespace", false) => "regnamespaceout",
        ("regproc" | "regprocedure", false) => "regprocout",
        ("regproc" | "regprocedure", true) => "regprocin",
        ("regrole", false) => "regroleout",
        _ => return None,
    })
}

/// The type DataFusion plans for a PostgreSQL type name it does not know.
fn arrow_friendly(t: &DataType) -> Option<DataType> {
    if let DataType::Array(ArrayElemTypeDef::SquareBracket(inner, size)) = t {
        let inner = arrow_friendly(inner)?;
        return Some(DataType::Array(ArrayElemTypeDef::SquareBracket(
            Box::new(inner),
            *size,
        )));
    }
    Some(match custom_name(t)?.as_str() {
        "oid" | "xid" | "cid" | "regproc" | "regclass" | "regtype" | "regnamespace" | "regrole" => {
            DataType::IntUnsigned(None)
        }
        "text" | "name" | "char" | "bpchar" | "varchar" | "int2vector" | "oidvector"
        | "pg_node_tree" | "cstring" => DataType::Text,
        "int2" | "smallint" => DataType::Int2(None),
        "int4" | "integer" | "int" => DataType::Int4(None),
        "int8" | "bigint" => DataType::Int8(None),
        "float4" | "real" => DataType::Float4,
        "float8" => DataType::Float8,
        "bool" | "boolean" => DataType::Bool,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .remove(0);
        super::rewrite(&mut s);
        s.to_string()
    }

    #[test]
    fn array_text_forms_parse_as_postgres_reads_them() {
        use super::parse_array_text as p;
        let s = |v: &str| Some(v.to_string());
        assert_eq!(p("{0}"), Some(vec![s("0")]));
        assert_eq!(p("{}"), Some(vec![]));
        assert_eq!(p("{a, \"b,c\",NULL}"), Some(vec![s("a"), s("b,c"), None]));
        assert_eq!(p("{\"x\\\"y\"}"), Some(vec![s("x\"y")]));
        assert_eq!(p("0"), None);
        assert_eq!(p("{{1},{2}}"), None);
    }

    #[test]
    fn postgres_syntax_becomes_what_datafusion_plans() {
        assert_eq!(
            rewritten(
                "SELECT c.oid FROM pg_catalog.pg_class c \
                 WHERE c.relname OPERATOR(pg_catalog.~) '^(docs)$' COLLATE pg_catalog.default \
                 AND pg_catalog.pg_table_is_visible(c.oid)"
            ),
            "SELECT c.oid FROM pg_class c \
             WHERE c.relname ~ '^(docs)$' AND pg_table_is_visible(c.oid)"
        );
        assert_eq!(
            rewritten(
                "SELECT pg_catalog.pg_attribute.attname FROM pg_catalog.pg_attribute \
                 WHERE pg_catalog.pg_attribute.attnum > 0"
            ),
            "SELECT pg_attribute.attname FROM pg_attribute WHERE pg_attribute.attnum > 0"
        );
        assert_eq!(
            rewritten("SELECT c.oid::pg_catalog.regclass::pg_catalog.text, 'docs'::regclass"),
            "SELECT regclassout(c.oid)::TEXT, regclassin('docs')"
        );
        assert_eq!(
            rewritten("SELECT x::pg_catalog.int2[], y::oid, z::\"char\", t::regtype"),
            "SELECT x::INT2[], y::INT UNSIGNED, z::TEXT, regtypeout(t)"
        );
        // Other schemas' functions and casts are left alone.
        assert_eq!(
            rewritten("SELECT other.f(1), x::myschema.t"),
            "SELECT other.f(1), x::myschema.t"
        );
    }
}

/// An analyzer rule run before type coercion: a string literal compared
/// with a value of another type is read as PostgreSQL reads an untyped
/// literal there, as a value of that type:
/// - with an array (`pol.polroles = '{0}'`): an array of the other side's
///   element type (`{a,b}`, `{}`; elements as their text forms; a literal
///   that does not parse is left for type coercion to report). Only where
///   DataFusion does not type the comparison while planning already (a CASE
///   condition, as psql sends it, is reached; a select-list or WHERE
///   comparison is refused before this rule runs);
/// - with a one-byte `"char"` (`c.relkind = 'r'`, `IN ('r','p')`,
///   `CASE c.relkind WHEN 'r' …`): its first byte.
#[derive(Debug, Default)]
pub struct PgLiterals;

impl datafusion::optimizer::AnalyzerRule for PgLiterals {
    fn analyze(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
        _config: &datafusion::config::ConfigOptions,
    ) -> datafusion::error::Result<datafusion::logical_expr::LogicalPlan> {
        use datafusion::common::DFSchema;
        use datafusion::common::tree_node::TreeNode;
        plan.transform_up_with_subqueries(|p| {
            let mut schema = DFSchema::empty();
            for input in p.inputs() {
                schema.merge(input.schema());
            }
            // Rewritten expressions keep their names: a parent refers to them by name.
            let names = datafusion::logical_expr::expr_rewriter::NamePreserver::new(&p);
            p.map_expressions(|e| {
                let name = names.save(&e);
                e.transform_up(|e| pg_literal(e, &schema))
                    .map(|t| t.update_data(|e| name.restore(e)))
            })?
            .map_data(|p| p.recompute_schema())
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "postgres_array_literals"
    }
}

/// An interval's or duration's length in microseconds, a month counted as
/// 30 days and a day as 24 hours: the value PostgreSQL orders intervals by.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IntervalLength {
    signature: datafusion::logical_expr::Signature,
}

impl Default for IntervalLength {
    fn default() -> Self {
        IntervalLength {
            signature: datafusion::logical_expr::Signature::any(
                1,
                datafusion::logical_expr::Volatility::Immutable,
            ),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for IntervalLength {
    fn name(&self) -> &str {
        "interval_length"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(
        &self,
        _: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::error::Result<datafusion::arrow::datatypes::DataType> {
        Ok(datafusion::arrow::datatypes::DataType::Int64)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, Int64Array};
        use datafusion::arrow::datatypes::{
            DataType as A, DurationMicrosecondType, IntervalMonthDayNanoType, IntervalUnit,
            TimeUnit,
        };
        const DAY: i64 = 86_400_000_000;
        let [arg] = args.args.as_slice() else {
            return datafusion::common::exec_err!("interval_length takes one argument");
        };
        let a = arg.to_array(args.number_rows)?;
        let lengths: Int64Array = if matches!(a.data_type(), A::Duration(_)) {
            let d = datafusion::arrow::compute::cast(&a, &A::Duration(TimeUnit::Microsecond))?;
            d.as_primitive::<DurationMicrosecondType>().iter().collect()
        } else {
            let i = datafusion::arrow::compute::cast(&a, &A::Interval(IntervalUnit::MonthDayNano))?;
            i.as_primitive::<IntervalMonthDayNanoType>()
                .iter()
                .map(|v| {
                    v.map(|v| {
                        (i64::from(v.months) * 30 * DAY)
                            .saturating_add(i64::from(v.days) * DAY)
                            .saturating_add(v.nanoseconds / 1_000)
                    })
                })
                .collect()
        };
        Ok(datafusion::logical_expr::ColumnarValue::Array(Arc::new(
            lengths,
        )))
    }
}

/// The text of an unconstrained numeric (`numeric(38,10)`) without the
/// trailing zeros of its scale: `1.5000000000` is `1.5`, `3.0000000000` `3`.
fn numeric_any_text(x: datafusion::logical_expr::Expr) -> datafusion::logical_expr::Expr {
    use datafusion::functions::string::expr_fn::rtrim;
    use datafusion::logical_expr::{cast, lit};
    let text = cast(x, datafusion::arrow::datatypes::DataType::Utf8);
    rtrim(vec![rtrim(vec![text, lit("0")]), lit(".")])
}

/// A string literal as a `"char"`: its first byte (0 for '').
fn char_literal(x: &datafusion::logical_expr::Expr) -> Option<datafusion::logical_expr::Expr> {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Expr as L;
    match x {
        L::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            meta,
        ) => Some(L::Literal(
            ScalarValue::Int8(Some(s.bytes().next().unwrap_or(0) as i8)),
            meta.clone(),
        )),
        // `'p'::VARCHAR`, as SQLAlchemy binds `contype = %(contype)s::VARCHAR`.
        L::Cast(datafusion::logical_expr::Cast { expr, field })
            if matches!(
                field.data_type(),
                datafusion::arrow::datatypes::DataType::Utf8
                    | datafusion::arrow::datatypes::DataType::Utf8View
            ) =>
        {
            char_literal(expr)
        }
        _ => None,
    }
}

fn pg_literal(
    e: datafusion::logical_expr::Expr,
    schema: &datafusion::common::DFSchema,
) -> datafusion::error::Result<
    datafusion::common::tree_node::Transformed<datafusion::logical_expr::Expr>,
> {
    use datafusion::arrow::datatypes::DataType as A;
    use datafusion::common::ScalarValue;
    use datafusion::common::tree_node::Transformed;
    use datafusion::logical_expr::expr::{Case, InList};
    use datafusion::logical_expr::{BinaryExpr, Expr as L, ExprSchemable, Operator};
    let is_char = |x: &L| matches!(x.get_type(schema), Ok(A::Int8));
    let is_numeric_any = |x: &L| matches!(x.get_type(schema), Ok(A::Decimal128(p, s)) if (p, s) == quiver_engine::schema::NUMERIC_ANY);
    let is_decimal = |x: &L| {
        matches!(
            x.get_type(schema),
            Ok(A::Decimal32(..) | A::Decimal64(..) | A::Decimal128(..) | A::Decimal256(..))
        )
    };
    // `1::int` (a select-list integer literal, `int4_literal`) folded here:
    // left to the optimizer, the fold costs it a whole second pass.
    if let L::Cast(datafusion::logical_expr::expr::Cast { expr, field }) = &e
        && field.data_type() == &A::Int32
        && let L::Literal(ScalarValue::Int64(Some(v)), meta) = expr.as_ref()
        && let Ok(v) = i32::try_from(*v)
    {
        return Ok(Transformed::yes(L::Literal(
            ScalarValue::Int32(Some(v)),
            meta.clone(),
        )));
    }
    // `v::text` of a vector: its pgvector text form (Arrow casts no list to text).
    if let L::Cast(datafusion::logical_expr::expr::Cast { expr, field }) = &e
        && matches!(field.data_type(), A::Utf8 | A::Utf8View | A::LargeUtf8)
        && matches!(expr.get_type(schema), Ok(A::FixedSizeList(item, _) | A::List(item))
            if item.data_type().is_floating())
    {
        let text = crate::vector::text_function().call(vec![expr.as_ref().clone()]);
        return Ok(Transformed::yes(match field.data_type() {
            A::Utf8 => text,
            other => L::Cast(datafusion::logical_expr::expr::Cast::new(
                Box::new(text),
                other.clone(),
            )),
        }));
    }
    let is_span = |x: &L| matches!(x.get_type(schema), Ok(A::Interval(_) | A::Duration(_)));
    match &e {
        // Comparisons. Intervals compare by their length, months as 30 days
        // and days as 24 hours (PostgreSQL's order); Arrow compares an
        // interval's months, days and nanoseconds one after another, so
        // `now() - at > interval '1 day'` was false for a year-old `at`.
        L::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(
                op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
            ) =>
        {
            if is_span(left) && is_span(right) {
                let length = Arc::new(datafusion::logical_expr::ScalarUDF::new_from_impl(
                    IntervalLength::default(),
                ));
                return Ok(Transformed::yes(L::BinaryExpr(BinaryExpr::new(
                    Box::new(length.call(vec![left.as_ref().clone()])),
                    *op,
                    Box::new(length.call(vec![right.as_ref().clone()])),
                ))));
            }
            if is_char(left)
                && let Some(r) = char_literal(right)
            {
                return Ok(Transformed::yes(L::BinaryExpr(BinaryExpr::new(
                    left.clone(),
                    *op,
                    Box::new(r),
                ))));
            }
            if is_char(right)
                && let Some(l) = char_literal(left)
            {
                return Ok(Transformed::yes(L::BinaryExpr(BinaryExpr::new(
                    Box::new(l),
                    *op,
                    right.clone(),
                ))));
            }
        }
        // `nullif(attidentity, '')` (pgJDBC's getColumns).
        L::ScalarFunction(f)
            if f.name() == "nullif"
                && f.args.len() == 2
                && is_char(&f.args[0])
                && char_literal(&f.args[1]).is_some() =>
        {
            let mut f = f.clone();
            if let Some(c) = char_literal(&f.args[1]) {
                f.args[1] = c;
            }
            return Ok(Transformed::yes(L::ScalarFunction(f)));
        }
        // An unconstrained numeric as text: without the trailing zeros of
        // its fixed scale (`1.5`, not `1.5000000000`), as the wire writes it.
        L::Cast(datafusion::logical_expr::expr::Cast { expr, field })
            if matches!(field.data_type(), A::Utf8 | A::Utf8View | A::LargeUtf8)
                && is_numeric_any(expr) =>
        {
            return Ok(Transformed::yes(numeric_any_text(expr.as_ref().clone())));
        }
        L::BinaryExpr(BinaryExpr {
            left,
            op: Operator::StringConcat,
            right,
        }) if is_numeric_any(left) || is_numeric_any(right) => {
            let side = |x: &L| match is_numeric_any(x) {
                true => Box::new(numeric_any_text(x.clone())),
                false => Box::new(x.clone()),
            };
            return Ok(Transformed::yes(L::BinaryExpr(BinaryExpr::new(
                side(left),
                Operator::StringConcat,
                side(right),
            ))));
        }
        // `::time` is DataFusion's Time64(ns); Quiver's time columns are
        // microseconds (PostgreSQL's precision), and DataFusion compares no
        // two time units: the cast is to microseconds.
        L::Cast(datafusion::logical_expr::expr::Cast { expr, field })
            if field.data_type()
                == &A::Time64(datafusion::arrow::datatypes::TimeUnit::Nanosecond) =>
        {
            return Ok(Transformed::yes(datafusion::logical_expr::cast(
                expr.as_ref().clone(),
                A::Time64(datafusion::arrow::datatypes::TimeUnit::Microsecond),
            )));
        }
        // numeric to integer rounds (half away from zero), as PostgreSQL's
        // does; Arrow's cast truncates.
        L::Cast(datafusion::logical_expr::expr::Cast { expr, field })
            if field.data_type().is_integer() && is_decimal(expr) =>
        {
            let rounded = datafusion::functions::math::expr_fn::round(vec![expr.as_ref().clone()]);
            return Ok(Transformed::yes(datafusion::logical_expr::cast(
                rounded,
                field.data_type().clone(),
            )));
        }
        // power() of numerics: DataFusion's keeps the base's scale
        // (`power(1.5, 2.0)` would be 2.2); computed in double precision.
        L::ScalarFunction(f)
            if matches!(f.name(), "power" | "pow") && f.args.iter().any(is_decimal) =>
        {
            let mut f = f.clone();
            for a in &mut f.args {
                *a = datafusion::logical_expr::cast(a.clone(), A::Float64);
            }
            return Ok(Transformed::yes(L::ScalarFunction(f)));
        }
        // `relkind::text`: the character, not its code.
        L::Cast(datafusion::logical_expr::expr::Cast { expr, field })
            if matches!(field.data_type(), A::Utf8 | A::Utf8View | A::LargeUtf8)
                && is_char(expr) =>
        {
            use datafusion::logical_expr::{cast, lit, when};
            let code = cast(expr.as_ref().clone(), A::Int64);
            let text = when(code.clone().eq(lit(0i64)), lit(""))
                .otherwise(datafusion::functions::string::expr_fn::chr(code))?;
            return Ok(Transformed::yes(text));
        }
        L::InList(InList {
            expr,
            list,
            negated,
        }) if is_char(expr) && list.iter().any(|x| char_literal(x).is_some()) => {
            let list = list
                .iter()
                .map(|x| char_literal(x).unwrap_or_else(|| x.clone()))
                .collect();
            return Ok(Transformed::yes(L::InList(InList::new(
                expr.clone(),
                list,
                *negated,
            ))));
        }
        L::Case(Case {
            expr: Some(base),
            when_then_expr,
            else_expr,
        }) if is_char(base) => {
            let whens: Vec<_> = when_then_expr
                .iter()
                .map(|(w, t)| {
                    (
                        Box::new(char_literal(w).unwrap_or_else(|| w.as_ref().clone())),
                        t.clone(),
                    )
                })
                .collect();
            return Ok(Transformed::yes(L::Case(Case::new(
                Some(base.clone()),
                whens,
                else_expr.clone(),
            ))));
        }
        _ => {}
    }
    let L::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
        return Ok(Transformed::no(e));
    };
    if !matches!(op, Operator::Eq | Operator::NotEq) {
        return Ok(Transformed::no(e));
    }
    let text = |x: &L| match x {
        L::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    };
    let item = |x: &L| match x.get_type(schema) {
        Ok(A::List(f)) => Some(f.data_type().clone()),
        _ => None,
    };
    let (literal_left, s, item_type) = match (text(left), text(right)) {
        (Some(s), None) => match item(right) {
            Some(t) => (true, s, t),
            None => return Ok(Transformed::no(e)),
        },
        (None, Some(s)) => match item(left) {
            Some(t) => (false, s, t),
            None => return Ok(Transformed::no(e)),
        },
        _ => return Ok(Transformed::no(e)),
    };
    let Some(elements) = parse_array_text(&s) else {
        return Ok(Transformed::no(e));
    };
    let mut values = Vec::with_capacity(elements.len());
    for el in elements {
        match el {
            None => values.push(ScalarValue::try_from(&item_type)?),
            Some(v) => match ScalarValue::try_from_string(v, &item_type) {
                Ok(v) => values.push(v),
                Err(_) => return Ok(Transformed::no(e)),
            },
        }
    }
    let list = L::Literal(
        ScalarValue::List(ScalarValue::new_list_nullable(&values, &item_type)),
        None,
    );
    let (l, r) = if literal_left {
        (list, right.as_ref().clone())
    } else {
        (left.as_ref().clone(), list)
    };
    Ok(Transformed::yes(L::BinaryExpr(BinaryExpr::new(
        Box::new(l),
        *op,
        Box::new(r),
    ))))
}

/// The elements of a one-dimensional array's text form `{a,"b c",NULL}`
/// (`None` for NULL); `None` when it is not one.
fn parse_array_text(s: &str) -> Option<Vec<Option<String>>> {
    let inner = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Some(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => item.push(chars.next()?),
                    '"' => break,
                    c => item.push(c),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' || c == '}' || c == '"' {
                    return None;
                }
                item.push(c);
                chars.next();
            }
            item = item.trim().to_string();
        }
        out.push(if !quoted && item.eq_ignore_ascii_case("null") {
            None
        } else {
            Some(item)
        });
        match chars.next() {
            None => return Some(out),
            Some(',') => continue,
            Some(_) => return None,
        }
    }
}
