//! CHECK constraints: declared in CREATE TABLE (on a column or the table)
//! and by `ALTER TABLE … ADD [CONSTRAINT n] CHECK (…)` or with an added
//! column; every row an INSERT, UPDATE, `ON CONFLICT DO UPDATE` or COPY
//! writes is evaluated against them, and a row for which a condition is
//! false is refused with 23514 (true and NULL pass, as in PostgreSQL).
//!
//! A condition is kept as SQL text in the table's definition
//! ([`CheckDef`]) and planned over the written rows with the session's
//! functions; it is named as PostgreSQL names it: `<table>_<column>_check`
//! when it reads one column, else `<table>_check`, numbered past a taken
//! name.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast;
use quiver_engine::schema::{CheckDef, ColumnDef, TableDef};

use crate::error::{Result, SqlError, StatusCode};
use crate::session::Session;
use crate::sql_err;

/// A condition over rows of `schema` (columns bare or qualified by the
/// table's name), type-checked.
fn plan(
    s: &Session,
    table: &str,
    schema: &Schema,
    expr: &str,
) -> Result<(Arc<dyn PhysicalExpr>, Vec<String>)> {
    let qualified = DFSchema::try_from_qualified_schema(table, schema)?;
    let logical = s.ctx.parse_sql_expr(expr, &qualified)?;
    let mut subquery = false;
    let _ = logical.apply(|e| {
        subquery |= matches!(
            e,
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
        );
        Ok(TreeNodeRecursion::Continue)
    });
    if subquery {
        return sql_err!(
            FeatureNotSupported,
            "cannot use subquery in check constraint"
        );
    }
    let mut columns: Vec<String> = Vec::new();
    for c in logical.column_refs() {
        if !columns.contains(&c.name) {
            columns.push(c.name.clone());
        }
    }
    let physical = s.ctx.create_physical_expr(logical, &qualified)?;
    let ty = physical.data_type(schema)?;
    if !matches!(ty, DataType::Boolean | DataType::Null) {
        return sql_err!(
            DatatypeMismatch,
            "argument of CHECK must be type boolean, not type {ty}"
        );
    }
    Ok((physical, columns))
}

/// The definition of `CHECK (expr)` on a table `table` with `columns`,
/// named `name` or as PostgreSQL would name it among the `taken` names.
pub fn define(
    s: &Session,
    table: &str,
    columns: &[ColumnDef],
    name: Option<String>,
    expr: &ast::Expr,
    taken: &[String],
) -> Result<CheckDef> {
    let schema = Schema::new(
        columns
            .iter()
            .map(|c| c.ty.field(&c.name, c.nullable))
            .collect::<Vec<_>>(),
    );
    let expr = expr.to_string();
    let (_, read) = plan(s, table, &schema, &expr)?;
    let name = name.unwrap_or_else(|| {
        let base = match read.as_slice() {
            [one] => format!("{table}_{one}_check"),
            _ => format!("{table}_check"),
        };
        let mut candidate = base.clone();
        let mut n = 0;
        while taken.contains(&candidate) {
            n += 1;
            candidate = format!("{base}{n}");
        }
        candidate
    });
    Ok(CheckDef {
        name,
        expr,
        columns: read,
    })
}

/// The CHECK constraints of a CREATE TABLE: on its columns (`checks` of
/// each, in order) and the table's own.
pub fn for_new_table(
    s: &Session,
    table: &str,
    columns: &[ColumnDef],
    declared: &[(Option<String>, ast::Expr)],
    taken: &[String],
) -> Result<Vec<CheckDef>> {
    let mut taken = taken.to_vec();
    let mut out = Vec::new();
    for (name, expr) in declared {
        let def = define(s, table, columns, name.clone(), expr, &taken)?;
        if taken.contains(&def.name) {
            return sql_err!(
                DuplicateObject,
                "constraint \"{}\" for relation \"{table}\" already exists",
                def.name
            );
        }
        taken.push(def.name.clone());
        out.push(def);
    }
    Ok(out)
}

/// 23514 when a row of `batches` (rows of table `def`, in its columns'
/// order) makes one of its checks false.
pub fn check_rows(s: &Session, def: &TableDef, batches: &[RecordBatch]) -> Result<()> {
    check_against(s, def, &def.checks, batches, |c| {
        format!(
            "new row for relation \"{}\" violates check constraint \"{}\"",
            def.name, c.name
        )
    })
}

/// 23514 when a row of the table already there makes `check` false (ALTER
/// TABLE … ADD CHECK), read as `batches`.
pub fn check_existing(
    s: &Session,
    def: &TableDef,
    check: &CheckDef,
    batches: &[RecordBatch],
) -> Result<()> {
    check_against(s, def, std::slice::from_ref(check), batches, |c| {
        format!(
            "check constraint \"{}\" of relation \"{}\" is violated by some row",
            c.name, def.name
        )
    })
}

fn check_against(
    s: &Session,
    def: &TableDef,
    checks: &[CheckDef],
    batches: &[RecordBatch],
    message: impl Fn(&CheckDef) -> String,
) -> Result<()> {
    let Some(first) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(());
    };
    let schema = first.schema();
    for c in checks {
        let (physical, _) = plan(s, &def.name, &schema, &c.expr)?;
        for b in batches.iter().filter(|b| b.num_rows() > 0) {
            let values = physical.evaluate(b)?.into_array(b.num_rows())?;
            if matches!(values.data_type(), DataType::Null) {
                continue;
            }
            // Only false fails: NULL passes.
            if values.as_boolean().iter().any(|v| v == Some(false)) {
                return Err(SqlError::new(StatusCode::CheckViolation, message(c)));
            }
        }
    }
    Ok(())
}
