//! Writes: INSERT (VALUES or SELECT), UPDATE, DELETE and COPY. Each statement
//! is one atomic commit in the engine.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::logical_expr::Expr as DfExpr;
use datafusion::logical_expr::simplify::SimplifyContextBuilder;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource,
    CopyTarget, Expr, FromTable, Insert, SetExpr, TableFactor, TableObject, Value,
};
use futures::TryStreamExt;
use quiver_engine::Engine;
use quiver_engine::schema::{ColumnType, TableDef};

use crate::ddl::object_name;
use crate::error::{Result, SqlError, StatusCode};
use crate::session::{CopyFormat, CopyIn, Output, Session};
use crate::sql_err;
use crate::vector::to_vector_column;

fn insert_target(
    engine: &Engine,
    ins: &Insert,
) -> Result<(Arc<quiver_engine::table::Table>, Vec<usize>)> {
    let TableObject::TableName(name) = &ins.table else {
        return sql_err!(
            FeatureNotSupported,
            "INSERT into a table function is not supported"
        );
    };
    let table = engine.table(&object_name(name)?)?;
    let positions = if ins.columns.is_empty() {
        // As in PostgreSQL, a VALUES list shorter than the table fills its
        // leading columns; the others take their defaults.
        let all = table.def.columns.len();
        let given = match ins.source.as_ref().map(|q| q.body.as_ref()) {
            Some(SetExpr::Values(v)) => v.rows.first().map_or(all, |r| r.len().min(all)),
            _ => all,
        };
        (0..given).collect()
    } else {
        let mut p = Vec::new();
        for c in &ins.columns {
            let c = object_name(c)?;
            let Some(i) = table.def.columns.iter().position(|d| d.name == c) else {
                return sql_err!(
                    UndefinedColumn,
                    "column \"{c}\" of relation \"{}\" does not exist",
                    table.def.name
                );
            };
            if p.contains(&i) {
                return sql_err!(SyntaxError, "column \"{c}\" specified more than once");
            }
            p.push(i);
        }
        p
    };
    Ok((table, positions))
}

/// Types of `$n` used directly as VALUES items: the target column's type
/// (text for vectors, which clients send as '[…]'), and its Postgres type
/// when it is a text type other than `text` (`uuid`, `jsonb`, …).
pub fn insert_param_types(
    engine: &Engine,
    ins: &Insert,
) -> Result<Vec<(usize, DataType, Option<&'static str>)>> {
    let (table, positions) = insert_target(engine, ins)?;
    let mut out = Vec::new();
    let Some(SetExpr::Values(values)) = ins.source.as_ref().map(|q| q.body.as_ref()) else {
        return Ok(out);
    };
    for row in &values.rows {
        for (j, e) in row.iter().enumerate() {
            if let (Expr::Value(v), Some(&col)) = (e, positions.get(j))
                && let Value::Placeholder(p) = &v.value
                && let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
            {
                let ty = match table.def.columns[col].ty {
                    ColumnType::Vector(_) | ColumnType::VectorAny => {
                        crate::session::vector_parameter_type()
                    }
                    other => other.arrow_type(),
                };
                out.push((n - 1, ty, table.def.columns[col].ty.pg_type_name()));
            }
        }
    }
    Ok(out)
}

/// Converts a source column to the type of a table column.
pub(crate) fn coerce(arr: &ArrayRef, ty: ColumnType, name: &str) -> Result<ArrayRef> {
    if let ColumnType::Vector(dim) = ty {
        return to_vector_column(arr, dim, name);
    }
    if ty == ColumnType::VectorAny {
        return crate::vector::to_vector_list(arr);
    }
    if ty == ColumnType::TextArray
        && let Some(texts) = datafusion::arrow::array::AsArray::as_string_opt::<i32>(arr.as_ref())
    {
        // A string given for a text[] is its text form (`'{a,"b c"}'`).
        return crate::copy::text_arrays(texts.iter());
    }
    let target = ty.arrow_type();
    if arr.data_type() == &target {
        return Ok(arr.clone());
    }
    if ty == ColumnType::Bytea
        && let Some(texts) = datafusion::arrow::array::AsArray::as_string_opt::<i32>(arr.as_ref())
    {
        // A string given for a bytea is its text form (`'\x0a0b'`).
        let bytes = texts
            .iter()
            .map(|t| t.map(crate::copy::bytea_from_text).transpose())
            .collect::<Result<Vec<_>>>()?;
        return Ok(Arc::new(datafusion::arrow::array::BinaryArray::from_iter(
            bytes,
        )));
    }
    if matches!(
        arr.data_type(),
        DataType::List(_) | DataType::FixedSizeList(..)
    ) {
        return sql_err!(
            DatatypeMismatch,
            "column \"{name}\" is of type {target} but expression is a vector"
        );
    }
    let opts = CastOptions {
        safe: false,
        ..Default::default()
    };
    if let DataType::Decimal128(p, s) | DataType::Decimal256(p, s) = target {
        // Arrow reads no exponent (`1.5e3`): such text is written out first.
        let plain: ArrayRef =
            match datafusion::arrow::array::AsArray::as_string_opt::<i32>(arr.as_ref()) {
                Some(texts) if texts.iter().flatten().any(|t| t.contains(['e', 'E'])) => Arc::new(
                    texts
                        .iter()
                        .map(|t| t.map(|t| expand_exponent(t).unwrap_or_else(|| t.to_string())))
                        .collect::<datafusion::arrow::array::StringArray>(),
                ),
                _ => arr.clone(),
            };
        return cast_with_options(&plain, &target, &opts).map_err(|_| numeric_error(arr, p, s));
    }
    cast_with_options(arr, &target, &opts).map_err(|e| {
        let code = if arr.data_type() == &DataType::Utf8 {
            StatusCode::InvalidTextRepresentation
        } else if arr.data_type().is_numeric() {
            StatusCode::NumericValueOutOfRange
        } else {
            StatusCode::InvalidParameterValue
        };
        SqlError::new(
            code,
            format!("cannot store value in column \"{name}\": {e}"),
        )
    })
}

/// A number written with an exponent (`-2.5e-3`) as plain decimal text
/// (`-0.0025`); `None` for text that is no such number.
fn expand_exponent(text: &str) -> Option<String> {
    let (mantissa, exp) = text.trim().split_once(['e', 'E'])?;
    let exp: i64 = exp.parse().ok().filter(|e: &i64| e.abs() <= 1000)?;
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    let point = int.len() as i64 + exp;
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    };
    Some(format!("{sign}{body}"))
}

/// Why values did not convert to `numeric(p, s)`: text that is no number
/// (22P02), NaN or infinity (which Quiver's decimals do not hold), or a
/// value too large for the precision (22003, as PostgreSQL words it).
fn numeric_error(arr: &ArrayRef, p: u8, s: i8) -> SqlError {
    if let Some(texts) = datafusion::arrow::array::AsArray::as_string_opt::<i32>(arr.as_ref()) {
        for t in texts.iter().flatten() {
            match t.trim().parse::<f64>() {
                Err(_) => {
                    return SqlError::new(
                        StatusCode::InvalidTextRepresentation,
                        format!("invalid input syntax for type numeric: \"{t}\""),
                    );
                }
                Ok(v) if !v.is_finite() => {
                    return SqlError::new(
                        StatusCode::FeatureNotSupported,
                        format!(
                            "numeric value \"{t}\" is not supported: Quiver's numeric holds finite values only"
                        ),
                    );
                }
                Ok(_) => {}
            }
        }
    }
    SqlError::new(
        StatusCode::NumericValueOutOfRange,
        format!(
            "numeric field overflow: a field with precision {p}, scale {s} must round to an absolute value less than 10^{}",
            i16::from(p) - i16::from(s)
        ),
    )
}

/// Shapes source batches into the table's schema (unlisted columns are NULL).
fn to_table_batches(
    def: &TableDef,
    positions: &[usize],
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    // Nullable until the omitted columns get their defaults
    // ([`crate::constraints::fill_defaults`] checks NOT NULL).
    let schema = def.arrow_schema_with_nulls();
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        if b.num_columns() != positions.len() {
            let more = if b.num_columns() > positions.len() {
                "more"
            } else {
                "fewer"
            };
            return sql_err!(
                SyntaxError,
                "INSERT has {more} expressions than target columns"
            );
        }
        let mut cols = Vec::with_capacity(def.columns.len());
        for (i, c) in def.columns.iter().enumerate() {
            cols.push(match positions.iter().position(|p| *p == i) {
                Some(src) => coerce(b.column(src), c.ty, &c.name)?,
                None => datafusion::arrow::array::new_null_array(&c.ty.arrow_type(), b.num_rows()),
            });
        }
        let opts =
            datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
        out.push(RecordBatch::try_new_with_options(
            schema.clone(),
            cols,
            &opts,
        )?);
    }
    Ok(out)
}

async fn collect(s: &Session, q: ast::Query) -> Result<Vec<RecordBatch>> {
    match s.query(ast::Statement::Query(Box::new(q))).await? {
        Output::Rows { stream, .. } => Ok(stream.try_collect().await?),
        _ => sql_err!(Internal, "query produced no rows"),
    }
}

/// `'[…]'::vector` items of a VALUES list become plain literals: the column
/// conversion parses them, and rows that mix cast and uncast literals would
/// otherwise have no common type.
fn unwrap_value_casts(q: &mut ast::Query) {
    let SetExpr::Values(values) = q.body.as_mut() else {
        return;
    };
    for row in &mut values.rows {
        for e in row.iter_mut() {
            if let Expr::Function(f) = e
                && f.name.to_string() == "to_vector"
                && let ast::FunctionArguments::List(list) = &f.args
                && let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(inner))] =
                    list.args.as_slice()
            {
                *e = inner.clone();
            }
        }
    }
}

/// One literal of a VALUES list, as DataFusion types it.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

fn literal(e: &Expr) -> Option<Literal> {
    let number = |n: &str, negative: bool| {
        let signed = if negative {
            format!("-{n}")
        } else {
            n.to_string()
        };
        match signed.parse::<i64>() {
            Ok(i) => Some(Literal::Int(i)),
            // An unsigned integer past i64 is a UInt64 to DataFusion: left to it.
            Err(_) if n.bytes().all(|b| b.is_ascii_digit()) => None,
            Err(_) => signed.parse::<f64>().ok().map(Literal::Float),
        }
    };
    match e {
        Expr::Value(v) => match &v.value {
            Value::Null => Some(Literal::Null),
            Value::Number(n, false) => number(n, false),
            Value::SingleQuotedString(t) => Some(Literal::Text(t.clone())),
            Value::Boolean(b) => Some(Literal::Bool(*b)),
            _ => None,
        },
        Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, false) => number(n, true),
                _ => None,
            },
            _ => None,
        },
        Expr::Nested(inner) => literal(inner),
        _ => None,
    }
}

/// A VALUES list of plain literals as one batch, typed column by column as
/// DataFusion types it (integers Int64, other numbers Float64 — or Float64
/// for a column mixing both — strings Utf8, booleans Boolean, a column of
/// NULLs Null), without planning a query: the one-row INSERTs applications
/// send many of. `None` for anything else (expressions, a column mixing
/// kinds, rows of different lengths), which DataFusion evaluates.
fn literal_values(q: &ast::Query) -> Option<RecordBatch> {
    use datafusion::arrow::array::{
        BooleanArray, Float64Array, Int64Array, NullArray, StringArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema};
    if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
        return None;
    }
    let SetExpr::Values(values) = q.body.as_ref() else {
        return None;
    };
    let width = values.rows.first()?.len();
    if width == 0 || values.rows.iter().any(|r| r.len() != width) {
        return None;
    }
    let rows: Vec<Vec<Literal>> = values
        .rows
        .iter()
        .map(|r| r.iter().map(literal).collect::<Option<Vec<_>>>())
        .collect::<Option<_>>()?;
    let mut fields = Vec::with_capacity(width);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(width);
    for c in 0..width {
        let items: Vec<&Literal> = rows.iter().map(|r| &r[c]).collect();
        let kinds = |f: fn(&Literal) -> bool| items.iter().all(|l| **l == Literal::Null || f(l));
        let array: ArrayRef = if kinds(|l| matches!(l, Literal::Null)) {
            Arc::new(NullArray::new(items.len()))
        } else if kinds(|l| matches!(l, Literal::Int(_))) {
            Arc::new(Int64Array::from_iter(items.iter().map(|l| match l {
                Literal::Int(i) => Some(*i),
                _ => None,
            })))
        } else if kinds(|l| matches!(l, Literal::Int(_) | Literal::Float(_))) {
            Arc::new(Float64Array::from_iter(items.iter().map(|l| match l {
                Literal::Int(i) => Some(*i as f64),
                Literal::Float(f) => Some(*f),
                _ => None,
            })))
        } else if kinds(|l| matches!(l, Literal::Text(_))) {
            Arc::new(StringArray::from_iter(items.iter().map(|l| match l {
                Literal::Text(t) => Some(t.as_str()),
                _ => None,
            })))
        } else if kinds(|l| matches!(l, Literal::Bool(_))) {
            Arc::new(BooleanArray::from_iter(items.iter().map(|l| match l {
                Literal::Bool(b) => Some(*b),
                _ => None,
            })))
        } else {
            return None;
        };
        fields.push(Field::new(
            format!("column{}", c + 1),
            array.data_type().clone(),
            true,
        ));
        columns.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).ok()
}

/// `ON CONFLICT …` of an INSERT into `def`.
fn on_conflict<'a>(def: &'a TableDef, on: Option<&ast::OnInsert>) -> Result<OnConflict<'a>> {
    let Some(on) = on else {
        return Ok(OnConflict::Fail);
    };
    let ast::OnInsert::OnConflict(c) = on else {
        return sql_err!(
            FeatureNotSupported,
            "ON DUPLICATE KEY UPDATE is MySQL's; use ON CONFLICT"
        );
    };
    let target = match &c.conflict_target {
        None => None,
        Some(ast::ConflictTarget::Columns(cols)) => {
            let cols: Vec<String> = cols.iter().map(crate::ddl::ident_name).collect();
            match def.unique.iter().find(|u| {
                u.columns.len() == cols.len() && cols.iter().all(|c| u.columns.contains(c))
            }) {
                Some(u) => Some(u),
                None => {
                    return sql_err!(
                        InvalidColumnReference,
                        "there is no unique or exclusion constraint matching the ON CONFLICT specification"
                    );
                }
            }
        }
        Some(ast::ConflictTarget::OnConstraint(name)) => {
            let name = object_name(name)?;
            match def.unique.iter().find(|u| u.name == name) {
                Some(u) => Some(u),
                None => {
                    return sql_err!(
                        UndefinedObject,
                        "constraint \"{name}\" for table \"{}\" does not exist",
                        def.name
                    );
                }
            }
        }
    };
    match &c.action {
        ast::OnConflictAction::DoNothing => Ok(OnConflict::Nothing { target }),
        ast::OnConflictAction::DoUpdate(u) => {
            let Some(target) = target else {
                return sql_err!(
                    SyntaxError,
                    "ON CONFLICT DO UPDATE requires inference specification or constraint name"
                );
            };
            let mut sets = std::collections::HashMap::new();
            for a in &u.assignments {
                let ast::AssignmentTarget::ColumnName(n) = &a.target else {
                    return sql_err!(FeatureNotSupported, "SET (a, b) = … is not supported");
                };
                let column = object_name(n)?;
                let Some(i) = def.columns.iter().position(|c| c.name == column) else {
                    return sql_err!(
                        UndefinedColumn,
                        "column \"{column}\" of relation \"{}\" does not exist",
                        def.name
                    );
                };
                sets.insert(i, a.value.to_string());
            }
            Ok(OnConflict::Update {
                target,
                sets,
                condition: u.selection.as_ref().map(ToString::to_string),
            })
        }
    }
}

pub async fn insert(s: &Session, ins: &Insert) -> Result<Output> {
    let (table, positions) = insert_target(s.engine(), ins)?;
    let conflict = on_conflict(&table.def, ins.on.as_ref())?;
    let Some(source) = &ins.source else {
        return sql_err!(
            FeatureNotSupported,
            "INSERT … DEFAULT VALUES is not supported"
        );
    };
    let mut source = source.as_ref().clone();
    unwrap_value_casts(&mut source);
    let batches = match literal_values(&source) {
        Some(batch) => vec![batch],
        None => collect(s, source).await?,
    };
    let batches = to_table_batches(&table.def, &positions, batches)?;
    let omitted: Vec<usize> = (0..table.def.columns.len())
        .filter(|i| !positions.contains(i))
        .collect();
    let mut filled = Vec::with_capacity(batches.len());
    for b in batches {
        filled.push(crate::constraints::fill_defaults(s, &table.def, &omitted, b).await?);
    }
    crate::checks::check_rows(s, &table.def, &filled)?;
    crate::references::check_inserted(s, &table.def, &filled).await?;
    let (n, written) = s.insert_rows(&table, filled, &conflict).await?;
    match &ins.returning {
        None => Ok(Output::Command {
            tag: format!("INSERT 0 {n}"),
        }),
        Some(items) => returning(&table.def, items, written).await,
    }
}

/// `RETURNING items` planned over `rows` (rows of table `def`).
async fn returning_frame(
    def: &TableDef,
    items: &[ast::SelectItem],
    rows: RecordBatch,
) -> Result<datafusion::dataframe::DataFrame> {
    let ctx = crate::vector::scratch_context();
    let name = format!("\"{}\"", def.name.replace('"', "\"\""));
    ctx.register_batch(def.name.as_str(), rows)?;
    let list: Vec<String> = items.iter().map(ToString::to_string).collect();
    Ok(ctx
        .sql(&format!("SELECT {} FROM {name}", list.join(", ")))
        .await?)
}

/// The columns `RETURNING items` of a write to `stmt`'s table returns (for
/// Describe); `None` for a statement without RETURNING.
pub async fn returning_schema(
    engine: &Engine,
    stmt: &ast::Statement,
) -> Result<Option<datafusion::arrow::datatypes::SchemaRef>> {
    let (table, items) = match stmt {
        ast::Statement::Insert(ins) => match &ins.returning {
            Some(items) => (insert_target(engine, ins)?.0, items),
            None => return Ok(None),
        },
        ast::Statement::Update(u) => match &u.returning {
            Some(items) => (
                engine.table(&single_table(std::slice::from_ref(&u.table), "UPDATE")?)?,
                items,
            ),
            None => return Ok(None),
        },
        ast::Statement::Delete(d) => match (&d.returning, &d.from) {
            (Some(items), FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f)) => {
                (engine.table(&single_table(f, "DELETE")?)?, items)
            }
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    let empty = RecordBatch::new_empty(table.def.arrow_schema());
    let df = returning_frame(&table.def, items, empty).await?;
    Ok(Some(Arc::new(df.schema().as_arrow().clone())))
}

/// `RETURNING items` over the rows written.
async fn returning(
    def: &TableDef,
    items: &[ast::SelectItem],
    written: Vec<RecordBatch>,
) -> Result<Output> {
    let rows = datafusion::arrow::compute::concat_batches(&def.arrow_schema(), &written)?;
    let df = returning_frame(def, items, rows).await?;
    let out_schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    Ok(Output::Rows {
        schema: out_schema.clone(),
        stream: Box::pin(datafusion::physical_plan::memory::MemoryStream::try_new(
            batches, out_schema, None,
        )?),
    })
}

use crate::constraints::OnConflict;

fn single_table(from: &[ast::TableWithJoins], what: &str) -> Result<String> {
    match from {
        [t] if t.joins.is_empty() => match &t.relation {
            TableFactor::Table { name, .. } => object_name(name),
            _ => sql_err!(FeatureNotSupported, "{what} needs a plain table"),
        },
        _ => sql_err!(
            FeatureNotSupported,
            "{what} of several tables is not supported"
        ),
    }
}

/// The WHERE clause as a typed DataFusion expression over the table's columns.
fn filter_expr(s: &Session, def: &TableDef, selection: Option<&Expr>) -> Result<Option<DfExpr>> {
    let Some(sel) = selection else {
        return Ok(None);
    };
    // Columns may be qualified by the table's name (`WHERE docs.id = 1`, as
    // ORMs write it); storage takes them bare.
    let schema = Arc::new(DFSchema::try_from_qualified_schema(
        def.name.as_str(),
        def.arrow_schema().as_ref(),
    )?);
    let expr = s.ctx.parse_sql_expr(&sel.to_string(), &schema)?;
    let expr = crate::vector_search::unqualify(expr)?;
    let schema = Arc::new(DFSchema::try_from(def.arrow_schema().as_ref().clone())?);
    let simplifier = ExprSimplifier::new(
        SimplifyContextBuilder::default()
            .with_schema(schema.clone())
            .build(),
    );
    let expr = simplifier.coerce(expr, &schema)?;
    Ok(Some(expr))
}

pub async fn update(s: &Session, u: &ast::Update) -> Result<Output> {
    if u.from.is_some() {
        return sql_err!(FeatureNotSupported, "UPDATE … FROM is not supported yet");
    }
    let name = single_table(std::slice::from_ref(&u.table), "UPDATE")?;
    let table = s.engine().table(&name)?;
    let mut sets = std::collections::HashMap::new();
    for a in &u.assignments {
        let AssignmentTarget::ColumnName(col) = &a.target else {
            return sql_err!(FeatureNotSupported, "tuple assignments are not supported");
        };
        let col = object_name(col)?;
        let Some(i) = table.def.columns.iter().position(|c| c.name == col) else {
            return sql_err!(
                UndefinedColumn,
                "column \"{col}\" of relation \"{name}\" does not exist"
            );
        };
        if sets.insert(i, a.value.to_string()).is_some() {
            return sql_err!(SyntaxError, "multiple assignments to same column \"{col}\"");
        }
    }
    let filter = filter_expr(s, &table.def, u.selection.as_ref())?;
    let updated = s.update_rows(&table, filter, &sets).await?;
    match &u.returning {
        None => Ok(Output::Command {
            tag: format!("UPDATE {}", updated.num_rows()),
        }),
        Some(items) => returning(&table.def, items, vec![updated]).await,
    }
}

pub async fn delete(s: &Session, d: &ast::Delete) -> Result<Output> {
    if d.using.is_some() || d.limit.is_some() {
        return sql_err!(
            FeatureNotSupported,
            "DELETE … USING / LIMIT is not supported yet"
        );
    }
    let from = match &d.from {
        FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
    };
    let name = single_table(from, "DELETE")?;
    let table = s.engine().table(&name)?;
    let filter = filter_expr(s, &table.def, d.selection.as_ref())?.unwrap_or(DfExpr::Literal(
        datafusion::common::ScalarValue::Boolean(Some(true)),
        None,
    ));
    if !crate::references::referencing(s, &table.def.name).is_empty() {
        let deleted = crate::references::delete(s, &table, filter).await?;
        return match &d.returning {
            None => Ok(Output::Command {
                tag: format!("DELETE {}", deleted.num_rows()),
            }),
            Some(items) => returning(&table.def, items, vec![deleted]).await,
        };
    }
    match &d.returning {
        None => {
            let n = s.delete_rows(&table, filter).await?;
            Ok(Output::Command {
                tag: format!("DELETE {n}"),
            })
        }
        Some(items) => {
            let deleted = s.delete_returning(&table, filter).await?;
            returning(&table.def, items, vec![deleted]).await
        }
    }
}

fn copy_format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyFormat> {
    let mut csv = false;
    let mut binary = false;
    let mut header = false;
    let mut delimiter = None;
    for o in options {
        match o {
            CopyOption::Format(f) => match f.value.to_ascii_lowercase().as_str() {
                "csv" => (csv, binary) = (true, false),
                "text" => (csv, binary) = (false, false),
                "binary" => (csv, binary) = (false, true),
                other => {
                    return sql_err!(
                        InvalidParameterValue,
                        "COPY format \"{other}\" not recognized"
                    );
                }
            },
            CopyOption::Header(h) => header = *h,
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(_) if binary => {
                return sql_err!(SyntaxError, "cannot specify NULL in BINARY mode");
            }
            CopyOption::Null(n) if n.is_empty() || n == "\\N" => {}
            other => return sql_err!(FeatureNotSupported, "COPY option {other} is not supported"),
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Csv(opts) => {
                csv = true;
                for c in opts {
                    match c {
                        CopyLegacyCsvOption::Header => header = true,
                        other => {
                            return sql_err!(
                                FeatureNotSupported,
                                "COPY option {other} is not supported"
                            );
                        }
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Header => header = true,
            CopyLegacyOption::Binary => binary = true,
            other => return sql_err!(FeatureNotSupported, "COPY option {other} is not supported"),
        }
    }
    if binary {
        return if delimiter.is_some() {
            sql_err!(SyntaxError, "cannot specify DELIMITER in BINARY mode")
        } else if header {
            sql_err!(FeatureNotSupported, "cannot specify HEADER in BINARY mode")
        } else {
            Ok(CopyFormat::Binary { header: true })
        };
    }
    let delimiter =
        delimiter
            .map(|c| c as u32)
            .unwrap_or(if csv { ',' as u32 } else { '\t' as u32 });
    let Ok(delimiter) = u8::try_from(delimiter) else {
        return sql_err!(
            FeatureNotSupported,
            "COPY delimiter must be a single-byte character"
        );
    };
    if csv {
        Ok(CopyFormat::Csv { header, delimiter })
    } else if header {
        sql_err!(
            FeatureNotSupported,
            "COPY HEADER is available only in CSV mode"
        )
    } else if delimiter != b'\t' {
        sql_err!(
            FeatureNotSupported,
            "COPY text format supports only the tab delimiter"
        )
    } else {
        Ok(CopyFormat::Text)
    }
}

pub async fn copy(
    s: &Session,
    source: &CopySource,
    to: bool,
    target: &CopyTarget,
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> Result<Output> {
    let format = copy_format(options, legacy)?;
    match (to, target) {
        (false, CopyTarget::Stdin) => {
            let CopySource::Table {
                table_name,
                columns,
            } = source
            else {
                return sql_err!(SyntaxError, "COPY FROM needs a table");
            };
            let table = s.engine().table(&object_name(table_name)?)?;
            let columns: Vec<String> = if columns.is_empty() {
                table.def.columns.iter().map(|c| c.name.clone()).collect()
            } else {
                let mut cols = Vec::new();
                for c in columns {
                    let c = crate::ddl::ident_name(c);
                    if table.def.column(&c).is_none() {
                        return sql_err!(
                            UndefinedColumn,
                            "column \"{}\" of relation \"{}\" does not exist",
                            c,
                            table.def.name
                        );
                    }
                    cols.push(c);
                }
                cols
            };
            Ok(Output::CopyIn(CopyIn {
                table: table.def.name.clone(),
                columns,
                format,
            }))
        }
        (true, CopyTarget::Stdout) if matches!(format, CopyFormat::Binary { .. }) => sql_err!(
            FeatureNotSupported,
            "COPY TO STDOUT in the binary format is not supported yet (text or csv)"
        ),
        (true, CopyTarget::Stdout) => {
            let query = match source {
                CopySource::Query(q) => q.as_ref().clone(),
                CopySource::Table {
                    table_name,
                    columns,
                } => {
                    let cols = if columns.is_empty() {
                        "*".to_string()
                    } else {
                        columns
                            .iter()
                            .map(|c| c.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    let q = datafusion::sql::sqlparser::parser::Parser::parse_sql(
                        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                        &format!("SELECT {cols} FROM {table_name}"),
                    )?;
                    match q.into_iter().next() {
                        Some(ast::Statement::Query(q)) => *q,
                        _ => return sql_err!(Internal, "COPY source did not parse"),
                    }
                }
            };
            let mut query = query;
            crate::rewrite::rewrite_knn(&mut query, s.engine())?;
            let Output::Rows { schema, stream } =
                s.query(ast::Statement::Query(Box::new(query))).await?
            else {
                return sql_err!(Internal, "COPY query produced no rows");
            };
            let batches: Vec<RecordBatch> = stream.try_collect().await?;
            let rows = crate::copy::encode(&schema, &batches, &format)?;
            Ok(Output::CopyOut {
                columns: schema.fields().len(),
                format,
                rows,
            })
        }
        _ => sql_err!(
            FeatureNotSupported,
            "COPY supports only FROM STDIN and TO STDOUT (server-side files are not readable)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents_are_written_out() {
        let e = |t: &str| expand_exponent(t);
        assert_eq!(e("1.5E3").as_deref(), Some("1500"));
        assert_eq!(e("-2.5e-3").as_deref(), Some("-0.0025"));
        assert_eq!(e("12.34e1").as_deref(), Some("123.4"));
        assert_eq!(e("+7e0").as_deref(), Some("7"));
        assert_eq!(e("1e"), None);
        assert_eq!(e("abc"), None);
        assert_eq!(e("e5"), None);
    }

    fn query(sql: &str) -> ast::Query {
        use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        use datafusion::sql::sqlparser::parser::Parser;
        match Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parse")
            .remove(0)
        {
            ast::Statement::Query(q) => *q,
            other => panic!("not a query: {other}"),
        }
    }

    #[tokio::test]
    async fn literal_values_are_typed_as_datafusion_types_them() {
        let ctx = datafusion::prelude::SessionContext::new();
        for sql in [
            "VALUES (1, 'a', 2.5, NULL, true)",
            "VALUES (1, 2.5), (-3, 4)",
            "VALUES (NULL), (NULL)",
            "VALUES (1, NULL), (NULL, 'x')",
            "VALUES (-2.5e3, 'it''s', false), (9223372036854775807, '', NULL)",
        ] {
            let fast = literal_values(&query(sql)).expect(sql);
            let planned = ctx.sql(sql).await.expect(sql).collect().await.expect(sql);
            let planned =
                datafusion::arrow::compute::concat_batches(&planned[0].schema(), &planned)
                    .expect("concat");
            assert_eq!(fast.num_columns(), planned.num_columns(), "{sql}");
            for (f, p) in fast.columns().iter().zip(planned.columns()) {
                assert_eq!(f.data_type(), p.data_type(), "{sql}");
                assert_eq!(f.as_ref(), p.as_ref(), "{sql}");
            }
        }
        // Left to DataFusion: expressions, mixed kinds, ragged rows, u64, ORDER BY.
        for sql in [
            "VALUES (1 + 1)",
            "VALUES (1), ('a')",
            "VALUES (1, 2), (3)",
            "VALUES (18446744073709551615)",
            "VALUES (1) ORDER BY 1",
        ] {
            assert!(literal_values(&query(sql)).is_none(), "{sql}");
        }
    }
}
