//! Result rows: Arrow record batches → RowDescription fields and DataRow
//! messages, in the text or binary format the client asked for per column.
//!
//! Each batch column is first normalised (`cast`) to one of a few physical
//! types (e.g. `UInt8` → `Int16`, any timestamp unit → microseconds,
//! dictionaries → their values), then written value by value. The Postgres
//! type of a column is [`WireType::of`] its Arrow type; the two agree by
//! construction. NULL is written as length -1 in both formats.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, DurationMicrosecondArray,
    FixedSizeListArray, Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, Int64Array,
    IntervalMonthDayNanoArray, LargeListArray, LargeStringArray, ListArray, StringArray,
    StringViewArray, Time64MicrosecondArray, TimestampMicrosecondArray, UInt32Array, UInt64Array,
};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float32Type, IntervalUnit, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::{BufMut, BytesMut};
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::{Stream, StreamExt, stream};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
use quiver_sql::{SqlError, StatusCode};

use crate::errors;
use crate::types::WireType;
use crate::values;

static DISPLAY_OPTIONS: FormatOptions<'static> = FormatOptions::new();

/// The RowDescription fields of a result schema.
pub(crate) fn field_infos(schema: &Schema, formats: &[FieldFormat]) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let wire = WireType::of_field(field);
            FieldInfo::new(
                field.name().clone(),
                None,
                None,
                wire.pg_type(),
                formats.get(i).copied().unwrap_or(FieldFormat::Text),
            )
            .with_type_size(wire.type_size())
        })
        .collect()
}

/// The RowDescription message for `fields`.
pub(crate) fn row_description(fields: &[FieldInfo]) -> RowDescription {
    RowDescription::new(fields.iter().map(FieldDescription::from).collect())
}

/// The per-column result formats a Bind asked for, checked against the
/// column count like Postgres does.
pub(crate) fn result_formats(format: &Format, columns: usize) -> PgWireResult<Vec<FieldFormat>> {
    match format {
        Format::UnifiedText => Ok(vec![FieldFormat::Text; columns]),
        Format::UnifiedBinary => Ok(vec![FieldFormat::Binary; columns]),
        Format::Individual(codes) if codes.len() == columns => {
            Ok(codes.iter().map(|c| FieldFormat::from(*c)).collect())
        }
        Format::Individual(codes) => Err(errors::protocol_violation(format!(
            "bind message has {} result formats but query has {columns} columns",
            codes.len()
        ))),
    }
}

/// Turns a record batch stream into a DataRow stream. A failing batch becomes
/// one `Err` item (an ErrorResponse on the wire), never a dropped connection.
pub(crate) fn row_stream(
    batches: SendableRecordBatchStream,
    schema: &Schema,
    formats: Vec<FieldFormat>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    // The types the RowDescription announced (a batch's own schema may have
    // lost the field metadata that names a text column's type).
    let wire: Vec<WireType> = schema
        .fields()
        .iter()
        .map(|f| WireType::of_field(f))
        .collect();
    batches.flat_map(move |batch| {
        let rows: Vec<PgWireResult<DataRow>> = match batch {
            Ok(batch) => match encode_batch(&batch, &formats, &wire) {
                Ok(rows) => rows.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(errors::from_sql(e))],
            },
            Err(e) => vec![Err(errors::from_datafusion(&e))],
        };
        stream::iter(rows)
    })
}

/// Encodes every row of `batch`; `formats[i]` is column i's format (text
/// when missing), `wire[i]` its announced type (from its Arrow type when
/// missing).
pub(crate) fn encode_batch(
    batch: &RecordBatch,
    formats: &[FieldFormat],
    wire: &[WireType],
) -> Result<Vec<DataRow>, SqlError> {
    let columns = batch
        .columns()
        .iter()
        .map(normalize)
        .collect::<Result<Vec<_>, _>>()?;
    let writers = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let format = formats.get(i).copied().unwrap_or(FieldFormat::Text);
            let wire = wire
                .get(i)
                .copied()
                .unwrap_or_else(|| WireType::of(c.data_type()));
            ColumnWriter::new(c.as_ref(), format, wire)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let field_count = i16::try_from(writers.len()).map_err(|_| {
        SqlError::new(
            StatusCode::ProgramLimitExceeded,
            "tables can have at most 32767 columns",
        )
    })?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut buf = BytesMut::with_capacity(64 * writers.len().max(1));
    for row in 0..batch.num_rows() {
        for writer in &writers {
            writer.write(row, &mut buf)?;
        }
        rows.push(DataRow::new(buf.split(), field_count));
    }
    Ok(rows)
}

fn internal(e: impl std::fmt::Display) -> SqlError {
    SqlError::new(StatusCode::Internal, e.to_string())
}

/// Casts a column to the physical type its writer handles.
fn normalize(column: &ArrayRef) -> Result<ArrayRef, SqlError> {
    let target = match column.data_type() {
        DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::Float16 => DataType::Float32,
        DataType::Date64 => DataType::Date32,
        DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            DataType::Binary
        }
        DataType::Timestamp(unit, tz) if *unit != TimeUnit::Microsecond => {
            DataType::Timestamp(TimeUnit::Microsecond, tz.clone())
        }
        DataType::Time32(_) | DataType::Time64(TimeUnit::Nanosecond) => {
            DataType::Time64(TimeUnit::Microsecond)
        }
        DataType::Interval(unit) if *unit != IntervalUnit::MonthDayNano => {
            DataType::Interval(IntervalUnit::MonthDayNano)
        }
        DataType::Duration(unit) if *unit != TimeUnit::Microsecond => {
            DataType::Duration(TimeUnit::Microsecond)
        }
        DataType::Dictionary(_, value) => {
            let values = cast(column, value).map_err(internal)?;
            return normalize(&values);
        }
        _ => return Ok(Arc::clone(column)),
    };
    cast(column, &target).map_err(internal)
}

/// A column, downcast once per batch.
enum Column<'a> {
    Bool(&'a BooleanArray),
    Int2(&'a Int16Array),
    Int4(&'a Int32Array),
    Int8(&'a Int64Array),
    Oid(&'a UInt32Array),
    Char(&'a Int8Array),
    UInt64(&'a UInt64Array),
    Float4(&'a Float32Array),
    Float8(&'a Float64Array),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    Bytea(&'a BinaryArray),
    Date(&'a Date32Array),
    Timestamp(&'a TimestampMicrosecondArray, bool),
    Time(&'a Time64MicrosecondArray),
    /// An interval (a duration counts as one of microseconds).
    Interval(&'a IntervalMonthDayNanoArray),
    Duration(&'a DurationMicrosecondArray),
    /// A decimal, and whether it is an unconstrained `numeric` (Quiver's
    /// `numeric(38,10)`), written without trailing fractional zeros as
    /// PostgreSQL writes such a value (`1.5`, not `1.5000000000`).
    Numeric(ArrayFormatter<'a>, bool),
    FixedVector(&'a FixedSizeListArray),
    Vector(&'a ListArray),
    LargeVector(&'a LargeListArray),
    /// A one-dimensional array of scalars (`text[]`, `oid[]`, …): the list
    /// and a writer of its elements.
    Array(&'a ListArray, Box<ColumnWriter<'a>>),
    Display(ArrayFormatter<'a>),
}

struct ColumnWriter<'a> {
    nulls: Option<NullBuffer>,
    column: Column<'a>,
    format: FieldFormat,
    /// The announced type: text columns of type uuid and jsonb have binary
    /// forms of their own.
    wire: WireType,
}

fn downcast<T>(array: Option<T>) -> Result<T, SqlError> {
    array.ok_or_else(|| internal("unexpected array type while encoding a result column"))
}

impl<'a> ColumnWriter<'a> {
    fn new(array: &'a dyn Array, format: FieldFormat, wire: WireType) -> Result<Self, SqlError> {
        let formatter = || ArrayFormatter::try_new(array, &DISPLAY_OPTIONS).map_err(internal);
        let column = match array.data_type() {
            DataType::Boolean => Column::Bool(downcast(array.as_boolean_opt())?),
            DataType::Int16 => Column::Int2(downcast(array.as_primitive_opt())?),
            DataType::Int32 => Column::Int4(downcast(array.as_primitive_opt())?),
            DataType::Int64 => Column::Int8(downcast(array.as_primitive_opt())?),
            DataType::UInt32 => Column::Oid(downcast(array.as_primitive_opt())?),
            DataType::Int8 => Column::Char(downcast(array.as_primitive_opt())?),
            DataType::UInt64 => Column::UInt64(downcast(array.as_primitive_opt())?),
            DataType::Float32 => Column::Float4(downcast(array.as_primitive_opt())?),
            DataType::Float64 => Column::Float8(downcast(array.as_primitive_opt())?),
            DataType::Utf8 => Column::Utf8(downcast(array.as_string_opt())?),
            DataType::LargeUtf8 => Column::LargeUtf8(downcast(array.as_string_opt())?),
            DataType::Utf8View => Column::Utf8View(downcast(array.as_string_view_opt())?),
            DataType::Binary => Column::Bytea(downcast(array.as_binary_opt())?),
            DataType::Date32 => Column::Date(downcast(array.as_primitive_opt())?),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                Column::Timestamp(downcast(array.as_primitive_opt())?, tz.is_some())
            }
            DataType::Time64(TimeUnit::Microsecond) => {
                Column::Time(downcast(array.as_primitive_opt())?)
            }
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                Column::Interval(downcast(array.as_primitive_opt())?)
            }
            DataType::Duration(TimeUnit::Microsecond) => {
                Column::Duration(downcast(array.as_primitive_opt())?)
            }
            DataType::Decimal128(p, s) => {
                Column::Numeric(formatter()?, (*p, *s) == quiver_sql::NUMERIC_ANY)
            }
            DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal256(..) => {
                Column::Numeric(formatter()?, false)
            }
            dt => match (WireType::of(dt), dt) {
                (WireType::Vector, DataType::FixedSizeList(..)) => {
                    Column::FixedVector(downcast(array.as_fixed_size_list_opt())?)
                }
                (WireType::Vector, DataType::List(_)) => {
                    Column::Vector(downcast(array.as_list_opt())?)
                }
                (WireType::Vector, DataType::LargeList(_)) => {
                    Column::LargeVector(downcast(array.as_list_opt())?)
                }
                (WireType::Array(_), DataType::List(item)) => {
                    let list: &ListArray = downcast(array.as_list_opt())?;
                    let elems = ColumnWriter::new(
                        list.values().as_ref(),
                        format,
                        WireType::of(item.data_type()),
                    )?;
                    Column::Array(list, Box::new(elems))
                }
                _ => Column::Display(formatter()?),
            },
        };
        Ok(Self {
            nulls: array.logical_nulls(),
            column,
            format,
            wire,
        })
    }

    /// Appends the length-prefixed value at `row`.
    fn write(&self, row: usize, buf: &mut BytesMut) -> Result<(), SqlError> {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            buf.put_i32(-1);
            return Ok(());
        }
        let start = buf.len();
        buf.put_i32(0);
        match self.format {
            FieldFormat::Text => self.write_text(row, buf)?,
            FieldFormat::Binary => self.write_binary(row, buf)?,
        }
        let len = i32::try_from(buf.len() - start - 4)
            .map_err(|_| SqlError::new(StatusCode::ProgramLimitExceeded, "value too large"))?;
        buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    fn write_text(&self, row: usize, buf: &mut BytesMut) -> Result<(), SqlError> {
        let text: String = match &self.column {
            Column::Bool(a) => {
                buf.put_u8(if a.value(row) { b't' } else { b'f' });
                return Ok(());
            }
            Column::Int2(a) => a.value(row).to_string(),
            Column::Oid(a) => a.value(row).to_string(),
            Column::Char(a) => {
                // `'\0'` prints as the empty string, as PostgreSQL prints it.
                if a.value(row) != 0 {
                    buf.put_u8(a.value(row) as u8);
                }
                return Ok(());
            }
            Column::Int4(a) => a.value(row).to_string(),
            Column::Int8(a) => a.value(row).to_string(),
            Column::UInt64(a) => a.value(row).to_string(),
            Column::Float4(a) => values::float4_text(a.value(row)),
            Column::Float8(a) => values::float8_text(a.value(row)),
            Column::Utf8(a) => return put_str(buf, a.value(row)),
            Column::LargeUtf8(a) => return put_str(buf, a.value(row)),
            Column::Utf8View(a) => return put_str(buf, a.value(row)),
            Column::Bytea(a) => {
                let bytes = a.value(row);
                buf.reserve(2 + 2 * bytes.len());
                buf.put_slice(b"\\x");
                for b in bytes {
                    buf.put_slice(&HEX[usize::from(*b)]);
                }
                return Ok(());
            }
            Column::Date(a) => values::date_text(i64::from(a.value(row))),
            Column::Timestamp(a, tz) => values::timestamp_text(a.value(row), *tz),
            Column::Time(a) => values::time_text(a.value(row)),
            Column::Interval(_) | Column::Duration(_) => {
                let (months, days, micros) = self.interval(row);
                values::interval_text(months, days, micros)
            }
            Column::Numeric(f, trim) => numeric_text(f, row, *trim),
            Column::Display(f) => f.value(row).to_string(),
            Column::FixedVector(_) | Column::Vector(_) | Column::LargeVector(_) => {
                let v = self.vector(row)?;
                values::vector_text(vector_values(&v)?, buf);
                return Ok(());
            }
            Column::Array(list, elems) => {
                // `{a,"b c",NULL}`: an element is quoted when it is empty,
                // NULL as text, or holds a space or one of `{}",\`.
                let offsets = list.value_offsets();
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                buf.put_u8(b'{');
                let mut item = BytesMut::new();
                for i in start..end {
                    if i > start {
                        buf.put_u8(b',');
                    }
                    if elems.is_null(i) {
                        buf.put_slice(b"NULL");
                        continue;
                    }
                    item.clear();
                    elems.write_text(i, &mut item)?;
                    let quote = item.is_empty()
                        || item.eq_ignore_ascii_case(b"null")
                        || item
                            .iter()
                            .any(|b| b"{}\",\\".contains(b) || b.is_ascii_whitespace());
                    if quote {
                        buf.put_u8(b'"');
                        for b in item.iter() {
                            if *b == b'"' || *b == b'\\' {
                                buf.put_u8(b'\\');
                            }
                            buf.put_u8(*b);
                        }
                        buf.put_u8(b'"');
                    } else {
                        buf.put_slice(&item);
                    }
                }
                buf.put_u8(b'}');
                return Ok(());
            }
        };
        buf.put_slice(text.as_bytes());
        Ok(())
    }

    fn write_binary(&self, row: usize, buf: &mut BytesMut) -> Result<(), SqlError> {
        match &self.column {
            Column::Bool(a) => buf.put_u8(u8::from(a.value(row))),
            Column::Int2(a) => buf.put_i16(a.value(row)),
            Column::Int4(a) => buf.put_i32(a.value(row)),
            Column::Int8(a) => buf.put_i64(a.value(row)),
            Column::Oid(a) => buf.put_u32(a.value(row)),
            Column::Char(a) => buf.put_i8(a.value(row)),
            Column::UInt64(a) => values::numeric_binary(&a.value(row).to_string(), buf)?,
            Column::Float4(a) => buf.put_f32(a.value(row)),
            Column::Float8(a) => buf.put_f64(a.value(row)),
            Column::Utf8(a) => values::text_binary(self.wire, a.value(row), buf)?,
            Column::LargeUtf8(a) => values::text_binary(self.wire, a.value(row), buf)?,
            Column::Utf8View(a) => values::text_binary(self.wire, a.value(row), buf)?,
            Column::Bytea(a) => buf.put_slice(a.value(row)),
            Column::Date(a) => {
                let days = i64::from(a.value(row)) - values::PG_EPOCH_DAYS;
                buf.put_i32(i32::try_from(days).map_err(|_| out_of_range("date"))?);
            }
            Column::Timestamp(a, _) => {
                let micros = a
                    .value(row)
                    .checked_sub(values::PG_EPOCH_MICROS)
                    .ok_or_else(|| out_of_range("timestamp"))?;
                buf.put_i64(micros);
            }
            Column::Time(a) => buf.put_i64(a.value(row)),
            Column::Interval(_) | Column::Duration(_) => {
                let (months, days, micros) = self.interval(row);
                buf.put_i64(micros);
                buf.put_i32(days);
                buf.put_i32(months);
            }
            Column::Numeric(f, trim) => values::numeric_binary(&numeric_text(f, row, *trim), buf)?,
            Column::Display(f) => buf.put_slice(f.value(row).to_string().as_bytes()),
            Column::FixedVector(_) | Column::Vector(_) | Column::LargeVector(_) => {
                let v = self.vector(row)?;
                values::vector_binary(vector_values(&v)?, buf)?;
            }
            Column::Array(list, elems) => {
                // Dimensions, a NULL flag, the element type, the length and
                // lower bound, then each element as a length and its bytes.
                let offsets = list.value_offsets();
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                let elem_oid = elems.wire.pg_type().oid();
                if start == end {
                    buf.put_i32(0);
                    buf.put_i32(0);
                    buf.put_u32(elem_oid);
                    return Ok(());
                }
                let len = i32::try_from(end - start).map_err(|_| out_of_range("array"))?;
                buf.put_i32(1);
                buf.put_i32(i32::from((start..end).any(|i| elems.is_null(i))));
                buf.put_u32(elem_oid);
                buf.put_i32(len);
                buf.put_i32(1);
                for i in start..end {
                    elems.write(i, buf)?;
                }
            }
        }
        Ok(())
    }

    fn is_null(&self, row: usize) -> bool {
        self.nulls.as_ref().is_some_and(|n| n.is_null(row))
    }

    /// The Float32 child array holding the vector at `row`.
    fn vector(&self, row: usize) -> Result<ArrayRef, SqlError> {
        match &self.column {
            Column::FixedVector(a) => Ok(a.value(row)),
            Column::Vector(a) => Ok(a.value(row)),
            Column::LargeVector(a) => Ok(a.value(row)),
            _ => Err(internal("not a vector column")),
        }
    }
}

fn vector_values(child: &ArrayRef) -> Result<&[f32], SqlError> {
    let floats = downcast(child.as_primitive_opt::<Float32Type>())?;
    if floats.null_count() > 0 {
        return Err(SqlError::new(
            StatusCode::DataException,
            "vector must not contain NULL elements",
        ));
    }
    Ok(floats.values())
}

fn put_str(buf: &mut BytesMut, s: &str) -> Result<(), SqlError> {
    buf.put_slice(s.as_bytes());
    Ok(())
}

impl ColumnWriter<'_> {
    /// An interval's months, days and microseconds; a duration's days
    /// are its whole 24 hours, as PostgreSQL's timestamp difference has them.
    fn interval(&self, row: usize) -> (i32, i32, i64) {
        match &self.column {
            Column::Interval(a) => {
                let v = a.value(row);
                (v.months, v.days, v.nanoseconds / 1_000)
            }
            Column::Duration(a) => quiver_sql::copy::text::duration_parts(a.value(row)),
            _ => (0, 0, 0),
        }
    }
}

/// A decimal's text, trimmed of trailing fractional zeros if `trim`.
fn numeric_text(f: &ArrayFormatter<'_>, row: usize, trim: bool) -> String {
    let text = f.value(row).to_string();
    if trim {
        quiver_sql::copy::text::trim_fraction(text)
    } else {
        text
    }
}

fn out_of_range(what: &str) -> SqlError {
    SqlError::new(
        StatusCode::InvalidParameterValue,
        format!("{what} out of range"),
    )
}

static HEX: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    table
};

/// Turns a DataRow's body back into its values (test helper).
#[cfg(test)]
pub(crate) fn split_row(row: &DataRow) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut rest: &[u8] = &row.data;
    while rest.len() >= 4 {
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        rest = &rest[4..];
        if len < 0 {
            out.push(None);
        } else {
            out.push(Some(rest[..len as usize].to_vec()));
            rest = &rest[len as usize..];
        }
    }
    out
}

#[cfg(test)]
mod tests;
