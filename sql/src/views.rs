//! Views: `CREATE [OR REPLACE] VIEW`, `DROP VIEW`, and their expansion.
//!
//! A view is kept as its query's SQL text in the catalog. Where a query
//! names a view, [`expand`] puts the view's query in its place, as a derived
//! table under the view's name (before the other rewrites, so a vector
//! search inside a view is planned as any other); views inside views expand
//! in turn.

use std::ops::ControlFlow;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::sql::sqlparser::ast::{
    self, Ident, Query, TableAlias, TableAliasColumnDef, TableFactor, VisitMut, VisitorMut,
};
use quiver_engine::Engine;
use quiver_engine::catalog::{Catalog, ViewColumn, ViewDef};

use crate::ddl::{ident_name, object_name};
use crate::error::Result;
use crate::pg_catalog::types;
use crate::session::{Output, Session};
use crate::sql_err;

/// How deep views may nest (a deeper nesting is taken for a cycle).
const MAX_DEPTH: usize = 32;

struct Expander<'a> {
    catalog: &'a Catalog,
    /// The names of the CTEs in scope, per enclosing query: they shadow views.
    ctes: Vec<Vec<String>>,
    expanded: usize,
    error: Option<crate::SqlError>,
}

impl VisitorMut for Expander<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        let names = q
            .with
            .as_ref()
            .map(|w| {
                w.cte_tables
                    .iter()
                    .map(|c| ident_name(&c.alias.name))
                    .collect()
            })
            .unwrap_or_default();
        self.ctes.push(names);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.ctes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = t
        else {
            return ControlFlow::Continue(());
        };
        let Ok(view) = object_name(name) else {
            return ControlFlow::Continue(());
        };
        let Some(def) = self.catalog.views.get(&view) else {
            return ControlFlow::Continue(());
        };
        if name.0.len() == 1 && self.ctes.iter().flatten().any(|c| *c == view) {
            return ControlFlow::Continue(());
        }
        self.expanded += 1;
        if self.expanded > MAX_DEPTH * 8 {
            self.error = Some(crate::SqlError::new(
                crate::StatusCode::InvalidTableDefinition,
                format!("infinite recursion detected in rules for relation \"{view}\""),
            ));
            return ControlFlow::Break(());
        }
        let subquery = match parse_query(&def.query) {
            Ok(q) => q,
            Err(e) => {
                self.error = Some(e);
                return ControlFlow::Break(());
            }
        };
        let mut alias = alias.clone().unwrap_or_else(|| TableAlias {
            explicit: true,
            name: Ident::with_quote('"', view.clone()),
            columns: Vec::new(),
            at: None,
        });
        if alias.columns.is_empty() {
            alias.columns = def
                .columns
                .iter()
                .map(|c| TableAliasColumnDef {
                    name: Ident::with_quote('"', c.name.clone()),
                    data_type: None,
                })
                .collect();
        }
        *t = TableFactor::Derived {
            lateral: false,
            subquery: Box::new(subquery),
            alias: Some(alias),
            sample: None,
        };
        ControlFlow::Continue(())
    }
}

fn parse_query(sql: &str) -> Result<Query> {
    let mut parser = datafusion::sql::sqlparser::parser::Parser::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )
    .try_with_sql(sql)?;
    Ok(*parser.parse_query()?)
}

/// Puts each view `q` names in its place (see the module comment).
pub fn expand(q: &mut Query, engine: &Engine) -> Result<()> {
    if !engine.has_views() {
        return Ok(());
    }
    expand_in(q, &engine.catalog())
}

/// [`expand`] in a query, an EXPLAIN of one, or an INSERT's source (the
/// target of a write is a table, never expanded).
pub fn expand_statement(s: &mut ast::Statement, engine: &Engine) -> Result<()> {
    let q = match s {
        ast::Statement::Query(q) => q,
        ast::Statement::Explain { statement, .. } => match statement.as_mut() {
            ast::Statement::Query(q) => q,
            _ => return Ok(()),
        },
        ast::Statement::Insert(ast::Insert {
            source: Some(q), ..
        }) => q,
        _ => return Ok(()),
    };
    expand(q, engine)
}

fn expand_in(q: &mut Query, catalog: &Catalog) -> Result<()> {
    let mut e = Expander {
        catalog,
        ctes: Vec::new(),
        expanded: 0,
        error: None,
    };
    let _ = q.visit(&mut e);
    match e.error {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// The tables and views `q` names (not its CTEs).
fn relations(q: &Query, catalog: &Catalog) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let _ = ast::visit_relations(q, |name| {
        if let Ok(n) = object_name(name)
            && (catalog.tables.contains_key(&n) || catalog.views.contains_key(&n))
            && !out.contains(&n)
        {
            out.push(n);
        }
        ControlFlow::<()>::Continue(())
    });
    out
}

/// A view column's type as the catalog shows it.
fn column_of(field: &Field) -> (u32, i32) {
    if let Some(t) = crate::field_pg_type(field).and_then(types::by_name) {
        return (t.oid, -1);
    }
    match field.data_type() {
        DataType::FixedSizeList(_, n) => (crate::VECTOR_TYPE_OID, *n),
        t => (types::arrow_type_oid(t), -1),
    }
}

pub async fn create_view(s: &Session, cv: &ast::CreateView) -> Result<String> {
    if cv.materialized {
        return sql_err!(FeatureNotSupported, "materialized views are not supported");
    }
    if cv.temporary {
        return sql_err!(FeatureNotSupported, "temporary views are not supported");
    }
    let name = object_name(&cv.name)?;
    let catalog = s.engine().catalog();
    if cv.if_not_exists && (catalog.views.contains_key(&name) || catalog.tables.contains_key(&name))
    {
        s.info(format!("relation \"{name}\" already exists, skipping"));
        return Ok("CREATE VIEW".into());
    }
    // Planned once now: the query must plan, and its columns are the view's.
    let mut planned = (*cv.query).clone();
    expand_in(&mut planned, &catalog)?;
    let names = crate::names::output_names(&ast::Statement::Query(Box::new(planned.clone())));
    let probe = parse_query(&format!("SELECT * FROM ({planned}) AS v LIMIT 0"))?;
    let out = s.query(ast::Statement::Query(Box::new(probe))).await?;
    let Output::Rows { schema, .. } = crate::names::rename(out, names.as_deref()) else {
        return sql_err!(Internal, "a view's query returned no rows");
    };
    if !cv.columns.is_empty() && cv.columns.len() > schema.fields().len() {
        return sql_err!(
            InvalidTableDefinition,
            "CREATE VIEW specifies more column names than columns"
        );
    }
    let mut columns: Vec<ViewColumn> = schema
        .fields()
        .iter()
        .map(|f| {
            let (type_oid, typmod) = column_of(f);
            ViewColumn {
                name: f.name().clone(),
                type_oid,
                typmod,
            }
        })
        .collect();
    for (c, given) in columns.iter_mut().zip(&cv.columns) {
        c.name = ident_name(&given.name);
    }
    for (i, c) in columns.iter().enumerate() {
        if columns[..i].iter().any(|o| o.name == c.name) {
            return sql_err!(
                DuplicateColumn,
                "column \"{}\" specified more than once",
                c.name
            );
        }
    }
    // As PostgreSQL: a replacing view keeps the old one's columns (names and
    // types, in order) and may only add columns after them.
    if cv.or_replace
        && let Some(old) = catalog.views.get(&name)
    {
        if columns.len() < old.columns.len() {
            return sql_err!(InvalidTableDefinition, "cannot drop columns from view");
        }
        for (o, n) in old.columns.iter().zip(&columns) {
            if o.name != n.name {
                return sql_err!(
                    InvalidTableDefinition,
                    "cannot change name of view column \"{}\" to \"{}\"",
                    o.name,
                    n.name
                );
            }
            if (o.type_oid, o.typmod) != (n.type_oid, n.typmod) {
                return sql_err!(
                    InvalidTableDefinition,
                    "cannot change data type of view column \"{}\"",
                    o.name
                );
            }
        }
    }
    let def = ViewDef {
        name,
        oid: 0,
        query: cv.query.to_string(),
        columns,
        depends_on: relations(&cv.query, &catalog),
    };
    s.engine().create_view(def, cv.or_replace).await?;
    Ok("CREATE VIEW".into())
}

/// `DROP VIEW [IF EXISTS] names [CASCADE]`.
pub async fn drop_views(
    engine: &Engine,
    names: &[ast::ObjectName],
    if_exists: bool,
    cascade: bool,
) -> Result<String> {
    let names: Vec<String> = names.iter().map(object_name).collect::<Result<_>>()?;
    let catalog = engine.catalog();
    if let Some(table) = names.iter().find(|n| catalog.tables.contains_key(*n)) {
        return sql_err!(
            WrongObjectType,
            "\"{table}\" is not a view (use DROP TABLE)"
        );
    }
    engine.drop_views(&names, if_exists, cascade).await?;
    Ok("DROP VIEW".into())
}
