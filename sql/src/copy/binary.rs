//! PostgreSQL's binary COPY format (what psycopg's `write_row` with
//! `FORMAT BINARY` sends): an 11-byte signature, flags and a header
//! extension, then one tuple per row — a field count and each field as a
//! length (-1: NULL) and the bytes of its type's binary form — and a trailer
//! (a field count of -1).

use std::fmt::Write as _;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use quiver_engine::schema::ColumnType;

use crate::error::{Result, SqlError, StatusCode};
use crate::sql_err;
use crate::vector::parse_vector_binary;

/// The signature a binary COPY stream starts with.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (Postgres' epoch).
pub const PG_EPOCH_DAYS: i64 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
pub const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS * 86_400_000_000;
/// Signature, flags and the extension's length.
const FIXED_HEADER: usize = 19;

/// What starts at a position of binary COPY data.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Not all of it has arrived.
    Incomplete,
    /// The header (only at the start), a tuple or the trailer, ending there.
    Header(usize),
    Tuple(usize),
    Trailer(usize),
    /// Not the binary format: the decoder reports it.
    Malformed,
}

fn i16_at(data: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn i32_at(data: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// What starts at `pos` of `data`: the header when `header` (it has not been
/// seen yet), else a tuple or the trailer. Walks the field lengths only.
pub(super) fn next(data: &[u8], pos: usize, header: bool) -> Next {
    if header {
        let Some(ext) = i32_at(data, pos + FIXED_HEADER - 4) else {
            return Next::Incomplete;
        };
        let Ok(ext) = usize::try_from(ext) else {
            return Next::Malformed;
        };
        let end = pos + FIXED_HEADER + ext;
        return if data.len() < end {
            Next::Incomplete
        } else {
            Next::Header(end)
        };
    }
    let Some(count) = i16_at(data, pos) else {
        return Next::Incomplete;
    };
    if count == -1 {
        return Next::Trailer(pos + 2);
    }
    if count < 0 {
        return Next::Malformed;
    }
    let mut at = pos + 2;
    for _ in 0..count {
        let Some(len) = i32_at(data, at) else {
            return Next::Incomplete;
        };
        at += 4;
        match len {
            -1 => {}
            l if l < 0 => return Next::Malformed,
            l => at += l as usize,
        }
    }
    if data.len() < at {
        Next::Incomplete
    } else {
        Next::Tuple(at)
    }
}

/// One tuple's fields (`None`: NULL).
pub(super) type Record<'a> = Vec<Option<&'a [u8]>>;

fn bad_format(message: impl Into<String>) -> SqlError {
    SqlError::new(StatusCode::BadCopyFileFormat, message)
}

/// The tuples of `data` as raw fields (`None`: NULL), after checking and
/// skipping the header when `header`; and whether the trailer ended them.
/// `data` holds complete tuples (and nothing but the trailer may follow the last).
pub(super) fn records(data: &[u8], header: bool) -> Result<(Vec<Record<'_>>, bool)> {
    let mut pos = 0;
    if header {
        if !data.starts_with(SIGNATURE) {
            return Err(bad_format("COPY file signature not recognized"));
        }
        let flags = i32_at(data, SIGNATURE.len()).unwrap_or(0);
        if flags & (1 << 16) != 0 {
            return Err(bad_format("invalid COPY file header (WITH OIDS)"));
        }
        if flags & !0xffff & !(1 << 16) != 0 {
            return Err(bad_format(
                "unrecognized critical flags in COPY file header",
            ));
        }
        pos = match next(data, 0, true) {
            Next::Header(end) => end,
            Next::Malformed => return Err(bad_format("invalid COPY file header (wrong length)")),
            _ => return Err(bad_format("invalid COPY file header (missing length)")),
        };
    }
    let mut rows = Vec::new();
    while pos < data.len() {
        match next(data, pos, false) {
            Next::Tuple(end) => {
                let count = i16_at(data, pos).unwrap_or(0) as usize;
                let mut fields = Vec::with_capacity(count);
                let mut at = pos + 2;
                for _ in 0..count {
                    let len = i32_at(data, at).unwrap_or(-1);
                    at += 4;
                    if len < 0 {
                        fields.push(None);
                    } else {
                        fields.push(Some(&data[at..at + len as usize]));
                        at += len as usize;
                    }
                }
                rows.push(fields);
                pos = end;
            }
            Next::Trailer(end) => {
                if end != data.len() {
                    return Err(bad_format("received copy data after EOF marker"));
                }
                return Ok((rows, true));
            }
            Next::Incomplete => return Err(bad_format("unexpected EOF in COPY data")),
            Next::Malformed | Next::Header(_) => {
                return Err(bad_format("invalid field size in COPY data"));
            }
        }
    }
    Ok((rows, false))
}

fn bad_value(type_name: &str, column: &str) -> SqlError {
    SqlError::new(
        StatusCode::InvalidBinaryRepresentation,
        format!("incorrect binary data format for type {type_name} (column {column})"),
    )
}

/// Builds one column of type `ty` from binary values.
pub(super) fn column(ty: ColumnType, name: &str, values: &[Option<&[u8]>]) -> Result<ArrayRef> {
    macro_rules! fixed {
        ($builder:ty, $native:ty, $tyname:expr) => {{
            let mut b = <$builder>::with_capacity(values.len());
            for v in values {
                match v {
                    None => b.append_null(),
                    Some(bytes) => b.append_value(<$native>::from_be_bytes(
                        (*bytes).try_into().map_err(|_| bad_value($tyname, name))?,
                    )),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match ty {
        ColumnType::Int16 => fixed!(Int16Builder, i16, "smallint"),
        ColumnType::Int32 => fixed!(Int32Builder, i32, "integer"),
        ColumnType::Int64 => fixed!(Int64Builder, i64, "bigint"),
        ColumnType::Float32 => fixed!(Float32Builder, f32, "real"),
        ColumnType::Float64 => fixed!(Float64Builder, f64, "double precision"),
        ColumnType::Bool => {
            let mut b = BooleanBuilder::with_capacity(values.len());
            for v in values {
                match v {
                    None => b.append_null(),
                    Some([byte]) => b.append_value(*byte != 0),
                    Some(_) => return Err(bad_value("boolean", name)),
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Numeric(..) | ColumnType::NumericAny => {
            let texts = values
                .iter()
                .map(|v| v.map(numeric_text).transpose())
                .collect::<Result<Vec<_>>>()?;
            let strings: ArrayRef = Arc::new(
                texts
                    .iter()
                    .collect::<datafusion::arrow::array::StringArray>(),
            );
            crate::dml::coerce(&strings, ty, name)?
        }
        ColumnType::Bytea => {
            let mut b = datafusion::arrow::array::BinaryBuilder::with_capacity(values.len(), 0);
            for v in values {
                b.append_option(*v);
            }
            Arc::new(b.finish())
        }
        ColumnType::Uuid => {
            let mut b = StringBuilder::with_capacity(values.len(), values.len() * 36);
            for v in values {
                match v {
                    None => b.append_null(),
                    Some(bytes) => {
                        let id: [u8; 16] =
                            (*bytes).try_into().map_err(|_| bad_value("uuid", name))?;
                        b.append_value(crate::json::uuid_from_bytes(&id));
                    }
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Jsonb => {
            // Version 1, then the text (checked and normalized when written).
            let mut texts: Vec<Option<&[u8]>> = Vec::with_capacity(values.len());
            for v in values {
                texts.push(match v {
                    None => None,
                    Some([1, rest @ ..]) => Some(rest),
                    Some(_) => return Err(bad_value("jsonb", name)),
                });
            }
            column(ColumnType::Text, name, &texts)?
        }
        ColumnType::Text | ColumnType::Varchar(_) | ColumnType::Json => {
            let bytes = values.iter().map(|v| v.map_or(0, <[u8]>::len)).sum();
            let mut b = StringBuilder::with_capacity(values.len(), bytes);
            for v in values {
                match v {
                    None => b.append_null(),
                    Some(bytes) => match std::str::from_utf8(bytes) {
                        Ok(s) if !s.contains('\0') => b.append_value(s),
                        _ => {
                            return Err(SqlError::new(
                                StatusCode::InvalidTextRepresentation,
                                format!(
                                    "invalid byte sequence for encoding \"UTF8\" (column {name})"
                                ),
                            ));
                        }
                    },
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Date => {
            let mut b = datafusion::arrow::array::Date32Builder::with_capacity(values.len());
            for v in values {
                match v {
                    None => b.append_null(),
                    Some(bytes) => {
                        let since_2000 = i32::from_be_bytes(
                            (*bytes).try_into().map_err(|_| bad_value("date", name))?,
                        );
                        b.append_value(
                            since_2000
                                .checked_add(PG_EPOCH_DAYS as i32)
                                .ok_or_else(|| bad_value("date", name))?,
                        );
                    }
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Time => {
            let mut b =
                datafusion::arrow::array::Time64MicrosecondBuilder::with_capacity(values.len());
            for v in values {
                match v {
                    None => b.append_null(),
                    Some(bytes) => {
                        let micros = i64::from_be_bytes(
                            (*bytes).try_into().map_err(|_| bad_value("time", name))?,
                        );
                        if !super::text::valid_time(micros) {
                            return Err(bad_value("time", name));
                        }
                        b.append_value(micros)
                    }
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::TimestampTz => {
            let plain = column(ColumnType::Timestamp, name, values)?;
            datafusion::arrow::compute::cast(&plain, &ty.arrow_type())?
        }
        ColumnType::Timestamp => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(values.len());
            for v in values {
                match v {
                    None => b.append_null(),
                    Some(bytes) => {
                        let since_2000 = i64::from_be_bytes(
                            (*bytes)
                                .try_into()
                                .map_err(|_| bad_value("timestamp", name))?,
                        );
                        let micros = since_2000
                            .checked_add(PG_EPOCH_MICROS)
                            .ok_or_else(|| bad_value("timestamp", name))?;
                        b.append_value(micros);
                    }
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::TextArray => super::text_lists(values.iter().copied(), text_array_binary)?,
        ColumnType::VectorAny => {
            let mut rows = Vec::with_capacity(values.len());
            for v in values {
                rows.push(match v {
                    None => None,
                    Some(bytes) => {
                        let mut floats = Vec::new();
                        parse_vector_binary(bytes, &mut floats)?;
                        Some(floats)
                    }
                });
            }
            crate::vector::to_vector_list(&crate::vector::vectors_to_list(&rows)?)?
        }
        ColumnType::Vector(dim) => {
            super::parse_vector_column(values, dim, name, parse_vector_binary)?
        }
    })
}

/// The sign word of the binary `numeric` form.
pub const NUMERIC_POS: u16 = 0x0000;
pub const NUMERIC_NEG: u16 = 0x4000;
pub const NUMERIC_NAN: u16 = 0xC000;
pub const NUMERIC_PINF: u16 = 0xD000;
pub const NUMERIC_NINF: u16 = 0xF000;

fn bad_numeric() -> SqlError {
    SqlError::new(
        StatusCode::InvalidTextRepresentation,
        "invalid binary representation of numeric",
    )
}

/// Decodes the binary `numeric` form into its decimal text.
pub fn numeric_text(bytes: &[u8]) -> Result<String> {
    let word = |i: usize| -> Result<u16, SqlError> {
        bytes
            .get(2 * i..2 * i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(bad_numeric)
    };
    let ndigits = word(0)? as i16;
    let weight = word(1)? as i16;
    let sign = word(2)?;
    let dscale = usize::from(word(3)?);
    if ndigits < 0 || bytes.len() != 8 + 2 * ndigits as usize {
        return Err(bad_numeric());
    }
    match sign {
        NUMERIC_NAN => return Ok("NaN".to_owned()),
        NUMERIC_PINF => return Ok("Infinity".to_owned()),
        NUMERIC_NINF => return Ok("-Infinity".to_owned()),
        NUMERIC_POS | NUMERIC_NEG => {}
        _ => return Err(bad_numeric()),
    }
    let mut digits = Vec::with_capacity(ndigits as usize);
    for i in 0..ndigits as usize {
        let d = word(4 + i)?;
        if d > 9999 {
            return Err(bad_numeric());
        }
        digits.push(d);
    }
    let digit = |i: i64| -> u16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == NUMERIC_NEG {
        text.push('-');
    }
    let weight = i64::from(weight);
    if weight < 0 {
        text.push('0');
    } else {
        for i in 0..=weight {
            let _ = if i == 0 {
                write!(text, "{}", digit(i))
            } else {
                write!(text, "{:04}", digit(i))
            };
        }
    }
    if dscale > 0 {
        let mut frac = String::with_capacity(dscale + 4);
        let mut i = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(i));
            i += 1;
        }
        frac.truncate(dscale);
        text.push('.');
        text.push_str(&frac);
    }
    Ok(text)
}

/// The elements (`None`: NULL) of a one-dimensional array in PostgreSQL's
/// binary format: the number of dimensions, a NULL flag, the element type,
/// each dimension's length and lower bound, then each element as a length
/// (-1: NULL) and its bytes.
pub fn binary_array_items(bytes: &[u8]) -> Result<Vec<Option<&[u8]>>> {
    let bad = || {
        SqlError::new(
            StatusCode::InvalidBinaryRepresentation,
            "incorrect binary data format for an array",
        )
    };
    let word = |at: usize| -> Result<i32> {
        let b: [u8; 4] = bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        Ok(i32::from_be_bytes(b))
    };
    let mut out = Vec::new();
    match word(0)? {
        0 => return Ok(out),
        1 => {}
        _ => {
            return sql_err!(
                FeatureNotSupported,
                "arrays of more than one dimension are not supported"
            );
        }
    }
    let len = usize::try_from(word(12)?).map_err(|_| bad())?;
    let mut at = 20;
    for _ in 0..len {
        let n = word(at)?;
        at += 4;
        if n < 0 {
            out.push(None);
            continue;
        }
        let n = n as usize;
        out.push(Some(bytes.get(at..at + n).ok_or_else(bad)?));
        at += n;
    }
    Ok(out)
}

/// A `text[]` in the binary format ([`binary_array_items`]).
fn text_array_binary(bytes: &[u8]) -> Result<Vec<Option<String>>> {
    binary_array_items(bytes)?
        .into_iter()
        .map(|item| {
            item.map(|b| {
                String::from_utf8(b.to_vec()).map_err(|_| {
                    SqlError::new(
                        StatusCode::InvalidBinaryRepresentation,
                        "invalid UTF-8 in a text[] element",
                    )
                })
            })
            .transpose()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.extend_from_slice(&0i32.to_be_bytes());
        h.extend_from_slice(&0i32.to_be_bytes());
        h
    }

    fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut t = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            match f {
                None => t.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    t.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    t.extend_from_slice(b);
                }
            }
        }
        t
    }

    #[test]
    fn tuples_are_found_only_when_complete() {
        let h = header();
        assert_eq!(next(&h[..10], 0, true), Next::Incomplete);
        assert_eq!(next(&h, 0, true), Next::Header(19));
        let t = tuple(&[Some(&7i64.to_be_bytes()), None]);
        for cut in 0..t.len() {
            assert_eq!(next(&t[..cut], 0, false), Next::Incomplete, "{cut}");
        }
        assert_eq!(next(&t, 0, false), Next::Tuple(t.len()));
        assert_eq!(next(&(-1i16).to_be_bytes(), 0, false), Next::Trailer(2));
        assert_eq!(next(&(-2i16).to_be_bytes(), 0, false), Next::Malformed);
    }

    #[test]
    fn records_skip_the_header_and_stop_at_the_trailer() {
        let mut data = header();
        data.extend(tuple(&[Some(&7i64.to_be_bytes()), None]));
        data.extend(tuple(&[Some(b"x"), Some(b"")]));
        data.extend((-1i16).to_be_bytes());
        let (rows, ended) = records(&data, true).expect("ok");
        assert!(ended);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][1], None);
        assert_eq!(rows[1], vec![Some(&b"x"[..]), Some(&b""[..])]);
        // Data after the trailer, a bad signature, a cut tuple.
        let mut after = data.clone();
        after.push(0);
        assert_eq!(
            records(&after, true).expect_err("an error").code,
            StatusCode::BadCopyFileFormat
        );
        assert_eq!(
            records(&data[1..], true).expect_err("an error").code,
            StatusCode::BadCopyFileFormat
        );
        let cut = &data[19..data.len() - 4];
        assert_eq!(
            records(cut, false).expect_err("an error").code,
            StatusCode::BadCopyFileFormat
        );
    }

    #[test]
    fn columns_check_lengths_dimensions_and_values() {
        let one = 1i64.to_be_bytes();
        let col = column(ColumnType::Int64, "id", &[Some(&one), None]).expect("ok");
        assert_eq!(col.len(), 2);
        let err = column(ColumnType::Int64, "id", &[Some(&one[..4])]).expect_err("an error");
        assert_eq!(err.code, StatusCode::InvalidBinaryRepresentation);
        let mut v = vec![0u8, 2, 0, 0];
        v.extend(1.5f32.to_be_bytes());
        v.extend((-2f32).to_be_bytes());
        let col = column(ColumnType::Vector(2), "e", &[Some(&v), None]).expect("ok");
        assert_eq!(col.len(), 2);
        assert_eq!(col.null_count(), 1);
        let err = column(ColumnType::Vector(3), "e", &[Some(&v)]).expect_err("an error");
        assert_eq!(err.code, StatusCode::DataException);
        let mut nan = vec![0u8, 1, 0, 0];
        nan.extend(f32::NAN.to_be_bytes());
        assert!(column(ColumnType::Vector(1), "e", &[Some(&nan)]).is_err());
        let ts = column(ColumnType::Timestamp, "t", &[Some(&0i64.to_be_bytes())]).expect("ok");
        let ts = ts
            .as_any()
            .downcast_ref::<datafusion::arrow::array::TimestampMicrosecondArray>()
            .expect("ok");
        assert_eq!(ts.value(0), PG_EPOCH_MICROS);
    }
}
