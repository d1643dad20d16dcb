//! Result column names as PostgreSQL gives them, which ORMs and BI tools
//! read rows by: `SELECT count(*)` has a column `count`, `SELECT 1`
//! `?column?`, `SELECT x::text` `x`, `SELECT 'a'::text` `text`, a CASE
//! `case`, `EXISTS (…)` `exists`. DataFusion names a column by its
//! expression's text (`count(*)`); the names are computed from the statement
//! as written and put on the result's schema (planning is unaffected).

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{Expr, Query, SelectItem, SetExpr, Statement};
use futures::StreamExt;

use crate::session::Output;

/// The name of each select-list item: `Some` where PostgreSQL's differs
/// from DataFusion's (`None`: a plain column, named alike). `None` overall
/// for a statement that is no query, or has a wildcard.
pub fn output_names(s: &Statement) -> Option<Vec<Option<String>>> {
    match s {
        Statement::Query(q) => query_names(q),
        _ => None,
    }
}

fn query_names(q: &Query) -> Option<Vec<Option<String>>> {
    let mut body = q.body.as_ref();
    // A set operation's columns are named by its first SELECT.
    while let SetExpr::SetOperation { left, .. } = body {
        body = left.as_ref();
    }
    let SetExpr::Select(select) = body else {
        return None;
    };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => Some(figure(e)),
            SelectItem::ExprWithAlias { alias, .. } => Some(Some(alias.value.clone())),
            _ => None,
        })
        .collect()
}

/// PostgreSQL's name for an unnamed expression (`None` for a column reference).
fn figure(e: &Expr) -> Option<String> {
    let name = match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => return None,
        Expr::Nested(inner) => return figure(inner),
        Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| match i.quote_style {
                Some(_) => i.value.clone(),
                None => i.value.to_ascii_lowercase(),
            })
            .unwrap_or_else(|| "?column?".into()),
        Expr::Cast {
            expr, data_type, ..
        } => match figure(expr) {
            // The column's name (DataFusion's may be that of the function a
            // cast becomes, `to_vector(x)`, `regclassout(c.oid)`).
            None => match expr.as_ref() {
                Expr::Identifier(i) => i.value.clone(),
                Expr::CompoundIdentifier(parts) => parts.last()?.value.clone(),
                _ => return None,
            },
            Some(n) if n != "?column?" => n,
            Some(_) => {
                let written = data_type.to_string().to_ascii_lowercase();
                crate::pg_catalog::types::by_name(&written)
                    .map(|t| t.name.to_string())
                    .unwrap_or(written)
            }
        },
        Expr::Case { .. } => "case".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Array(_) => "array".into(),
        Expr::Subquery(q) => match query_names(q).and_then(|n| n.into_iter().next()) {
            Some(Some(n)) => n,
            Some(None) => return subquery_column(q),
            None => "?column?".into(),
        },
        Expr::Substring { .. } => "substring".into(),
        Expr::Position { .. } => "position".into(),
        Expr::Extract { .. } => "extract".into(),
        Expr::Ceil { .. } => "ceil".into(),
        Expr::Floor { .. } => "floor".into(),
        Expr::Overlay { .. } => "overlay".into(),
        Expr::Trim { .. } => "btrim".into(),
        _ => "?column?".into(),
    };
    Some(name)
}

/// The column a scalar subquery's one plain column reference names.
fn subquery_column(q: &Query) -> Option<String> {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return Some("?column?".into());
    };
    match select.projection.first() {
        Some(SelectItem::UnnamedExpr(Expr::Identifier(i))) => Some(i.value.clone()),
        Some(SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p))) => {
            p.last().map(|i| i.value.clone())
        }
        _ => Some("?column?".into()),
    }
}

/// A schema with the given names put on its fields (when the counts agree).
pub fn rename_schema(schema: &SchemaRef, names: &[Option<String>]) -> SchemaRef {
    let same = |(f, n): (&Arc<Field>, &Option<String>)| n.as_ref().is_none_or(|n| n == f.name());
    if names.len() != schema.fields().len() || schema.fields().iter().zip(names).all(same) {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(names)
        .map(|(f, n)| match n {
            Some(n) => f.as_ref().clone().with_name(n.clone()),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Rows of a query under PostgreSQL's column names.
pub fn rename(out: Output, names: Option<&[Option<String>]>) -> Output {
    match (names, out) {
        (Some(names), Output::Rows { schema, stream }) => {
            let renamed = rename_schema(&schema, names);
            if Arc::ptr_eq(&renamed, &schema) {
                return Output::Rows { schema, stream };
            }
            // Each batch keeps its own column types (a batch may carry a
            // string view where the plan's schema says a string).
            let names = names.to_vec();
            let batches = stream.map(move |b| {
                b.and_then(|b| {
                    let schema = rename_schema(&b.schema(), &names);
                    RecordBatch::try_new(schema, b.columns().to_vec()).map_err(Into::into)
                })
            });
            Output::Rows {
                schema: renamed.clone(),
                stream: Box::pin(RecordBatchStreamAdapter::new(renamed, batches)),
            }
        }
        (_, out) => out,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn names(sql: &str) -> Vec<Option<String>> {
        let s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .remove(0);
        super::output_names(&s).expect("a query")
    }

    #[test]
    fn columns_are_named_as_postgres_names_them() {
        let n = |s: &str| Some(s.to_string());
        assert_eq!(
            names(
                "SELECT count(*), 1, id, t.x, x::text, 'a'::text, 1::integer, c.oid::regclass, \
                 CASE WHEN true THEN 1 END, EXISTS (SELECT 1), pg_catalog.version(), \
                 (SELECT name FROM t), count(*) AS n, COUNT(id) FROM t"
            ),
            vec![
                n("count"),
                n("?column?"),
                None,
                None,
                n("x"),
                n("text"),
                n("int4"),
                n("oid"),
                n("case"),
                n("exists"),
                n("version"),
                n("name"),
                n("n"),
                n("count"),
            ]
        );
        assert_eq!(names("SELECT 1 UNION SELECT 2"), vec![n("?column?")]);
    }
}
