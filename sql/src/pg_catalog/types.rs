//! The types `pg_type` lists, with the names `format_type` gives them, and
//! the type (and type modifier) of each Quiver column type.

use std::borrow::Cow;

use quiver_engine::schema::ColumnType;

use super::{PG_CATALOG_NS, PUBLIC_NS};
use crate::session::VECTOR_TYPE_OID;

/// The array type of `vector` (`_vector`).
pub const VECTOR_ARRAY_OID: u32 = VECTOR_TYPE_OID + 1;

/// One row of `pg_type`.
#[derive(Debug, Clone)]
pub struct PgType {
    pub oid: u32,
    /// `typname`.
    pub name: Cow<'static, str>,
    /// What `format_type` prints (without a type modifier).
    pub sql_name: &'static str,
    pub len: i16,
    pub byval: bool,
    /// `typcategory`.
    pub category: char,
    /// `typtype`: b base, p pseudo.
    pub kind: char,
    /// The array type whose elements are this type (0: none).
    pub array: u32,
    /// For an array type, its element type (0 otherwise).
    pub elem: u32,
    pub namespace: u32,
    /// `typcollation`: 100 (default) for the string types.
    pub collation: u32,
}

const fn base(
    oid: u32,
    name: &'static str,
    sql_name: &'static str,
    len: i16,
    category: char,
    array: u32,
) -> PgType {
    PgType {
        oid,
        name: Cow::Borrowed(name),
        sql_name,
        len,
        byval: len > 0 && len <= 8,
        category,
        kind: 'b',
        array,
        elem: 0,
        namespace: PG_CATALOG_NS,
        collation: if category == 'S' { 100 } else { 0 },
    }
}

const fn pseudo(oid: u32, name: &'static str) -> PgType {
    PgType {
        oid,
        name: Cow::Borrowed(name),
        sql_name: name,
        len: -1,
        byval: false,
        category: 'P',
        kind: 'p',
        array: 0,
        elem: 0,
        namespace: PG_CATALOG_NS,
        collation: 0,
    }
}

/// The base and pseudo types (arrays are derived from them in [`all`]).
const BASE: &[PgType] = &[
    base(16, "bool", "boolean", 1, 'B', 1000),
    base(17, "bytea", "bytea", -1, 'U', 1001),
    base(18, "char", "\"char\"", 1, 'Z', 1002),
    base(19, "name", "name", 64, 'S', 1003),
    base(20, "int8", "bigint", 8, 'N', 1016),
    base(21, "int2", "smallint", 2, 'N', 1005),
    base(22, "int2vector", "int2vector", -1, 'A', 1006),
    base(23, "int4", "integer", 4, 'N', 1007),
    base(24, "regproc", "regproc", 4, 'N', 1008),
    base(25, "text", "text", -1, 'S', 1009),
    base(26, "oid", "oid", 4, 'N', 1028),
    base(30, "oidvector", "oidvector", -1, 'A', 1013),
    base(114, "json", "json", -1, 'U', 199),
    base(700, "float4", "real", 4, 'N', 1021),
    base(701, "float8", "double precision", 8, 'N', 1022),
    base(1042, "bpchar", "character", -1, 'S', 1014),
    base(1043, "varchar", "character varying", -1, 'S', 1015),
    base(1082, "date", "date", 4, 'D', 1182),
    base(1083, "time", "time without time zone", 8, 'D', 1183),
    base(
        1114,
        "timestamp",
        "timestamp without time zone",
        8,
        'D',
        1115,
    ),
    base(
        1184,
        "timestamptz",
        "timestamp with time zone",
        8,
        'D',
        1185,
    ),
    base(1186, "interval", "interval", 16, 'T', 1187),
    base(1700, "numeric", "numeric", -1, 'N', 1231),
    base(1560, "bit", "bit", -1, 'V', 1561),
    base(1562, "varbit", "bit varying", -1, 'V', 1563),
    base(2205, "regclass", "regclass", 4, 'N', 2210),
    base(2206, "regtype", "regtype", 4, 'N', 2211),
    base(2950, "uuid", "uuid", 16, 'U', 2951),
    base(3802, "jsonb", "jsonb", -1, 'U', 3807),
    base(4072, "jsonpath", "jsonpath", -1, 'U', 4073),
    base(4089, "regnamespace", "regnamespace", 4, 'N', 4090),
    PgType {
        oid: VECTOR_TYPE_OID,
        name: Cow::Borrowed("vector"),
        sql_name: "vector",
        len: -1,
        byval: false,
        category: 'U',
        kind: 'b',
        array: VECTOR_ARRAY_OID,
        elem: 0,
        namespace: PUBLIC_NS,
        collation: 0,
    },
    pseudo(705, "unknown"),
    pseudo(2249, "record"),
    pseudo(2275, "cstring"),
    pseudo(2276, "any"),
    pseudo(2277, "anyarray"),
    pseudo(2278, "void"),
    pseudo(2281, "internal"),
    pseudo(2283, "anyelement"),
];

/// Every row of `pg_type`: the base and pseudo types, then one array type
/// per base type (`_int4`, …).
pub fn all() -> Vec<PgType> {
    let mut out: Vec<PgType> = BASE.to_vec();
    for t in BASE.iter().filter(|t| t.array != 0) {
        out.push(PgType {
            oid: t.array,
            name: Cow::Owned(format!("_{}", t.name)),
            sql_name: t.sql_name,
            len: -1,
            byval: false,
            category: 'A',
            kind: 'b',
            array: 0,
            elem: t.oid,
            namespace: t.namespace,
            collation: t.collation,
        });
    }
    out
}

/// The type with object id `oid`.
pub fn by_oid(oid: u32) -> Option<PgType> {
    all().into_iter().find(|t| t.oid == oid)
}

/// The type named `name` as SQL writes it (`int4`, `integer`, `vector`,
/// `double precision`, `text[]`, `pg_catalog.int8`…).
pub fn by_name(name: &str) -> Option<PgType> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    // `vector` is the one type in `public`.
    let name = name.strip_prefix("public.").unwrap_or(name);
    let name = name.trim_matches('"');
    let (elem, array) = match name.strip_suffix("[]") {
        Some(e) => (e.trim(), true),
        None => (name, false),
    };
    let alias = match elem {
        "boolean" => "bool",
        "bigint" => "int8",
        "smallint" => "int2",
        "integer" | "int" => "int4",
        "real" => "float4",
        "double precision" | "float" => "float8",
        "character varying" => "varchar",
        "character" => "bpchar",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        "decimal" => "numeric",
        other => other,
    };
    let t = all()
        .into_iter()
        .find(|t| t.name == alias || t.sql_name == alias)?;
    if array { by_oid(t.array) } else { Some(t) }
}

/// `typstorage`: plain for fixed-width types, external (uncompressed) for
/// `vector` as pgvector declares it, extended for the other varlena types.
pub fn storage(t: &PgType) -> char {
    match t {
        t if t.len > 0 => 'p',
        t if t.oid == VECTOR_TYPE_OID => 'e',
        _ => 'x',
    }
}

/// `format_type(oid, typmod)`: the type as SQL writes it, with its modifier.
pub fn format_type(oid: u32, typmod: Option<i32>) -> String {
    let Some(t) = by_oid(oid) else {
        return "???".into();
    };
    if t.elem != 0 {
        return format!("{}[]", format_type(t.elem, typmod));
    }
    let typmod = typmod.filter(|m| *m >= 0);
    match (t.oid, typmod) {
        (VECTOR_TYPE_OID, Some(dim)) => format!("vector({dim})"),
        (1043 | 1042, Some(m)) if m >= 4 => format!("{}({})", t.sql_name, m - 4),
        (1700, Some(m)) if m >= 4 => {
            let m = m - 4;
            format!("numeric({},{})", (m >> 16) & 0xffff, m & 0xffff)
        }
        _ => t.sql_name.to_string(),
    }
}

/// The type and type modifier (`atttypmod`; -1 for none) of a column type.
pub fn column_type(ty: &ColumnType) -> (u32, i32) {
    match ty {
        ColumnType::Int16 => (21, -1),
        ColumnType::Int32 => (23, -1),
        ColumnType::Int64 => (20, -1),
        ColumnType::Float32 => (700, -1),
        ColumnType::Float64 => (701, -1),
        ColumnType::Bool => (16, -1),
        ColumnType::Text => (25, -1),
        ColumnType::Timestamp => (1114, -1),
        ColumnType::TimestampTz => (1184, -1),
        ColumnType::Date => (1082, -1),
        ColumnType::Time => (1083, -1),
        ColumnType::Bytea => (17, -1),
        ColumnType::Numeric(p, s) => (1700, ((i32::from(*p) << 16) | i32::from(*s)) + 4),
        ColumnType::NumericAny => (1700, -1),
        ColumnType::Varchar(n) => (1043, *n as i32 + 4),
        ColumnType::Uuid => (2950, -1),
        ColumnType::Json => (114, -1),
        ColumnType::Jsonb => (3802, -1),
        ColumnType::Vector(dim) => (VECTOR_TYPE_OID, *dim as i32),
        ColumnType::VectorAny => (VECTOR_TYPE_OID, -1),
        ColumnType::TextArray => (1009, -1),
    }
}

/// The type of an Arrow column (for the columns of catalog tables and
/// anything else without a Quiver column type).
pub fn arrow_type_oid(t: &datafusion::arrow::datatypes::DataType) -> u32 {
    use datafusion::arrow::datatypes::DataType as D;
    match t {
        D::Boolean => 16,
        D::Int8 => 18,
        D::Int16 => 21,
        D::Int32 => 23,
        D::Int64 => 20,
        D::UInt32 => 26,
        D::Float32 => 700,
        D::Float64 => 701,
        D::Utf8 | D::LargeUtf8 | D::Utf8View => 25,
        D::Binary | D::LargeBinary => 17,
        D::Date32 => 1082,
        D::Timestamp(_, None) => 1114,
        D::Timestamp(_, Some(_)) => 1184,
        D::List(f) | D::LargeList(f) => match f.data_type() {
            D::Float32 => VECTOR_TYPE_OID,
            inner => by_oid(arrow_type_oid(inner)).map(|t| t.array).unwrap_or(0),
        },
        D::FixedSizeList(..) => VECTOR_TYPE_OID,
        _ => 25,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_modifiers_print_as_postgres_prints_them() {
        assert_eq!(format_type(VECTOR_TYPE_OID, Some(384)), "vector(384)");
        assert_eq!(format_type(VECTOR_TYPE_OID, Some(-1)), "vector");
        assert_eq!(format_type(20, None), "bigint");
        assert_eq!(format_type(1043, Some(14)), "character varying(10)");
        assert_eq!(format_type(1700, Some((10 << 16 | 2) + 4)), "numeric(10,2)");
        assert_eq!(format_type(1009, None), "text[]");
        assert_eq!(format_type(1, None), "???");
        assert_eq!(by_name("pg_catalog.int8").map(|t| t.oid), Some(20));
        assert_eq!(by_name("double precision").map(|t| t.oid), Some(701));
        assert_eq!(by_name("text[]").map(|t| t.oid), Some(1009));
        assert_eq!(by_name("vector").map(|t| t.oid), Some(VECTOR_TYPE_OID));
        assert!(by_name("nosuchtype").is_none());
        // Every array type points back at its element and the element at it.
        for t in all().iter().filter(|t| t.elem != 0) {
            assert_eq!(by_oid(t.elem).map(|e| e.array), Some(t.oid), "{}", t.name);
        }
        let oids: std::collections::BTreeSet<u32> = all().iter().map(|t| t.oid).collect();
        assert_eq!(oids.len(), all().len(), "type oids are unique");
    }
}
