//! quiver-tiering: where table data lives.
//!
//! A table's shards are Lance datasets on one of two tiers:
//! - **hot**: a local folder under the data directory (`<data_dir>/tables/`);
//! - **cold**: an object store (`s3://bucket/prefix`, in the config file),
//!   under a folder named by the data directory's id, so two data
//!   directories sharing a bucket never see each other's datasets. Cold
//!   reads go through the local-SSD cache of [`ssd`].
//!
//! The engine only asks this crate for a dataset's [`Location`] (its URI
//! and the store parameters Lance opens it with), and to list and remove
//! dataset folders.

pub mod faults;
pub mod metered;
pub mod ssd;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lance_io::object_store::{
    ObjectStore, ObjectStoreParams, ObjectStoreRegistry, StorageOptionsAccessor,
    WrappingObjectStore,
};

pub use metered::StoreMetrics;
pub use ssd::{SsdCache, SsdOptions, SsdStats};

/// Where a table's shards live.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Local disk.
    #[default]
    Hot,
    /// Object storage, read through the local-SSD cache.
    Cold,
}

impl Tier {
    pub fn is_hot(&self) -> bool {
        *self == Tier::Hot
    }

    pub fn name(&self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Cold => "cold",
        }
    }

    /// `hot` or `cold`, in any case.
    pub fn parse(text: &str) -> Option<Tier> {
        match text.to_ascii_lowercase().as_str() {
            "hot" => Some(Tier::Hot),
            "cold" => Some(Tier::Cold),
            _ => None,
        }
    }
}

/// The cold tier as configured.
#[derive(Debug, Clone)]
pub struct ColdOptions {
    /// The object-store root, e.g. `s3://bucket/prefix`.
    pub root: String,
    /// Lance's storage options for it (`aws_endpoint`, `aws_region`,
    /// credentials, `allow_http`, `timeout`, `client_max_retries`, …).
    pub storage_options: HashMap<String, String>,
    pub ssd: SsdOptions,
    /// A wrapper of the store beneath the SSD cache (the tests' fault
    /// injector, [`faults::FaultWrapper`]); `None` in the server.
    pub beneath_cache: Option<Arc<dyn WrappingObjectStore>>,
}

/// Where one dataset is: what Lance opens or creates it with.
#[derive(Debug, Clone)]
pub struct Location {
    pub uri: String,
    /// Store parameters (`None`: Lance's defaults, the local disk).
    pub params: Option<ObjectStoreParams>,
}

#[derive(Debug)]
struct ColdRoot {
    /// `<root>/<data directory id>`, the folder of this data directory's datasets.
    uri: String,
    params: ObjectStoreParams,
    cache: Arc<SsdCache>,
    /// What wraps the store beneath the SSD cache: the request metrics, and
    /// [`ColdOptions::beneath_cache`] beneath them.
    beneath: Option<Arc<dyn WrappingObjectStore>>,
}

/// The roots under which table datasets are stored.
#[derive(Debug, Clone)]
pub struct StorageRoot {
    tables_dir: PathBuf,
    cold: Option<Arc<ColdRoot>>,
    /// The object stores Lance opens datasets through (its session's).
    registry: Arc<ObjectStoreRegistry>,
}

/// What Lance opens a store of the cold tier with: its storage options,
/// and `wrapper` around the store.
fn store_params(
    cold: &ColdOptions,
    wrapper: Option<Arc<dyn WrappingObjectStore>>,
) -> ObjectStoreParams {
    ObjectStoreParams {
        object_store_wrapper: wrapper,
        storage_options_accessor: Some(Arc::new(StorageOptionsAccessor::with_static_options(
            cold.storage_options.clone(),
        ))),
        ..Default::default()
    }
}

/// The wrapper of the cold tier's store beneath the SSD cache: request
/// metrics around [`ColdOptions::beneath_cache`].
fn metered(cold: &ColdOptions, metrics: Arc<StoreMetrics>) -> Option<Arc<dyn WrappingObjectStore>> {
    Some(Arc::new(metered::MeteredWrapper {
        metrics,
        tier: Tier::Cold.name(),
        beneath: cold.beneath_cache.clone(),
    }))
}

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl StorageRoot {
    /// A root in a local folder only: datasets go to `<data_dir>/tables/`;
    /// stores are opened through `registry`.
    pub fn local(
        data_dir: &Path,
        registry: Arc<ObjectStoreRegistry>,
    ) -> std::io::Result<StorageRoot> {
        let tables_dir = data_dir.join("tables");
        std::fs::create_dir_all(&tables_dir)?;
        let tables_dir = tables_dir.canonicalize()?;
        Ok(StorageRoot {
            tables_dir,
            cold: None,
            registry,
        })
    }

    /// Adds the cold tier: datasets of data directory `store_id` under
    /// `cold.root`, read through a new SSD cache; the requests that reach
    /// the store are counted in `metrics`.
    pub fn with_cold(
        mut self,
        cold: ColdOptions,
        store_id: &str,
        metrics: Arc<StoreMetrics>,
    ) -> std::io::Result<StorageRoot> {
        let root = cold.root.trim_end_matches('/');
        if !root.contains("://") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "the cold root must be an object-store URL (s3://bucket/prefix), not {root}"
                ),
            ));
        }
        let cache = SsdCache::new(cold.ssd.clone())?;
        let beneath = metered(&cold, metrics);
        let params = store_params(
            &cold,
            Some(Arc::new(ssd::SsdWrapper {
                cache: cache.clone(),
                beneath: beneath.clone(),
            })),
        );
        self.cold = Some(Arc::new(ColdRoot {
            uri: format!("{root}/{store_id}"),
            params,
            cache,
            beneath,
        }));
        Ok(self)
    }

    /// Whether a cold tier is configured.
    pub fn has_cold(&self) -> bool {
        self.cold.is_some()
    }

    fn cold(&self) -> std::io::Result<&ColdRoot> {
        self.cold.as_deref().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "no cold tier is configured ([storage] cold_root in the config file)",
            )
        })
    }

    /// Where the dataset in folder `dir` of tier `tier` is.
    pub fn location(&self, tier: Tier, dir: &str) -> std::io::Result<Location> {
        match tier {
            Tier::Hot => Ok(Location {
                uri: self.tables_dir.join(dir).to_string_lossy().into_owned(),
                params: None,
            }),
            Tier::Cold => {
                let cold = self.cold()?;
                Ok(Location {
                    uri: format!("{}/{dir}", cold.uri),
                    params: Some(cold.params.clone()),
                })
            }
        }
    }

    /// Where the dataset in folder `dir` of tier `tier` is, for copying it
    /// whole: as [`StorageRoot::location`], but not through the SSD cache
    /// (a copy reads every file once).
    pub fn copy_location(&self, tier: Tier, dir: &str) -> std::io::Result<Location> {
        let mut at = self.location(tier, dir)?;
        if let (Some(p), Ok(cold)) = (&mut at.params, self.cold()) {
            p.object_store_wrapper = cold.beneath.clone();
        }
        Ok(at)
    }

    /// The store `at` is in, and `at`'s path in it.
    pub async fn open_store(
        &self,
        at: &Location,
    ) -> lance_core::Result<(Arc<ObjectStore>, object_store::path::Path)> {
        let params = at.params.clone().unwrap_or_default();
        ObjectStore::from_uri_and_params(self.registry.clone(), &at.uri, &params).await
    }

    async fn cold_store(&self) -> std::io::Result<(Arc<ObjectStore>, object_store::path::Path)> {
        let cold = self.cold()?;
        let at = Location {
            uri: cold.uri.clone(),
            params: Some(cold.params.clone()),
        };
        self.open_store(&at).await.map_err(other)
    }

    /// The dataset folders (`*.lance`) on `tier`, by folder name.
    pub async fn dataset_dirs(&self, tier: Tier) -> std::io::Result<Vec<String>> {
        let mut dirs = Vec::new();
        match tier {
            Tier::Hot => {
                for entry in std::fs::read_dir(&self.tables_dir)? {
                    let entry = entry?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".lance") && entry.file_type()?.is_dir() {
                        dirs.push(name);
                    }
                }
            }
            Tier::Cold => {
                let (store, base) = self.cold_store().await?;
                for name in store.read_dir(base).await.map_err(other)? {
                    if name.ends_with(".lance") {
                        dirs.push(name);
                    }
                }
            }
        }
        dirs.sort();
        Ok(dirs)
    }

    /// When anything in a cold dataset folder was last written (`None`:
    /// the folder holds nothing), from the store's listing.
    pub async fn last_write(&self, dir: &str) -> std::io::Result<Option<std::time::SystemTime>> {
        use futures::TryStreamExt;
        let (store, base) = self.cold_store().await?;
        let path = base.clone().join(dir);
        let mut newest: Option<i64> = None;
        let mut files = store.read_dir_all(&path, None);
        while let Some(meta) = files.try_next().await.map_err(other)? {
            let at = meta.last_modified.timestamp_millis();
            newest = Some(newest.map_or(at, |n| n.max(at)));
        }
        Ok(newest
            .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64)))
    }

    /// Removes a dataset's files. A failure leaves unreachable files
    /// behind, never a broken table, so callers may log and go on.
    pub async fn remove_dataset(&self, tier: Tier, dir: &str) -> std::io::Result<()> {
        match tier {
            Tier::Hot => match std::fs::remove_dir_all(self.tables_dir.join(dir)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Tier::Cold => {
                let (store, base) = self.cold_store().await?;
                store
                    .remove_dir_all(base.clone().join(dir))
                    .await
                    .map_err(other)
            }
        }
    }

    /// The store at the cold tier's root itself (not a data directory's
    /// folder under it) and the root's path in it, read and written
    /// directly (no SSD cache): where a data directory on an object store
    /// keeps its catalog.
    pub async fn root_store(
        registry: Arc<ObjectStoreRegistry>,
        cold: &ColdOptions,
        metrics: Arc<StoreMetrics>,
    ) -> lance_core::Result<(Arc<ObjectStore>, object_store::path::Path)> {
        let params = store_params(cold, metered(cold, metrics));
        let root = cold.root.trim_end_matches('/');
        ObjectStore::from_uri_and_params(registry, root, &params).await
    }

    /// The SSD cache's figures, when a cold tier is configured.
    pub async fn ssd_stats(&self) -> Option<SsdStats> {
        match &self.cold {
            Some(c) => Some(c.cache.stats().await),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_root_makes_uris_under_tables() {
        let dir = std::env::temp_dir().join(format!("quiver-tiering-{}", std::process::id()));
        let root =
            StorageRoot::local(&dir, Arc::new(ObjectStoreRegistry::default())).expect("root");
        let at = root.location(Tier::Hot, "docs-1.lance").expect("hot");
        assert!(at.uri.ends_with("tables/docs-1.lance") && at.params.is_none());
        futures::executor::block_on(root.remove_dataset(Tier::Hot, "missing.lance"))
            .expect("missing is fine");
        std::fs::create_dir_all(dir.join("tables/b-2.lance")).expect("mkdir");
        std::fs::create_dir_all(dir.join("tables/a-1.lance")).expect("mkdir");
        std::fs::write(dir.join("tables/notes.txt"), b"x").expect("write");
        assert_eq!(
            futures::executor::block_on(root.dataset_dirs(Tier::Hot)).expect("list"),
            ["a-1.lance", "b-2.lance"]
        );
        assert!(
            root.location(Tier::Cold, "a-1.lance").is_err(),
            "no cold tier"
        );
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
