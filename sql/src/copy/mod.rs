//! COPY data: Postgres text and CSV formats, decoded into Arrow columns of a
//! table and encoded from query results; the binary format decoded.

pub mod binary;
pub mod text;

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, RecordBatch, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use quiver_engine::schema::{ColumnType, TableDef};

use crate::error::{Result, SqlError, StatusCode};
use crate::session::CopyFormat;
use crate::sql_err;
use crate::vector::{array_to_vectors, dimension_mismatch, format_vector, parse_vector_into};

/// Splits COPY data into records of raw fields (`None` = NULL); text-format
/// fields without escapes borrow from the input.
fn records<'a>(data: &'a [u8], format: &CopyFormat) -> Result<Vec<Vec<Option<Cow<'a, str>>>>> {
    let text = std::str::from_utf8(data).map_err(|_| {
        SqlError::new(
            StatusCode::InvalidTextRepresentation,
            "COPY data is not valid UTF-8",
        )
    })?;
    match format {
        CopyFormat::Text => Ok(text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .take_while(|l| *l != "\\.")
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').map(unescape_text).collect())
            .collect()),
        CopyFormat::Binary { .. } => sql_err!(Internal, "binary COPY data read as text"),
        CopyFormat::Csv { header, delimiter } => {
            let mut rows = parse_csv(text, *delimiter as char)?;
            if *header && !rows.is_empty() {
                rows.remove(0);
            }
            Ok(rows
                .into_iter()
                .map(|r| r.into_iter().map(|f| f.map(Cow::Owned)).collect())
                .collect())
        }
    }
}

/// A scan for record boundaries over data that grows at its end: where its
/// last complete record ends (after its record-ending newline; in CSV, one
/// outside quotes), i.e. what can be decoded before the rest has arrived.
/// Each call reads only the bytes added since the last one, so a COPY is
/// scanned once in total however it is split into messages (a record of many
/// messages costs linear time, not quadratic).
#[derive(Debug, Default, Clone, Copy)]
pub struct RecordScan {
    scanned: usize,
    in_quotes: bool,
    end: usize,
    /// Binary format: the header was found (the first "record").
    header_seen: bool,
    /// Binary format: the trailer (or data not in the format) was found:
    /// everything after it goes to the decoder, which rejects it.
    done: bool,
}

impl RecordScan {
    /// Scans what was added to `data` and returns the end of its last
    /// complete record (0 when there is none yet).
    pub fn advance(&mut self, data: &[u8], format: &CopyFormat) -> usize {
        if let CopyFormat::Binary { .. } = format {
            return self.advance_binary(data);
        }
        let csv = matches!(format, CopyFormat::Csv { .. });
        if !csv {
            // Text format has no quoting: the last newline ends the last record.
            if let Some(i) = memchr::memrchr(b'\n', data.get(self.scanned..).unwrap_or_default()) {
                self.end = self.scanned + i + 1;
            }
            self.scanned = self.scanned.max(data.len());
            return self.end;
        }
        for (i, &b) in data.iter().enumerate().skip(self.scanned) {
            match b {
                // A doubled quote toggles twice, so parity tracks "inside quotes".
                b'"' if csv => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => self.end = i + 1,
                _ => {}
            }
        }
        self.scanned = self.scanned.max(data.len());
        self.end
    }

    /// Binary tuples are walked by their field lengths; a tuple not complete
    /// yet is walked again (its field count, not its bytes) when more arrives.
    fn advance_binary(&mut self, data: &[u8]) -> usize {
        while !self.done {
            match binary::next(data, self.scanned, !self.header_seen) {
                binary::Next::Incomplete => break,
                binary::Next::Header(end) | binary::Next::Tuple(end) => {
                    self.header_seen = true;
                    self.scanned = end;
                    self.end = end;
                }
                binary::Next::Trailer(_) | binary::Next::Malformed => self.done = true,
            }
        }
        if self.done {
            self.scanned = data.len();
            self.end = data.len();
        }
        self.end
    }

    /// The first `n` bytes (complete records) were taken out of the data.
    pub fn consumed(&mut self, n: usize) {
        self.scanned = self.scanned.saturating_sub(n);
        self.end = self.end.saturating_sub(n);
    }
}

/// Whether text-format `data` holds the end-of-data line `\.` (decoding stops there).
pub fn has_end_marker(data: &[u8], format: &CopyFormat) -> bool {
    if !matches!(format, CopyFormat::Text) {
        return false;
    }
    // `\.` alone on a line: at the start, or after a newline (found with
    // memchr's vectorised search; this runs over every byte of a COPY).
    let line_is_marker = |at: usize| {
        let rest = &data[at..];
        rest == b"\\."
            || rest == b"\\.\r"
            || rest.starts_with(b"\\.\n")
            || rest.starts_with(b"\\.\r\n")
    };
    line_is_marker(0) || memchr::memmem::find_iter(data, b"\n\\.").any(|at| line_is_marker(at + 1))
}

/// Decodes one text-format field: `\N` is NULL; backslash escapes.
fn unescape_text(f: &str) -> Option<Cow<'_, str>> {
    if f == "\\N" {
        return None;
    }
    if !f.contains('\\') {
        return Some(Cow::Borrowed(f));
    }
    let mut out = String::with_capacity(f.len());
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    Some(Cow::Owned(out))
}

/// CSV as Postgres writes it: quoted fields may hold delimiters, quotes ("") and newlines;
/// an unquoted empty field is NULL.
fn parse_csv(text: &str, delim: char) -> Result<Vec<Vec<Option<String>>>> {
    let mut rows = Vec::new();
    let mut row: Vec<Option<String>> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                in_quotes = true;
                quoted = true;
            }
            '\r' => {}
            '\n' => {
                row.push(if field.is_empty() && !quoted {
                    None
                } else {
                    Some(std::mem::take(&mut field))
                });
                quoted = false;
                if !(row.len() == 1 && row[0].as_deref() == Some("\\.")) {
                    rows.push(std::mem::take(&mut row));
                }
                row.clear();
                any = false;
            }
            c if c == delim => {
                row.push(if field.is_empty() && !quoted {
                    None
                } else {
                    Some(std::mem::take(&mut field))
                });
                quoted = false;
            }
            c => field.push(c),
        }
    }
    if in_quotes {
        return sql_err!(InvalidTextRepresentation, "unterminated CSV quoted field");
    }
    if any {
        row.push(if field.is_empty() && !quoted {
            None
        } else {
            Some(field)
        });
        if !(row.len() == 1 && row[0].as_deref() == Some("\\.")) {
            rows.push(row);
        }
    }
    Ok(rows)
}

fn bad_value(ty: &str, v: &str) -> SqlError {
    SqlError::new(
        StatusCode::InvalidTextRepresentation,
        format!("invalid input syntax for type {ty}: \"{v}\""),
    )
}

/// A `bytea` from its text forms: hex (`\\x0aff`) or escaped
/// (`a\\000b`, octal escapes and doubled backslashes).
pub fn bytea_from_text(s: &str) -> Result<Vec<u8>> {
    let bad = || {
        SqlError::new(
            StatusCode::InvalidTextRepresentation,
            "invalid input syntax for type bytea",
        )
    };
    if let Some(hex) = s.strip_prefix("\\x") {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return Err(bad());
        }
        return digits
            .chunks(2)
            .map(|p| {
                std::str::from_utf8(p)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .ok_or_else(bad)
            })
            .collect();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = s.get(i + 1..i + 4).ok_or_else(bad)?;
            out.push(u8::from_str_radix(octal, 8).map_err(|_| bad())?);
            i += 4;
        }
    }
    Ok(out)
}

/// The elements of a one-dimensional array in the text format,
/// `{a,"b c",NULL}` (`None` for NULL; spaces around elements dropped).
/// `text[]` values from their text forms (`{a,"b c",NULL}`; NULL: a NULL array).
pub fn text_arrays<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Result<ArrayRef> {
    text_lists(values, array_literal)
}

/// A List of Utf8 with one array per value (`None`: NULL), its elements
/// read from the value by `items`.
pub(crate) fn text_lists<T>(
    values: impl Iterator<Item = Option<T>>,
    items: impl Fn(T) -> Result<Vec<Option<String>>>,
) -> Result<ArrayRef> {
    let mut b = datafusion::arrow::array::ListBuilder::new(StringBuilder::new());
    for v in values {
        match v {
            None => b.append_null(),
            Some(v) => {
                for item in items(v)? {
                    b.values().append_option(item);
                }
                b.append(true);
            }
        }
    }
    Ok(Arc::new(b.finish()))
}

pub fn array_literal(text: &str) -> Result<Vec<Option<String>>> {
    let bad = || {
        SqlError::new(
            StatusCode::InvalidTextRepresentation,
            format!("malformed array literal: \"{text}\""),
        )
    };
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(bad)?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Ok(out);
    }
    let mut cur = String::new();
    let (mut quoted, mut was_quoted, mut escaped) = (false, false, false);
    let mut push = |cur: &mut String, was_quoted: bool| {
        let item = std::mem::take(cur);
        let trimmed = if was_quoted {
            item
        } else {
            item.trim().to_string()
        };
        out.push((was_quoted || !trimmed.eq_ignore_ascii_case("null")).then_some(trimmed));
    };
    for c in inner.chars() {
        match c {
            _ if escaped => {
                cur.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            '"' => {
                if !quoted && cur.trim().is_empty() {
                    cur.clear();
                }
                quoted = !quoted;
                was_quoted = true;
            }
            // Spaces around a quoted element are not part of it.
            c if c.is_whitespace() && !quoted && was_quoted => {}
            '{' | '}' if !quoted => return Err(bad()),
            ',' if !quoted => {
                push(&mut cur, was_quoted);
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(bad());
    }
    push(&mut cur, was_quoted);
    Ok(out)
}

/// Builds one column of type `ty` from text values.
pub fn column_from_text(ty: ColumnType, name: &str, values: &[Option<&str>]) -> Result<ArrayRef> {
    macro_rules! build {
        ($builder:ty, $tyname:expr, $parse:expr) => {{
            let mut b = <$builder>::with_capacity(values.len());
            for v in values {
                match v {
                    None => b.append_null(),
                    Some(s) => b.append_value($parse(s.trim()).map_err(|_| bad_value($tyname, s))?),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match ty {
        ColumnType::Int16 => build!(Int16Builder, "smallint", |s: &str| s.parse::<i16>()),
        ColumnType::Int32 => build!(Int32Builder, "integer", |s: &str| s.parse::<i32>()),
        ColumnType::Int64 => build!(Int64Builder, "bigint", |s: &str| s.parse::<i64>()),
        ColumnType::Float32 => build!(Float32Builder, "real", |s: &str| s.parse::<f32>()),
        ColumnType::Float64 => build!(Float64Builder, "double precision", |s: &str| s
            .parse::<f64>()),
        ColumnType::Bool => build!(BooleanBuilder, "boolean", parse_bool),
        ColumnType::Text
        | ColumnType::Varchar(_)
        | ColumnType::Uuid
        | ColumnType::Json
        | ColumnType::Jsonb => {
            // Checked and brought to normal form when written
            // ([`crate::constraints`]).
            let mut b = StringBuilder::with_capacity(
                values.len(),
                values.iter().map(|v| v.map_or(0, |s| s.len())).sum(),
            );
            for v in values {
                b.append_option(*v);
            }
            Arc::new(b.finish())
        }
        ColumnType::Bytea => {
            let mut b = datafusion::arrow::array::BinaryBuilder::with_capacity(values.len(), 0);
            for v in values {
                match v {
                    None => b.append_null(),
                    Some(s) => b.append_value(bytea_from_text(s)?),
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Timestamp | ColumnType::TimestampTz | ColumnType::Date | ColumnType::Time => {
            let type_name = match ty {
                ColumnType::Date => "date",
                ColumnType::Time => "time without time zone",
                ColumnType::TimestampTz => "timestamp with time zone",
                _ => "timestamp",
            };
            let strings: ArrayRef = Arc::new(
                values
                    .iter()
                    .copied()
                    .collect::<datafusion::arrow::array::StringArray>(),
            );
            let opts = datafusion::arrow::compute::CastOptions {
                safe: false,
                ..Default::default()
            };
            datafusion::arrow::compute::cast_with_options(&strings, &ty.arrow_type(), &opts)
                .map_err(|e| {
                    SqlError::new(
                        StatusCode::InvalidTextRepresentation,
                        format!("invalid input syntax for type {type_name}: {e}"),
                    )
                })?
        }
        ColumnType::TextArray => text_arrays(values.iter().copied())?,
        ColumnType::Numeric(..) | ColumnType::NumericAny => {
            let strings: ArrayRef = Arc::new(
                values
                    .iter()
                    .map(|v| v.map(str::trim))
                    .collect::<datafusion::arrow::array::StringArray>(),
            );
            crate::dml::coerce(&strings, ty, name)?
        }
        ColumnType::VectorAny => {
            let strings: ArrayRef = Arc::new(
                values
                    .iter()
                    .copied()
                    .collect::<datafusion::arrow::array::StringArray>(),
            );
            crate::vector::to_vector_list(&strings)?
        }
        ColumnType::Vector(dim) => {
            // Parsing the text of large vectors is the bulk of a COPY: split
            // the rows evenly over the cores, each thread parsing straight into
            // its part of the column's one buffer.
            let threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8);
            let per = values.len().div_ceil(threads).max(MIN_PARSE_ROWS);
            let width = (dim as usize).max(1);
            let mut flat = vec![0.0f32; values.len() * width];
            let mut valid = vec![false; values.len()];
            std::thread::scope(|scope| {
                let handles: Vec<_> = values
                    .chunks(per)
                    .zip(flat.chunks_mut(per * width))
                    .zip(valid.chunks_mut(per))
                    .map(|((v, f), ok)| {
                        scope.spawn(move || fill_vectors(v, dim, name, f, ok, parse_vector_into))
                    })
                    .collect();
                // The first failing row's error, in row order.
                handles.into_iter().try_for_each(|h| {
                    h.join()
                        .unwrap_or_else(|_| sql_err!(Internal, "vector parser thread failed"))
                })
            })?;
            vector_array(dim, flat, valid)?
        }
    })
}

/// Rows of vector text below which a parser thread is not worth starting.
const MIN_PARSE_ROWS: usize = 64;

/// A `vector(dim)` column of `values`, each parsed by `parse` (which adds a
/// vector's components to the end of its buffer).
pub(super) fn parse_vector_column<T: ?Sized>(
    values: &[Option<&T>],
    dim: u32,
    name: &str,
    parse: impl Fn(&T, &mut Vec<f32>) -> Result<()>,
) -> Result<ArrayRef> {
    let mut flat = vec![0.0f32; values.len() * dim as usize];
    let mut valid = vec![false; values.len()];
    fill_vectors(values, dim, name, &mut flat, &mut valid, parse)?;
    vector_array(dim, flat, valid)
}

/// Parses `values` into `flat` (`dim` components a row, left as zeros for
/// NULL) and marks the non-NULL rows in `valid`; every vector must have `dim`
/// components.
fn fill_vectors<T: ?Sized>(
    values: &[Option<&T>],
    dim: u32,
    name: &str,
    flat: &mut [f32],
    valid: &mut [bool],
    parse: impl Fn(&T, &mut Vec<f32>) -> Result<()>,
) -> Result<()> {
    let width = dim as usize;
    let mut one = Vec::with_capacity(width);
    let rows = flat.chunks_exact_mut(width.max(1)).zip(valid.iter_mut());
    for (v, (out, ok)) in values.iter().zip(rows) {
        if let Some(v) = v {
            one.clear();
            parse(v, &mut one)?;
            if one.len() != width {
                return Err(dimension_mismatch(dim, one.len(), name));
            }
            out.copy_from_slice(&one);
            *ok = true;
        }
    }
    Ok(())
}

/// A `vector(dim)` column from a flat buffer and a validity list.
pub(super) fn vector_array(dim: u32, flat: Vec<f32>, valid: Vec<bool>) -> Result<ArrayRef> {
    let field = Arc::new(Field::new("item", DataType::Float32, true));
    let nulls = if valid.iter().all(|v| *v) {
        None
    } else {
        Some(valid.into())
    };
    Ok(Arc::new(
        datafusion::arrow::array::FixedSizeListArray::try_new(
            field,
            dim as i32,
            Arc::new(datafusion::arrow::array::Float32Array::from(flat)),
            nulls,
        )?,
    ))
}

fn parse_bool(s: &str) -> std::result::Result<bool, ()> {
    match s.to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Ok(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Ok(false),
        _ => Err(()),
    }
}

/// Decodes COPY data for `columns` of `def` into one batch with the table's schema;
/// columns not listed are NULL.
pub fn decode(
    def: &TableDef,
    columns: &[String],
    data: &[u8],
    format: &CopyFormat,
) -> Result<(RecordBatch, bool)> {
    if let CopyFormat::Binary { header } = format {
        let (recs, ended) = binary::records(data, *header)?;
        return Ok((batch_of(def, columns, &recs, binary::column)?, ended));
    }
    let ended = has_end_marker(data, format);
    let owned = records(data, format)?;
    let recs: Vec<Vec<Option<&str>>> = owned
        .iter()
        .map(|r| r.iter().map(|f| f.as_deref()).collect())
        .collect();
    Ok((batch_of(def, columns, &recs, column_from_text)?, ended))
}

/// One batch with the table's schema from records of raw fields for
/// `columns` (the others NULL), each column built by `build`.
fn batch_of<T: ?Sized>(
    def: &TableDef,
    columns: &[String],
    recs: &[Vec<Option<&T>>],
    build: fn(ColumnType, &str, &[Option<&T>]) -> Result<ArrayRef>,
) -> Result<RecordBatch> {
    for (i, r) in recs.iter().enumerate() {
        if r.len() != columns.len() {
            let what = if r.len() < columns.len() {
                "missing data for"
            } else {
                "extra data after last expected"
            };
            return sql_err!(
                BadCopyFileFormat,
                "{what} column (COPY row {}: {} fields, expected {})",
                i + 1,
                r.len(),
                columns.len()
            );
        }
    }
    // NULLs allowed until the caller has filled defaults and checked NOT NULL.
    let schema = def.arrow_schema_with_nulls();
    let mut arrays = Vec::with_capacity(def.columns.len());
    for col in &def.columns {
        let arr = match columns.iter().position(|c| c == &col.name) {
            Some(pos) => {
                let vals: Vec<Option<&T>> = recs.iter().map(|r| r[pos]).collect();
                build(col.ty, &col.name, &vals).map_err(|e| {
                    SqlError::new(e.code, format!("{} (column {})", e.message, col.name))
                })?
            }
            None => datafusion::arrow::array::new_null_array(&col.ty.arrow_type(), recs.len()),
        };
        arrays.push(arr);
    }
    let opts = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(recs.len()));
    Ok(RecordBatch::try_new_with_options(schema, arrays, &opts)?)
}

/// Postgres's text rendering of one value (`None` = NULL).
pub fn format_value(col: &ArrayRef, row: usize) -> Result<Option<String>> {
    if col.is_null(row) {
        return Ok(None);
    }
    match col.data_type() {
        DataType::Boolean => {
            let b = col
                .as_any()
                .downcast_ref::<datafusion::arrow::array::BooleanArray>();
            Ok(b.map(|b| if b.value(row) { "t" } else { "f" }.to_string()))
        }
        DataType::FixedSizeList(..) | DataType::List(_) => {
            let v = array_to_vectors(&col.slice(row, 1))?;
            Ok(v.into_iter().next().flatten().map(|v| format_vector(&v)))
        }
        DataType::Binary => {
            let b = col
                .as_any()
                .downcast_ref::<datafusion::arrow::array::BinaryArray>();
            Ok(b.map(|b| {
                let hex: String = b.value(row).iter().map(|x| format!("{x:02x}")).collect();
                format!("\\x{hex}")
            }))
        }
        DataType::Time64(_) | DataType::Time32(_) => {
            let micros = datafusion::arrow::compute::cast(
                &col.slice(row, 1),
                &DataType::Time64(datafusion::arrow::datatypes::TimeUnit::Microsecond),
            )?;
            let micros = datafusion::arrow::array::AsArray::as_primitive_opt::<
                datafusion::arrow::datatypes::Time64MicrosecondType,
            >(micros.as_ref())
            .map(|a| a.value(0));
            Ok(micros.map(text::time_text))
        }
        DataType::Interval(_) | DataType::Duration(_) => text::interval_value(col, row).map(Some),
        DataType::Decimal128(p, s) if (*p, *s) == quiver_engine::schema::NUMERIC_ANY => {
            let f = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())?;
            Ok(Some(text::trim_fraction(f.value(row).to_string())))
        }
        _ => {
            // PostgreSQL's ISO style: `2024-01-02 03:04:05[.123]`, `+00` for
            // a timestamptz (always UTC in Quiver).
            let options = FormatOptions::default()
                .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
                .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f+00"));
            let f = ArrayFormatter::try_new(col.as_ref(), &options)?;
            Ok(Some(f.value(row).to_string()))
        }
    }
}

/// Encodes query results as COPY rows (each a complete line).
pub fn encode(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: &CopyFormat,
) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    if let CopyFormat::Csv {
        header: true,
        delimiter,
    } = format
    {
        let names: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| csv_quote(f.name(), *delimiter as char))
            .collect();
        out.push(format!("{}\n", names.join(&(*delimiter as char).to_string())).into_bytes());
    }
    for b in batches {
        for row in 0..b.num_rows() {
            let mut line = String::new();
            for (i, col) in b.columns().iter().enumerate() {
                let v = format_value(col, row)?;
                match format {
                    CopyFormat::Text => {
                        if i > 0 {
                            line.push('\t');
                        }
                        match v {
                            None => line.push_str("\\N"),
                            Some(s) => line.push_str(&escape_text(&s)),
                        }
                    }
                    CopyFormat::Binary { .. } => {
                        return sql_err!(FeatureNotSupported, "binary COPY TO is not supported");
                    }
                    CopyFormat::Csv { delimiter, .. } => {
                        if i > 0 {
                            line.push(*delimiter as char);
                        }
                        if let Some(s) = v {
                            line.push_str(&csv_quote(&s, *delimiter as char));
                        }
                    }
                }
            }
            line.push('\n');
            out.push(line.into_bytes());
        }
    }
    Ok(out)
}

fn escape_text(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\t' => o.push_str("\\t"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            c => o.push(c),
        }
    }
    o
}

fn csv_quote(s: &str, delim: char) -> String {
    if s.is_empty() || s.contains([delim, '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;

    fn complete_records(data: &[u8], format: &CopyFormat) -> usize {
        RecordScan::default().advance(data, format)
    }

    #[test]
    fn vector_text_parsed_over_threads_keeps_row_order() {
        // Enough rows for every core to take a part; NULLs and a row per part.
        let texts: Vec<Option<String>> = (0..1000)
            .map(|i| (i % 7 != 3).then(|| format!("[{i}, {}.5,-{i}e-1]", i + 1)))
            .collect();
        let values: Vec<Option<&str>> = texts.iter().map(|t| t.as_deref()).collect();
        let col = column_from_text(ColumnType::Vector(3), "v", &values).expect("parsed");
        let col = col.as_fixed_size_list();
        assert_eq!(col.len(), 1000);
        for i in 0..1000 {
            assert_eq!(col.is_null(i), i % 7 == 3, "row {i}");
            if !col.is_null(i) {
                let v = col.value(i);
                let v = v.as_primitive::<datafusion::arrow::datatypes::Float32Type>();
                let want = [i as f32, i as f32 + 1.5, -(i as f32) / 10.0];
                assert_eq!(v.values().as_ref(), &want, "row {i}");
            }
        }
        // The error is the first bad row's, whichever thread parsed it.
        let mut bad = values.clone();
        bad[900] = Some("[1,2]");
        bad[700] = Some("[1,2,3,4]");
        let e = column_from_text(ColumnType::Vector(3), "v", &bad).expect_err("bad");
        assert!(e.message.contains("not 4"), "{}", e.message);
    }

    #[test]
    fn complete_records_end_at_a_record_boundary() {
        let text = CopyFormat::Text;
        assert_eq!(complete_records(b"1\ta\n2\tb", &text), 4);
        assert_eq!(complete_records(b"1\ta", &text), 0);
        assert_eq!(complete_records(b"1\ta\n", &text), 4);
        let csv = CopyFormat::Csv {
            header: false,
            delimiter: b',',
        };
        // The newline inside quotes is part of a field, not the end of a record.
        assert_eq!(complete_records(b"1,\"x\ny\"\n2,\"z", &csv), 8);
        assert_eq!(complete_records(b"1,\"x\ny", &csv), 0);
        assert_eq!(complete_records(b"1,\"a\"\"b\"\n", &csv), 9);
        // Fed in pieces, with the quote state carried across them.
        let mut scan = RecordScan::default();
        let mut data = b"1,\"x\n".to_vec();
        assert_eq!(scan.advance(&data, &csv), 0);
        data.extend_from_slice(b"y\"\n2,");
        assert_eq!(scan.advance(&data, &csv), 8);
        let rest = data.split_off(8);
        scan.consumed(8);
        data = rest;
        data.extend_from_slice(b"\"a\nb\"\n");
        assert_eq!(scan.advance(&data, &csv), data.len());
        assert!(has_end_marker(b"1\ta\n\\.\n", &text));
        assert!(has_end_marker(b"1\ta\n\\.\r\n", &text));
        assert!(!has_end_marker(b"1\t\\.x\n", &text));
        assert!(!has_end_marker(b"\\.\n", &csv));
    }

    #[test]
    fn text_and_csv_records() {
        let r = records(b"1\ta\\tb\t\\N\n2\tx\ty\n\\.\n", &CopyFormat::Text).expect("text");
        assert_eq!(
            r,
            vec![
                vec![Some("1".into()), Some("a\tb".into()), None],
                vec![Some("2".into()), Some("x".into()), Some("y".into())]
            ]
        );
        let c = records(
            b"id,t\n1,\"a,\"\"b\"\"\"\n2,\n",
            &CopyFormat::Csv {
                header: true,
                delimiter: b',',
            },
        )
        .expect("csv");
        assert_eq!(
            c,
            vec![
                vec![Some("1".into()), Some("a,\"b\"".into())],
                vec![Some("2".into()), None]
            ]
        );
    }
}
