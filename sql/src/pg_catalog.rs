//! A minimal `pg_catalog`: the rows drivers read to learn about types
//! (tokio-postgres and psycopg look up unknown type OIDs such as `vector`'s),
//! and `pg_proc` with the helper functions psql's `\df` calls, listing the
//! user functions.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int8Array, Int16Array, RecordBatch, StringArray, UInt32Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::catalog::SchemaProvider;
use datafusion::catalog::Session as DfSession;
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::logical_expr::{ColumnarValue, Expr, ScalarUDF, Volatility, create_udf};
use datafusion::physical_plan::ExecutionPlan;
use quiver_engine::Engine;
use quiver_engine::function::{FunctionDef, FunctionKind};

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
pub fn schema(engine: Arc<Engine>) -> Result<Arc<MemorySchemaProvider>> {
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
    s.register_table("pg_proc".into(), Arc::new(PgProc { engine }))?;
    Ok(s)
}

/// The OID of a type name used in function definitions.
fn type_oid(name: &str) -> u32 {
    TYPES.iter().find(|t| t.1 == name).map(|t| t.0).unwrap_or(0)
}

fn pg_proc_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("oid", DataType::UInt32, false),
        Field::new("proname", DataType::Utf8, false),
        Field::new("pronamespace", DataType::UInt32, false),
        Field::new("prokind", DataType::Utf8, false),
        Field::new("prorettype", DataType::UInt32, false),
        Field::new("pronargs", DataType::Int16, false),
        Field::new("proargtypes", DataType::Utf8, false),
        Field::new("prolang", DataType::Utf8, false),
        Field::new("prosrc", DataType::Utf8, false),
        Field::new("proretset", DataType::Boolean, false),
        Field::new("provolatile", DataType::Utf8, false),
    ]))
}

/// `pg_catalog.pg_proc`: one row per user function, read at each scan.
#[derive(Debug)]
struct PgProc {
    engine: Arc<Engine>,
}

#[async_trait::async_trait]
impl TableProvider for PgProc {
    fn schema(&self) -> SchemaRef {
        pg_proc_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let fns = self.engine.functions();
        let col = |f: fn(&FunctionDef) -> String| {
            Arc::new(StringArray::from(fns.iter().map(f).collect::<Vec<_>>())) as ArrayRef
        };
        let batch = RecordBatch::try_new(
            pg_proc_schema(),
            vec![
                Arc::new(UInt32Array::from(
                    fns.iter().map(|f| f.oid).collect::<Vec<_>>(),
                )),
                col(|f| f.name.clone()),
                Arc::new(UInt32Array::from(vec![PUBLIC_NS; fns.len()])),
                col(|f| match f.kind {
                    FunctionKind::Scalar => "f".into(),
                    FunctionKind::Window => "w".into(),
                }),
                Arc::new(UInt32Array::from(
                    fns.iter().map(|f| type_oid(&f.returns)).collect::<Vec<_>>(),
                )),
                Arc::new(Int16Array::from(
                    fns.iter().map(|f| f.args.len() as i16).collect::<Vec<_>>(),
                )),
                col(|f| {
                    f.args
                        .iter()
                        .map(|a| type_oid(a).to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                }),
                col(|_| "wasm".into()),
                col(|f| f.symbol.clone()),
                Arc::new(BooleanArray::from(vec![false; fns.len()])),
                col(|f| f.volatility.code().into()),
            ],
        )?;
        let table = MemTable::try_new(pg_proc_schema(), vec![vec![batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}

/// `pg_get_function_result(oid)`, `pg_get_function_arguments(oid)`,
/// `pg_get_function_identity_arguments(oid)` and `pg_function_is_visible(oid)`
/// (also under their `pg_catalog.` names, as psql calls them).
pub fn function_udfs(engine: Arc<Engine>) -> Vec<ScalarUDF> {
    let describe = |name: &str, alias: &'static str, f: fn(&FunctionDef) -> String| {
        let engine = engine.clone();
        let udf = create_udf(
            name,
            vec![DataType::UInt32],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |args: &[ColumnarValue]| {
                let fns = engine.functions();
                let oids = args[0].to_array(1)?;
                let oids = datafusion::arrow::compute::cast(&oids, &DataType::UInt32)?;
                let oids = oids
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .cloned()
                    .unwrap_or_else(|| UInt32Array::from(Vec::<u32>::new()));
                let out: StringArray = oids
                    .iter()
                    .map(|o| o.and_then(|o| fns.iter().find(|d| d.oid == o)).map(f))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }),
        );
        udf.with_aliases([alias])
    };
    let visible = create_udf(
        "pg_function_is_visible",
        vec![DataType::UInt32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let n = args[0].to_array(1)?.len();
            Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(vec![
                true;
                n
            ]))))
        }),
    )
    .with_aliases(["pg_catalog.pg_function_is_visible"]);
    vec![
        describe(
            "pg_get_function_result",
            "pg_catalog.pg_get_function_result",
            |d| d.returns.clone(),
        ),
        describe(
            "pg_get_function_arguments",
            "pg_catalog.pg_get_function_arguments",
            |d| d.argument_list(),
        ),
        describe(
            "pg_get_function_identity_arguments",
            "pg_catalog.pg_get_function_identity_arguments",
            |d| d.argument_list(),
        ),
        visible,
    ]
}
