//! `quiver_shards([table])`: one row per shard of every table (or of one),
//! with its size and the searches it served, so a hot shard shows.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Expr;
use quiver_engine::Engine;

#[derive(Debug)]
pub struct QuiverShards {
    pub engine: Arc<Engine>,
}

impl TableFunctionImpl for QuiverShards {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let names = match args.exprs() {
            [] => {
                let mut all = self.engine.table_names();
                all.sort();
                all
            }
            [Expr::Literal(ScalarValue::Utf8(Some(t)) | ScalarValue::Utf8View(Some(t)), _)] => {
                vec![t.clone()]
            }
            _ => return plan_err!("quiver_shards([table]) takes a table name constant or nothing"),
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("shard", DataType::Int32, false),
            Field::new("rows", DataType::Int64, false),
            Field::new("bytes", DataType::Int64, false),
            Field::new("fragments", DataType::Int64, false),
            Field::new("tier", DataType::Utf8, false),
            Field::new("queries", DataType::Int64, false),
            Field::new("search_ms", DataType::Float64, false),
            Field::new("search_cpu_ms", DataType::Float64, false),
            Field::new("moving", DataType::Boolean, false),
            Field::new("deleted_rows", DataType::Int64, false),
            Field::new("unindexed_rows", DataType::Int64, false),
        ]));
        let mut table_col = Vec::new();
        let mut shard = Vec::new();
        let mut rows = Vec::new();
        let mut bytes = Vec::new();
        let mut fragments = Vec::new();
        let mut queries = Vec::new();
        let mut search_ms = Vec::new();
        let mut search_cpu_ms = Vec::new();
        let mut moving = Vec::new();
        let mut tiers = Vec::new();
        let mut deleted = Vec::new();
        let mut unindexed = Vec::new();
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let every = args.exprs().is_empty();
        for name in names {
            let table = match self.engine.table(&name) {
                Ok(t) => t,
                // Listing every table: one whose store is down is left out.
                Err(e) if every && e.kind == quiver_engine::ErrorKind::Io => continue,
                Err(e) => return Err(DataFusionError::External(Box::new(e))),
            };
            let is_moving = table.is_moving();
            for (i, s) in table.shards().iter().enumerate() {
                let stats = s.stats();
                let searches = s.searches();
                table_col.push(name.clone());
                shard.push(i as i32);
                rows.push(as_i64(stats.rows));
                bytes.push(as_i64(stats.bytes()));
                fragments.push(as_i64(stats.fragments));
                queries.push(as_i64(searches.count));
                search_ms.push(searches.wall.as_secs_f64() * 1e3);
                search_cpu_ms.push(searches.cpu.as_secs_f64() * 1e3);
                moving.push(is_moving);
                tiers.push(table.def.tier.name());
                deleted.push(as_i64(stats.deleted_rows));
                // Rows the vector indexes do not cover: prepared beside them,
                // or scored exactly by the searches.
                let (prepared, exact) = s.fresh_rows();
                unindexed.push(as_i64((prepared + exact) as u64));
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(table_col)) as ArrayRef,
                Arc::new(Int32Array::from(shard)),
                Arc::new(Int64Array::from(rows)),
                Arc::new(Int64Array::from(bytes)),
                Arc::new(Int64Array::from(fragments)),
                Arc::new(StringArray::from(tiers)),
                Arc::new(Int64Array::from(queries)),
                Arc::new(Float64Array::from(search_ms)),
                Arc::new(Float64Array::from(search_cpu_ms)),
                Arc::new(BooleanArray::from(moving)),
                Arc::new(Int64Array::from(deleted)),
                Arc::new(Int64Array::from(unindexed)),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}
