//! How Quiver's tables appear to DataFusion: schema `public` lists the
//! engine's tables, each read through Lance's table provider at its latest
//! committed version (readers never wait for writers). The version stays
//! pinned against cleanup until the scan's last row is read.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, Session as DfSession, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;
use lance::datafusion::LanceTableProvider;
use quiver_engine::Engine;
use quiver_engine::housekeeping::Pin;

#[derive(Debug)]
pub struct EngineSchema {
    pub engine: Arc<Engine>,
}

#[async_trait]
impl SchemaProvider for EngineSchema {
    fn table_names(&self) -> Vec<String> {
        self.engine.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match self.engine.table(name) {
            Ok(t) => {
                let (ds, pin) = t.pinned_dataset();
                Ok(Some(Arc::new(PinnedTable {
                    inner: LanceTableProvider::new(ds, false, false),
                    pin: Arc::new(pin),
                })))
            }
            Err(e) if e.kind == quiver_engine::ErrorKind::TableNotFound => Ok(None),
            Err(e) => Err(DataFusionError::External(Box::new(e))),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.engine.table(name).is_ok()
    }
}

/// Lance's provider over one version, holding that version's pin.
#[derive(Debug)]
struct PinnedTable {
    inner: LanceTableProvider,
    pin: Arc<Pin>,
}

#[async_trait]
impl TableProvider for PinnedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let scan = self.inner.scan(state, projection, filters, limit).await?;
        Ok(Arc::new(PinnedScanExec {
            inner: scan,
            pin: self.pin.clone(),
        }))
    }
}

/// Passes its input through and holds a version pin until every stream ends.
#[derive(Debug)]
struct PinnedScanExec {
    inner: Arc<dyn ExecutionPlan>,
    pin: Arc<Pin>,
}

impl DisplayAs for PinnedScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PinnedScanExec")
    }
}

impl ExecutionPlan for PinnedScanExec {
    fn name(&self) -> &str {
        "PinnedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(inner) if children.is_empty() => Ok(Arc::new(PinnedScanExec {
                inner,
                pin: self.pin.clone(),
            })),
            _ => datafusion::common::plan_err!("PinnedScanExec has one child"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let stream = self.inner.execute(partition, ctx)?;
        let schema = stream.schema();
        let pin = self.pin.clone();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.map(move |b| {
                let _held = &pin;
                b
            }),
        )))
    }
}
