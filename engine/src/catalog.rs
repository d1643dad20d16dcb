//! The persisted catalog: table, index and function definitions.
//!
//! A local data directory keeps it in `<data_dir>/catalog.json`, replaced
//! atomically on each change (temporary file, fsync, rename, fsync of the
//! folder), so a crash leaves either the old or the new catalog.
//!
//! A data directory on an object store (`data_dir = "s3://bucket/prefix"`)
//! keeps it beside the data, as numbered versions
//! `<prefix>/catalog/<n>.json`: each change puts version n + 1 with the
//! store's conditional put (`If-None-Match: *`), so a put either makes the
//! new version whole or fails, and two servers that both read version n
//! cannot both write n + 1: the second is refused, never overwrites the
//! first ([`CatalogStore`]). Table data lives in Lance datasets the catalog
//! points at.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use crate::engine_err;
use crate::error::{EngineError, ErrorKind, Result};
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

    /// The catalog of a new data directory.
    fn empty() -> Catalog {
        Catalog {
            version: 1,
            ..Default::default()
        }
    }

    /// Loads the catalog, or an empty one when the data directory is new.
    pub fn load(data_dir: &Path) -> Result<Catalog> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => Self::from_json(&bytes, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::empty()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the catalog atomically.
    pub fn store(&self, data_dir: &Path) -> Result<()> {
        crate::engine::write_durably(data_dir, CATALOG_FILE, &self.to_json()?)
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

    fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self)
            .map_err(|e| EngineError::new(ErrorKind::Internal, e.to_string()))
    }

    fn from_json(bytes: &[u8], at: &str) -> Result<Catalog> {
        serde_json::from_slice(bytes).map_err(|e| {
            EngineError::new(ErrorKind::Io, format!("catalog {at} is unreadable: {e}"))
        })
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

/// Catalog versions kept on an object store besides the newest (older ones
/// are removed after each change; a reader holding one is done with it in
/// far less time than this many DDL statements take).
const KEEP_VERSIONS: u64 = 8;

/// Where the catalog (and the function modules it names) is kept.
#[derive(Debug)]
pub(crate) enum CatalogStore {
    /// `<dir>/catalog.json`, replaced atomically by rename.
    Local(PathBuf),
    /// Numbered versions under `<prefix>/catalog/` on an object store, each
    /// put only if absent (see the module documentation).
    Object {
        store: Arc<dyn ObjectStore>,
        prefix: StorePath,
        /// The version this server read or wrote last (0: none yet).
        version: AtomicU64,
    },
}

fn store_err(what: &str, e: object_store::Error) -> EngineError {
    EngineError::new(
        ErrorKind::Io,
        format!("object storage request failed: {what}: {e}"),
    )
}

impl CatalogStore {
    /// A catalog kept in objects under `prefix` of `store`.
    pub(crate) fn object(store: Arc<dyn ObjectStore>, prefix: StorePath) -> CatalogStore {
        CatalogStore::Object {
            store,
            prefix,
            version: AtomicU64::new(0),
        }
    }

    fn version_path(prefix: &StorePath, n: u64) -> StorePath {
        prefix.clone().join("catalog").join(format!("{n:020}.json"))
    }

    fn module_path(prefix: &StorePath, file: &str) -> StorePath {
        prefix.clone().join("functions").join(file)
    }

    /// The whole object at `path` (`what`: for the error).
    async fn read(store: &dyn ObjectStore, path: &StorePath, what: &str) -> Result<Vec<u8>> {
        let got = store.get(path).await.map_err(|e| store_err(what, e))?;
        let bytes = got.bytes().await.map_err(|e| store_err(what, e))?;
        Ok(bytes.to_vec())
    }

    /// The catalog versions on the store, oldest first.
    async fn versions(store: &dyn ObjectStore, prefix: &StorePath) -> Result<Vec<u64>> {
        let folder = prefix.clone().join("catalog");
        let found: Vec<object_store::ObjectMeta> = store
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|e| store_err("listing the catalog", e))?;
        let mut versions: Vec<u64> = found
            .iter()
            .filter_map(|m| m.location.filename()?.strip_suffix(".json")?.parse().ok())
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// Loads the newest catalog, or an empty one when there is none yet.
    pub(crate) async fn load(&self) -> Result<Catalog> {
        match self {
            CatalogStore::Local(dir) => Catalog::load(dir),
            CatalogStore::Object {
                store,
                prefix,
                version,
            } => {
                let Some(&newest) = Self::versions(store.as_ref(), prefix).await?.last() else {
                    version.store(0, Ordering::Release);
                    return Ok(Catalog::empty());
                };
                let path = Self::version_path(prefix, newest);
                let bytes = Self::read(store.as_ref(), &path, "reading the catalog").await?;
                let catalog = Catalog::from_json(&bytes, path.as_ref())?;
                version.store(newest, Ordering::Release);
                Ok(catalog)
            }
        }
    }

    /// Stores `catalog` as the next version. On an object store, a version
    /// another server wrote since this one read is never overwritten: the
    /// change fails (40001) and this server's catalog stays as it was.
    /// Callers hold the DDL lock.
    pub(crate) async fn store(&self, catalog: &Catalog) -> Result<()> {
        match self {
            CatalogStore::Local(dir) => catalog.store(dir),
            CatalogStore::Object {
                store,
                prefix,
                version,
            } => {
                let next = version.load(Ordering::Acquire) + 1;
                let put = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                let path = Self::version_path(prefix, next);
                match store.put_opts(&path, catalog.to_json()?.into(), put).await {
                    Ok(_) => {}
                    Err(object_store::Error::AlreadyExists { .. }) => {
                        return engine_err!(
                            Conflict,
                            "the catalog at {prefix} was changed by another server (version {next} exists): this server's change was not made; one data directory is served by one server at a time"
                        );
                    }
                    Err(e) => return Err(store_err("writing the catalog", e)),
                }
                version.store(next, Ordering::Release);
                if next > KEEP_VERSIONS {
                    // Best effort: a version left behind is only clutter.
                    let old = Self::version_path(prefix, next - KEEP_VERSIONS - 1);
                    if let Err(e) = store.delete(&old).await
                        && !matches!(e, object_store::Error::NotFound { .. })
                    {
                        tracing::debug!(error = %e, "an old catalog version was not removed");
                    }
                }
                Ok(())
            }
        }
    }

    /// Keeps a function's module beside the catalog (on an object store;
    /// a local data directory keeps modules in its own folder only).
    pub(crate) async fn put_module(&self, file: &str, bytes: &[u8]) -> Result<()> {
        if let CatalogStore::Object { store, prefix, .. } = self {
            let path = Self::module_path(prefix, file);
            store
                .put(&path, bytes.to_vec().into())
                .await
                .map_err(|e| store_err("writing a function module", e))?;
        }
        Ok(())
    }

    /// A function's module kept by [`CatalogStore::put_module`] (`None`: a
    /// local data directory, which keeps none).
    pub(crate) async fn module(&self, file: &str) -> Result<Option<Vec<u8>>> {
        let CatalogStore::Object { store, prefix, .. } = self else {
            return Ok(None);
        };
        let path = Self::module_path(prefix, file);
        Ok(Some(
            Self::read(store.as_ref(), &path, "reading a function module").await?,
        ))
    }

    /// Removes a module [`CatalogStore::put_module`] kept; best effort.
    pub(crate) async fn remove_module(&self, file: &str) {
        if let CatalogStore::Object { store, prefix, .. } = self {
            let path = Self::module_path(prefix, file);
            if let Err(e) = store.delete(&path).await {
                tracing::debug!(error = %e, file, "a function module was not removed from the store");
            }
        }
    }

    /// Whether the catalog is on an object store.
    pub(crate) fn is_object(&self) -> bool {
        matches!(self, CatalogStore::Object { .. })
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

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    /// A catalog on an object store: versions are put only if absent, the
    /// newest is read back, a second server that read an older version is
    /// refused (its change not made), and old versions are removed.
    #[test]
    fn a_catalog_on_an_object_store_is_versioned_and_fenced() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let prefix = StorePath::from("db");
        let a = CatalogStore::object(store.clone(), prefix.clone());
        let mut cat = block_on(a.load()).expect("empty");
        assert!(cat.tables.is_empty() && cat.version == 1);
        cat.store_id = "s1".into();
        block_on(a.store(&cat)).expect("first version");
        // A second server opens the same store and reads version 1.
        let b = CatalogStore::object(store.clone(), prefix.clone());
        assert_eq!(block_on(b.load()).expect("read").store_id, "s1");
        cat.next_oid = 20000;
        block_on(a.store(&cat)).expect("version 2");
        cat.next_oid = 30000;
        let e = block_on(b.store(&cat)).expect_err("b read version 1");
        assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
        assert!(e.message.contains("another server"), "{e}");
        let c = CatalogStore::object(store.clone(), prefix.clone());
        assert_eq!(block_on(c.load()).expect("newest").next_oid, 20000);
        for n in 0..20 {
            cat.next_oid = 40000 + n;
            block_on(a.store(&cat)).expect("later versions");
        }
        let kept = block_on(CatalogStore::versions(store.as_ref(), &prefix)).expect("list");
        assert_eq!(kept.len() as u64, KEEP_VERSIONS + 1, "{kept:?}");
        assert_eq!(kept.last(), Some(&22));
        assert_eq!(block_on(c.load()).expect("newest").next_oid, 40019);
        // Modules live beside the catalog.
        block_on(a.put_module("1-x.wasm", b"\0asm")).expect("put");
        assert_eq!(
            block_on(c.module("1-x.wasm")).expect("get"),
            Some(b"\0asm".to_vec())
        );
        block_on(a.remove_module("1-x.wasm"));
        assert!(block_on(c.module("1-x.wasm")).is_err());
        // A local catalog keeps no modules on a store.
        let local = CatalogStore::Local(PathBuf::from("/nonexistent"));
        assert_eq!(block_on(local.module("1-x.wasm")).expect("none"), None);
    }
}
