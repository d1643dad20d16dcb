//! How single values look in Postgres' text and binary formats, for the types
//! whose format is not just "big-endian bytes" or "the UTF-8 string".
//!
//! - `vector` (pgvector): text `[1,2.5,-0.25]`, each element printed by Rust's
//!   shortest round-trip `Display` of `f32`; binary `int16 dim, int16 0,
//!   dim × float4`, big-endian.
//! - `numeric`: binary is `int16 ndigits, int16 weight, uint16 sign,
//!   uint16 dscale`, then `ndigits` base-10000 digits; converted from and to
//!   the decimal text form.
//! - `date` / `timestamp` / `timestamptz`: text in ISO style as with
//!   `DateStyle = ISO, MDY` and `TimeZone = UTC`; binary counts days /
//!   microseconds since 2000-01-01.
//! - `uuid`: binary is its 16 bytes; `jsonb`: binary is a version byte (1)
//!   and the text; `json`, `varchar`: binary is the text.
//! - `float4` / `float8`: shortest round-trip text, `NaN`, `Infinity`, `-Infinity`.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use quiver_sql::{SqlError, StatusCode};

use crate::types::WireType;

pub(crate) use quiver_sql::copy::binary::{PG_EPOCH_DAYS, PG_EPOCH_MICROS};
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// pgvector's limit on dimensions, and what fits the binary header.
const MAX_VECTOR_DIM: usize = 16_000;

use quiver_sql::copy::binary::{NUMERIC_NAN, NUMERIC_NEG, NUMERIC_NINF, NUMERIC_PINF, NUMERIC_POS};
use quiver_sql::copy::text::push_time;
pub(crate) use quiver_sql::copy::text::{interval_text, time_text};

fn bad_binary(what: &str) -> SqlError {
    SqlError::new(
        StatusCode::InvalidTextRepresentation,
        format!("invalid binary representation of {what}"),
    )
}

/// A `float8` in Postgres text form.
pub(crate) fn float8_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        v.to_string()
    }
}

/// A `float4` in Postgres text form.
pub(crate) fn float4_text(v: f32) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        float8_text(f64::from(v))
    }
}

/// Appends a vector in pgvector's text form: `[1,2.5,-0.25]`.
/// The binary form of a value stored as text: a uuid's 16 bytes, a
/// jsonb's version byte and text, the text itself for the rest.
pub(crate) fn text_binary(wire: WireType, text: &str, out: &mut BytesMut) -> Result<(), SqlError> {
    match wire {
        WireType::Uuid => {
            let hex: String = text.chars().filter(|c| *c != '-').collect();
            if hex.len() != 32 {
                return Err(bad_binary("uuid"));
            }
            for i in 0..16 {
                let byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                    .map_err(|_| bad_binary("uuid"))?;
                out.put_u8(byte);
            }
        }
        WireType::Jsonb => {
            out.put_u8(1);
            out.put_slice(text.as_bytes());
        }
        _ => out.put_slice(text.as_bytes()),
    }
    Ok(())
}

pub(crate) fn vector_text(values: &[f32], out: &mut BytesMut) {
    let mut text = String::with_capacity(values.len() * 10 + 2);
    text.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(text, "{v}");
    }
    text.push(']');
    out.put_slice(text.as_bytes());
}

/// Appends a vector in pgvector's binary form.
pub(crate) fn vector_binary(values: &[f32], out: &mut BytesMut) -> Result<(), SqlError> {
    if values.len() > MAX_VECTOR_DIM {
        return Err(SqlError::new(
            StatusCode::ProgramLimitExceeded,
            format!(
                "vector cannot have more than {MAX_VECTOR_DIM} dimensions, got {}",
                values.len()
            ),
        ));
    }
    out.reserve(4 + 4 * values.len());
    out.put_i16(values.len() as i16);
    out.put_i16(0);
    for v in values {
        out.put_f32(*v);
    }
    Ok(())
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD` and whether the year is BC (Postgres has no year 0).
fn date_parts(days: i64) -> (String, bool) {
    let (year, month, day) = civil_from_days(days);
    if year <= 0 {
        (format!("{:04}-{month:02}-{day:02}", 1 - year), true)
    } else {
        (format!("{year:04}-{month:02}-{day:02}"), false)
    }
}

/// A `date` (days since 1970-01-01) in ISO text form.
pub(crate) fn date_text(days: i64) -> String {
    let (mut text, bc) = date_parts(days);
    if bc {
        text.push_str(" BC");
    }
    text
}

/// A `timestamp` / `timestamptz` (microseconds since 1970-01-01, UTC) in ISO
/// text form: `2024-01-02 03:04:05.25`, with `+00` when `with_tz`.
pub(crate) fn timestamp_text(micros: i64, with_tz: bool) -> String {
    let (mut text, bc) = date_parts(micros.div_euclid(MICROS_PER_DAY));
    text.push(' ');
    push_time(&mut text, micros.rem_euclid(MICROS_PER_DAY).unsigned_abs());
    if with_tz {
        text.push_str("+00");
    }
    if bc {
        text.push_str(" BC");
    }
    text
}

/// Appends the binary `numeric` form of a decimal string such as `-12.340`,
/// `42` or `NaN` (the forms Arrow's formatter prints for decimals and
/// integers). The display scale is the number of digits after the point.
pub(crate) fn numeric_binary(text: &str, out: &mut BytesMut) -> Result<(), SqlError> {
    let invalid = || {
        SqlError::new(
            StatusCode::InvalidTextRepresentation,
            format!("invalid input syntax for type numeric: \"{text}\""),
        )
    };
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let special = match body {
        "NaN" => Some(NUMERIC_NAN),
        "Infinity" | "inf" if negative => Some(NUMERIC_NINF),
        "Infinity" | "inf" => Some(NUMERIC_PINF),
        _ => None,
    };
    if let Some(sign) = special {
        out.put_i16(0);
        out.put_i16(0);
        out.put_u16(sign);
        out.put_u16(0);
        return Ok(());
    }
    let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !all_digits(int_part)
        || !all_digits(frac_part)
    {
        return Err(invalid());
    }
    let dscale = u16::try_from(frac_part.len()).map_err(|_| invalid())?;
    let int_part = int_part.trim_start_matches('0');
    let mut digits = String::with_capacity(int_part.len() + frac_part.len() + 6);
    digits.extend(std::iter::repeat_n('0', (4 - int_part.len() % 4) % 4));
    digits.push_str(int_part);
    let int_groups = digits.len() / 4;
    digits.push_str(frac_part);
    digits.extend(std::iter::repeat_n('0', (4 - frac_part.len() % 4) % 4));
    let mut groups: Vec<i16> = digits
        .as_bytes()
        .chunks(4)
        .map(|chunk| {
            chunk
                .iter()
                .fold(0i16, |acc, b| acc * 10 + i16::from(b - b'0'))
        })
        .collect();
    let mut weight = int_groups as i64 - 1;
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= leading as i64;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let ndigits = i16::try_from(groups.len()).map_err(|_| invalid())?;
    let weight = i16::try_from(weight).map_err(|_| invalid())?;
    let sign = if negative && !groups.is_empty() {
        NUMERIC_NEG
    } else {
        NUMERIC_POS
    };
    out.reserve(8 + 2 * groups.len());
    out.put_i16(ndigits);
    out.put_i16(weight);
    out.put_u16(sign);
    out.put_u16(dscale);
    for g in groups {
        out.put_i16(g);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_sql::copy::binary::numeric_text;

    fn vtext(values: &[f32]) -> String {
        let mut out = BytesMut::new();
        vector_text(values, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn vector_text_uses_shortest_round_trip_floats() {
        assert_eq!(vtext(&[1.0, 2.5, -0.25]), "[1,2.5,-0.25]");
        assert_eq!(vtext(&[]), "[]");
        assert_eq!(vtext(&[0.1]), "[0.1]");
        assert_eq!(
            vtext(&[1e-7, 3.4028235e38]),
            format!("[{},{}]", 1e-7f32, 3.4028235e38f32)
        );
        // round trip through the printed text
        let v = [0.123_456_79f32, -7.5e-3, 12345.678];
        let text = vtext(&v);
        let parsed: Vec<f32> = text[1..text.len() - 1]
            .split(',')
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(parsed, v);
    }

    #[test]
    fn vector_binary_is_pgvector_send_format() {
        let mut out = BytesMut::new();
        vector_binary(&[1.0, -2.0], &mut out).unwrap();
        assert_eq!(out.as_ref(), [0, 2, 0, 0, 0x3f, 0x80, 0, 0, 0xc0, 0, 0, 0]);
        assert_eq!(parse_vector_binary(&out).unwrap(), vec![1.0, -2.0]);
    }

    fn parse_vector_binary(bytes: &[u8]) -> Result<Vec<f32>, SqlError> {
        let mut out = Vec::new();
        quiver_sql::vector::parse_vector_binary(bytes, &mut out).map(|()| out)
    }

    #[test]
    fn vector_binary_rejects_bad_input() {
        assert!(parse_vector_binary(&[0, 2, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(parse_vector_binary(&[0]).is_err());
        assert!(parse_vector_binary(&[0xff, 0xff, 0, 0]).is_err());
        // pgvector: at least one dimension.
        assert!(parse_vector_binary(&[0, 0, 0, 0]).is_err());
        let too_long = vec![0.0f32; MAX_VECTOR_DIM + 1];
        let err = vector_binary(&too_long, &mut BytesMut::new()).unwrap_err();
        assert_eq!(err.code, StatusCode::ProgramLimitExceeded);
    }

    #[test]
    fn floats_print_like_postgres() {
        assert_eq!(float8_text(1.0), "1");
        assert_eq!(float8_text(-0.5), "-0.5");
        assert_eq!(float8_text(f64::NAN), "NaN");
        assert_eq!(float8_text(f64::INFINITY), "Infinity");
        assert_eq!(float4_text(f32::NEG_INFINITY), "-Infinity");
        assert_eq!(float4_text(0.1), "0.1");
    }

    #[test]
    fn dates_and_timestamps_print_in_iso_style() {
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(PG_EPOCH_DAYS), "2000-01-01");
        assert_eq!(date_text(19_723), "2024-01-01");
        assert_eq!(date_text(-1), "1969-12-31");
        assert_eq!(date_text(-719_162), "0001-01-01");
        assert_eq!(date_text(-719_163), "0001-12-31 BC");
        assert_eq!(timestamp_text(0, false), "1970-01-01 00:00:00");
        assert_eq!(
            timestamp_text(1_704_164_645_250_000, false),
            "2024-01-02 03:04:05.25"
        );
        assert_eq!(
            timestamp_text(1_704_164_645_000_001, true),
            "2024-01-02 03:04:05.000001+00"
        );
        assert_eq!(timestamp_text(-1, false), "1969-12-31 23:59:59.999999");
    }

    fn numeric_round_trip(text: &str) -> String {
        let mut out = BytesMut::new();
        numeric_binary(text, &mut out).unwrap();
        numeric_text(&out).unwrap()
    }

    #[test]
    fn numeric_binary_layout() {
        let mut out = BytesMut::new();
        numeric_binary("-12345.678", &mut out).unwrap();
        // ndigits 3, weight 1, negative, dscale 3, digits 1 2345 6780
        assert_eq!(
            out.as_ref(),
            [0, 3, 0, 1, 0x40, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]
        );
        let mut out = BytesMut::new();
        numeric_binary("0.0001", &mut out).unwrap();
        assert_eq!(out.as_ref(), [0, 1, 0xff, 0xff, 0, 0, 0, 4, 0, 1]);
        let mut out = BytesMut::new();
        numeric_binary("0", &mut out).unwrap();
        assert_eq!(out.as_ref(), [0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn numeric_round_trips() {
        for text in [
            "0",
            "1",
            "-1",
            "10000",
            "123.4500",
            "-12345.678",
            "0.0001",
            "0.00000001",
            "18446744073709551615",
            "99999999999999999999999999999999999999",
            "0.000",
            "NaN",
            "Infinity",
            "-Infinity",
        ] {
            assert_eq!(numeric_round_trip(text), text);
        }
        assert_eq!(numeric_round_trip("007.50"), "7.50");
        assert_eq!(numeric_round_trip("-0"), "0");
    }

    #[test]
    fn numeric_rejects_garbage() {
        for text in ["", "-", "1e5", "1.2.3", "abc", "."] {
            assert!(
                numeric_binary(text, &mut BytesMut::new()).is_err(),
                "{text}"
            );
        }
        assert!(numeric_text(&[0, 1, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(numeric_text(&[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10]).is_err());
    }
}
