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
        Expr::Identifier(i)
            if i.quote_style.is_none() && crate::compat::is_sql_function_word(&i.value) =>
        {
            i.value.to_ascii_lowercase()
        }
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
                // Named by the type without its modifier (`numeric`, not
                // `numeric(10,2)`).
                let mut written = data_type.to_string().to_ascii_lowercase();
                if let (Some(open), Some(close)) = (written.find('('), written.find(')'))
                    && open < close
                {
                    written.replace_range(open..=close, "");
                    written = written.split_whitespace().collect::<Vec<_>>().join(" ");
                }
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
    let same = |(f, n): (&Arc<Field>, &Option<String>)| match n {
        Some(n) => n == f.name(),
        None => !f.name().contains(MARK),
    };
    if names.len() != schema.fields().len() || schema.fields().iter().zip(names).all(same) {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(names)
        .map(|(f, n)| match n {
            Some(n) => f.as_ref().clone().with_name(n.clone()),
            None => match f.name().split_once(MARK) {
                Some((name, _)) => f.as_ref().clone().with_name(name),
                None => f.as_ref().clone(),
            },
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Separates a column's name from the number that made it unique
/// ([`marked`]).
const MARK: char = '\u{1f}';

/// A unique alias for select-list item `i`, a column named `name` that
/// DataFusion would see twice (`SELECT n.oid, n.*`); the result shows
/// `name` ([`unmarked`]).
pub fn marked(name: &str, i: usize) -> String {
    format!("{name}{MARK}{i}")
}

/// The names of a result with marked columns ([`marked`]): all left to
/// [`rename_schema`], which unmarks them.
pub fn unmarked(schema: &SchemaRef) -> Option<Vec<Option<String>>> {
    let any = schema.fields().iter().any(|f| f.name().contains(MARK));
    any.then(|| vec![None; schema.fields().len()])
}

/// Starts the name of a select-list column the rewrite added for ORDER BY
/// ([`hidden`]).
const HIDDEN: char = '\u{1e}';

/// The name of hidden column `k`: computed for ordering, not returned.
pub fn hidden(k: usize) -> String {
    format!("{HIDDEN}order{k}")
}

/// The positions of a result's columns that are not hidden, when some are.
fn shown(schema: &SchemaRef) -> Option<Vec<usize>> {
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !schema.field(*i).name().starts_with(HIDDEN))
        .collect();
    (keep.len() != schema.fields().len()).then_some(keep)
}

/// A result schema without its hidden columns.
pub fn visible(schema: SchemaRef) -> SchemaRef {
    match shown(&schema) {
        Some(keep) => schema.project(&keep).map(Arc::new).unwrap_or(schema),
        None => schema,
    }
}

/// Rows without the hidden columns.
fn without_hidden(out: Output) -> Output {
    let Output::Rows { schema, stream } = out else {
        return out;
    };
    let Some(keep) = shown(&schema) else {
        return Output::Rows { schema, stream };
    };
    let projected = visible(schema);
    let batches = stream.map(move |b| b.and_then(|b| b.project(&keep).map_err(Into::into)));
    Output::Rows {
        schema: projected.clone(),
        stream: Box::pin(RecordBatchStreamAdapter::new(projected, batches)),
    }
}

/// Rows of a query under PostgreSQL's column names.
pub fn rename(out: Output, names: Option<&[Option<String>]>) -> Output {
    let out = without_hidden(out);
    let names = match (names, &out) {
        (Some(n), _) => Some(n.to_vec()),
        (None, Output::Rows { schema, .. }) => unmarked(schema),
        (None, _) => None,
    };
    match (names.as_deref(), out) {
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
        assert_eq!(
            names("SELECT 1.5::numeric(10,2), 'a'::character varying(3), '[1]'::vector(1)"),
            vec![n("numeric"), n("varchar"), n("vector")]
        );
    }
}
