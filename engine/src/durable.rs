//! Durable commits on local disks: a statement is acknowledged only once its
//! files and the manifest that names them are on stable storage.
//!
//! Lance writes a statement's data, deletion and index files through its own
//! local writer (temporary file, rename, no sync) and then commits the version
//! by creating its manifest through the object store (`put` with create-only
//! mode, or a rename onto the manifest name). Quiver hands Lance a `file`
//! store that turns that one step into the second phase of a two-phase commit:
//!
//! 1. before a manifest is created, every file written before it is made
//!    durable with one `syncfs(2)` of the filesystem the table lives on — the
//!    files of this statement, their folders' entries, and those of every other
//!    statement committing at the same moment: concurrent commits wait for one
//!    shared sync (group commit, as PostgreSQL's WAL flush does);
//! 2. the manifest is written with `fsync` of the file and of its folder
//!    (object_store's `LocalFileSystem::with_fsync`), and only then does the
//!    commit return and the client get its CommandComplete.
//!
//! A crash before step 2 completes leaves the previous version as the latest
//! one (the statement was not acknowledged); after it, the new version and
//! every file it names are on disk. `[storage] fsync = false` turns this off,
//! like PostgreSQL's `fsync = off`.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use lance_io::object_store::providers::local::FileStoreProvider;
use lance_io::object_store::{ObjectStore, ObjectStoreParams, ObjectStoreProvider};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use url::Url;

/// Makes the local stores of `registry` durable (see the module docs).
pub fn install(registry: &lance::io::ObjectStoreRegistry) {
    let provider = Arc::new(DurableFileProvider::default());
    // "file" is what plain paths resolve to; the others are the same disk.
    for scheme in ["file", "file-object-store"] {
        registry.insert(scheme, provider.clone());
    }
}

#[derive(Debug, Default)]
struct DurableFileProvider {
    groups: Arc<SyncGroups>,
}

#[async_trait]
impl ObjectStoreProvider for DurableFileProvider {
    async fn new_store(
        &self,
        base_path: Url,
        params: &ObjectStoreParams,
    ) -> lance_core::Result<ObjectStore> {
        let mut store = FileStoreProvider.new_store(base_path, params).await?;
        store.inner = Arc::new(SyncingStore {
            inner: LocalFileSystem::new().with_fsync(true),
            groups: self.groups.clone(),
        });
        Ok(store)
    }

    fn extract_path(&self, url: &Url) -> lance_core::Result<Path> {
        FileStoreProvider.extract_path(url)
    }

    fn calculate_object_store_prefix(
        &self,
        url: &Url,
        storage_options: Option<&HashMap<String, String>>,
    ) -> lance_core::Result<String> {
        FileStoreProvider.calculate_object_store_prefix(url, storage_options)
    }
}

/// One group-commit queue per filesystem (by device id): a sync of one
/// filesystem says nothing about another.
#[derive(Debug, Default)]
struct SyncGroups {
    by_device: Mutex<HashMap<u64, Arc<SyncGroup>>>,
}

impl SyncGroups {
    /// Makes every file written so far on the filesystem of `path` durable.
    async fn sync(&self, path: PathBuf) -> std::io::Result<()> {
        let dir = existing_ancestor(path)?;
        let device = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(&dir)?);
        let group = {
            let mut g = match self.by_device.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            g.entry(device).or_default().clone()
        };
        group.sync(dir).await
    }
}

/// The nearest folder of `path` that exists (a new table's `_versions/` does not yet).
fn existing_ancestor(path: PathBuf) -> std::io::Result<PathBuf> {
    let mut dir = path;
    while !dir.is_dir() {
        if !dir.pop() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no existing folder above the manifest path",
            ));
        }
    }
    Ok(dir)
}

/// Group commit: a caller is covered by any sync that started after it
/// asked; concurrent callers share one.
#[derive(Debug, Default)]
struct SyncGroup {
    /// Tickets handed out (one per caller).
    requested: AtomicU64,
    /// Every ticket up to this one is covered by a completed sync.
    covered: AtomicU64,
    /// One sync at a time; callers queue here.
    running: tokio::sync::Mutex<()>,
    /// Syncs this group ran.
    syncs: AtomicU64,
}

impl SyncGroup {
    async fn sync(&self, dir: PathBuf) -> std::io::Result<()> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _running = self.running.lock().await;
        if self.covered.load(Ordering::SeqCst) >= ticket {
            // A sync that started after this caller's files were written finished meanwhile.
            return Ok(());
        }
        // Everyone who has a ticket now wrote their files before this sync starts.
        let upto = self.requested.load(Ordering::SeqCst);
        tokio::task::spawn_blocking(move || syncfs(&dir))
            .await
            .map_err(std::io::Error::other)??;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.covered.fetch_max(upto, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn syncfs(dir: &std::path::Path) -> std::io::Result<()> {
    let f = std::fs::File::open(dir)?;
    rustix::fs::syncfs(&f).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn syncfs(_dir: &std::path::Path) -> std::io::Result<()> {
    // No per-filesystem sync: flush every filesystem.
    rustix::fs::sync();
    Ok(())
}

/// Whether `path` is a Lance version manifest (`…/_versions/<n>.manifest`).
fn is_manifest(path: &Path) -> bool {
    let mut parts = path.parts().collect::<Vec<_>>().into_iter().rev();
    let name = parts.next();
    let parent = parts.next();
    matches!(
        (name, parent),
        (Some(n), Some(p)) if n.as_ref().ends_with(".manifest") && p.as_ref() == "_versions"
    )
}

/// The local filesystem with fsync on, syncing everything written before a
/// manifest is created.
#[derive(Debug)]
struct SyncingStore {
    inner: LocalFileSystem,
    groups: Arc<SyncGroups>,
}

impl SyncingStore {
    async fn before_commit(&self, manifest: &Path) -> object_store::Result<()> {
        let fs_path = self.inner.path_to_filesystem(manifest)?;
        self.groups
            .sync(fs_path)
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "durable local filesystem",
                source: Box::new(e),
            })
    }
}

impl fmt::Display for SyncingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Durable({})", self.inner)
    }
}

#[async_trait]
impl object_store::ObjectStore for SyncingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if is_manifest(location) {
            self.before_commit(location).await?;
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        if is_manifest(location) {
            self.before_commit(location).await?;
        }
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        if is_manifest(to) {
            self.before_commit(to).await?;
        }
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        if is_manifest(to) {
            self.before_commit(to).await?;
        }
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_recognised() {
        assert!(is_manifest(&Path::from(
            "tmp/d/tables/t.lance/_versions/18446744073709551614.manifest"
        )));
        assert!(!is_manifest(&Path::from(
            "tmp/d/tables/t.lance/data/x.lance"
        )));
        assert!(!is_manifest(&Path::from("tmp/d/_versions/1.manifest.tmp")));
        assert!(!is_manifest(&Path::from("1.manifest")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_waiting_together_share_one_sync() {
        let group = Arc::new(SyncGroup::default());
        // A sync is running: eight commits arrive and queue behind it.
        let running = group.running.lock().await;
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let g = group.clone();
                tokio::spawn(async move { g.sync(std::env::temp_dir()).await })
            })
            .collect();
        while group.requested.load(Ordering::SeqCst) < 8 {
            tokio::task::yield_now().await;
        }
        drop(running);
        for c in calls {
            c.await.expect("join").expect("sync");
        }
        assert_eq!(group.covered.load(Ordering::SeqCst), 8);
        assert_eq!(
            group.syncs.load(Ordering::SeqCst),
            1,
            "one sync covers all eight"
        );
        // A commit arriving after that sync needs a sync of its own.
        group.sync(std::env::temp_dir()).await.expect("sync");
        assert_eq!(group.syncs.load(Ordering::SeqCst), 2);
    }
}
