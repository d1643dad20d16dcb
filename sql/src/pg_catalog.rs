//! A minimal `pg_catalog`: the rows drivers read to learn about types
//! (tokio-postgres and psycopg look up unknown type OIDs such as `vector`'s).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int8Array, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::MemTable;

use crate::error::Result;
use crate::session::VECTOR_TYPE_OID;

const PG_CATALOG_NS: u32 = 11;
const PUBLIC_NS: u32 = 2200;

/// (oid, name, typtype, typelem, namespace) of the types Quiver produces.
const TYPES: &[(u32, &str, i8, u32, u32)] = &[
    (16, "bool", b'b' as i8, 0, PG_CATALOG_NS),
    (18, "char", b'b' as i8, 0, PG_CATALOG_NS),
    (19, "name", b'b' as i8, 0, PG_CATALOG_NS),
    (20, "int8", b'b' as i8, 0, PG_CATALOG_NS),
    (21, "int2", b'b' as i8, 0, PG_CATALOG_NS),
    (23, "int4", b'b' as i8, 0, PG_CATALOG_NS),
    (25, "text", b'b' as i8, 0, PG_CATALOG_NS),
    (26, "oid", b'b' as i8, 0, PG_CATALOG_NS),
    (700, "float4", b'b' as i8, 0, PG_CATALOG_NS),
    (701, "float8", b'b' as i8, 0, PG_CATALOG_NS),
    (1043, "varchar", b'b' as i8, 0, PG_CATALOG_NS),
    (1082, "date", b'b' as i8, 0, PG_CATALOG_NS),
    (1114, "timestamp", b'b' as i8, 0, PG_CATALOG_NS),
    (1184, "timestamptz", b'b' as i8, 0, PG_CATALOG_NS),
    (1700, "numeric", b'b' as i8, 0, PG_CATALOG_NS),
    (VECTOR_TYPE_OID, "vector", b'b' as i8, 0, PUBLIC_NS),
];

fn mem(fields: Vec<Field>, cols: Vec<ArrayRef>) -> Result<Arc<MemTable>> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// The `pg_catalog` schema.
pub fn schema() -> Result<Arc<MemorySchemaProvider>> {
    let s = Arc::new(MemorySchemaProvider::new());
    let zeros = || Arc::new(UInt32Array::from(vec![0u32; TYPES.len()])) as ArrayRef;
    let pg_type = mem(
        vec![
            Field::new("oid", DataType::UInt32, false),
            Field::new("typname", DataType::Utf8, false),
            Field::new("typtype", DataType::Int8, false),
            Field::new("typelem", DataType::UInt32, false),
            Field::new("typbasetype", DataType::UInt32, false),
            Field::new("typnamespace", DataType::UInt32, false),
            Field::new("typrelid", DataType::UInt32, false),
            Field::new("typarray", DataType::UInt32, false),
        ],
        vec![
            Arc::new(UInt32Array::from(
                TYPES.iter().map(|t| t.0).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                TYPES.iter().map(|t| t.1).collect::<Vec<_>>(),
            )),
            Arc::new(Int8Array::from(
                TYPES.iter().map(|t| t.2).collect::<Vec<_>>(),
            )),
            Arc::new(UInt32Array::from(
                TYPES.iter().map(|t| t.3).collect::<Vec<_>>(),
            )),
            zeros(),
            Arc::new(UInt32Array::from(
                TYPES.iter().map(|t| t.4).collect::<Vec<_>>(),
            )),
            zeros(),
            zeros(),
        ],
    )?;
    let pg_namespace = mem(
        vec![
            Field::new("oid", DataType::UInt32, false),
            Field::new("nspname", DataType::Utf8, false),
        ],
        vec![
            Arc::new(UInt32Array::from(vec![PG_CATALOG_NS, PUBLIC_NS])),
            Arc::new(StringArray::from(vec!["pg_catalog", "public"])),
        ],
    )?;
    let pg_range = mem(
        vec![
            Field::new("rngtypid", DataType::UInt32, false),
            Field::new("rngsubtype", DataType::UInt32, false),
        ],
        vec![
            Arc::new(UInt32Array::from(Vec::<u32>::new())),
            Arc::new(UInt32Array::from(Vec::<u32>::new())),
        ],
    )?;
    s.register_table("pg_type".into(), pg_type)?;
    s.register_table("pg_namespace".into(), pg_namespace)?;
    s.register_table("pg_range".into(), pg_range)?;
    Ok(s)
}
