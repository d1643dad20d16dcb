//! The persisted catalog: table, index and function definitions in `<data_dir>/catalog.json`.
//!
//! The file is replaced atomically on each change (temporary file, fsync,
//! rename, fsync of the folder), so a crash leaves either the old or the new
//! catalog. Table data lives in Lance datasets the catalog points at.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::function::FunctionDef;
use crate::index::IndexDef;
use crate::schema::TableDef;

const CATALOG_FILE: &str = "catalog.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Format version of this file.
    pub version: u32,
    pub tables: BTreeMap<String, TableDef>,
    pub indexes: BTreeMap<String, IndexDef>,
    /// User functions (absent from catalogs written before functions existed).
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionDef>,
}

impl Catalog {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(CATALOG_FILE)
    }

    /// Loads the catalog, or an empty one when the data directory is new.
    pub fn load(data_dir: &Path) -> Result<Catalog> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                crate::error::EngineError::new(
                    crate::error::ErrorKind::Io,
                    format!("catalog {} is unreadable: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Catalog {
                version: 1,
                ..Default::default()
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the catalog atomically.
    pub fn store(&self, data_dir: &Path) -> Result<()> {
        let path = Self::path(data_dir);
        let tmp = data_dir.join(format!("{CATALOG_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| {
            crate::error::EngineError::new(crate::error::ErrorKind::Internal, e.to_string())
        })?;
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        if let Ok(dir) = std::fs::File::open(data_dir) {
            // Persist the rename; not every platform supports syncing a folder.
            let _ = dir.sync_all();
        }
        Ok(())
    }

    pub fn indexes_of<'a>(&'a self, table: &'a str) -> impl Iterator<Item = &'a IndexDef> + 'a {
        self.indexes.values().filter(move |i| i.table == table)
    }
}
