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
    /// The next object id for a table or index (absent before ids existed).
    #[serde(default)]
    pub next_oid: u32,
    /// Per `table.column` of a serial column: the values below this one may
    /// have been handed out (reserved in blocks, so a crash leaves a gap, as
    /// PostgreSQL's sequences do).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sequences: BTreeMap<String, i64>,
    /// Views, by name (tables and views share one namespace).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub views: BTreeMap<String, ViewDef>,
    /// This data directory's id: the folder of its datasets on the cold
    /// tier, so data directories sharing a bucket never meet (absent
    /// before the cold tier existed; made at the next open).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub store_id: String,
}

/// `CREATE VIEW name [(columns)] AS query`: the query's text, expanded where
/// the view is named; its columns as planned at creation (for the catalog).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    pub name: String,
    pub oid: u32,
    /// The SELECT, as SQL text (views it names stay names).
    pub query: String,
    pub columns: Vec<ViewColumn>,
    /// The tables and views the query names: they cannot be dropped,
    /// renamed or lose a column while the view stands.
    pub depends_on: Vec<String>,
}

/// A view's column as the catalog shows it: its name and Postgres type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewColumn {
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
}

/// The first object id of a table or index: PostgreSQL's first id for user
/// objects is 16384; the ids below 16400 are left to built-in types (the
/// `vector` type is 16385).
pub const FIRST_RELATION_OID: u32 = 16400;

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

    /// A new object id for a table or index, never one given before (the
    /// counter is stored with the catalog). Call under the DDL lock, and
    /// store the catalog with the object that takes it.
    pub fn allocate_oid(&mut self) -> u32 {
        let oid = self.next_free_oid();
        self.next_oid = oid + 1;
        oid
    }

    /// The id [`Catalog::allocate_oid`] would give now.
    pub fn next_free_oid(&self) -> u32 {
        let taken = self
            .tables
            .values()
            .map(|t| t.oid)
            .chain(self.indexes.values().map(|i| i.oid))
            .chain(self.views.values().map(|v| v.oid))
            .max()
            .unwrap_or(0);
        self.next_oid
            .max(FIRST_RELATION_OID)
            .max(taken.saturating_add(1))
    }

    /// Gives the tables and indexes of a catalog written before object ids
    /// existed their ids (tables first, by name, then indexes); true when any
    /// was missing, so the catalog is to be stored.
    pub fn assign_missing_oids(&mut self) -> bool {
        let tables: Vec<String> = self
            .tables
            .iter()
            .filter(|(_, t)| t.oid == 0)
            .map(|(n, _)| n.clone())
            .collect();
        let indexes: Vec<String> = self
            .indexes
            .iter()
            .filter(|(_, i)| i.oid == 0)
            .map(|(n, _)| n.clone())
            .collect();
        for name in &tables {
            let oid = self.allocate_oid();
            if let Some(t) = self.tables.get_mut(name) {
                t.oid = oid;
            }
        }
        for name in &indexes {
            let oid = self.allocate_oid();
            if let Some(i) = self.indexes.get_mut(name) {
                i.oid = oid;
            }
        }
        !tables.is_empty() || !indexes.is_empty()
    }

    /// The views whose query names `relation` (a table or view).
    pub fn views_on<'a>(&'a self, relation: &'a str) -> impl Iterator<Item = &'a ViewDef> + 'a {
        self.views
            .values()
            .filter(move |v| v.depends_on.iter().any(|d| d == relation))
    }

    pub fn indexes_of<'a>(&'a self, table: &'a str) -> impl Iterator<Item = &'a IndexDef> + 'a {
        self.indexes.values().filter(move |i| i.table == table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A catalog from before object ids: its tables and indexes get distinct
    /// ids once, and later ids never repeat one.
    #[test]
    fn ids_are_given_once_and_never_reused() {
        let old = r#"{"version":1,
            "tables":{"b":{"name":"b","dir":"b.lance","columns":[]},
                      "a":{"name":"a","dir":"a.lance","columns":[]}},
            "indexes":{"a_idx":{"name":"a_idx","table":"a","column":"x","kind":"b_tree","metric":null,"params":{}}}}"#;
        let mut c: Catalog = serde_json::from_str(old).expect("old catalog reads");
        assert!(c.assign_missing_oids());
        let (a, b, i) = (c.tables["a"].oid, c.tables["b"].oid, c.indexes["a_idx"].oid);
        assert_eq!(
            (a, b, i),
            (
                FIRST_RELATION_OID,
                FIRST_RELATION_OID + 1,
                FIRST_RELATION_OID + 2
            )
        );
        assert!(!c.assign_missing_oids(), "nothing left to assign");
        // Dropping the newest object does not give its id again.
        c.indexes.clear();
        assert_eq!(c.allocate_oid(), FIRST_RELATION_OID + 3);
        let json = serde_json::to_string(&c).expect("stores");
        let mut back: Catalog = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back.allocate_oid(), FIRST_RELATION_OID + 4);
    }
}
