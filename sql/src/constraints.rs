//! What a table's definition asks of the rows written to it: defaults and
//! serial values for the columns an INSERT leaves out, and its primary key
//! and unique constraints (23505 on a duplicate; `ON CONFLICT` turns the
//! duplicates into skipped rows or updates of the existing ones).
//!
//! Uniqueness is checked against the rows the writing session sees (its
//! transaction's own writes included) and within the statement, while the
//! table's constraint lock is held from the check to the commit; a
//! transaction block that writes a constrained table holds that lock until
//! it ends ([`quiver_engine::txn`]), so no other writer can slip a
//! duplicate in between.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int16Array, Int32Array, Int64Array, RecordBatch};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr as DfExpr, col, lit};
use futures::TryStreamExt;
use quiver_engine::schema::{ColumnType, TableDef, UniqueDef};
use quiver_engine::table::Table;

use crate::error::{Result, SqlError, StatusCode};
use crate::session::{Output, Session};
use crate::sql_err;

/// Rows whose key has at most this many rows are looked up with an `IN`
/// list (which Lance's scalar indexes serve); larger ones by a join.
const IN_LIST_ROWS: usize = 1_000;

/// Fills the columns of `batch` at `omitted` (positions into the table's
/// columns, which hold NULLs) with their serial values or defaults.
pub async fn fill_defaults(
    s: &Session,
    def: &TableDef,
    omitted: &[usize],
    batch: RecordBatch,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let mut columns = batch.columns().to_vec();
    for &i in omitted {
        let c = &def.columns[i];
        if c.serial {
            let first = s.engine().sequence_values(&def.name, &c.name, rows).await?;
            let values = (0..rows as i64).map(|k| first + k);
            columns[i] = match c.ty {
                ColumnType::Int16 => Arc::new(Int16Array::from_iter_values(
                    values.map(|v| i16::try_from(v).unwrap_or(i16::MAX)),
                )) as ArrayRef,
                ColumnType::Int32 => Arc::new(Int32Array::from_iter_values(
                    values.map(|v| i32::try_from(v).unwrap_or(i32::MAX)),
                )),
                _ => Arc::new(Int64Array::from_iter_values(values)),
            };
            let max = first + rows as i64 - 1;
            let fits = match c.ty {
                ColumnType::Int16 => i16::try_from(max).is_ok(),
                ColumnType::Int32 => i32::try_from(max).is_ok(),
                _ => true,
            };
            if !fits {
                return sql_err!(
                    InvalidParameterValue,
                    "nextval: reached maximum value of sequence \"{}_{}_seq\"",
                    def.name,
                    c.name
                );
            }
        } else if let Some(expr) = &c.default
            && rows > 0
        {
            columns[i] = evaluate_default(s, expr, rows, c.ty, &c.name).await?;
        }
    }
    check_columns(def, &mut columns)?;
    let opts = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        def.arrow_schema(),
        columns,
        &opts,
    )?)
}

/// A batch with every column of `def` (NULLs allowed, as decoded) in the
/// table's own schema: 23502 when a NOT NULL column has a NULL.
pub fn with_table_schema(def: &TableDef, batch: RecordBatch) -> Result<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    check_columns(def, &mut columns)?;
    let opts =
        datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        def.arrow_schema(),
        columns,
        &opts,
    )?)
}

/// Checks the values of rows about to be written: 23502 when a NOT NULL
/// column of `def` has a NULL; `uuid`, `json`, `jsonb` and `varchar(n)`
/// values are checked (22P02, 22001) and uuid and jsonb brought to their
/// normal form.
fn check_columns(def: &TableDef, columns: &mut [ArrayRef]) -> Result<()> {
    for (c, a) in def.columns.iter().zip(columns.iter_mut()) {
        if !c.nullable && a.null_count() > 0 {
            return sql_err!(
                NotNullViolation,
                "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                c.name,
                def.name
            );
        }
        if let Some(normal) = normal_form(c.ty, a)? {
            *a = normal;
        }
    }
    Ok(())
}

/// The values of a text-stored column in their normal form (`None`: as
/// they are).
fn normal_form(ty: ColumnType, a: &ArrayRef) -> Result<Option<ArrayRef>> {
    use datafusion::arrow::array::{AsArray, StringArray};
    let rewrite: fn(&str) -> Result<String> = match ty {
        ColumnType::Uuid => crate::json::uuid_text,
        ColumnType::Jsonb => |t| crate::json::json_in(t, true),
        ColumnType::Json => {
            for t in a.as_string::<i32>().iter().flatten() {
                crate::json::parse(t)?;
            }
            return Ok(None);
        }
        ColumnType::Varchar(n) => {
            for t in a.as_string::<i32>().iter().flatten() {
                if t.chars().count() > n as usize {
                    return sql_err!(
                        StringDataRightTruncation,
                        "value too long for type character varying({n})"
                    );
                }
            }
            return Ok(None);
        }
        _ => return Ok(None),
    };
    let out: StringArray = a
        .as_string::<i32>()
        .iter()
        .map(|t| t.map(rewrite).transpose())
        .collect::<Result<_>>()?;
    Ok(Some(Arc::new(out)))
}

/// `expr` evaluated once per row (so `gen_random_uuid()` or `now()` give
/// each row its own value), as column type `ty`.
pub(crate) async fn evaluate_default(
    s: &Session,
    expr: &str,
    rows: usize,
    ty: ColumnType,
    name: &str,
) -> Result<ArrayRef> {
    let sql = format!("SELECT {expr} FROM generate_series(1, {rows})");
    let parsed = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        &sql,
    )?;
    let Some(stmt) = parsed.into_iter().next() else {
        return sql_err!(Internal, "a default did not parse");
    };
    let batches: Vec<RecordBatch> = match s.query(stmt).await? {
        Output::Rows { stream, .. } => stream.try_collect().await?,
        _ => return sql_err!(Internal, "a default produced no rows"),
    };
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| SqlError::new(StatusCode::Internal, "a default produced no rows"))?;
    let all = datafusion::arrow::compute::concat_batches(&schema, &batches)?;
    crate::dml::coerce(all.column(0), ty, name)
}

/// Each row's key in `columns` as one comparable string; `None` when a
/// key column is NULL (such a row never conflicts).
fn row_keys(
    batch: &RecordBatch,
    def: &TableDef,
    columns: &[String],
) -> Result<Vec<Option<String>>> {
    let positions = columns
        .iter()
        .map(|c| {
            def.columns
                .iter()
                .position(|d| &d.name == c)
                .ok_or_else(|| {
                    SqlError::new(
                        StatusCode::UndefinedColumn,
                        format!("column \"{c}\" does not exist"),
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    keys_at(batch, &positions)
}

/// [`row_keys`] of the columns at `positions`.
pub(crate) fn keys_at(batch: &RecordBatch, positions: &[usize]) -> Result<Vec<Option<String>>> {
    let arrays: Vec<&ArrayRef> = positions.iter().map(|&i| batch.column(i)).collect();
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut key = String::new();
        let mut null = false;
        for a in &arrays {
            let v = ScalarValue::try_from_array(a, row)?;
            if v.is_null() {
                null = true;
                break;
            }
            key.push_str(&v.to_string());
            key.push('\u{1}');
        }
        out.push((!null).then_some(key));
    }
    Ok(out)
}

/// The keys among `keys` (rows of `batch`, their values at `positions`)
/// that rows of `table`, as the session sees it, have in `columns`.
pub(crate) async fn existing_keys(
    s: &Session,
    table: &str,
    columns: &[String],
    batch: &RecordBatch,
    positions: &[usize],
    keys: &[Option<String>],
) -> Result<HashSet<String>> {
    let wanted: Vec<usize> = (0..keys.len()).filter(|&r| keys[r].is_some()).collect();
    if wanted.is_empty() {
        return Ok(HashSet::new());
    }
    let positions = positions.to_vec();
    let existing = s.ctx.table(table).await?;
    let key_cols: Vec<&str> = columns.iter().map(String::as_str).collect();
    let found = if wanted.len() <= IN_LIST_ROWS {
        let filter = key_filter(columns, key_values(batch, &positions, &wanted)?);
        existing.filter(filter)?.select_columns(&key_cols)?
    } else {
        let new_keys = batch.project(&positions)?;
        let renamed: Vec<String> = columns.iter().map(|c| format!("__new_{c}")).collect();
        let fields: Vec<_> = new_keys
            .schema()
            .fields()
            .iter()
            .zip(&renamed)
            .map(|(f, n)| f.as_ref().clone().with_name(n))
            .collect();
        let new_keys = RecordBatch::try_new(
            Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
            new_keys.columns().to_vec(),
        )?;
        let right = s.ctx.read_batch(new_keys)?;
        let right_cols: Vec<&str> = renamed.iter().map(String::as_str).collect();
        existing.select_columns(&key_cols)?.join(
            right,
            datafusion::logical_expr::JoinType::LeftSemi,
            &key_cols,
            &right_cols,
            None,
        )?
    };
    let mut out = HashSet::new();
    for b in found.collect().await? {
        // The found batch has the key columns only, in order.
        let all: Vec<usize> = (0..b.num_columns()).collect();
        out.extend(keys_at(&b, &all)?.into_iter().flatten());
    }
    Ok(out)
}

/// The positions of a constraint's columns in the table.
fn key_positions(def: &TableDef, u: &UniqueDef) -> Vec<usize> {
    u.columns
        .iter()
        .filter_map(|c| def.columns.iter().position(|d| &d.name == c))
        .collect()
}

/// Rows whose values in `columns` are one of `keys`: an `IN` list for one
/// column, else `(a = … AND b = …) OR …`.
pub(crate) fn key_filter(columns: &[String], keys: Vec<Vec<ScalarValue>>) -> DfExpr {
    let column = |n: &String| col(datafusion::common::Column::new_unqualified(n));
    if let [only] = columns {
        let values = keys
            .into_iter()
            .filter_map(|k| k.into_iter().next().map(lit))
            .collect();
        return column(only).in_list(values, false);
    }
    keys.into_iter()
        .filter_map(|k| {
            columns
                .iter()
                .zip(k)
                .map(|(c, v)| column(c).eq(lit(v)))
                .reduce(DfExpr::and)
        })
        .reduce(DfExpr::or)
        .unwrap_or(lit(false))
}

/// The values of `positions` in each of `rows` of `batch`.
pub(crate) fn key_values(
    batch: &RecordBatch,
    positions: &[usize],
    rows: &[usize],
) -> Result<Vec<Vec<ScalarValue>>> {
    rows.iter()
        .map(|&r| {
            positions
                .iter()
                .map(|&p| Ok(ScalarValue::try_from_array(batch.column(p), r)?))
                .collect()
        })
        .collect()
}

fn duplicate(table: &str, u: &UniqueDef, key: &str) -> SqlError {
    let shown = key.trim_end_matches('\u{1}').replace('\u{1}', ", ");
    SqlError::new(
        StatusCode::UniqueViolation,
        format!(
            "duplicate key value violates unique constraint \"{}\" on table \"{table}\": ({})=({shown}) already exists",
            u.name,
            u.columns.join(", ")
        ),
    )
}

/// What to do with rows whose key exists: fail (23505), skip them, or
/// update the existing rows.
pub enum OnConflict<'a> {
    Fail,
    Nothing {
        target: Option<&'a UniqueDef>,
    },
    Update {
        target: &'a UniqueDef,
        /// Column position → its new value as SQL over the existing row
        /// (the table's name) and the proposed one (`excluded`).
        sets: HashMap<usize, String>,
        /// `DO UPDATE … WHERE`: SQL over the same two rows; an existing row
        /// it does not hold for is left as it is (and the proposed row dropped).
        condition: Option<String>,
    },
}

/// The rows of one INSERT after checking them against the table's
/// constraints: those to append, and the existing rows an `ON CONFLICT DO
/// UPDATE` replaces (their keys, to delete, and their new versions).
pub struct Checked {
    pub append: Vec<RecordBatch>,
    pub replace: Option<(DfExpr, RecordBatch)>,
}

/// Checks `batches` (full table rows) against `table`'s unique constraints.
pub async fn check(
    s: &Session,
    table: &Table,
    batches: Vec<RecordBatch>,
    on_conflict: &OnConflict<'_>,
) -> Result<Checked> {
    let def = &table.def;
    if def.unique.is_empty() || batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(Checked {
            append: batches,
            replace: None,
        });
    }
    let schema = def.arrow_schema();
    let mut batch = datafusion::arrow::compute::concat_batches(&schema, &batches)?;
    let mut replace = None;
    for u in &def.unique {
        let keys = row_keys(&batch, def, &u.columns)?;
        let existing = existing_keys(
            s,
            &def.name,
            &u.columns,
            &batch,
            &key_positions(def, u),
            &keys,
        )
        .await?;
        let handles = match on_conflict {
            OnConflict::Fail => false,
            OnConflict::Nothing { target } => target.is_none_or(|t| t.name == u.name),
            OnConflict::Update { target, .. } => target.name == u.name,
        };
        let mut seen: HashSet<&str> = HashSet::new();
        let mut keep = Vec::with_capacity(batch.num_rows());
        let mut conflicting = Vec::new();
        for (row, key) in keys.iter().enumerate() {
            let Some(key) = key else {
                keep.push(true);
                continue;
            };
            let clash = existing.contains(key);
            let repeated = !seen.insert(key.as_str());
            match (handles, on_conflict) {
                (true, OnConflict::Update { .. }) if repeated => {
                    return sql_err!(
                        CardinalityViolation,
                        "ON CONFLICT DO UPDATE command cannot affect row a second time"
                    );
                }
                (true, OnConflict::Update { .. }) if clash => {
                    conflicting.push(row);
                    keep.push(false);
                }
                (true, _) if clash || repeated => keep.push(false),
                _ if clash || repeated => return Err(duplicate(&def.name, u, key)),
                _ => keep.push(true),
            }
        }
        if let (
            OnConflict::Update {
                target,
                sets,
                condition,
            },
            true,
        ) = (on_conflict, !conflicting.is_empty())
            && target.name == u.name
        {
            let proposed = batch.project(&(0..batch.num_columns()).collect::<Vec<_>>())?;
            let idx = datafusion::arrow::array::UInt32Array::from_iter_values(
                conflicting.iter().map(|&r| r as u32),
            );
            let proposed = datafusion::arrow::compute::take_record_batch(&proposed, &idx)?;
            replace = updated_rows(s, table, u, proposed, sets, condition.as_deref()).await?;
        }
        let mask = datafusion::arrow::array::BooleanArray::from(keep);
        batch = datafusion::arrow::compute::filter_record_batch(&batch, &mask)?;
    }
    Ok(Checked {
        append: vec![batch],
        replace,
    })
}

/// For `ON CONFLICT (key) DO UPDATE SET … [WHERE …]`: the filter selecting
/// the existing rows with the proposed rows' keys (those the WHERE holds
/// for), and those rows updated; `None` when the WHERE holds for none.
async fn updated_rows(
    s: &Session,
    table: &Table,
    u: &UniqueDef,
    proposed: RecordBatch,
    sets: &HashMap<usize, String>,
    condition: Option<&str>,
) -> Result<Option<(DfExpr, RecordBatch)>> {
    let def = &table.def;
    let positions = key_positions(def, u);
    let rows: Vec<usize> = (0..proposed.num_rows()).collect();
    let mut filter = key_filter(&u.columns, key_values(&proposed, &positions, &rows)?);
    let current: Vec<RecordBatch> = s
        .ctx
        .table(def.name.as_str())
        .await?
        .filter(filter.clone())?
        .collect()
        .await?;
    let schema = def.arrow_schema();
    let mut current = datafusion::arrow::compute::concat_batches(&schema, &current)?;
    if let Some(condition) = condition {
        let keep = holds(def, &current, &proposed, &u.columns, condition).await?;
        current = datafusion::arrow::compute::filter_record_batch(&current, &keep)?;
        if current.num_rows() == 0 {
            return Ok(None);
        }
        let rows: Vec<usize> = (0..current.num_rows()).collect();
        filter = key_filter(&u.columns, key_values(&current, &positions, &rows)?);
    }
    let updated = project_rows(def, current, Some((proposed, &u.columns)), sets).await?;
    Ok(Some((filter, updated)))
}

/// Which of the existing `rows` the `DO UPDATE … WHERE` condition holds for,
/// each with the proposed row of the same key as `excluded`.
async fn holds(
    def: &TableDef,
    rows: &RecordBatch,
    proposed: &RecordBatch,
    key: &[String],
    condition: &str,
) -> Result<datafusion::arrow::array::BooleanArray> {
    const ROW: &str = "__quiver_row";
    let mut fields: Vec<_> = rows.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(datafusion::arrow::datatypes::Field::new(
        ROW,
        datafusion::arrow::datatypes::DataType::UInt64,
        false,
    )));
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(
        datafusion::arrow::array::UInt64Array::from_iter_values(0..rows.num_rows() as u64),
    ));
    let numbered = RecordBatch::try_new(
        Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
        columns,
    )?;
    let ctx = crate::vector::scratch_context();
    ctx.register_batch("__existing", numbered)?;
    ctx.register_batch("excluded", proposed.clone())?;
    let table_name = quoted(&def.name);
    let sql = format!(
        "SELECT {table_name}.{ROW} FROM __existing AS {table_name} {} WHERE {condition}",
        excluded_join(&table_name, key)
    );
    let mut keep = vec![false; rows.num_rows()];
    for b in ctx.sql(&sql).await?.collect().await? {
        let ids = b
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::UInt64Array>()
            .ok_or_else(|| {
                crate::error::SqlError::new(crate::StatusCode::Internal, "row numbers")
            })?;
        for id in ids.values() {
            keep[*id as usize] = true;
        }
    }
    Ok(datafusion::arrow::array::BooleanArray::from(keep))
}

/// A name as a quoted SQL identifier.
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `JOIN excluded ON` the rows of `table_name` (quoted) with the same `key`.
fn excluded_join(table_name: &str, key: &[String]) -> String {
    let on: Vec<String> = key
        .iter()
        .map(|c| format!("{table_name}.{q} = excluded.{q}", q = quoted(c)))
        .collect();
    format!("JOIN excluded ON {}", on.join(" AND "))
}

/// Rows of `def` with the columns in `sets` replaced by SQL expressions
/// over the row (the table's name) and, when given, the proposed row
/// (`excluded`) with the same key; the others kept.
pub async fn project_rows(
    def: &TableDef,
    rows: RecordBatch,
    excluded: Option<(RecordBatch, &[String])>,
    sets: &HashMap<usize, String>,
) -> Result<RecordBatch> {
    let schema = def.arrow_schema();
    let ctx = crate::vector::scratch_context();
    ctx.register_batch("__existing", rows)?;
    let table_name = quoted(&def.name);
    let projection: Vec<String> = def
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| match sets.get(&i) {
            Some(e) => format!("{e} AS {}", quoted(&c.name)),
            None => format!("{table_name}.{}", quoted(&c.name)),
        })
        .collect();
    let mut sql = format!(
        "SELECT {} FROM __existing AS {table_name}",
        projection.join(", ")
    );
    if let Some((proposed, key)) = excluded {
        ctx.register_batch("excluded", proposed)?;
        sql.push(' ');
        sql.push_str(&excluded_join(&table_name, key));
    }
    let merged = ctx.sql(&sql).await?.collect().await?;
    let mut out = Vec::with_capacity(merged.len());
    for b in merged {
        let mut cols = Vec::with_capacity(def.columns.len());
        for (i, c) in def.columns.iter().enumerate() {
            cols.push(crate::dml::coerce(b.column(i), c.ty, &c.name)?);
        }
        check_columns(def, &mut cols)?;
        out.push(RecordBatch::try_new(schema.clone(), cols)?);
    }
    Ok(datafusion::arrow::compute::concat_batches(&schema, &out)?)
}

/// For an UPDATE that replaces `old` rows by `new` ones: a key of `new`
/// that another row has, or that two new rows share, is a duplicate (23505).
pub async fn check_replacement(
    s: &Session,
    table: &Table,
    old: &RecordBatch,
    new: &RecordBatch,
) -> Result<()> {
    let def = &table.def;
    for u in &def.unique {
        let old_keys: HashSet<String> = row_keys(old, def, &u.columns)?
            .into_iter()
            .flatten()
            .collect();
        let keys = row_keys(new, def, &u.columns)?;
        let existing = existing_keys(
            s,
            &table.def.name,
            &u.columns,
            new,
            &key_positions(&table.def, u),
            &keys,
        )
        .await?;
        let mut seen = HashSet::new();
        for key in keys.iter().flatten() {
            if (existing.contains(key) && !old_keys.contains(key)) || !seen.insert(key) {
                return Err(duplicate(&def.name, u, key));
            }
        }
    }
    Ok(())
}
