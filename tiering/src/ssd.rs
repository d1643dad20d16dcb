//! The local-SSD cache of cold-tier data, plugged into Lance as an object
//! store wrapper (`ObjectStoreParams::object_store_wrapper`).
//!
//! Lance reads a dataset's data, index and deletion files in byte ranges.
//! Those files never change once written (their names carry a uuid or the
//! version that wrote them), so a range read of one is served from aligned
//! blocks of [`SsdOptions::block`] bytes kept as files in a local folder:
//! a block missing there is fetched once with one ranged GET and kept; the
//! blocks are bounded in total bytes (least recently used go first, their
//! files removed once no read holds them). Everything else — manifests,
//! listings, conditional requests, writes — goes to the store untouched, so
//! Lance's commits and version checks see the store itself.
//!
//! Blocks survive a restart: each file names its block in a header, and
//! the cache reads the folder when it is made. Every request the wrapper sends to the store is counted
//! ([`SsdStats`]), so tests and operators can see how often the store was
//! asked.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use lance_io::object_store::WrappingObjectStore;
use object_store::list::PaginatedListStore;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// Where the cache keeps its blocks and how many bytes it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsdOptions {
    /// The folder blocks are kept in (emptied when the cache is made).
    pub dir: PathBuf,
    /// Bytes of blocks kept at most; 0 caches nothing (requests are still counted).
    pub capacity: u64,
    /// The size of one block, the unit fetched and kept.
    pub block: u64,
}

/// Default block: large enough that a search's reads of one index
/// partition or data page take one request, small enough that a cold read
/// of a few rows does not fetch much more than it needs.
pub const DEFAULT_BLOCK: u64 = 1 << 20;

/// What the cache and the store behind it have done since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SsdStats {
    /// Block reads served from the local folder.
    pub hits: u64,
    /// Blocks fetched from the store (then kept).
    pub misses: u64,
    pub entries: u64,
    pub bytes: u64,
    pub capacity: u64,
    /// GET requests sent to the store (ranged reads, whole reads, HEADs).
    pub store_gets: u64,
    /// Bytes those GETs returned.
    pub store_get_bytes: u64,
    /// Every request sent to the store (GETs, PUTs, listings, deletes, copies).
    pub store_requests: u64,
    /// Requests the store answered with an error (a missing object included).
    pub store_errors: u64,
}

/// One cached block: a file in the cache folder, removed when the cache
/// lets go of it (a read that finds it gone asks the store instead). The
/// file starts with a header naming the block ([`header`]), so the cache
/// finds its blocks again when the process starts.
#[derive(Debug)]
struct BlockFile {
    path: PathBuf,
    /// Bytes of data, after the header.
    len: u32,
    /// The header's length.
    offset: u32,
}

/// A block file's header: the block size it was cut with, the block's
/// number, and the object's key.
fn header(block_size: u64, block: u64, object: &str) -> Vec<u8> {
    let mut h = Vec::with_capacity(20 + object.len());
    h.extend_from_slice(&block_size.to_le_bytes());
    h.extend_from_slice(&block.to_le_bytes());
    h.extend_from_slice(&(object.len() as u32).to_le_bytes());
    h.extend_from_slice(object.as_bytes());
    h
}

/// The `(block size, block, object)` a block file's header names.
fn read_header(path: &std::path::Path) -> std::io::Result<(u64, u64, String, u32)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut fixed = [0u8; 20];
    f.read_exact(&mut fixed)?;
    let word = |at: usize| u64::from_le_bytes(fixed[at..at + 8].try_into().unwrap_or_default());
    let n = u32::from_le_bytes(fixed[16..20].try_into().unwrap_or_default());
    if n > 64 << 10 {
        return Err(std::io::Error::other("not a block file"));
    }
    let mut object = vec![0u8; n as usize];
    f.read_exact(&mut object)?;
    let object = String::from_utf8(object).map_err(std::io::Error::other)?;
    Ok((word(0), word(8), object, 20 + n))
}

/// A block of one object of one store.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BlockKey {
    object: Arc<str>,
    block: u64,
}

impl Hash for BlockKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.object.hash(state);
        self.block.hash(state);
    }
}

#[derive(Debug, Default)]
struct Counters {
    lookups: AtomicU64,
    misses: AtomicU64,
    gets: AtomicU64,
    get_bytes: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
}

/// The cache, shared by every store it wraps (one per cold root).
#[derive(Debug)]
pub struct SsdCache {
    options: SsdOptions,
    blocks: moka::future::Cache<BlockKey, Arc<BlockFile>>,
    /// Sizes (and the rest of the metadata) of the immutable objects read.
    metas: moka::sync::Cache<Arc<str>, ObjectMeta>,
    counters: Counters,
    next_file: AtomicU64,
}

/// Objects remembered by [`SsdCache::metas`].
const META_ENTRIES: u64 = 65_536;

impl SsdCache {
    /// A cache in `options.dir` (made when missing), with the blocks a
    /// previous process left there (those cut with another block size, or
    /// unreadable, are removed).
    pub fn new(options: SsdOptions) -> std::io::Result<Arc<SsdCache>> {
        if options.block == 0 || options.block > u32::MAX as u64 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the SSD cache's block size must be between 1 byte and 4 GiB",
            ));
        }
        std::fs::create_dir_all(&options.dir)?;
        let blocks = moka::future::Cache::builder()
            .max_capacity(options.capacity)
            .weigher(|_: &BlockKey, b: &Arc<BlockFile>| b.len)
            .eviction_listener(|_, b: Arc<BlockFile>, _| {
                let _ = std::fs::remove_file(&b.path);
            })
            .build();
        let mut next = 0;
        for entry in std::fs::read_dir(&options.dir)? {
            let path = entry?.path();
            let number = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".block"))
                .and_then(|n| u64::from_str_radix(n, 16).ok());
            let found = match number {
                Some(n) => read_header(&path).ok().map(|h| (n, h)),
                None => None,
            };
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match found {
                Some((n, (block_size, block, object, offset)))
                    if block_size == options.block && size > offset as u64 =>
                {
                    next = next.max(n + 1);
                    let file = Arc::new(BlockFile {
                        path,
                        len: (size - offset as u64) as u32,
                        offset,
                    });
                    let key = BlockKey {
                        object: object.into(),
                        block,
                    };
                    futures::executor::block_on(blocks.insert(key, file));
                }
                // Cut with another block size, torn, or not a block.
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(Arc::new(SsdCache {
            blocks,
            metas: moka::sync::Cache::new(META_ENTRIES),
            options,
            counters: Counters::default(),
            next_file: AtomicU64::new(next),
        }))
    }

    pub async fn stats(&self) -> SsdStats {
        self.blocks.run_pending_tasks().await;
        let c = &self.counters;
        let lookups = c.lookups.load(Ordering::Relaxed);
        let misses = c.misses.load(Ordering::Relaxed);
        SsdStats {
            hits: lookups.saturating_sub(misses),
            misses,
            entries: self.blocks.entry_count(),
            bytes: self.blocks.weighted_size(),
            capacity: self.options.capacity,
            store_gets: c.gets.load(Ordering::Relaxed),
            store_get_bytes: c.get_bytes.load(Ordering::Relaxed),
            store_requests: c.requests.load(Ordering::Relaxed),
            store_errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// Counts a request to the store and its failure.
    fn count<T>(&self, result: object_store::Result<T>) -> object_store::Result<T> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn count_get(
        &self,
        result: object_store::Result<GetResult>,
    ) -> object_store::Result<GetResult> {
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        self.count(result)
    }
}

/// Whether `path` is a file Lance never rewrites: a data, index or
/// deletion file of a dataset.
fn immutable(path: &Path) -> bool {
    let parts: Vec<_> = path.parts().collect();
    parts.len() >= 2
        && parts[..parts.len() - 1]
            .iter()
            .any(|p| matches!(p.as_ref(), "data" | "_indices" | "_deletions"))
}

/// Whether a GET asks for more than bytes (a condition or a version), so
/// the store itself must answer it.
fn conditional(o: &GetOptions) -> bool {
    o.if_match.is_some()
        || o.if_none_match.is_some()
        || o.if_modified_since.is_some()
        || o.if_unmodified_since.is_some()
        || o.version.is_some()
}

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "ssd cache",
        source: message.into(),
    }
}

/// The bytes `range` of an object of `size` bytes asks for.
fn resolve(range: Option<&GetRange>, size: u64) -> object_store::Result<Range<u64>> {
    let r = match range {
        None => 0..size,
        Some(GetRange::Bounded(r)) => {
            if r.start >= r.end || r.start >= size {
                return Err(generic(format!(
                    "invalid range {}..{} of an object of {size} bytes",
                    r.start, r.end
                )));
            }
            r.start..r.end.min(size)
        }
        Some(GetRange::Offset(o)) => {
            if *o >= size {
                return Err(generic(format!(
                    "invalid offset {o} of an object of {size} bytes"
                )));
            }
            *o..size
        }
        Some(GetRange::Suffix(n)) => size.saturating_sub(*n)..size,
    };
    Ok(r)
}

/// The store of one cold root, wrapped by the cache.
#[derive(Debug)]
struct CachedStore {
    inner: Arc<dyn ObjectStore>,
    cache: Arc<SsdCache>,
    /// Identifies the store in block keys (Lance's store prefix).
    prefix: String,
}

impl fmt::Display for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SsdCached({})", self.inner)
    }
}

impl CachedStore {
    fn object(&self, location: &Path) -> Arc<str> {
        format!("{}/{}", self.prefix, location).into()
    }

    /// The metadata of immutable object `location`, asked of the store once.
    async fn meta(&self, object: &Arc<str>, location: &Path) -> object_store::Result<ObjectMeta> {
        if let Some(m) = self.cache.metas.get(object) {
            return Ok(m);
        }
        let head = GetOptions {
            head: true,
            ..Default::default()
        };
        let result = self
            .cache
            .count_get(self.inner.get_opts(location, head).await)?;
        self.cache.metas.insert(object.clone(), result.meta.clone());
        Ok(result.meta)
    }

    /// Block `block` of `location` (of `size` bytes), fetched when missing.
    async fn block(
        &self,
        object: &Arc<str>,
        location: &Path,
        size: u64,
        block: u64,
    ) -> object_store::Result<Arc<BlockFile>> {
        let cache = &self.cache;
        cache.counters.lookups.fetch_add(1, Ordering::Relaxed);
        let key = BlockKey {
            object: object.clone(),
            block,
        };
        let step = cache.options.block;
        let fetch = async {
            cache.counters.misses.fetch_add(1, Ordering::Relaxed);
            let range = block * step..((block + 1) * step).min(size);
            let options = GetOptions {
                range: Some(GetRange::Bounded(range.clone())),
                ..Default::default()
            };
            let result = cache.count_get(self.inner.get_opts(location, options).await)?;
            let bytes = result.bytes().await?;
            cache
                .counters
                .get_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if bytes.len() as u64 != range.end - range.start {
                return Err(generic(format!(
                    "the store returned {} bytes of {location} for {} requested",
                    bytes.len(),
                    range.end - range.start
                )));
            }
            let n = cache.next_file.fetch_add(1, Ordering::Relaxed);
            let path = cache.options.dir.join(format!("{n:016x}.block"));
            let tmp = path.with_extension("tmp");
            let mut content = header(step, block, object);
            let offset = content.len() as u32;
            content.extend_from_slice(&bytes);
            // Whole or not at all: a crash leaves a .tmp, never a torn block.
            let written = async {
                tokio::fs::write(&tmp, &content).await?;
                tokio::fs::rename(&tmp, &path).await
            };
            written
                .await
                .map_err(|e| generic(format!("cannot write {}: {e}", path.display())))?;
            Ok::<_, object_store::Error>(Arc::new(BlockFile {
                path,
                len: bytes.len() as u32,
                offset,
            }))
        };
        cache
            .blocks
            .try_get_with(key, fetch)
            .await
            .map_err(|e: Arc<object_store::Error>| match e.as_ref() {
                object_store::Error::NotFound { path, .. } => object_store::Error::NotFound {
                    path: path.clone(),
                    source: e.to_string().into(),
                },
                _ => generic(e.to_string()),
            })
    }

    /// Bytes `range` of immutable object `location`, from its blocks.
    async fn read(
        &self,
        object: &Arc<str>,
        location: &Path,
        size: u64,
        range: Range<u64>,
    ) -> object_store::Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let step = self.cache.options.block;
        let first = range.start / step;
        let last = (range.end - 1) / step;
        let blocks = futures::future::try_join_all(
            (first..=last).map(|b| self.block(object, location, size, b)),
        )
        .await?;
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for (b, file) in (first..).zip(blocks) {
            let start = b * step;
            let from = range.start.max(start) - start;
            let to = range.end.min(start + file.len as u64) - start;
            let part = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let f = std::fs::File::open(&file.path)?;
                let mut buf = vec![0u8; (to - from) as usize];
                f.read_exact_at(&mut buf, file.offset as u64 + from)?;
                Ok::<_, std::io::Error>(buf)
            })
            .await
            .map_err(|e| generic(e.to_string()))?;
            match part {
                Ok(part) => out.extend_from_slice(&part),
                // Evicted between the lookup and the read: ask the store.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let options = GetOptions {
                        range: Some(GetRange::Bounded(start + from..start + to)),
                        ..Default::default()
                    };
                    let got = self
                        .cache
                        .count_get(self.inner.get_opts(location, options).await)?;
                    out.extend_from_slice(&got.bytes().await?);
                }
                Err(e) => return Err(generic(format!("cannot read a cached block: {e}"))),
            }
        }
        Ok(out.freeze())
    }

    async fn cached_get(
        &self,
        location: &Path,
        options: &GetOptions,
    ) -> object_store::Result<GetResult> {
        let object = self.object(location);
        let meta = self.meta(&object, location).await?;
        let range = resolve(options.range.as_ref(), meta.size)?;
        let bytes = if options.head {
            Bytes::new()
        } else {
            self.read(&object, location, meta.size, range.clone())
                .await?
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed()),
            meta,
            range,
            attributes: Default::default(),
            extensions: Default::default(),
        })
    }

    fn caching(&self) -> bool {
        self.cache.options.capacity > 0
    }
}

#[async_trait]
impl ObjectStore for CachedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.cache
            .count(self.inner.put_opts(location, payload, opts).await)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.cache
            .count(self.inner.put_multipart_opts(location, opts).await)
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if self.caching() && immutable(location) && !conditional(&options) {
            return self.cached_get(location, &options).await;
        }
        let result = self
            .cache
            .count_get(self.inner.get_opts(location, options).await)?;
        if options_is_head_or_small(&result) {
            return Ok(result);
        }
        // Count the bytes as they arrive.
        let counters = self.cache.clone();
        let GetResult {
            payload,
            meta,
            range,
            attributes,
            extensions,
        } = result;
        let payload = match payload {
            GetResultPayload::Stream(s) => GetResultPayload::Stream(
                s.inspect_ok(move |b| {
                    counters
                        .counters
                        .get_bytes
                        .fetch_add(b.len() as u64, Ordering::Relaxed);
                })
                .boxed(),
            ),
            other => other,
        };
        Ok(GetResult {
            payload,
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        if self.caching() && immutable(location) {
            let object = self.object(location);
            let meta = self.meta(&object, location).await?;
            let mut out = Vec::with_capacity(ranges.len());
            for r in ranges {
                let r = resolve(Some(&GetRange::Bounded(r.clone())), meta.size)?;
                out.push(self.read(&object, location, meta.size, r).await?);
            }
            return Ok(out);
        }
        self.cache.counters.gets.fetch_add(1, Ordering::Relaxed);
        self.cache
            .count(self.inner.get_ranges(location, ranges).await)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let cache = self.cache.clone();
        self.inner
            .delete_stream(locations)
            .map(move |r| cache.count(r))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.cache.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.cache.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.cache
            .count(self.inner.list_with_delimiter(prefix).await)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.cache
            .count(self.inner.copy_opts(from, to, options).await)
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.cache
            .count(self.inner.rename_opts(from, to, options).await)
    }
}

/// A HEAD, or a payload already in a local file: nothing to count as it streams.
fn options_is_head_or_small(result: &GetResult) -> bool {
    matches!(result.payload, GetResultPayload::File(..)) || result.range.is_empty()
}

/// The wrapper Lance applies to every store a cold shard opens.
#[derive(Debug, Clone)]
pub struct SsdWrapper {
    pub cache: Arc<SsdCache>,
    /// What wraps the store beneath the cache, if anything.
    pub beneath: Option<Arc<dyn WrappingObjectStore>>,
}

impl WrappingObjectStore for SsdWrapper {
    fn wrap(&self, store_prefix: &str, original: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        let inner = match &self.beneath {
            Some(w) => w.wrap(store_prefix, original),
            None => original,
        };
        Arc::new(CachedStore {
            inner,
            cache: self.cache.clone(),
            prefix: store_prefix.to_string(),
        })
    }

    /// Listings are not cached: the store's own paging is kept (or what
    /// the wrapper beneath says).
    fn wrap_paginated(
        &self,
        store_prefix: &str,
        original: Arc<dyn PaginatedListStore>,
    ) -> Option<Arc<dyn PaginatedListStore>> {
        match &self.beneath {
            Some(w) => w.wrap_paginated(store_prefix, original),
            None => Some(original),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    fn store(capacity: u64, block: u64) -> (Arc<InMemory>, CachedStore, Arc<SsdCache>, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "quiver-ssd-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        let cache = SsdCache::new(SsdOptions {
            dir: dir.clone(),
            capacity,
            block,
        })
        .expect("cache");
        let inner = Arc::new(InMemory::new());
        let wrapped = CachedStore {
            inner: inner.clone(),
            cache: cache.clone(),
            prefix: "mem".into(),
        };
        (inner, wrapped, cache, dir)
    }

    #[test]
    fn immutable_paths() {
        assert!(immutable(&Path::from("p/t-1.lance/data/abc.lance")));
        assert!(immutable(&Path::from("p/t-1.lance/_indices/u/index.idx")));
        assert!(immutable(&Path::from("p/t-1.lance/_deletions/1-2-3.arrow")));
        assert!(!immutable(&Path::from("p/t-1.lance/_versions/1.manifest")));
        assert!(!immutable(&Path::from("data")));
    }

    #[tokio::test]
    async fn ranges_are_served_from_blocks_fetched_once() {
        let (inner, store, cache, dir) = store(1 << 20, 100);
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let path = Path::from("t.lance/data/f.lance");
        inner
            .put(&path, Bytes::from(data.clone()).into())
            .await
            .expect("put");
        // 150..420 spans blocks 1..=4: one HEAD and four GETs.
        let got = store.get_range(&path, 150..420).await.expect("get");
        assert_eq!(&got[..], &data[150..420]);
        let s = cache.stats().await;
        assert_eq!((s.misses, s.store_gets, s.entries), (4, 5, 4));
        // Inside the same blocks: no request at all.
        let got = store.get_range(&path, 200..399).await.expect("get");
        assert_eq!(&got[..], &data[200..399]);
        let ranges = store
            .get_ranges(&path, &[0..10, 990..1000])
            .await
            .expect("ranges");
        assert_eq!(&ranges[0][..], &data[0..10]);
        assert_eq!(&ranges[1][..], &data[990..1000]);
        let s = cache.stats().await;
        assert_eq!(s.store_gets, 7, "{s:?}");
        assert_eq!(s.misses, 6);
        // A whole read and a HEAD come from the cache as well.
        let whole = store
            .get(&path)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(&whole[..], &data[..]);
        assert_eq!(store.head(&path).await.expect("head").size, 1000);
        assert_eq!(cache.stats().await.misses, 10);
        // Manifests always go to the store.
        let manifest = Path::from("t.lance/_versions/1.manifest");
        inner
            .put(&manifest, Bytes::from_static(b"m").into())
            .await
            .expect("put");
        let before = cache.stats().await.store_gets;
        store.get(&manifest).await.expect("get");
        store.get(&manifest).await.expect("get");
        assert_eq!(cache.stats().await.store_gets, before + 2);
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn random_ranges_read_the_stored_bytes() {
        let (inner, store, cache, dir) = store(2000, 64);
        let store = Arc::new(store);
        let mut files = Vec::new();
        for f in 0..3u64 {
            let len = 700 + 137 * f as usize;
            let data: Vec<u8> = (0..len)
                .map(|i| ((i as u64 * 31 + f * 7) % 253) as u8)
                .collect();
            let path = Path::from(format!("t.lance/data/f{f}.lance"));
            inner
                .put(&path, Bytes::from(data.clone()).into())
                .await
                .expect("put");
            files.push((path, data));
        }
        let files = Arc::new(files);
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let (store, files) = (store.clone(), files.clone());
            tasks.push(tokio::spawn(async move {
                let mut x = 12345 + t;
                let mut next = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                for _ in 0..300 {
                    let (path, data) = &files[(next() % 3) as usize];
                    let start = next() % data.len() as u64;
                    let end = start + 1 + next() % (data.len() as u64 - start);
                    match next() % 4 {
                        0 => {
                            let got = store.get_range(path, start..end).await.expect("range");
                            assert_eq!(&got[..], &data[start as usize..end as usize]);
                        }
                        1 => {
                            let r = [start..end, 0..1, start..(start + 1)];
                            let got = store.get_ranges(path, &r).await.expect("ranges");
                            for (g, r) in got.iter().zip(r) {
                                assert_eq!(&g[..], &data[r.start as usize..r.end as usize]);
                            }
                        }
                        2 => {
                            let o = GetOptions {
                                range: Some(GetRange::Suffix(end - start)),
                                ..Default::default()
                            };
                            let got = store.get_opts(path, o).await.expect("suffix");
                            let got = got.bytes().await.expect("bytes");
                            let n = (end - start) as usize;
                            assert_eq!(&got[..], &data[data.len() - n..]);
                        }
                        _ => {
                            let o = GetOptions {
                                range: Some(GetRange::Offset(start)),
                                ..Default::default()
                            };
                            let got = store.get_opts(path, o).await.expect("offset");
                            let got = got.bytes().await.expect("bytes");
                            assert_eq!(&got[..], &data[start as usize..]);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert!(cache.stats().await.bytes <= 2000);
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[tokio::test]
    async fn capacity_bounds_the_blocks_kept() {
        let (inner, store, cache, dir) = store(300, 100);
        let path = Path::from("t.lance/data/f.lance");
        inner
            .put(&path, Bytes::from(vec![7u8; 1000]).into())
            .await
            .expect("put");
        store.get_range(&path, 0..1000).await.expect("get");
        let s = cache.stats().await;
        assert!(s.bytes <= 300, "{s:?}");
        let files = std::fs::read_dir(&dir).expect("dir").count() as u64;
        assert_eq!(files, s.entries, "a block evicted leaves no file");
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[tokio::test]
    async fn blocks_survive_a_new_cache_on_the_same_folder() {
        let (inner, store, cache, dir) = store(1 << 20, 100);
        let data: Vec<u8> = (0..450u32).map(|i| (i % 199) as u8).collect();
        let path = Path::from("t.lance/data/f.lance");
        inner
            .put(&path, Bytes::from(data.clone()).into())
            .await
            .expect("put");
        store.get_range(&path, 0..450).await.expect("get");
        assert_eq!(cache.stats().await.entries, 5);
        std::fs::write(dir.join("junk.block"), b"x").expect("junk");
        drop((store, cache));
        let options = SsdOptions {
            dir: dir.clone(),
            capacity: 1 << 20,
            block: 100,
        };
        let cache = SsdCache::new(options).expect("again");
        assert_eq!(cache.stats().await.entries, 5);
        assert!(
            !dir.join("junk.block").exists(),
            "a file that is no block goes"
        );
        let store = CachedStore {
            inner: inner.clone(),
            cache: cache.clone(),
            prefix: "mem".into(),
        };
        let got = store.get_range(&path, 50..420).await.expect("get");
        assert_eq!(&got[..], &data[50..420]);
        let s = cache.stats().await;
        assert_eq!((s.misses, s.hits), (0, 5), "{s:?}");
        assert_eq!(s.store_gets, 1, "one HEAD, no data GET: {s:?}");
        // Another block size: the old blocks go.
        drop((store, cache));
        let options = SsdOptions {
            dir: dir.clone(),
            capacity: 1 << 20,
            block: 64,
        };
        let cache = SsdCache::new(options).expect("other block size");
        assert_eq!(cache.stats().await.entries, 0);
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[tokio::test]
    async fn a_missing_object_is_not_found() {
        let (_inner, store, _cache, dir) = store(1 << 20, 100);
        let e = store
            .get_range(&Path::from("t.lance/data/none.lance"), 0..10)
            .await
            .expect_err("missing");
        assert!(matches!(e, object_store::Error::NotFound { .. }), "{e}");
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
