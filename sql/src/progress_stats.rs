//! `quiver_progress()`: the long work running now (CREATE INDEX, REINDEX,
//! OPTIMIZE, resharding, tier moves), one row a task: its phase, how much of
//! it is done, and how long it has run.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::plan_err;
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use quiver_engine::Engine;

#[derive(Debug)]
pub struct QuiverProgress {
    pub engine: Arc<Engine>,
}

impl TableFunctionImpl for QuiverProgress {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        if !args.exprs().is_empty() {
            return plan_err!("quiver_progress() takes no arguments");
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("command", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
            Field::new("phase", DataType::Utf8, false),
            Field::new("done", DataType::Int64, false),
            Field::new("total", DataType::Int64, false),
            Field::new("unit", DataType::Utf8, false),
            Field::new("fraction", DataType::Float64, true),
            Field::new("elapsed_s", DataType::Float64, false),
        ]));
        let tasks = self.engine.progress();
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(tasks.iter().map(|t| n(t.id)))) as ArrayRef,
                Arc::new(StringArray::from_iter_values(
                    tasks.iter().map(|t| t.command),
                )),
                Arc::new(StringArray::from_iter_values(
                    tasks.iter().map(|t| t.table.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    tasks.iter().map(|t| t.phase.as_str()),
                )),
                Arc::new(Int64Array::from_iter_values(
                    tasks.iter().map(|t| n(t.done)),
                )),
                Arc::new(Int64Array::from_iter_values(
                    tasks.iter().map(|t| n(t.total)),
                )),
                Arc::new(StringArray::from_iter_values(tasks.iter().map(|t| t.unit))),
                Arc::new(Float64Array::from_iter(tasks.iter().map(|t| {
                    (t.total > 0).then(|| (t.done as f64 / t.total as f64).min(1.0))
                }))),
                Arc::new(Float64Array::from_iter_values(
                    tasks.iter().map(|t| t.elapsed.as_secs_f64()),
                )),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}
