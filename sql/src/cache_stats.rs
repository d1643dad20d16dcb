//! `quiver_caches()`: one row per cache of the process — the result cache,
//! the chunk cache (hot vectors and columns), the prepared fresh rows, and
//! Lance's index and metadata caches, and with a cold tier the SSD cache of
//! object-store data — with hits, misses, entries, bytes and capacity (and
//! for the SSD cache the GETs it sent to the store), read when the query runs.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{
    Session as DfSession, TableFunctionArgs, TableFunctionImpl, TableProvider,
};
use datafusion::common::plan_err;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use quiver_engine::Engine;

use crate::result_cache::ResultCache;

#[derive(Debug)]
pub struct QuiverCaches {
    pub engine: Arc<Engine>,
    pub results: Arc<ResultCache>,
}

impl TableFunctionImpl for QuiverCaches {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        if !args.exprs().is_empty() {
            return plan_err!("quiver_caches() takes no arguments");
        }
        Ok(Arc::new(CachesTable {
            engine: self.engine.clone(),
            results: self.results.clone(),
            schema: Arc::new(Schema::new(vec![
                Field::new("cache", DataType::Utf8, false),
                Field::new("hits", DataType::Int64, true),
                Field::new("misses", DataType::Int64, true),
                Field::new("entries", DataType::Int64, true),
                Field::new("bytes", DataType::Int64, false),
                Field::new("capacity", DataType::Int64, false),
                Field::new("store_gets", DataType::Int64, true),
                Field::new("store_bytes", DataType::Int64, true),
            ])),
        }))
    }
}

#[derive(Debug)]
struct CachesTable {
    engine: Arc<Engine>,
    results: Arc<ResultCache>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for CachesTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut rows = vec![self.results.figures()];
        rows.extend(self.engine.cache_figures().await);
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|c| c.name))) as ArrayRef,
                Arc::new(Int64Array::from_iter(rows.iter().map(|c| c.hits.map(n)))),
                Arc::new(Int64Array::from_iter(rows.iter().map(|c| c.misses.map(n)))),
                Arc::new(Int64Array::from_iter(rows.iter().map(|c| c.entries.map(n)))),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|c| n(c.bytes)),
                )),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|c| n(c.capacity)),
                )),
                Arc::new(Int64Array::from_iter(
                    rows.iter().map(|c| c.store_gets.map(n)),
                )),
                Arc::new(Int64Array::from_iter(
                    rows.iter().map(|c| c.store_bytes.map(n)),
                )),
            ],
        )?;
        MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema.clone(), projection.cloned())
            .map(|e| e as Arc<dyn ExecutionPlan>)
    }
}
