//! Arrow ↔ Postgres type mapping: the one place that decides which Postgres
//! type a result column or a parameter has on the wire.
//!
//! | Arrow | Postgres |
//! |---|---|
//! | `Boolean` | `bool` |
//! | `Int8` | `"char"` (as in `pg_type.typtype`) |
//! | `Int16`, `UInt8` | `int2` |
//! | `Int32`, `UInt16` | `int4` |
//! | `UInt32` | `oid` |
//! | `Int64` | `int8` |
//! | `UInt64`, `Decimal*` | `numeric` |
//! | `Float16`, `Float32` | `float4` |
//! | `Float64` | `float8` |
//! | `Utf8`, `LargeUtf8`, `Utf8View` | `text` |
//! | `Binary`, `LargeBinary`, `BinaryView`, `FixedSizeBinary` | `bytea` |
//! | `Date32`, `Date64` | `date` |
//! | `Timestamp(_, None)` | `timestamp` |
//! | `Timestamp(_, Some(tz))` | `timestamptz` (rendered in UTC) |
//! | `FixedSizeList<Float32>`, `List<Float32>`, `LargeList<Float32>` | `vector` (OID [`VECTOR_TYPE_OID`]) |
//! | `Dictionary(_, v)` | the mapping of `v` |
//! | anything else | `text`, rendered by Arrow's display formatter |

use std::sync::LazyLock;

use arrow::datatypes::{DataType, Field, TimeUnit};
use pgwire::api::Type;
use postgres_types::Kind;
use quiver_sql::VECTOR_TYPE_OID;

/// Postgres type OIDs the wire layer needs to recognise.
pub(crate) mod oid {
    pub(crate) const BOOL: u32 = 16;
    pub(crate) const BYTEA: u32 = 17;
    pub(crate) const NAME: u32 = 19;
    pub(crate) const INT8: u32 = 20;
    pub(crate) const OID: u32 = 26;
    pub(crate) const INT2: u32 = 21;
    pub(crate) const INT4: u32 = 23;
    pub(crate) const TEXT: u32 = 25;
    pub(crate) const JSON: u32 = 114;
    pub(crate) const UUID: u32 = 2950;
    pub(crate) const JSONB: u32 = 3802;
    pub(crate) const FLOAT4: u32 = 700;
    pub(crate) const FLOAT8: u32 = 701;
    pub(crate) const UNKNOWN: u32 = 705;
    pub(crate) const BPCHAR: u32 = 1042;
    pub(crate) const VARCHAR: u32 = 1043;
    pub(crate) const DATE: u32 = 1082;
    pub(crate) const TIMESTAMP: u32 = 1114;
    pub(crate) const TIME: u32 = 1083;
    pub(crate) const INTERVAL: u32 = 1186;
    pub(crate) const TIMESTAMPTZ: u32 = 1184;
    pub(crate) const NUMERIC: u32 = 1700;
}

/// The Postgres type a value has on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireType {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Char,
    Float4,
    Float8,
    Numeric,
    Text,
    Bytea,
    Date,
    Time,
    Interval,
    Timestamp,
    TimestampTz,
    Vector,
    Varchar,
    Uuid,
    Json,
    Jsonb,
    /// A one-dimensional array of scalars, by its array type OID (`text[]`
    /// is 1009, `oid[]` 1028, …).
    Array(u32),
}

static VECTOR_TYPE: LazyLock<Type> = LazyLock::new(|| {
    Type::new(
        "vector".to_owned(),
        VECTOR_TYPE_OID,
        Kind::Simple,
        "public".to_owned(),
    )
});

impl WireType {
    /// The wire type of a result column or parameter: the Postgres type its
    /// field's metadata names ([`quiver_sql::field_pg_type`]), else
    /// the one of its Arrow type.
    pub(crate) fn of_field(field: &Field) -> WireType {
        match quiver_sql::field_pg_type(field) {
            Some("uuid") => WireType::Uuid,
            Some("json") => WireType::Json,
            Some("jsonb") => WireType::Jsonb,
            Some("varchar") => WireType::Varchar,
            _ => WireType::of(field.data_type()),
        }
    }

    /// The wire type of an Arrow column.
    pub(crate) fn of(data_type: &DataType) -> WireType {
        match data_type {
            DataType::Boolean => WireType::Bool,
            DataType::Int8 => WireType::Char,
            DataType::Int16 | DataType::UInt8 => WireType::Int2,
            DataType::Int32 | DataType::UInt16 => WireType::Int4,
            DataType::UInt32 => WireType::Oid,
            DataType::Int64 => WireType::Int8,
            DataType::UInt64
            | DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => WireType::Numeric,
            DataType::Float16 | DataType::Float32 => WireType::Float4,
            DataType::Float64 => WireType::Float8,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => WireType::Text,
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => WireType::Bytea,
            DataType::Date32 | DataType::Date64 => WireType::Date,
            DataType::Time32(_) | DataType::Time64(_) => WireType::Time,
            DataType::Interval(_) | DataType::Duration(_) => WireType::Interval,
            DataType::Timestamp(_, None) => WireType::Timestamp,
            DataType::Timestamp(_, Some(_)) => WireType::TimestampTz,
            DataType::FixedSizeList(item, _) | DataType::List(item) | DataType::LargeList(item)
                if item.data_type() == &DataType::Float32 =>
            {
                WireType::Vector
            }
            DataType::List(_) => array_type_oid(data_type).map_or(WireType::Text, WireType::Array),
            DataType::Dictionary(_, value) => WireType::of(value),
            _ => WireType::Text,
        }
    }

    /// The Postgres type reported in RowDescription / ParameterDescription.
    pub(crate) fn pg_type(self) -> Type {
        match self {
            WireType::Bool => Type::BOOL,
            WireType::Int2 => Type::INT2,
            WireType::Int4 => Type::INT4,
            WireType::Int8 => Type::INT8,
            WireType::Oid => Type::OID,
            WireType::Char => Type::CHAR,
            WireType::Float4 => Type::FLOAT4,
            WireType::Float8 => Type::FLOAT8,
            WireType::Numeric => Type::NUMERIC,
            WireType::Text => Type::TEXT,
            WireType::Bytea => Type::BYTEA,
            WireType::Date => Type::DATE,
            WireType::Time => Type::TIME,
            WireType::Interval => Type::INTERVAL,
            WireType::Timestamp => Type::TIMESTAMP,
            WireType::TimestampTz => Type::TIMESTAMPTZ,
            WireType::Vector => VECTOR_TYPE.clone(),
            WireType::Varchar => Type::VARCHAR,
            WireType::Uuid => Type::UUID,
            WireType::Json => Type::JSON,
            WireType::Jsonb => Type::JSONB,
            WireType::Array(oid) => Type::from_oid(oid).unwrap_or(Type::TEXT),
        }
    }

    /// `pg_type.typlen`: the fixed width in bytes, or -1 for variable width.
    pub(crate) fn type_size(self) -> i16 {
        match self {
            WireType::Bool | WireType::Char => 1,
            WireType::Int2 => 2,
            WireType::Int4 | WireType::Oid | WireType::Float4 | WireType::Date => 4,
            WireType::Int8
            | WireType::Float8
            | WireType::Time
            | WireType::Timestamp
            | WireType::TimestampTz => 8,
            WireType::Uuid | WireType::Interval => 16,
            WireType::Numeric
            | WireType::Text
            | WireType::Bytea
            | WireType::Vector
            | WireType::Varchar
            | WireType::Json
            | WireType::Jsonb
            | WireType::Array(_) => -1,
        }
    }
}

/// The Postgres type for an OID a client declared (Parse) — known types by
/// their name, `vector` by [`VECTOR_TYPE_OID`], anything else as an opaque
/// type that keeps the OID (so ParameterDescription echoes it back).
pub(crate) fn pg_type_for_oid(oid: u32) -> Type {
    if oid == VECTOR_TYPE_OID {
        return VECTOR_TYPE.clone();
    }
    Type::from_oid(oid).unwrap_or_else(|| {
        Type::new(
            format!("oid_{oid}"),
            oid,
            Kind::Simple,
            "pg_catalog".to_owned(),
        )
    })
}

/// The OID of a text type named in field metadata (`uuid`, `json`,
/// `jsonb`, `varchar`).
pub(crate) fn text_type_oid(name: &str) -> Option<u32> {
    match name {
        "uuid" => Some(oid::UUID),
        "json" => Some(oid::JSON),
        "jsonb" => Some(oid::JSONB),
        "varchar" => Some(oid::VARCHAR),
        _ => None,
    }
}

/// The Postgres array type of a List parameter of scalars (`oid[]` is
/// 1028, …); `None` for anything else, a vector (List<Float32>) included.
pub(crate) fn array_type_oid(dt: &DataType) -> Option<u32> {
    let DataType::List(item) = dt else {
        return None;
    };
    let elem = match item.data_type() {
        DataType::Utf8View | DataType::LargeUtf8 => &DataType::Utf8,
        other => other,
    };
    ARRAY_TYPES
        .iter()
        .find(|(_, e, _)| e == elem)
        .map(|(array, _, _)| *array)
}

/// Array type OID, element Arrow type, element type OID.
const ARRAY_TYPES: [(u32, DataType, u32); 7] = [
    (1000, DataType::Boolean, oid::BOOL),
    (1005, DataType::Int16, oid::INT2),
    (1007, DataType::Int32, oid::INT4),
    (1016, DataType::Int64, oid::INT8),
    (1022, DataType::Float64, oid::FLOAT8),
    (1009, DataType::Utf8, oid::TEXT),
    (1028, DataType::UInt32, oid::OID),
];

/// The element type OID of an array type OID (`_text` 1009 → `text`;
/// `varchar[]` 1015 → `varchar`).
pub(crate) fn array_element_oid(array_oid: u32) -> Option<u32> {
    if array_oid == 1015 {
        return Some(oid::VARCHAR);
    }
    ARRAY_TYPES
        .iter()
        .find(|(a, _, _)| *a == array_oid)
        .map(|(_, _, e)| *e)
}

/// The Arrow type of a parameter whose Postgres type the client declared at
/// Parse; `None` when the OID is 0 / `unknown` or has no useful Arrow type.
/// A declared `vector` is `Utf8`, matching how the sql crate reports vector
/// parameters (clients send `'[..]'` text).
pub(crate) fn declared_arrow_type(type_oid: u32) -> Option<DataType> {
    match type_oid {
        oid::BOOL => Some(DataType::Boolean),
        oid::INT2 => Some(DataType::Int16),
        oid::INT4 => Some(DataType::Int32),
        oid::INT8 => Some(DataType::Int64),
        oid::FLOAT4 => Some(DataType::Float32),
        oid::FLOAT8 => Some(DataType::Float64),
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::JSON | oid::JSONB | oid::UUID => {
            Some(DataType::Utf8)
        }
        oid::BYTEA => Some(DataType::Binary),
        oid::DATE => Some(DataType::Date32),
        oid::TIME => Some(DataType::Time64(TimeUnit::Microsecond)),
        oid::INTERVAL => Some(DataType::Interval(
            arrow::datatypes::IntervalUnit::MonthDayNano,
        )),
        oid::TIMESTAMP => Some(DataType::Timestamp(TimeUnit::Microsecond, None)),
        oid::TIMESTAMPTZ => Some(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        )),
        o if o == VECTOR_TYPE_OID => Some(DataType::Utf8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::Field;

    use super::*;

    fn vector_field() -> Arc<Field> {
        Arc::new(Field::new("item", DataType::Float32, true))
    }

    #[test]
    fn scalar_types_map_to_postgres_types() {
        let cases = [
            (DataType::Boolean, Type::BOOL),
            (DataType::Int8, Type::CHAR),
            (DataType::Int16, Type::INT2),
            (DataType::UInt8, Type::INT2),
            (DataType::Int32, Type::INT4),
            (DataType::UInt16, Type::INT4),
            (DataType::Int64, Type::INT8),
            (DataType::UInt32, Type::OID),
            (DataType::UInt64, Type::NUMERIC),
            (DataType::Float32, Type::FLOAT4),
            (DataType::Float64, Type::FLOAT8),
            (DataType::Utf8, Type::TEXT),
            (DataType::LargeUtf8, Type::TEXT),
            (DataType::Utf8View, Type::TEXT),
            (DataType::Binary, Type::BYTEA),
            (DataType::Date32, Type::DATE),
            (DataType::Decimal128(10, 2), Type::NUMERIC),
            (
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                Type::TIMESTAMP,
            ),
            (
                DataType::Timestamp(TimeUnit::Second, Some("Europe/Paris".into())),
                Type::TIMESTAMPTZ,
            ),
            (
                DataType::Interval(arrow::datatypes::IntervalUnit::DayTime),
                Type::INTERVAL,
            ),
            (DataType::Time64(TimeUnit::Microsecond), Type::TIME),
            (
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                Type::TEXT,
            ),
        ];
        for (arrow_type, pg) in cases {
            assert_eq!(WireType::of(&arrow_type).pg_type(), pg, "{arrow_type}");
        }
    }

    #[test]
    fn float32_lists_are_vectors() {
        for dt in [
            DataType::FixedSizeList(vector_field(), 3),
            DataType::List(vector_field()),
            DataType::LargeList(vector_field()),
        ] {
            let ty = WireType::of(&dt).pg_type();
            assert_eq!(ty.oid(), VECTOR_TYPE_OID);
            assert_eq!(ty.name(), "vector");
        }
        let doubles = DataType::List(Arc::new(Field::new("item", DataType::Float64, true)));
        assert_eq!(WireType::of(&doubles), WireType::Array(1022));
        let texts = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
        assert_eq!(WireType::of(&texts).pg_type(), Type::TEXT_ARRAY);
        let views = DataType::List(Arc::new(Field::new("item", DataType::Utf8View, true)));
        assert_eq!(WireType::of(&views).pg_type(), Type::TEXT_ARRAY);
        let intervals = DataType::List(Arc::new(Field::new(
            "item",
            DataType::Interval(arrow::datatypes::IntervalUnit::DayTime),
            true,
        )));
        assert_eq!(WireType::of(&intervals), WireType::Text);
    }

    #[test]
    fn type_sizes_follow_pg_type_typlen() {
        assert_eq!(WireType::Int8.type_size(), 8);
        assert_eq!(WireType::Bool.type_size(), 1);
        assert_eq!(WireType::Date.type_size(), 4);
        assert_eq!(WireType::Vector.type_size(), -1);
        assert_eq!(WireType::Text.type_size(), -1);
    }

    #[test]
    fn declared_oids_map_back_to_arrow() {
        assert_eq!(declared_arrow_type(oid::INT4), Some(DataType::Int32));
        assert_eq!(declared_arrow_type(oid::VARCHAR), Some(DataType::Utf8));
        assert_eq!(declared_arrow_type(VECTOR_TYPE_OID), Some(DataType::Utf8));
        assert_eq!(declared_arrow_type(0), None);
        assert_eq!(declared_arrow_type(oid::UNKNOWN), None);
        assert_eq!(declared_arrow_type(oid::NUMERIC), None);
    }

    #[test]
    fn unknown_declared_oids_are_echoed() {
        assert_eq!(pg_type_for_oid(oid::INT8), Type::INT8);
        assert_eq!(pg_type_for_oid(VECTOR_TYPE_OID).oid(), VECTOR_TYPE_OID);
        assert_eq!(pg_type_for_oid(99_999).oid(), 99_999);
    }
}
