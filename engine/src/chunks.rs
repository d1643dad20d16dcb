//! The column-chunk cache: the one byte-bounded cache of table data.
//!
//! A Lance fragment's data files never change once written: an INSERT adds
//! fragments, a DELETE adds a deletion file beside them, an UPDATE or a
//! compaction writes new fragments. So a column of a fragment, cut into
//! chunks of [`CHUNK_ROWS`] physical rows, is cached under a key naming the
//! fragment's data files ([`FragmentKey`]): a rewritten fragment is a
//! different key, and a new table version costs only its new fragments.
//!
//! Entries are Arrow arrays (vectors as `FixedSizeList<f32>`, whose values are
//! one contiguous `f32` buffer), weighed by their memory size; the cache
//! evicts by size (moka's TinyLFU admission + LRU eviction). Concurrent
//! requests for the same missing chunk share one load. Load counters make the
//! cost of a query visible to tests (rows read from Lance).
//!
//! Readers that want a few scattered rows (the candidates a search rescores)
//! load the whole chunk only when it pays: while the cache has room, or once
//! [`ADMIT_ROWS`] rows of that chunk were read one by one lately
//! ([`ChunkCache::admits`]). So a table that becomes hot after others filled
//! the cache gets in within a few hundred searches, while one pass over a
//! table larger than the budget reads its rows, not its chunks: a chunk is
//! loaded at most once per [`ADMIT_ROWS`] rows asked of it.

use std::collections::hash_map::Entry;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef};
use lance::Dataset;
use lance::dataset::fragment::{FileFragment, FragReadConfig};
use lance::table::format::Fragment;

use crate::error::{EngineError, Result};

/// Physical rows per cached chunk.
pub const CHUNK_ROWS: u32 = 8192;

/// Rows of one uncached chunk read one by one, lately, after which the next
/// reader loads the whole chunk into a full cache (moka's admission then
/// weighs it against the entries it would evict). Loading a chunk of 384-d
/// vectors costs about what reading 150-300 of its rows one by one does, so
/// a chunk loaded and evicted unused costs at most about as much again.
pub const ADMIT_ROWS: u32 = CHUNK_ROWS / 32;

/// The demand counts are halved after this many rows were counted, so only
/// recent demand admits a chunk.
const DEMAND_WINDOW_ROWS: u64 = 64 * CHUNK_ROWS as u64;

/// The most chunks whose demand is counted at once; past it the counts are
/// halved early (and those at zero forgotten).
const DEMAND_ENTRIES: usize = 16_384;

/// Names one immutable fragment of one dataset: a fragment whose data files
/// change (UPDATE, compaction, added columns) gets a different key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub dataset: Arc<str>,
    pub fragment: u32,
    /// Hash of the fragment's data and overlay file paths.
    pub files: u64,
}

impl FragmentKey {
    pub fn new(dataset: &Arc<str>, fragment: &Fragment) -> FragmentKey {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for f in &fragment.files {
            f.path.hash(&mut h);
        }
        for o in &fragment.overlays {
            o.data_file.path.hash(&mut h);
            o.committed_version.hash(&mut h);
        }
        FragmentKey {
            dataset: dataset.clone(),
            fragment: fragment.id as u32,
            files: h.finish(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ChunkKey {
    fragment: FragmentKey,
    column: Arc<str>,
    chunk: u32,
}

impl ChunkKey {
    fn new(fragment: &FragmentKey, column: &str, chunk: u32) -> ChunkKey {
        ChunkKey {
            fragment: fragment.clone(),
            column: column.into(),
            chunk,
        }
    }
}

/// What the cache has done so far (monotonic counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkStats {
    pub hits: u64,
    pub misses: u64,
    /// Chunk loads from Lance.
    pub loads: u64,
    /// Rows read from Lance by chunk loads and point reads.
    pub rows_loaded: u64,
    /// Bytes of the arrays read.
    pub bytes_loaded: u64,
    /// Bytes held now.
    pub bytes_cached: u64,
    /// Chunks held now.
    pub entries: u64,
    pub capacity: u64,
}

/// Recent demand for chunks that are not cached: rows read one by one.
#[derive(Debug, Default)]
struct Demand {
    rows: std::collections::HashMap<ChunkKey, u32>,
    /// Rows counted since the last halving.
    counted: u64,
}

impl Demand {
    /// Counts `rows` more of `key`; true when that makes it worth loading
    /// (its count is then forgotten).
    fn add(&mut self, key: ChunkKey, rows: u32) -> bool {
        self.counted += rows as u64;
        if self.counted >= DEMAND_WINDOW_ROWS {
            self.halve();
        }
        while self.rows.len() >= DEMAND_ENTRIES && !self.rows.contains_key(&key) {
            self.halve();
        }
        match self.rows.entry(key) {
            Entry::Occupied(mut e) => {
                let n = e.get().saturating_add(rows);
                if n >= ADMIT_ROWS {
                    e.remove();
                    return true;
                }
                *e.get_mut() = n;
            }
            Entry::Vacant(e) => {
                if rows >= ADMIT_ROWS {
                    return true;
                }
                e.insert(rows);
            }
        }
        false
    }

    /// Halves every count, forgetting those that reach zero.
    fn halve(&mut self) {
        self.counted = 0;
        self.rows.retain(|_, n| {
            *n /= 2;
            *n > 0
        });
    }
}

pub struct ChunkCache {
    cache: moka::future::Cache<ChunkKey, ArrayRef>,
    capacity: u64,
    demand: std::sync::Mutex<Demand>,
    hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    rows_loaded: AtomicU64,
    bytes_loaded: AtomicU64,
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCache")
            .field("capacity", &self.capacity)
            .field("bytes", &self.cache.weighted_size())
            .finish()
    }
}

fn weigh(a: &ArrayRef) -> u32 {
    a.get_array_memory_size().min(u32::MAX as usize) as u32
}

impl ChunkCache {
    /// A cache of `capacity` bytes; with `idle`, a chunk no search has read
    /// for that long is dropped (`[cache] vector_ttl`).
    pub fn new(capacity: u64, idle: Option<std::time::Duration>) -> ChunkCache {
        let builder = moka::future::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_k: &ChunkKey, v: &ArrayRef| weigh(v));
        let builder = match idle {
            Some(idle) => builder.time_to_idle(idle),
            None => builder,
        };
        ChunkCache {
            cache: builder.build(),
            capacity,
            demand: std::sync::Mutex::new(Demand::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            rows_loaded: AtomicU64::new(0),
            bytes_loaded: AtomicU64::new(0),
        }
    }

    /// Lets moka apply its pending bookkeeping, so that [`ChunkCache::stats`]
    /// gives the bytes and entries held now (moka settles them on later
    /// cache operations otherwise).
    pub async fn settle(&self) {
        self.cache.run_pending_tasks().await;
    }

    pub fn stats(&self) -> ChunkStats {
        ChunkStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            rows_loaded: self.rows_loaded.load(Ordering::Relaxed),
            bytes_loaded: self.bytes_loaded.load(Ordering::Relaxed),
            bytes_cached: self.cache.weighted_size(),
            entries: self.cache.entry_count(),
            capacity: self.capacity,
        }
    }

    /// Whether a reader that wants `rows` rows of an uncached chunk (about
    /// `bytes` in memory) should load the whole chunk: while that keeps the
    /// cache under 80 % of its capacity, or once the chunk was asked for
    /// [`ADMIT_ROWS`] rows lately. Else it reads just those rows
    /// ([`ChunkCache::count_point_read`]). A chunk over half the capacity
    /// is never loaded into a full cache.
    pub fn admits(
        &self,
        key: &FragmentKey,
        column: &str,
        chunk: u32,
        bytes: u64,
        rows: usize,
    ) -> bool {
        if self.cache.weighted_size().saturating_add(bytes) <= self.capacity / 10 * 8 {
            return true;
        }
        if bytes > self.capacity / 2 {
            return false;
        }
        let rows = rows.min(u32::MAX as usize) as u32;
        let mut demand = self.demand.lock().unwrap_or_else(|e| e.into_inner());
        demand.add(ChunkKey::new(key, column, chunk), rows)
    }

    /// Counts rows read from Lance outside chunk loads (point reads) of
    /// `chunks` uncached chunks: a miss each.
    pub fn count_point_read(&self, chunks: usize, rows: usize, bytes: usize) {
        self.misses.fetch_add(chunks as u64, Ordering::Relaxed);
        self.rows_loaded.fetch_add(rows as u64, Ordering::Relaxed);
        self.bytes_loaded.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The chunk when it is cached, without loading it.
    pub async fn get_cached(
        &self,
        key: &FragmentKey,
        column: &str,
        chunk: u32,
    ) -> Option<ArrayRef> {
        let k = ChunkKey::new(key, column, chunk);
        let v = self.cache.get(&k).await;
        if v.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        v
    }

    /// Physical rows `chunk * CHUNK_ROWS ..` of `column` in `fragment`, deleted
    /// rows included (callers skip them with the fragment's deletion vector).
    pub async fn chunk(
        &self,
        dataset: &Arc<Dataset>,
        key: &FragmentKey,
        physical_rows: u32,
        column: &str,
        chunk: u32,
    ) -> Result<ArrayRef> {
        let k = ChunkKey::new(key, column, chunk);
        if let Some(v) = self.cache.get(&k).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(v);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let start = chunk.saturating_mul(CHUNK_ROWS);
        let end = start.saturating_add(CHUNK_ROWS).min(physical_rows);
        let load = async {
            let arr = read_physical(dataset, key.fragment, column, start..end).await?;
            self.loads.fetch_add(1, Ordering::Relaxed);
            self.rows_loaded
                .fetch_add(arr.len() as u64, Ordering::Relaxed);
            self.bytes_loaded
                .fetch_add(arr.get_array_memory_size() as u64, Ordering::Relaxed);
            Ok::<_, EngineError>(arr)
        };
        self.cache
            .try_get_with(k, load)
            .await
            .map_err(|e: Arc<EngineError>| EngineError::new(e.kind, e.message.clone()))
    }
}

/// Opens `fragment` of `dataset` for reading `columns`, deleted rows included.
pub async fn open_fragment(
    dataset: &Arc<Dataset>,
    fragment: u32,
    columns: &[&str],
) -> Result<lance::dataset::fragment::FragmentReader> {
    let Some(frag) = dataset.get_fragment(fragment as usize) else {
        return crate::engine_err!(Internal, "fragment {fragment} is not in the dataset");
    };
    let schema = dataset.schema().project(columns)?;
    let frag: FileFragment = frag;
    Ok(frag
        .open(
            &schema,
            FragReadConfig::default().with_ignore_deletions(true),
        )
        .await?)
}

/// Reads physical rows `rows` of one column of a fragment.
async fn read_physical(
    dataset: &Arc<Dataset>,
    fragment: u32,
    column: &str,
    rows: std::ops::Range<u32>,
) -> Result<ArrayRef> {
    let reader = open_fragment(dataset, fragment, &[column]).await?;
    let batch = reader
        .read_range_as_batch(rows.start as usize..rows.end as usize)
        .await?;
    Ok(batch.column(0).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fragment: u32, chunk: u32) -> ChunkKey {
        let dataset: Arc<str> = "t".into();
        ChunkKey::new(
            &FragmentKey {
                dataset,
                fragment,
                files: 1,
            },
            "emb",
            chunk,
        )
    }

    /// A chunk asked for again and again is loaded once its rows add up to
    /// ADMIT_ROWS; its count then starts over.
    #[test]
    fn repeated_demand_admits_a_chunk() {
        let mut d = Demand::default();
        let per_read = 8;
        let mut reads = 0;
        while !d.add(key(0, 0), per_read) {
            reads += 1;
            assert!(reads < 1000, "never admitted");
        }
        assert_eq!((reads + 1) * per_read, ADMIT_ROWS);
        assert!(!d.add(key(0, 0), per_read), "the count starts over");
        assert!(d.add(key(0, 1), ADMIT_ROWS), "one large read is enough");
    }

    /// One pass over many chunks, a few rows each, loads none of them, and
    /// demand that stopped fades: old counts are halved as new rows are
    /// counted, and the map stays bounded.
    #[test]
    fn scattered_and_old_demand_admits_nothing() {
        let mut d = Demand::default();
        for c in 0..(DEMAND_ENTRIES as u32 * 3) {
            assert!(!d.add(key(c / 100, c % 100), 3), "chunk {c} was admitted");
            assert!(d.rows.len() <= DEMAND_ENTRIES);
        }
        // Nearly enough demand for one chunk, then a window of other reads.
        let mut d = Demand::default();
        assert!(!d.add(key(7, 7), ADMIT_ROWS - 1));
        let mut other = 0;
        while d.counted != 0 {
            assert!(!d.add(key(1_000_000 + other / 50, 0), 5));
            other += 1;
        }
        assert!(
            !d.add(key(7, 7), ADMIT_ROWS / 2 - 1),
            "halved: old demand alone no longer admits"
        );
    }
}
