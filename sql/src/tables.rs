//! How Quiver's tables appear to DataFusion: schema `public` lists the
//! engine's tables, each read through Lance's table provider at its latest
//! committed version (readers never wait for writers).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use lance::datafusion::LanceTableProvider;
use quiver_engine::Engine;

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
            Ok(t) => Ok(Some(Arc::new(LanceTableProvider::new(
                t.dataset(),
                false,
                false,
            )))),
            Err(e) if e.kind == quiver_engine::ErrorKind::TableNotFound => Ok(None),
            Err(e) => Err(DataFusionError::External(Box::new(e))),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.engine.table(name).is_ok()
    }
}
