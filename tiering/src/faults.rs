//! Fault injection beneath the cold tier: an object-store wrapper that fails
//! or delays the requests it is told to, for testing how tables behave when
//! their store does ([`ColdOptions::beneath_cache`](crate::ColdOptions)).
//!
//! It wraps the real store (S3 in the tests) under the SSD cache, so what it
//! injects is what a failing store would do: the cache above it and Lance
//! above that see the errors and delays.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use lance_io::object_store::WrappingObjectStore;
use object_store::list::PaginatedListStore;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// What to inject, changed at any time by the test holding it (nothing at first).
#[derive(Debug)]
pub struct Faults {
    /// Fail every read (GET, HEAD, listing).
    pub fail_reads: AtomicBool,
    /// Fail every write (PUT, multipart upload, copy, rename, delete).
    pub fail_writes: AtomicBool,
    /// PUTs still allowed before every later one fails (negative: no limit).
    puts_left: AtomicI64,
    /// Delay of every request, in milliseconds.
    pub latency_ms: AtomicU64,
    /// Requests failed so far.
    pub injected: AtomicU64,
    /// Requests seen so far.
    pub requests: AtomicU64,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            fail_reads: AtomicBool::new(false),
            fail_writes: AtomicBool::new(false),
            puts_left: AtomicI64::new(-1),
            latency_ms: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }
}

impl Faults {
    pub fn new() -> Arc<Faults> {
        Arc::new(Faults::default())
    }

    /// Lets `n` more PUTs through, then fails the rest (until [`Faults::clear`]).
    pub fn fail_puts_after(&self, n: i64) {
        self.puts_left.store(n, Ordering::SeqCst);
    }

    /// Injects nothing from now on.
    pub fn clear(&self) {
        self.fail_reads.store(false, Ordering::SeqCst);
        self.fail_writes.store(false, Ordering::SeqCst);
        self.puts_left.store(-1, Ordering::SeqCst);
        self.latency_ms.store(0, Ordering::SeqCst);
    }

    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Waits the latency, then the error the request gets, if any.
    async fn enter(&self, what: Op, path: &Path) -> object_store::Result<()> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let delay = self.latency_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.fails(what) {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(object_store::Error::Generic {
                store: "faults",
                source: format!("injected fault: {what:?} of {path}").into(),
            });
        }
        Ok(())
    }

    fn fails(&self, what: Op) -> bool {
        match what {
            Op::Read => self.fail_reads.load(Ordering::SeqCst),
            Op::Write => self.fail_writes.load(Ordering::SeqCst),
            Op::Put => {
                self.fail_writes.load(Ordering::SeqCst)
                    || self
                        .puts_left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                            n if n > 0 => Some(n - 1),
                            _ => None,
                        })
                        .is_err_and(|n| n == 0)
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Read,
    Write,
    Put,
}

/// Wraps each store it is given in a [`FaultyStore`] sharing one [`Faults`].
#[derive(Debug, Clone)]
pub struct FaultWrapper(pub Arc<Faults>);

impl WrappingObjectStore for FaultWrapper {
    fn wrap(&self, _store_prefix: &str, original: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(FaultyStore {
            inner: original,
            faults: self.0.clone(),
        })
    }

    /// Listings must meet the faults too: no pushed-down listing.
    fn wrap_paginated(
        &self,
        _store_prefix: &str,
        _original: Arc<dyn PaginatedListStore>,
    ) -> Option<Arc<dyn PaginatedListStore>> {
        None
    }
}

/// A store whose requests meet [`Faults`] before they reach `inner`.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.faults.enter(Op::Put, location).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.faults.enter(Op::Put, location).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.faults.enter(Op::Read, location).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.faults.enter(Op::Read, location).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let faults = self.faults.clone();
        let checked = locations
            .and_then(move |p| {
                let faults = faults.clone();
                async move { faults.enter(Op::Write, &p).await.map(|()| p) }
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let faults = self.faults.clone();
        let at = prefix.cloned().unwrap_or_default();
        let inner = self.inner.list(prefix);
        futures::stream::once(async move {
            match faults.enter(Op::Read, &at).await {
                Ok(()) => inner,
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let at = prefix.cloned().unwrap_or_default();
        self.faults.enter(Op::Read, &at).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.faults.enter(Op::Write, to).await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.faults.enter(Op::Write, to).await?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn faults_are_injected_and_cleared() {
        let faults = Faults::new();
        assert!(
            !Faults::default().fails(Op::Put),
            "nothing is injected at first"
        );
        let store = FaultWrapper(faults.clone()).wrap("mem", Arc::new(InMemory::new()));
        let a = Path::from("a");
        store
            .put(&a, Bytes::from_static(b"x").into())
            .await
            .expect("put");
        faults.fail_reads.store(true, Ordering::SeqCst);
        assert!(store.get(&a).await.is_err());
        assert!(store.list(None).next().await.expect("one item").is_err());
        faults.fail_puts_after(1);
        store
            .put(&Path::from("b"), Bytes::from_static(b"y").into())
            .await
            .expect("one more put");
        assert!(
            store
                .put(&Path::from("c"), Bytes::from_static(b"z").into())
                .await
                .is_err()
        );
        assert_eq!(faults.injected.load(Ordering::Relaxed), 3);
        faults.clear();
        faults.set_latency(Duration::from_millis(50));
        let started = std::time::Instant::now();
        assert_eq!(
            store
                .get(&a)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes"),
            "x"
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(
            store.head(&Path::from("c")).await.is_err(),
            "the failed put wrote nothing"
        );
    }
}
