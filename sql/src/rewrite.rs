//! Rewrites of the parsed SQL before DataFusion plans it:
//! - pgvector operators `<->`, `<=>`, `<#>`, `<+>` become distance functions;
//! - `x::vector` / `CAST(x AS vector(n))` become `to_vector(x)`;
//! - bound `$n` parameters become literals (a statement is planned per Execute);
//! - `SELECT … FROM t [WHERE …] ORDER BY col <op> q LIMIT k` reads from
//!   `vector_search('t', 'col', q, k, metric)` instead of sorting the table, so
//!   the pgvector dialect runs the same filter-first vector search.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, GroupByExpr, Ident, LimitClause, ObjectName, OrderByKind, Query, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, TableAlias, TableFactor,
    TableFunctionArgs, Value, Visit, Visitor, WildcardAdditionalOptions, visit_expressions,
    visit_expressions_mut,
};
use quiver_engine::Engine;
use quiver_engine::distance::Metric;

use crate::ddl::{ident_name, object_name};
use crate::error::{Result, SqlError, StatusCode};
use crate::session::ParamValue;
use crate::vector::{distance_function, function_metric};

pub fn function_call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn operator_metric(op: &BinaryOperator) -> Option<Metric> {
    match op {
        BinaryOperator::LtDashGt => Some(Metric::L2),
        BinaryOperator::Spaceship => Some(Metric::Cosine),
        BinaryOperator::Custom(s) if s == "<#>" => Some(Metric::Dot),
        BinaryOperator::Custom(s) if s == "<+>" => Some(Metric::L1),
        _ => None,
    }
}

/// The `$n` parameters (0-based) that a statement, after
/// [`rewrite_expressions`] and the kNN rewrite, uses as vectors: cast to
/// `vector` (now `to_vector($n)`), an operand of a distance operator (now a
/// distance function), or `vector_search`'s query vector. PostgreSQL +
/// pgvector types such a parameter `vector`, and drivers pick its encoding
/// by that type (asyncpg encodes a numpy array only for a `vector` parameter).
pub fn vector_parameters(stmt: &Statement) -> Vec<usize> {
    struct Find(Vec<usize>);
    impl Find {
        fn args(&mut self, name: &ObjectName, args: &[FunctionArg]) {
            let [part] = name.0.as_slice() else {
                return;
            };
            let Some(id) = part.as_ident() else {
                return;
            };
            let name = id.value.to_ascii_lowercase();
            let vector_args: &[usize] = if name == "to_vector" {
                &[0]
            } else if name == "vector_search" {
                &[2]
            } else if function_metric(&name).is_some() {
                &[0, 1]
            } else {
                &[]
            };
            for &i in vector_args {
                if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) =
                    args.get(i)
                    && let Value::Placeholder(p) = &v.value
                    && let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
                    && n >= 1
                {
                    self.0.push(n - 1);
                }
            }
        }
    }
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = e
                && let FunctionArguments::List(list) = &f.args
            {
                self.args(&f.name, &list.args);
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name,
                args: Some(args),
                ..
            } = t
            {
                self.args(name, &args.args);
            }
            ControlFlow::Continue(())
        }
    }
    let mut find = Find(Vec::new());
    let _ = stmt.visit(&mut find);
    find.0
}

fn is_vector_type(t: &DataType) -> bool {
    match t {
        DataType::Custom(name, _) => name.to_string().eq_ignore_ascii_case("vector"),
        _ => false,
    }
}

fn param_literal(p: &ParamValue) -> Expr {
    let v = match p {
        ParamValue::Null => Value::Null,
        ParamValue::Text(s) => Value::SingleQuotedString(s.clone()),
        ParamValue::Int(i) => Value::Number(i.to_string(), false),
        ParamValue::Float(f) if f.is_finite() => Value::Number(format!("{f:?}"), false),
        ParamValue::Float(f) => {
            return function_call(
                "to_double",
                vec![Expr::value(Value::SingleQuotedString(f.to_string()))],
            );
        }
        ParamValue::Bool(b) => Value::Boolean(*b),
        ParamValue::Array(items) => {
            return Expr::Array(datafusion::sql::sqlparser::ast::Array {
                elem: items.iter().map(param_literal).collect(),
                named: true,
            });
        }
    };
    Expr::value(v)
}

/// Rewrites operators and vector casts everywhere, and binds `$n` when `params` is given.
pub fn rewrite_expressions(stmt: &mut Statement, params: Option<&[ParamValue]>) -> Result<()> {
    crate::compat::rewrite(stmt);
    let flow = visit_expressions_mut(stmt, |e| {
        match e {
            Expr::BinaryOp { left, op, right } => {
                if let Some(m) = operator_metric(op) {
                    let l = std::mem::replace(left.as_mut(), Expr::value(Value::Null));
                    let r = std::mem::replace(right.as_mut(), Expr::value(Value::Null));
                    *e = function_call(distance_function(m), vec![l, r]);
                }
            }
            Expr::Cast {
                expr, data_type, ..
            } if is_vector_type(data_type) => {
                let inner = std::mem::replace(expr.as_mut(), Expr::value(Value::Null));
                *e = function_call("to_vector", vec![inner]);
            }
            Expr::Value(v) => {
                if let (Value::Placeholder(name), Some(params)) = (&v.value, params) {
                    let n: usize = match name.strip_prefix('$').and_then(|n| n.parse().ok()) {
                        Some(n) if n >= 1 => n,
                        _ => {
                            return ControlFlow::Break(SqlError::new(
                                StatusCode::SyntaxError,
                                format!("unsupported parameter {name}; use $1, $2, …"),
                            ));
                        }
                    };
                    match params.get(n - 1) {
                        Some(p) => *e = param_literal(p),
                        None => {
                            return ControlFlow::Break(SqlError::new(
                                StatusCode::UndefinedParameterRef,
                                format!("there is no parameter ${n}"),
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(err) => Err(err),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// True when the expression reads no column (so it is a constant once parameters are bound).
fn is_constant(e: &Expr) -> bool {
    let flow = visit_expressions(e, |x| match x {
        Expr::Identifier(_)
        | Expr::CompoundIdentifier(_)
        | Expr::Subquery(_)
        | Expr::Exists { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    flow.is_continue()
}

fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(ident_name(i)),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident_name),
        _ => None,
    }
}

fn literal_u64(e: &Expr) -> Option<u64> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// The (metric, column, query) of `distance_fn(col, q)` or `distance_fn(q, col)`.
fn knn_order(e: &Expr) -> Option<(Metric, String, Expr)> {
    let Expr::Function(f) = e else { return None };
    let metric = function_metric(&f.name.to_string())?;
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect();
    if args.len() != 2 || list.args.len() != 2 {
        return None;
    }
    match (column_name(args[0]), column_name(args[1])) {
        (Some(c), None) if is_constant(args[1]) => Some((metric, c, args[1].clone())),
        (None, Some(c)) if is_constant(args[0]) => Some((metric, c, args[0].clone())),
        _ => None,
    }
}

/// Turns a pgvector k-NN query over one table into a read of `vector_search`.
/// Leaves any other query untouched.
pub fn rewrite_knn(q: &mut Query, engine: &Engine) -> Result<()> {
    let Some(order_by) = &q.order_by else {
        return Ok(());
    };
    let OrderByKind::Expressions(exprs) = &order_by.kind else {
        return Ok(());
    };
    if exprs.len() != 1 || exprs[0].options.asc == Some(false) {
        return Ok(());
    }
    let Some(LimitClause::LimitOffset {
        limit: Some(limit),
        offset,
        ..
    }) = &q.limit_clause
    else {
        return Ok(());
    };
    let Some(limit) = literal_u64(limit) else {
        return Ok(());
    };
    let offset = match offset {
        None => 0,
        Some(o) => match literal_u64(&o.value) {
            Some(o) => o,
            None => return Ok(()),
        },
    };
    let SetExpr::Select(select) = q.body.as_mut() else {
        return Ok(());
    };
    // ORDER BY may name a select-list alias of the distance expression.
    let mut order_expr = &exprs[0].expr;
    if let Expr::Identifier(id) = order_expr {
        for item in &select.projection {
            if let SelectItem::ExprWithAlias { expr, alias } = item
                && alias.value == id.value
            {
                order_expr = expr;
            }
        }
    }
    let Some((metric, column, query)) = knn_order(order_expr) else {
        return Ok(());
    };
    if !over_one_relation(select) {
        return Ok(());
    }
    if matches!(select.from[0].relation, TableFactor::Derived { .. }) {
        let order_expr = order_expr.clone();
        return knn_into_derived(
            q,
            &order_expr,
            &column,
            limit.saturating_add(offset),
            engine,
        );
    }
    let TableFactor::Table {
        name,
        alias,
        args: None,
        ..
    } = &select.from[0].relation
    else {
        return Ok(());
    };
    let Ok(table) = object_name(name) else {
        return Ok(());
    };
    if engine.plan_search(&table, &column, Some(metric)).is_err() {
        return Ok(());
    }
    let alias = alias.clone().unwrap_or_else(|| TableAlias {
        explicit: true,
        name: Ident::with_quote('"', &table),
        columns: vec![],
        at: None,
    });
    let text = |s: &str| Expr::value(Value::SingleQuotedString(s.to_string()));
    let k = Expr::value(Value::Number(
        limit.saturating_add(offset).to_string(),
        false,
    ));
    let args = [text(&table), text(&column), query, k, text(metric.name())];
    let mut relation = select.from[0].relation.clone();
    if let TableFactor::Table {
        name,
        alias: a,
        args: fn_args,
        ..
    } = &mut relation
    {
        *name = ObjectName::from(vec![Ident::new("vector_search")]);
        *a = Some(alias.clone());
        *fn_args = Some(TableFunctionArgs {
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            settings: None,
        });
    }
    select.from[0].relation = relation;
    // `SELECT *` keeps meaning the table's columns, as in PostgreSQL: the search
    // adds `_distance`, which only an explicit reference should bring in.
    if let Ok(t) = engine.table(&table) {
        let qualifier = alias.name.value.clone();
        let columns = |out: &mut Vec<SelectItem>| {
            out.extend(t.def.columns.iter().map(|c| {
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(vec![
                    alias.name.clone(),
                    Ident::with_quote('"', &c.name),
                ]))
            }))
        };
        let mut projection = Vec::with_capacity(select.projection.len());
        for item in std::mem::take(&mut select.projection) {
            match item {
                SelectItem::Wildcard(o) if plain_wildcard(&o) => columns(&mut projection),
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    o,
                ) if plain_wildcard(&o)
                    && n.0.len() == 1
                    && n.0[0].as_ident().is_some_and(|i| i.value == qualifier) =>
                {
                    columns(&mut projection)
                }
                other => projection.push(other),
            }
        }
        select.projection = projection;
    }
    // The search returns its rows nearest first by this very distance: order by
    // `_distance` instead of computing it again (an ORDER BY alias stays as it is).
    if let Some(OrderByKind::Expressions(exprs)) = q.order_by.as_mut().map(|o| &mut o.kind)
        && matches!(exprs[0].expr, Expr::Function(_))
    {
        exprs[0].expr = Expr::CompoundIdentifier(vec![alias.name.clone(), Ident::new("_distance")]);
    }
    Ok(())
}

/// `SELECT … FROM (SELECT cols FROM t WHERE …) AS v ORDER BY v.e <-> q
/// LIMIT k` (a view, or a subquery, in FROM): the nearest-neighbour order
/// and limit are copied into the subquery, whose rows are then the k
/// nearest passing its filter, found by a filter-first vector search; the
/// outer query orders those k again. Only when that is the same answer: the
/// subquery a plain filter and projection of one table (no grouping,
/// DISTINCT, window, order or limit of its own), the outer query with no
/// filter, grouping or join, and `e` one of the table's columns as the
/// subquery's output.
fn knn_into_derived(
    q: &mut Query,
    order_expr: &Expr,
    column: &str,
    k: u64,
    engine: &Engine,
) -> Result<()> {
    let SetExpr::Select(outer) = q.body.as_mut() else {
        return Ok(());
    };
    if outer.selection.is_some() {
        return Ok(());
    }
    let TableFactor::Derived {
        subquery,
        alias,
        lateral: false,
        ..
    } = &mut outer.from[0].relation
    else {
        return Ok(());
    };
    if subquery.order_by.is_some()
        || subquery.limit_clause.is_some()
        || subquery.fetch.is_some()
        || subquery.with.is_some()
    {
        return Ok(());
    }
    let SetExpr::Select(inner) = subquery.body.as_ref() else {
        return Ok(());
    };
    if !over_one_relation(inner) || !inner.named_window.is_empty() {
        return Ok(());
    }
    let TableFactor::Table {
        name, args: None, ..
    } = &inner.from[0].relation
    else {
        return Ok(());
    };
    let Ok(table) = object_name(name) else {
        return Ok(());
    };
    let Ok(t) = engine.table(&table) else {
        return Ok(());
    };
    // The subquery's output columns, as (output name, table column or None).
    let mut outputs: Vec<(String, Option<String>)> = Vec::new();
    for item in &inner.projection {
        match item {
            SelectItem::Wildcard(o) if plain_wildcard(o) => outputs.extend(
                t.def
                    .columns
                    .iter()
                    .map(|c| (c.name.clone(), Some(c.name.clone()))),
            ),
            SelectItem::UnnamedExpr(e) => {
                let c = column_name(e);
                outputs.push((c.clone().unwrap_or_default(), c));
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                outputs.push((ident_name(alias), column_name(expr)));
            }
            _ => return Ok(()),
        }
    }
    if let Some(a) = alias
        && !a.columns.is_empty()
    {
        if a.columns.len() != outputs.len() {
            return Ok(());
        }
        for (o, c) in outputs.iter_mut().zip(&a.columns) {
            o.0 = ident_name(&c.name);
        }
    }
    let Some(source) = outputs
        .iter()
        .find(|(out, _)| out == column)
        .and_then(|(_, src)| src.clone())
        .filter(|src| t.def.column(src).is_some())
    else {
        return Ok(());
    };
    // Any window function in the subquery's select list sees all its rows.
    let mut windowed = false;
    let _ = visit_expressions(&inner.projection, |e| {
        if let Expr::Function(f) = e
            && f.over.is_some()
        {
            windowed = true;
        }
        ControlFlow::<()>::Continue(())
    });
    if windowed {
        return Ok(());
    }
    let mut inner_order = order_expr.clone();
    let _ = visit_expressions_mut(&mut inner_order, |e| {
        if column_name(e).is_some_and(|c| c == column)
            && matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
        {
            *e = Expr::Identifier(Ident::with_quote('"', &source));
        }
        ControlFlow::<()>::Continue(())
    });
    subquery.order_by = q.order_by.clone();
    if let Some(OrderByKind::Expressions(exprs)) = subquery.order_by.as_mut().map(|o| &mut o.kind) {
        exprs[0].expr = inner_order;
    }
    subquery.limit_clause = Some(LimitClause::LimitOffset {
        limit: Some(Expr::value(Value::Number(k.to_string(), false))),
        offset: None,
        limit_by: Vec::new(),
    });
    rewrite_knn(subquery, engine)
}

/// A SELECT of rows of one relation, without joins, grouping or DISTINCT.
fn over_one_relation(select: &datafusion::sql::sqlparser::ast::Select) -> bool {
    let plain_group = matches!(&select.group_by, GroupByExpr::Expressions(g, _) if g.is_empty());
    select.from.len() == 1
        && select.from[0].joins.is_empty()
        && plain_group
        && select.having.is_none()
        && select.distinct.is_none()
}

/// A `*` without EXCLUDE / EXCEPT / REPLACE / RENAME / ILIKE.
fn plain_wildcard(o: &WildcardAdditionalOptions) -> bool {
    o.opt_ilike.is_none()
        && o.opt_exclude.is_none()
        && o.opt_except.is_none()
        && o.opt_replace.is_none()
        && o.opt_rename.is_none()
}
