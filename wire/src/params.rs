//! Bind parameters: raw Bind bytes → [`ParamValue`].
//!
//! Text-format values are passed on as [`ParamValue::Text`] whatever their
//! type (the sql crate parses them). Binary-format values are decoded by the
//! parameter's type OID — the one the client declared at Parse, or else the
//! one Quiver reported in ParameterDescription:
//!
//! | OID | value |
//! |---|---|
//! | `int2`, `int4`, `int8` | `Int` |
//! | `float4`, `float8` | `Float` |
//! | `bool` | `Bool` |
//! | `text`, `varchar`, `bpchar`, `name`, `unknown`, `json` | `Text` |
//! | `numeric`, `date`, `timestamp`, `timestamptz`, `vector` | `Text` in the type's text form |
//!
//! Other binary types are rejected with 0A000. NULL is [`ParamValue::Null`].

use quiver_sql::{ParamValue, SqlError, StatusCode, VECTOR_TYPE_OID};

use crate::types::oid;
use crate::values;

fn bad_binary(type_name: &str) -> SqlError {
    SqlError::new(
        StatusCode::InvalidTextRepresentation,
        format!("incorrect binary data format in bind parameter of type {type_name}"),
    )
}

/// A text value as Postgres accepts it: valid UTF-8 without NUL bytes.
fn utf8(bytes: &[u8]) -> Result<String, SqlError> {
    let invalid = || {
        SqlError::new(
            StatusCode::InvalidTextRepresentation,
            "invalid byte sequence for encoding \"UTF8\" in bind parameter",
        )
    };
    if bytes.contains(&0) {
        return Err(invalid());
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| invalid())
}

fn fixed<const N: usize>(bytes: &[u8], type_name: &str) -> Result<[u8; N], SqlError> {
    bytes.try_into().map_err(|_| bad_binary(type_name))
}

/// A one-dimensional array in the binary format
/// ([`quiver_sql::copy::binary::binary_array_items`]), each element decoded as
/// its element type.
fn binary_array(bytes: &[u8], elem: u32) -> Result<ParamValue, SqlError> {
    let items = quiver_sql::copy::binary::binary_array_items(bytes)?
        .into_iter()
        .map(|item| match item {
            None => Ok(ParamValue::Null),
            Some(value) => decode_param(Some(value), true, elem),
        })
        .collect::<Result<Vec<_>, SqlError>>()?;
    Ok(ParamValue::Array(items))
}

/// Decodes one bind parameter. `type_oid` is the parameter's Postgres type
/// (0 when unknown); it matters only for binary values.
pub(crate) fn decode_param(
    value: Option<&[u8]>,
    binary: bool,
    type_oid: u32,
) -> Result<ParamValue, SqlError> {
    let Some(bytes) = value else {
        return Ok(ParamValue::Null);
    };
    if let Some(elem) = crate::types::array_element_oid(type_oid) {
        return if binary {
            binary_array(bytes, elem)
        } else {
            quiver_sql::copy::array_literal(&utf8(bytes)?).map(|items| {
                ParamValue::Array(
                    items
                        .into_iter()
                        .map(|t| t.map_or(ParamValue::Null, ParamValue::Text))
                        .collect(),
                )
            })
        };
    }
    if !binary {
        return utf8(bytes).map(ParamValue::Text);
    }
    let value = match type_oid {
        oid::INT2 => ParamValue::Int(i16::from_be_bytes(fixed(bytes, "smallint")?).into()),
        oid::INT4 => ParamValue::Int(i32::from_be_bytes(fixed(bytes, "integer")?).into()),
        oid::INT8 => ParamValue::Int(i64::from_be_bytes(fixed(bytes, "bigint")?)),
        oid::OID => ParamValue::Int(u32::from_be_bytes(fixed(bytes, "oid")?).into()),
        oid::FLOAT4 => ParamValue::Float(f32::from_be_bytes(fixed(bytes, "real")?).into()),
        oid::FLOAT8 => ParamValue::Float(f64::from_be_bytes(fixed(bytes, "double precision")?)),
        oid::BOOL => ParamValue::Bool(fixed::<1>(bytes, "boolean")?[0] != 0),
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::UNKNOWN | oid::JSON | 0 => {
            ParamValue::Text(utf8(bytes)?)
        }
        oid::NUMERIC => ParamValue::Text(quiver_sql::copy::binary::numeric_text(bytes)?),
        oid::UUID => {
            let id: [u8; 16] = fixed(bytes, "uuid")?;
            ParamValue::Text(quiver_sql::json::uuid_from_bytes(&id))
        }
        oid::JSONB => match bytes {
            [1, text @ ..] => ParamValue::Text(utf8(text)?),
            _ => return Err(bad_binary("jsonb")),
        },
        oid::INTERVAL => {
            // Microseconds, days, months; as text DataFusion's cast reads.
            let b: [u8; 16] = fixed(bytes, "interval")?;
            let micros = i64::from_be_bytes(b[..8].try_into().unwrap_or_default());
            let days = i32::from_be_bytes(b[8..12].try_into().unwrap_or_default());
            let months = i32::from_be_bytes(b[12..].try_into().unwrap_or_default());
            ParamValue::Text(format!("{months} months {days} days {micros} microseconds"))
        }
        oid::TIME => {
            let micros = i64::from_be_bytes(fixed(bytes, "time")?);
            if !quiver_sql::copy::text::valid_time(micros) {
                return Err(bad_binary("time"));
            }
            ParamValue::Text(values::time_text(micros))
        }
        oid::DATE => {
            let days = i32::from_be_bytes(fixed(bytes, "date")?);
            ParamValue::Text(values::date_text(i64::from(days) + values::PG_EPOCH_DAYS))
        }
        oid::TIMESTAMP | oid::TIMESTAMPTZ => {
            let type_name = if type_oid == oid::TIMESTAMP {
                "timestamp"
            } else {
                "timestamptz"
            };
            let micros = i64::from_be_bytes(fixed(bytes, type_name)?)
                .checked_add(values::PG_EPOCH_MICROS)
                .ok_or_else(|| bad_binary(type_name))?;
            ParamValue::Text(values::timestamp_text(micros, type_oid == oid::TIMESTAMPTZ))
        }
        o if o == VECTOR_TYPE_OID => {
            let mut floats = Vec::new();
            quiver_sql::vector::parse_vector_binary(bytes, &mut floats)?;
            let mut text = bytes::BytesMut::new();
            values::vector_text(&floats, &mut text);
            ParamValue::Text(utf8(&text)?)
        }
        other => {
            return Err(SqlError::new(
                StatusCode::FeatureNotSupported,
                format!("binary format is not supported for parameters of type OID {other}"),
            ));
        }
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(bytes: &[u8], type_oid: u32) -> Result<ParamValue, SqlError> {
        decode_param(Some(bytes), true, type_oid)
    }

    #[test]
    fn null_and_text_params() {
        assert_eq!(
            decode_param(None, true, oid::INT4).unwrap(),
            ParamValue::Null
        );
        assert_eq!(decode_param(None, false, 0).unwrap(), ParamValue::Null);
        assert_eq!(
            decode_param(Some(b"42"), false, oid::INT4).unwrap(),
            ParamValue::Text("42".into())
        );
        assert_eq!(
            decode_param(Some(b"[1,2]"), false, VECTOR_TYPE_OID).unwrap(),
            ParamValue::Text("[1,2]".into())
        );
        for bad in [&[0xff, 0xfe][..], b"a\0b"] {
            let err = decode_param(Some(bad), false, oid::TEXT).unwrap_err();
            assert_eq!(err.code, StatusCode::InvalidTextRepresentation);
        }
    }

    #[test]
    fn binary_integers_floats_bools() {
        assert_eq!(
            bin(&(-2i16).to_be_bytes(), oid::INT2).unwrap(),
            ParamValue::Int(-2)
        );
        assert_eq!(
            bin(&7i32.to_be_bytes(), oid::INT4).unwrap(),
            ParamValue::Int(7)
        );
        assert_eq!(
            bin(&i64::MAX.to_be_bytes(), oid::INT8).unwrap(),
            ParamValue::Int(i64::MAX)
        );
        assert_eq!(
            bin(&1.5f32.to_be_bytes(), oid::FLOAT4).unwrap(),
            ParamValue::Float(1.5)
        );
        assert_eq!(
            bin(&0.1f64.to_be_bytes(), oid::FLOAT8).unwrap(),
            ParamValue::Float(0.1)
        );
        assert_eq!(bin(&[1], oid::BOOL).unwrap(), ParamValue::Bool(true));
        assert_eq!(bin(&[0], oid::BOOL).unwrap(), ParamValue::Bool(false));
    }

    #[test]
    fn binary_with_wrong_length_is_rejected() {
        for (bytes, type_oid) in [
            (&[0u8, 0, 1][..], oid::INT4),
            (&[0u8; 4][..], oid::INT8),
            (&[0u8; 2][..], oid::BOOL),
            (&[0u8; 8][..], oid::FLOAT4),
        ] {
            let err = bin(bytes, type_oid).unwrap_err();
            assert_eq!(err.code, StatusCode::InvalidTextRepresentation);
        }
    }

    #[test]
    fn binary_text_like_types() {
        for type_oid in [
            oid::TEXT,
            oid::VARCHAR,
            oid::NAME,
            oid::UNKNOWN,
            oid::BPCHAR,
        ] {
            assert_eq!(
                bin(b"noun.plant", type_oid).unwrap(),
                ParamValue::Text("noun.plant".into())
            );
        }
    }

    #[test]
    fn binary_vector_numeric_and_time_become_text() {
        let mut vector = vec![0, 3, 0, 0];
        for v in [1.0f32, 2.5, -0.25] {
            vector.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(
            bin(&vector, VECTOR_TYPE_OID).unwrap(),
            ParamValue::Text("[1,2.5,-0.25]".into())
        );
        // 12.5: ndigits 2, weight 0, positive, dscale 1, digits 12 5000
        let numeric = [0, 2, 0, 0, 0, 0, 0, 1, 0, 12, 0x13, 0x88];
        assert_eq!(
            bin(&numeric, oid::NUMERIC).unwrap(),
            ParamValue::Text("12.5".into())
        );
        assert_eq!(
            bin(&0i32.to_be_bytes(), oid::DATE).unwrap(),
            ParamValue::Text("2000-01-01".into())
        );
        assert_eq!(
            bin(&1_500_000i64.to_be_bytes(), oid::TIMESTAMPTZ).unwrap(),
            ParamValue::Text("2000-01-01 00:00:01.5+00".into())
        );
        assert_eq!(
            bin(&(-1i64).to_be_bytes(), oid::TIMESTAMP).unwrap(),
            ParamValue::Text("1999-12-31 23:59:59.999999".into())
        );
    }

    #[test]
    fn array_parameters_in_both_formats() {
        // asyncpg's `$1::oid[]`: one dimension, two oids, one NULL.
        let mut b = Vec::new();
        for w in [1i32, 1, oid::OID as i32, 3, 1] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        for v in [Some(16385u32), None, Some(7)] {
            match v {
                Some(v) => {
                    b.extend_from_slice(&4i32.to_be_bytes());
                    b.extend_from_slice(&v.to_be_bytes());
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        assert_eq!(
            bin(&b, 1028).unwrap(),
            ParamValue::Array(vec![
                ParamValue::Int(16385),
                ParamValue::Null,
                ParamValue::Int(7)
            ])
        );
        assert!(bin(&b[..10], 1028).is_err());
        let empty: Vec<u8> = [0i32, 0, oid::TEXT as i32]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(bin(&empty, 1009).unwrap(), ParamValue::Array(vec![]));
        assert_eq!(
            decode_param(Some(br#"{a, "b,c" ,NULL,"NULL"}"#), false, 1009).unwrap(),
            ParamValue::Array(vec![
                ParamValue::Text("a".into()),
                ParamValue::Text("b,c".into()),
                ParamValue::Null,
                ParamValue::Text("NULL".into()),
            ])
        );
        assert!(decode_param(Some(b"{a"), false, 1009).is_err());
    }

    #[test]
    fn unsupported_binary_types_are_rejected() {
        let err = bin(&[1, 2, 3], oid::BYTEA).unwrap_err();
        assert_eq!(err.code, StatusCode::FeatureNotSupported);
    }
}
