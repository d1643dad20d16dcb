//! Object-store requests as metrics: every request the cold tier sends to
//! its store (beneath the SSD cache, so a block served from the SSD is not
//! a request), counted by operation, with the bytes it moved, its latency,
//! and its errors by kind.
//!
//! Only the cold tier's store is measured: Lance reads and writes the hot
//! tier's local files directly, not through an object store.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use lance_io::object_store::WrappingObjectStore;
use object_store::list::PaginatedListStore;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

/// Request latency buckets in seconds, 1 ms to a minute.
const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The object-store metrics of one server.
pub struct StoreMetrics {
    requests: IntCounterVec,
    errors: IntCounterVec,
    bytes: IntCounterVec,
    seconds: HistogramVec,
}

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreMetrics").finish_non_exhaustive()
    }
}

impl Default for StoreMetrics {
    fn default() -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter")
        };
        StoreMetrics {
            requests: counter(
                "quiver_object_store_requests_total",
                "Requests sent to the object store (op: get, head, get_ranges, put, \
                 put_multipart, upload_part, complete, abort, list, delete, copy, rename)",
                &["op", "tier"],
            ),
            errors: counter(
                "quiver_object_store_errors_total",
                "Object-store requests that failed (kind: not_found, precondition for a \
                 conditional request that lost, other)",
                &["op", "tier", "kind"],
            ),
            bytes: counter(
                "quiver_object_store_bytes_total",
                "Bytes read from (get, get_ranges) or written to (put, upload_part) the \
                 object store",
                &["op", "tier"],
            ),
            seconds: HistogramVec::new(
                HistogramOpts::new(
                    "quiver_object_store_request_seconds",
                    "Latency of object-store requests, to the response (a GET's body \
                     streams after it)",
                )
                .buckets(REQUEST_BUCKETS.to_vec()),
                &["op", "tier"],
            )
            .expect("valid histogram"),
        }
    }
}

impl StoreMetrics {
    /// Every family, for the server's `/metrics`.
    pub fn families(&self) -> Vec<MetricFamily> {
        let mut out = self.requests.collect();
        out.extend(self.errors.collect());
        out.extend(self.bytes.collect());
        out.extend(self.seconds.collect());
        out
    }

    /// Requests of `op` on `tier` so far (for tests).
    pub fn requests(&self, op: &str, tier: &str) -> u64 {
        self.requests.with_label_values(&[op, tier]).get()
    }

    /// Counts a request of `op` that is not timed (a listing's or
    /// deletion's stream).
    fn count(&self, op: &str, tier: &str) {
        self.requests.with_label_values(&[op, tier]).inc();
    }

    fn bytes(&self, op: &str, tier: &str, n: u64) {
        if n > 0 {
            self.bytes.with_label_values(&[op, tier]).inc_by(n);
        }
    }

    fn error(&self, op: &str, tier: &str, e: &object_store::Error) {
        let kind = match e {
            object_store::Error::NotFound { .. } => "not_found",
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotModified { .. } => "precondition",
            _ => "other",
        };
        self.errors.with_label_values(&[op, tier, kind]).inc();
    }

    /// Runs request `op`: counted, then its latency or its error.
    async fn request<T>(
        &self,
        op: &str,
        tier: &str,
        request: impl Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        self.count(op, tier);
        let started = Instant::now();
        let result = request.await;
        match &result {
            Ok(_) => self
                .seconds
                .with_label_values(&[op, tier])
                .observe(started.elapsed().as_secs_f64()),
            Err(e) => self.error(op, tier, e),
        }
        result
    }
}

/// An object store whose requests are counted in [`StoreMetrics`].
#[derive(Debug)]
struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    metrics: Arc<StoreMetrics>,
    tier: &'static str,
}

impl std::fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metered({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let (m, tier) = (&self.metrics, self.tier);
        let size = payload.content_length() as u64;
        let result = m
            .request("put", tier, self.inner.put_opts(location, payload, opts))
            .await;
        if result.is_ok() {
            m.bytes("put", tier, size);
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let (m, tier) = (&self.metrics, self.tier);
        let upload = m
            .request(
                "put_multipart",
                tier,
                self.inner.put_multipart_opts(location, opts),
            )
            .await?;
        Ok(Box::new(MeteredUpload {
            inner: upload,
            metrics: self.metrics.clone(),
            tier,
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let (m, tier) = (&self.metrics, self.tier);
        let op = if options.head { "head" } else { "get" };
        let result = m
            .request(op, tier, self.inner.get_opts(location, options))
            .await?;
        if op == "head" {
            return Ok(result);
        }
        // The body's bytes are counted as they arrive.
        let GetResult {
            payload,
            meta,
            range,
            attributes,
            extensions,
        } = result;
        let payload = match payload {
            GetResultPayload::Stream(s) => {
                let metrics = self.metrics.clone();
                GetResultPayload::Stream(
                    s.inspect_ok(move |b| metrics.bytes("get", tier, b.len() as u64))
                        .boxed(),
                )
            }
            other => {
                m.bytes("get", tier, range.end.saturating_sub(range.start));
                other
            }
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
        let (m, tier) = (&self.metrics, self.tier);
        let got = m
            .request("get_ranges", tier, self.inner.get_ranges(location, ranges))
            .await?;
        m.bytes("get_ranges", tier, got.iter().map(|b| b.len() as u64).sum());
        Ok(got)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let (metrics, tier) = (self.metrics.clone(), self.tier);
        let counted = locations
            .map({
                let metrics = metrics.clone();
                move |p| {
                    metrics.count("delete", tier);
                    p
                }
            })
            .boxed();
        self.inner
            .delete_stream(counted)
            .map(move |r| {
                if let Err(e) = &r {
                    metrics.error("delete", tier, e);
                }
                r
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.metrics.count("list", self.tier);
        self.counted_list(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.metrics.count("list", self.tier);
        self.counted_list(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.metrics
            .request("list", self.tier, self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.metrics
            .request("copy", self.tier, self.inner.copy_opts(from, to, options))
            .await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.metrics
            .request(
                "rename",
                self.tier,
                self.inner.rename_opts(from, to, options),
            )
            .await
    }
}

impl MeteredStore {
    /// A listing's errors counted (its pages are not timed).
    fn counted_list(
        &self,
        list: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let (metrics, tier) = (self.metrics.clone(), self.tier);
        list.inspect_err(move |e| metrics.error("list", tier, e))
            .boxed()
    }
}

/// A multipart upload whose parts, completion and abort are counted.
#[derive(Debug)]
struct MeteredUpload {
    inner: Box<dyn MultipartUpload>,
    metrics: Arc<StoreMetrics>,
    tier: &'static str,
}

#[async_trait]
impl MultipartUpload for MeteredUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let (metrics, tier) = (self.metrics.clone(), self.tier);
        let size = data.content_length() as u64;
        let part = self.inner.put_part(data);
        async move {
            let r = metrics.request("upload_part", tier, part).await;
            if r.is_ok() {
                metrics.bytes("upload_part", tier, size);
            }
            r
        }
        .boxed()
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.metrics
            .request("complete", self.tier, self.inner.complete())
            .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.metrics
            .request("abort", self.tier, self.inner.abort())
            .await
    }
}

/// Wraps a store (after `beneath`, if any) so its requests are counted as
/// `tier`'s.
#[derive(Debug, Clone)]
pub struct MeteredWrapper {
    pub metrics: Arc<StoreMetrics>,
    pub tier: &'static str,
    /// What wraps the store beneath, if anything (the tests' fault injector).
    pub beneath: Option<Arc<dyn WrappingObjectStore>>,
}

impl WrappingObjectStore for MeteredWrapper {
    fn wrap(&self, store_prefix: &str, original: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        let inner = match &self.beneath {
            Some(w) => w.wrap(store_prefix, original),
            None => original,
        };
        Arc::new(MeteredStore {
            inner,
            metrics: self.metrics.clone(),
            tier: self.tier,
        })
    }

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

    #[tokio::test]
    async fn requests_bytes_and_errors_are_counted_by_operation() {
        let metrics = Arc::new(StoreMetrics::default());
        let wrapper = MeteredWrapper {
            metrics: metrics.clone(),
            tier: "cold",
            beneath: None,
        };
        let store = wrapper.wrap("memory", Arc::new(InMemory::new()));
        let path = Path::from("t/data/a.lance");
        store
            .put(&path, PutPayload::from(vec![7u8; 1000]))
            .await
            .expect("put");
        let got = store.get_range(&path, 100..350).await.expect("range");
        assert_eq!(got.len(), 250);
        let whole = store
            .get(&path)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        assert_eq!(whole.len(), 1000);
        assert!(store.get(&Path::from("t/missing")).await.is_err());
        let mut up = store.put_multipart(&Path::from("t/big")).await.expect("mp");
        up.put_part(PutPayload::from(vec![1u8; 300]))
            .await
            .expect("part");
        up.complete().await.expect("complete");
        let listed: Vec<_> = store.list(Some(&Path::from("t"))).collect().await;
        assert_eq!(listed.len(), 2);

        let text = {
            let mut out = Vec::new();
            prometheus::Encoder::encode(
                &prometheus::TextEncoder::new(),
                &metrics.families(),
                &mut out,
            )
            .expect("encode");
            String::from_utf8(out).expect("utf-8")
        };
        for line in [
            r#"quiver_object_store_requests_total{op="put",tier="cold"} 1"#,
            r#"quiver_object_store_bytes_total{op="put",tier="cold"} 1000"#,
            r#"quiver_object_store_requests_total{op="get",tier="cold"} 3"#,
            r#"quiver_object_store_bytes_total{op="get",tier="cold"} 1250"#,
            r#"quiver_object_store_errors_total{kind="not_found",op="get",tier="cold"} 1"#,
            r#"quiver_object_store_requests_total{op="upload_part",tier="cold"} 1"#,
            r#"quiver_object_store_bytes_total{op="upload_part",tier="cold"} 300"#,
            r#"quiver_object_store_requests_total{op="complete",tier="cold"} 1"#,
            r#"quiver_object_store_requests_total{op="list",tier="cold"} 1"#,
            r#"quiver_object_store_request_seconds_count{op="get",tier="cold"} 2"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
