//! How Quiver's tables appear to DataFusion: schema `public` lists the
//! engine's tables, each read through Lance's table provider at its latest
//! committed version (readers never wait for writers), together with the
//! table's tail (rows acknowledged through the write-ahead log and not yet
//! flushed to Lance) from memory. The version stays pinned against cleanup
//! until the scan's last row is read.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, Session as DfSession, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;
use lance::datafusion::LanceTableProvider;
use quiver_engine::Engine;
use quiver_engine::housekeeping::Pin;

#[derive(Debug)]
pub struct EngineSchema {
    pub engine: Arc<Engine>,
    /// Where a name that is no table is looked up next: PostgreSQL finds
    /// `pg_class` unqualified, its `pg_catalog` being on every search path.
    pub pg_catalog: Option<Arc<crate::pg_catalog::PgCatalogSchema>>,
    /// The session's transaction heads: a table it wrote in its open block
    /// is read at its own version.
    pub reads: crate::transaction::TxnReads,
}

#[async_trait]
impl SchemaProvider for EngineSchema {
    fn table_names(&self) -> Vec<String> {
        self.engine.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match self.engine.table(name) {
            Ok(t) => {
                let heads = crate::transaction::read_at(&self.reads, &t.def.name);
                let mut parts = Vec::with_capacity(t.shards().len());
                let mut pins = Vec::with_capacity(t.shards().len());
                for (snap, pin) in t.pinned_snapshots(heads.as_deref()).await {
                    parts.push(ShardPart {
                        lance: LanceTableProvider::new(snap.dataset, false, false),
                        tail: snap.tail.batches.iter().map(|(_, b)| b.clone()).collect(),
                    });
                    pins.push(pin);
                }
                Ok(Some(Arc::new(PinnedTable {
                    name: t.def.name.clone(),
                    parts,
                    pins: Arc::new(pins),
                })))
            }
            Err(e) if e.kind == quiver_engine::ErrorKind::TableNotFound => {
                Ok(self.pg_catalog.as_ref().and_then(|c| c.get(name)))
            }
            Err(e) => Err(DataFusionError::External(Box::new(e))),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.engine.table(name).is_ok()
            || self
                .pg_catalog
                .as_ref()
                .is_some_and(|c| c.table_exist(name))
    }
}

/// One shard as a scan reads it: Lance's provider over one version, and
/// the tail beside it.
#[derive(Debug)]
struct ShardPart {
    lance: LanceTableProvider,
    /// The tail's rows (the table's schema).
    tail: Vec<RecordBatch>,
}

impl ShardPart {
    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let scan = self.lance.scan(state, projection, filters, limit).await?;
        if self.tail.is_empty() {
            return Ok(scan);
        }
        let schema = scan.schema();
        let mut batches = Vec::with_capacity(self.tail.len());
        for b in &self.tail {
            let b = match projection {
                Some(p) => b.project(p)?,
                None => b.clone(),
            };
            batches.push(RecordBatch::try_new_with_options(
                schema.clone(),
                b.columns().to_vec(),
                &RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
            )?);
        }
        let tail = MemorySourceConfig::try_new_exec(&[batches], schema, None)?;
        UnionExec::try_new(vec![scan, tail])
    }
}

/// A table's shards, each at the version of one consistent set of
/// snapshots, holding those versions' pins.
#[derive(Debug)]
struct PinnedTable {
    name: String,
    parts: Vec<ShardPart>,
    pins: Arc<Vec<Pin>>,
}

#[async_trait]
impl TableProvider for PinnedTable {
    fn schema(&self) -> SchemaRef {
        self.parts[0].lance.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let lance = self.parts[0].lance.supports_filters_pushdown(filters)?;
        if self.parts.iter().all(|p| p.tail.is_empty()) {
            return Ok(lance);
        }
        // Lance applies them to its rows; a filter above the scan applies
        // them to the tail's too.
        Ok(lance
            .into_iter()
            .map(|p| match p {
                TableProviderFilterPushDown::Exact => TableProviderFilterPushDown::Inexact,
                other => other,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut scans = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            scans.push(p.scan(state, projection, filters, limit).await?);
        }
        let inner = match scans.len() {
            1 => scans.remove(0),
            _ => UnionExec::try_new(scans)?,
        };
        Ok(Arc::new(PinnedScanExec {
            inner,
            pins: self.pins.clone(),
        }))
    }
}

/// The engine table a provider reads, when it is one of Quiver's tables.
pub(crate) fn table_name(provider: &dyn std::any::Any) -> Option<&str> {
    provider
        .downcast_ref::<PinnedTable>()
        .map(|t| t.name.as_str())
}

/// Passes its input through and holds version pins until every stream ends.
#[derive(Debug)]
struct PinnedScanExec {
    inner: Arc<dyn ExecutionPlan>,
    pins: Arc<Vec<Pin>>,
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
                pins: self.pins.clone(),
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
        let pins = self.pins.clone();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.map(move |b| {
                let _held = &pins;
                b
            }),
        )))
    }
}
