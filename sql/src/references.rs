//! Foreign keys: `REFERENCES t (cols) [ON DELETE NO ACTION | RESTRICT |
//! CASCADE | SET NULL]`.
//!
//! Rows written to a referencing table must find their key in the
//! referenced one (23503); deleting referenced rows deletes the rows that
//! reference them (CASCADE), sets their key to NULL (SET NULL) or is
//! refused (23503). A delete with actions runs as one transaction (an
//! implicit block when none is open), so readers see the referenced and
//! referencing rows go together. A row whose key has a NULL references
//! nothing (MATCH SIMPLE). Not handled: a referenced row deleted by another
//! session between the check and the commit of a referencing insert
//! (PostgreSQL locks the referenced row; Quiver does not).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::logical_expr::Expr as DfExpr;
use quiver_engine::schema::{ForeignKeyDef, RefAction, TableDef};
use quiver_engine::table::Table;

use crate::constraints::{existing_keys, key_filter, key_values, keys_at};
use crate::error::{Result, SqlError, StatusCode};
use crate::session::Session;

/// How deep ON DELETE CASCADE may chain (a cycle of cascades ends when no
/// rows are left to delete; this bounds a pathological schema).
const MAX_CASCADE_DEPTH: usize = 32;

fn positions(def: &TableDef, columns: &[String]) -> Vec<usize> {
    columns
        .iter()
        .filter_map(|c| def.columns.iter().position(|d| &d.name == c))
        .collect()
}

/// 23503 when a row of `batches` (rows of table `def`) has a key that the
/// table it references does not have.
pub async fn check_inserted(s: &Session, def: &TableDef, batches: &[RecordBatch]) -> Result<()> {
    if def.foreign_keys.is_empty() {
        return Ok(());
    }
    let schema = def.arrow_schema();
    let batch = datafusion::arrow::compute::concat_batches(&schema, batches)?;
    for fk in &def.foreign_keys {
        let at = positions(def, &fk.columns);
        let keys = keys_at(&batch, &at)?;
        if keys.iter().all(Option::is_none) {
            continue;
        }
        let mut found = existing_keys(s, &fk.table, &fk.ref_columns, &batch, &at, &keys).await?;
        // A table referencing itself: rows of the same statement count.
        if fk.table == def.name {
            let own = positions(def, &fk.ref_columns);
            found.extend(keys_at(&batch, &own)?.into_iter().flatten());
        }
        if let Some(missing) = keys.iter().flatten().find(|k| !found.contains(*k)) {
            return Err(SqlError::new(
                StatusCode::ForeignKeyViolation,
                format!(
                    "insert or update on table \"{}\" violates foreign key constraint \"{}\": key ({})=({}) is not present in table \"{}\"",
                    def.name,
                    fk.name,
                    fk.columns.join(", "),
                    shown(missing),
                    fk.table
                ),
            ));
        }
    }
    Ok(())
}

fn shown(key: &str) -> String {
    key.trim_end_matches('\u{1}').replace('\u{1}', ", ")
}

/// The foreign keys of other tables (or of `table` itself) that reference
/// `table`, with the referencing table.
pub fn referencing(s: &Session, table: &str) -> Vec<(Arc<Table>, ForeignKeyDef)> {
    let mut out = Vec::new();
    for (name, def) in s.engine().catalog().tables.iter() {
        for fk in &def.foreign_keys {
            if fk.table == table
                && let Ok(t) = s.engine().table(name)
            {
                out.push((t, fk.clone()));
            }
        }
    }
    out
}

/// Deletes the rows of `table` matching `filter` and applies the ON DELETE
/// actions of the foreign keys referencing them, as one transaction.
/// Returns the rows deleted from `table`.
pub async fn delete(s: &Session, table: &Arc<Table>, filter: DfExpr) -> Result<RecordBatch> {
    let implicit = !s.txns.is_open().await;
    if implicit {
        s.txns.begin().await;
    }
    let result = async {
        let deleted = s.delete_returning(table, filter).await?;
        on_delete(s, &table.def, &deleted, 0).await?;
        Ok::<_, SqlError>(deleted)
    }
    .await;
    if implicit {
        match &result {
            Ok(_) => {
                s.txns.commit().await?;
            }
            Err(_) => {
                s.txns.rollback().await?;
            }
        }
    }
    result
}

/// The actions for rows `deleted` from table `def`.
async fn on_delete(s: &Session, def: &TableDef, deleted: &RecordBatch, depth: usize) -> Result<()> {
    if deleted.num_rows() == 0 {
        return Ok(());
    }
    if depth > MAX_CASCADE_DEPTH {
        return Err(SqlError::new(
            StatusCode::ProgramLimitExceeded,
            format!("ON DELETE CASCADE chains deeper than {MAX_CASCADE_DEPTH} tables"),
        ));
    }
    for (child, fk) in referencing(s, &def.name) {
        let at = positions(def, &fk.ref_columns);
        let keys = keys_at(deleted, &at)?;
        let mut seen = HashSet::new();
        let rows: Vec<usize> = (0..keys.len())
            .filter(|&r| keys[r].as_ref().is_some_and(|k| seen.insert(k.clone())))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let filter = key_filter(&fk.columns, key_values(deleted, &at, &rows)?);
        match fk.on_delete {
            RefAction::Cascade => {
                let gone = s.delete_returning(&child, filter).await?;
                Box::pin(on_delete(s, &child.def, &gone, depth + 1)).await?;
            }
            RefAction::SetNull => {
                let sets = fk
                    .columns
                    .iter()
                    .filter_map(|c| child.def.columns.iter().position(|d| &d.name == c))
                    .map(|i| (i, "NULL".to_string()))
                    .collect();
                s.update_rows(&child, Some(filter), &sets).await?;
            }
            RefAction::NoAction | RefAction::Restrict => {
                refuse_if_referenced(s, def, &child, &fk, filter).await?;
            }
        }
    }
    Ok(())
}

/// 23503 when an UPDATE of `table` changes or removes a key that rows of
/// another table reference (`old` are the rows before, `new` after).
pub async fn check_updated(
    s: &Session,
    def: &TableDef,
    old: &RecordBatch,
    new: &RecordBatch,
) -> Result<()> {
    for (child, fk) in referencing(s, &def.name) {
        let at = positions(def, &fk.ref_columns);
        let kept: HashSet<String> = keys_at(new, &at)?.into_iter().flatten().collect();
        let before = keys_at(old, &at)?;
        let rows: Vec<usize> = (0..before.len())
            .filter(|&r| before[r].as_ref().is_some_and(|k| !kept.contains(k)))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let filter = key_filter(&fk.columns, key_values(old, &at, &rows)?);
        refuse_if_referenced(s, def, &child, &fk, filter).await?;
    }
    Ok(())
}

/// 23503 when rows of `child` match `filter` (they reference keys of
/// table `def` that are going away).
async fn refuse_if_referenced(
    s: &Session,
    def: &TableDef,
    child: &Table,
    fk: &ForeignKeyDef,
    filter: DfExpr,
) -> Result<()> {
    let still = s.ctx.table(child.def.name.as_str()).await?;
    if still.filter(filter)?.limit(0, Some(1))?.count().await? > 0 {
        return Err(SqlError::new(
            StatusCode::ForeignKeyViolation,
            format!(
                "update or delete on table \"{}\" violates foreign key constraint \"{}\" on table \"{}\"",
                def.name, fk.name, child.def.name
            ),
        ));
    }
    Ok(())
}
