//! The engine: opens a data directory, keeps the catalog and the open tables,
//! and runs DDL, writes and searches on them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use datafusion::logical_expr::Expr;
use quiver_tiering::{StorageRoot, Tier};

use lance::index::DatasetIndexExt;

use crate::alter::Alteration;
use crate::catalog::{Catalog, CatalogStore, ViewDef};
use crate::chunks::ChunkStats;
use crate::engine_err;
use crate::error::{EngineError, ErrorKind, Result};
use crate::function::{FIRST_FUNCTION_OID, FunctionDef};
use crate::index::IndexDef;
use crate::memory::MemoryBudget;
use crate::schema::{ColumnDef, TableDef};
use crate::search::{self, SearchHits, SearchKnobs, SearchPlan};
use crate::table::{HousekeepingReport, Shared, Table};

/// The largest nearest-neighbour k a search accepts by default (`[search] max_k`).
pub const DEFAULT_MAX_K: usize = 10_000;

/// How an engine is set up (from the server's config).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The memory budget for cached table data.
    pub budget: MemoryBudget,
    /// Searches asking for more neighbours fail (SQLSTATE 54000).
    pub max_k: usize,
    /// How long superseded table versions are kept.
    pub version_retention: std::time::Duration,
    /// Commits reach stable storage before they are acknowledged (`[storage] fsync`).
    pub fsync: bool,
    /// How long logged rows may wait in memory before a flush (`[storage] log_flush_interval`).
    pub log_flush_interval: std::time::Duration,
    /// Rows one step of a move between shard counts rewrites, about
    /// (`[storage] reshard_step_rows`).
    pub reshard_step_rows: u64,
    /// A cached chunk no search read for this long is dropped (`[cache]
    /// vector_ttl`; `None`: kept until the budget needs its room).
    pub vector_ttl: Option<std::time::Duration>,
    /// How long a cached query result lives (`[cache] result_ttl`); the
    /// SQL layer keeps the results, sized by the budget's result share.
    pub result_ttl: std::time::Duration,
    /// The cold tier (`[storage] cold_root` and `[object_store]`); `None`:
    /// every table is on local disk.
    pub cold: Option<quiver_tiering::ColdOptions>,
    /// The data directory is the cold tier's root (`data_dir =
    /// "s3://bucket/prefix"`): the catalog and the function modules live
    /// there, beside the data, and new tables are cold unless they ask
    /// for `tier = 'hot'`; the local folder keeps only the write-ahead
    /// logs, hot tables and the SSD cache. Needs `cold`.
    pub catalog_on_store: bool,
}

/// [`EngineOptions::vector_ttl`] by default.
pub const VECTOR_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// [`EngineOptions::result_ttl`] by default.
pub const RESULT_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            budget: MemoryBudget::default(),
            max_k: DEFAULT_MAX_K,
            version_retention: crate::housekeeping::DEFAULT_RETENTION,
            fsync: true,
            log_flush_interval: crate::table::FLUSH_AGE,
            reshard_step_rows: crate::reshard::STEP_ROWS,
            vector_ttl: Some(VECTOR_TTL),
            result_ttl: RESULT_TTL,
            cold: None,
            catalog_on_store: false,
        }
    }
}

/// Stops the process at a named step of a DDL statement when the environment
/// variable `QUIVER_CRASH_AT` names it (debug builds only): the crash tests
/// use it to kill the server between a statement's Lance and catalog steps.
pub(crate) fn crash_point(step: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("QUIVER_CRASH_AT").is_ok_and(|s| s == step) {
        tracing::error!(step, "QUIVER_CRASH_AT: aborting");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}

/// Folder of function modules inside the data directory.
const FUNCTIONS_DIR: &str = "functions";
/// Folder of the tables' write-ahead logs inside the data directory.
pub(crate) const WAL_DIR: &str = "wal";

/// Writes a file so that it survives a crash once this returns (temporary
/// file, fsync, rename, fsync of the folder; not every platform can sync a
/// folder, so that one may fail).
pub(crate) fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Why a table could not be opened at start-up, for the 58030 its
/// statements get until it opens.
fn unopened(tier: Tier, e: &EngineError, local_dir: &Path) -> String {
    match tier {
        Tier::Cold => format!(
            "its object store did not answer when it was opened ({})",
            e.message
        ),
        Tier::Hot => format!(
            "it is on the hot tier, in the local folder of the server that wrote it, not in {} ({})",
            local_dir.display(),
            e.message
        ),
    }
}

pub struct Engine {
    /// The local folder: write-ahead logs, hot tables, function modules
    /// (and, unless it is on the object store, the catalog).
    pub(crate) data_dir: PathBuf,
    /// Where the catalog is kept.
    meta: CatalogStore,
    pub(crate) storage: StorageRoot,
    options: EngineOptions,
    pub(crate) shared: Shared,
    catalog: RwLock<Catalog>,
    tables: RwLock<HashMap<String, Arc<Table>>>,
    /// Serialises catalog changes (DDL); data writes take per-table locks.
    pub(crate) ddl: tokio::sync::Mutex<()>,
    /// Counts catalog changes (and table objects replaced): a plan made under
    /// one generation is valid while it lasts.
    generation: std::sync::atomic::AtomicU64,
    /// Serial columns' next values and the end of their reserved block.
    sequences: std::sync::Mutex<HashMap<String, (i64, i64)>>,
    /// Dataset folders a move between tiers is copying into
    /// ([`crate::tier`]): not removed as a former copy meanwhile.
    pub(crate) copying: std::sync::Mutex<std::collections::HashSet<(Tier, String)>>,
    /// Cold tables whose object store did not answer when they were opened,
    /// with its error: statements on them fail with 58030 until a
    /// background retry opens them ([`Engine::retry_unavailable`]).
    unavailable: RwLock<HashMap<String, String>>,
}

/// How often cold tables that could not be opened are tried again.
const REOPEN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// How many values of a sequence are reserved (stored in the catalog) at a time.
const SEQUENCE_BLOCK: i64 = 1024;

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

fn lock_mutex<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Reads through a lock without copying what it guards.
fn with_read<T, R>(lock: &RwLock<T>, f: impl FnOnce(&T) -> R) -> R {
    match lock.read() {
        Ok(g) => f(&g),
        Err(p) => f(&p.into_inner()),
    }
}

/// Changes what a lock guards.
fn with_write<T, R>(lock: &RwLock<T>, f: impl FnOnce(&mut T) -> R) -> R {
    match lock.write() {
        Ok(mut g) => f(&mut g),
        Err(p) => f(&mut p.into_inner()),
    }
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    with_read(lock, T::clone)
}

impl Engine {
    /// Opens the data directory (created when missing) with default options.
    pub async fn open(data_dir: &Path) -> Result<Arc<Engine>> {
        Self::open_with(data_dir, EngineOptions::default()).await
    }

    /// Opens the data directory (created when missing) and every table in its catalog.
    pub async fn open_with(data_dir: &Path, options: EngineOptions) -> Result<Arc<Engine>> {
        std::fs::create_dir_all(data_dir)?;
        if !data_dir.join(WAL_DIR).exists() {
            std::fs::create_dir_all(data_dir.join(WAL_DIR))?;
            if options.fsync {
                std::fs::File::open(data_dir)?.sync_all()?;
            }
        }
        let shared = Shared::new(&options);
        let meta = match (&options.cold, options.catalog_on_store) {
            (_, false) => CatalogStore::Local(data_dir.to_path_buf()),
            (Some(cold), true) => {
                let (store, root) = StorageRoot::root_store(
                    shared.session.store_registry(),
                    cold,
                    shared.store_requests.clone(),
                )
                .await?;
                CatalogStore::object(store.inner.clone(), root)
            }
            (None, true) => {
                return engine_err!(
                    InvalidRequest,
                    "a catalog on an object store needs the store (cold tier) configured"
                );
            }
        };
        let mut catalog = meta.load().await?;
        let new_id = catalog.store_id.is_empty();
        if new_id {
            catalog.store_id = uuid::Uuid::new_v4().simple().to_string();
        }
        if catalog.assign_missing_oids() || new_id {
            meta.store(&catalog).await?;
        }
        Self::fetch_modules(&meta, data_dir, &catalog).await?;
        let mut storage = StorageRoot::local(data_dir, shared.session.store_registry())?;
        if let Some(cold) = options.cold.clone() {
            storage = storage.with_cold(cold, &catalog.store_id, shared.store_requests.clone())?;
        }
        let mut tables = HashMap::new();
        let mut unavailable = HashMap::new();
        for def in catalog.tables.values() {
            match Table::open(&storage, def.clone(), &shared, &data_dir.join(WAL_DIR)).await {
                Ok(table) => {
                    tables.insert(def.name.clone(), Arc::new(table));
                }
                // The object store may be down for a while: the other
                // tables serve meanwhile (its logged rows wait on disk).
                Err(e) if def.tier == Tier::Cold && e.kind == ErrorKind::Io => {
                    tracing::warn!(table = def.name, error = %e.message, "a cold table could not be opened; retrying in the background");
                    unavailable.insert(def.name.clone(), unopened(def.tier, &e, data_dir));
                }
                // With the catalog on the object store, a hot table is in
                // the local folder of the server that wrote it, which may
                // not be this folder: the other tables serve.
                Err(e) if def.tier == Tier::Hot && options.catalog_on_store => {
                    tracing::warn!(table = def.name, error = %e.message, "a hot table is not in this local folder");
                    unavailable.insert(def.name.clone(), unopened(def.tier, &e, data_dir));
                }
                Err(e) => {
                    return Err(EngineError::new(
                        ErrorKind::Io,
                        format!("cannot open table {}: {}", def.name, e.message),
                    ));
                }
            }
        }
        if Self::reconcile(
            data_dir,
            &storage,
            &mut catalog,
            &tables,
            options.version_retention,
        )
        .await?
        {
            meta.store(&catalog).await?;
        }
        let engine = Arc::new(Engine {
            data_dir: data_dir.to_path_buf(),
            meta,
            storage,
            options,
            shared,
            catalog: RwLock::new(catalog),
            tables: RwLock::new(tables),
            ddl: tokio::sync::Mutex::new(()),
            sequences: Default::default(),
            copying: Default::default(),
            generation: std::sync::atomic::AtomicU64::new(1),
            unavailable: RwLock::new(unavailable),
        });
        engine.retry_unavailable();
        engine.resume_moves();
        engine.start_ivf_trainer();
        Ok(engine)
    }

    /// Copies the function modules a catalog on an object store names into
    /// the local folder, where functions are loaded from (a new local
    /// folder, or one a function was created in by another server).
    async fn fetch_modules(meta: &CatalogStore, data_dir: &Path, catalog: &Catalog) -> Result<()> {
        let dir = data_dir.join(FUNCTIONS_DIR);
        for def in catalog.functions.values() {
            if dir.join(&def.module_file).exists() {
                continue;
            }
            // A module the store lacks fails its function's calls, not the start.
            match meta.module(&def.module_file).await {
                Ok(Some(bytes)) => write_durably(&dir, &def.module_file, &bytes)?,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(function = def.name, error = %e, "a function's module could not be read from the store");
                }
            }
        }
        Ok(())
    }

    /// The tier a table is created on when its statement names none: cold
    /// when the data directory is on an object store, hot otherwise.
    pub fn default_tier(&self) -> Tier {
        match self.meta.is_object() {
            true => Tier::Cold,
            false => Tier::Hot,
        }
    }

    /// Refuses DDL on a table whose rows are moving between shard counts
    /// (or whose interrupted move waits to be resumed).
    fn refuse_moving(&self, name: &str) -> Result<()> {
        match self.table(name) {
            Ok(t) if t.moving.try_lock().is_err() || t.is_moving() => {
                match t.def.sharding.as_ref().is_some_and(|s| s.is_ivf()) {
                    true => engine_err!(
                        InUse,
                        "table \"{name}\" is busy: its ivf shards are being trained (its rows move to their centroids' shards) or it moves between tiers; OPTIMIZE TABLE {name} waits for the training"
                    ),
                    false => engine_err!(
                        InUse,
                        "table \"{name}\" is being resharded or moved between tiers; try again when its ALTER TABLE has finished"
                    ),
                }
            }
            _ => Ok(()),
        }
    }

    /// Brings the catalog and Lance back into agreement after a crash inside
    /// DDL, and returns whether the catalog changed. Each DDL statement orders
    /// its steps so that the catalog never names what Lance lacks: CREATE
    /// TABLE / INDEX write Lance first, DROP TABLE / INDEX the catalog first.
    /// What a crash can leave is therefore only unacknowledged Lance state —
    /// an index or a dataset folder the catalog does not name — and it is
    /// removed here. An index the catalog names but Lance lacks (left by
    /// versions before this order) is removed from the catalog: Lance's own
    /// index list is what searches use.
    ///
    /// On the object store (shared with other servers, which may be writing
    /// a table they have not named in the catalog yet) a folder is removed
    /// only once nothing in it was written for `grace`
    /// (`[storage] version_retention`); until then a later start removes it.
    async fn reconcile(
        data_dir: &Path,
        storage: &StorageRoot,
        catalog: &mut Catalog,
        tables: &HashMap<String, Arc<Table>>,
        grace: std::time::Duration,
    ) -> Result<bool> {
        let mut changed = false;
        for (name, table) in tables {
            let mut in_lance = std::collections::BTreeSet::new();
            for shard in table.shards() {
                in_lance.extend(
                    shard
                        .dataset()
                        .load_indices()
                        .await?
                        .iter()
                        .map(|i| i.name.clone())
                        // Lance's own system indexes (fragment reuse, MemWAL) are not user indexes.
                        .filter(|n| !n.starts_with("__")),
                );
            }
            for index in &in_lance {
                if catalog.indexes.get(index).is_none_or(|d| &d.table != name) {
                    tracing::warn!(
                        table = name,
                        index,
                        "removing an index an interrupted CREATE/DROP INDEX left in Lance"
                    );
                    table.drop_index(index).await?;
                }
            }
            let missing: Vec<String> = catalog
                .indexes_of(name)
                .filter(|d| !in_lance.contains(&d.name))
                .map(|d| d.name.clone())
                .collect();
            for index in missing {
                tracing::warn!(
                    table = name,
                    index,
                    "the catalog names an index Lance does not have; removing it from the catalog"
                );
                catalog.indexes.remove(&index);
                changed = true;
            }
        }
        let dirs: std::collections::HashSet<(Tier, String)> = catalog
            .tables
            .values()
            .flat_map(|t| t.shard_dirs().into_iter().map(|d| (t.tier, d)))
            .collect();
        let named: std::collections::HashSet<&str> = dirs.iter().map(|(_, d)| d.as_str()).collect();
        let tiers: &[Tier] = match storage.has_cold() {
            true => &[Tier::Hot, Tier::Cold],
            false => &[Tier::Hot],
        };
        for &tier in tiers {
            let found = match storage.dataset_dirs(tier).await {
                Ok(found) => found,
                // An object store that does not answer does not keep the
                // local tables from opening; its leftovers wait.
                Err(e) if tier == Tier::Cold => {
                    tracing::warn!(error = %e, "the cold tier could not be listed; its leftover folders are not removed now");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for dir in found {
                if !dirs.contains(&(tier, dir.clone())) {
                    if tier == Tier::Cold {
                        let age = match storage.last_write(&dir).await {
                            Ok(Some(at)) => at.elapsed().unwrap_or_default(),
                            Ok(None) => grace,
                            Err(e) => {
                                tracing::warn!(dir, error = %e, "a leftover folder on the cold tier could not be listed; it is not removed now");
                                continue;
                            }
                        };
                        if age < grace {
                            tracing::info!(
                                dir,
                                written_secs_ago = age.as_secs(),
                                "a folder on the cold tier no table names was written lately (maybe by another server); it is removed at a later start if it stays unnamed"
                            );
                            continue;
                        }
                    }
                    tracing::warn!(
                        dir,
                        tier = tier.name(),
                        "removing a table folder an interrupted CREATE/DROP TABLE left, or a copy a move between tiers left"
                    );
                    if let Err(e) = storage.remove_dataset(tier, &dir).await {
                        tracing::warn!(dir, error = %e, "a leftover folder was not removed");
                    }
                }
            }
        }
        if let Ok(logs) = std::fs::read_dir(data_dir.join(WAL_DIR)) {
            for entry in logs.flatten() {
                let name = entry.file_name();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if is_dir && !named.contains(name.to_string_lossy().as_ref()) {
                    tracing::warn!(dir = %entry.path().display(), "removing the log of a dropped table");
                    std::fs::remove_dir_all(entry.path())?;
                }
            }
        }
        Ok(changed)
    }

    /// The next `n` values of serial column `table.column` (the first one
    /// returned): 1, 2, 3, … per column, never handed out twice, even across
    /// a crash (values are reserved in the catalog a block at a time).
    pub async fn sequence_values(&self, table: &str, column: &str, n: usize) -> Result<i64> {
        let key = format!("{table}.{column}");
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let take = |seqs: &mut HashMap<String, (i64, i64)>| {
            let (next, end) = seqs.get_mut(&key)?;
            if next.checked_add(n)? > *end {
                return None;
            }
            let first = *next;
            *next += n;
            Some(first)
        };
        if let Some(first) = take(&mut lock_mutex(&self.sequences)) {
            return Ok(first);
        }
        // Reserve another block (under the DDL lock: the catalog is
        // rewritten whole).
        let _ddl = self.ddl.lock().await;
        if let Some(first) = take(&mut lock_mutex(&self.sequences)) {
            return Ok(first);
        }
        let stored = with_read(&self.catalog, |c| c.sequences.get(&key).copied()).unwrap_or(1);
        let next = lock_mutex(&self.sequences)
            .get(&key)
            .map_or(stored, |(next, _)| *next)
            .max(stored);
        let Some(end) = next
            .checked_add(n)
            .and_then(|e| e.checked_add(SEQUENCE_BLOCK))
        else {
            return engine_err!(
                LimitExceeded,
                "nextval: reached maximum value of sequence \"{table}_{column}_seq\""
            );
        };
        let mut next_catalog = read(&self.catalog);
        next_catalog.sequences.insert(key.clone(), end);
        self.meta.store(&next_catalog).await?;
        match self.catalog.write() {
            Ok(mut g) => *g = next_catalog,
            Err(p) => *p.into_inner() = next_catalog,
        }
        lock_mutex(&self.sequences).insert(key, (next + n, end));
        Ok(next)
    }

    /// `TRUNCATE … RESTART IDENTITY`: the table's serial columns start at 1 again.
    pub async fn restart_sequences(&self, table: &str) -> Result<()> {
        let _ddl = self.ddl.lock().await;
        let prefix = format!("{table}.");
        lock_mutex(&self.sequences).retain(|k, _| !k.starts_with(&prefix));
        self.update_catalog(|c| c.sequences.retain(|k, _| !k.starts_with(&prefix)))
            .await
    }

    /// Changes the catalog and stores it; the in-memory catalog changes
    /// only once the store has the new one. Callers hold the DDL lock.
    pub(crate) async fn update_catalog(&self, change: impl FnOnce(&mut Catalog)) -> Result<()> {
        let mut next = read(&self.catalog);
        change(&mut next);
        self.meta.store(&next).await?;
        match self.catalog.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
        self.bump_generation();
        Ok(())
    }

    pub(crate) fn bump_generation(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The catalog generation: changes whenever a table, index or function is
    /// created or dropped. The SQL layer keeps plans for one generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn catalog(&self) -> Catalog {
        read(&self.catalog)
    }

    pub fn table(&self, name: &str) -> Result<Arc<Table>> {
        let tables = match self.tables.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match tables.get(name) {
            Some(t) => Ok(t.clone()),
            None => match with_read(&self.unavailable, |u| u.get(name).cloned()) {
                Some(e) => engine_err!(
                    Io,
                    "table \"{name}\" is not available: {e}; it is tried again every {} s",
                    REOPEN_INTERVAL.as_secs()
                ),
                None => engine_err!(TableNotFound, "relation \"{name}\" does not exist"),
            },
        }
    }

    /// Tries again, in the background, to open the cold tables that could
    /// not be opened at start-up, until each one opens (or is dropped).
    fn retry_unavailable(self: &Arc<Self>) {
        if with_read(&self.unavailable, HashMap::is_empty) {
            return;
        }
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REOPEN_INTERVAL).await;
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                let names: Vec<String> =
                    with_read(&engine.unavailable, |u| u.keys().cloned().collect());
                if names.is_empty() {
                    return;
                }
                for name in names {
                    let _ddl = engine.ddl.lock().await;
                    let Some(def) = engine.catalog().tables.get(&name).cloned() else {
                        with_write(&engine.unavailable, |u| u.remove(&name));
                        continue;
                    };
                    let log_root = engine.data_dir.join(WAL_DIR);
                    let def_tier = def.tier;
                    match Table::open(&engine.storage, def, &engine.shared, &log_root).await {
                        Ok(t) => {
                            with_write(&engine.unavailable, |u| u.remove(&name));
                            engine.insert_table(&name, Arc::new(t));
                            tracing::info!(
                                table = name,
                                "a cold table that could not be opened is open"
                            );
                        }
                        Err(e) => {
                            let why = unopened(def_tier, &e, &engine.data_dir);
                            with_write(&engine.unavailable, |u| u.insert(name, why));
                        }
                    }
                }
            }
        });
    }

    /// Whether any view exists (checked on every statement before views
    /// are expanded; the catalog is copied only when one does).
    pub fn has_views(&self) -> bool {
        with_read(&self.catalog, |c| !c.views.is_empty())
    }

    pub fn table_names(&self) -> Vec<String> {
        with_read(&self.catalog, |c| c.tables.keys().cloned().collect())
    }

    /// Creates a table; `Ok(false)` when it exists and `if_not_exists` is set.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_table(
        &self,
        name: &str,
        columns: Vec<ColumnDef>,
        unique: Vec<crate::schema::UniqueDef>,
        foreign_keys: Vec<crate::schema::ForeignKeyDef>,
        checks: Vec<crate::schema::CheckDef>,
        sharding: Option<crate::schema::ShardingDef>,
        tier: Tier,
        if_not_exists: bool,
    ) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        let taken = with_read(&self.catalog, |c| {
            (c.tables.contains_key(name), c.views.contains_key(name))
        });
        if taken.0 && if_not_exists {
            return Ok(false);
        }
        if taken.0 || taken.1 {
            return engine_err!(TableExists, "relation \"{name}\" already exists");
        }
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].iter().any(|o| o.name == c.name) {
                return engine_err!(
                    InvalidRequest,
                    "column \"{}\" specified more than once",
                    c.name
                );
            }
        }
        if let Some(s) = &sharding {
            let Some(key) = columns.iter().find(|c| c.name == s.key) else {
                return engine_err!(
                    ColumnNotFound,
                    "shard key column \"{}\" does not exist",
                    s.key
                );
            };
            if s.is_ivf() {
                if key.ty.vector_dim().is_none() {
                    return engine_err!(
                        InvalidDefinition,
                        "column \"{}\" cannot be the shard key of sharding = 'ivf': use a vector(n) column",
                        s.key
                    );
                }
                if s.train_rows < u64::from(s.shards) {
                    return engine_err!(
                        InvalidDefinition,
                        "train_rows must be at least the number of shards ({})",
                        s.shards
                    );
                }
            } else if !crate::ring::can_place(&key.ty.arrow_type()) {
                return engine_err!(
                    InvalidDefinition,
                    "column \"{}\" cannot be a shard key: use an integer, text, date, timestamp, float or boolean column",
                    s.key
                );
            }
            crate::ring::Ring::new(s.shards, s.vnodes)?;
        }
        if tier == Tier::Cold && !self.storage.has_cold() {
            return engine_err!(
                InvalidDefinition,
                "tier = 'cold' needs a cold tier: set [storage] cold_root (and [object_store]) in the config file"
            );
        }
        let def = TableDef {
            tier,
            // Taken under the DDL lock; the counter is stored with the table.
            oid: with_read(&self.catalog, Catalog::next_free_oid),
            name: name.to_string(),
            dir: format!("{name}-{}.lance", uuid::Uuid::new_v4().simple()),
            columns,
            unique,
            foreign_keys,
            checks,
            sharding,
        };
        let table = Table::create(
            &self.storage,
            def.clone(),
            &self.shared,
            &self.data_dir.join(WAL_DIR),
        )
        .await?;
        crash_point("create_table:dataset_written");
        let (tier, dirs) = (def.tier, def.shard_dirs());
        if let Err(e) = self
            .update_catalog(|c| {
                c.next_oid = c.next_oid.max(def.oid + 1);
                c.tables.insert(name.to_string(), def);
            })
            .await
        {
            // Not in the catalog: the new datasets are nobody's.
            table.close().await;
            self.remove_shard_files(tier, &dirs).await;
            return Err(e);
        }
        self.insert_table(name, Arc::new(table));
        Ok(true)
    }

    fn insert_table(&self, name: &str, table: Arc<Table>) {
        match self.tables.write() {
            Ok(mut g) => g.insert(name.to_string(), table),
            Err(p) => p.into_inner().insert(name.to_string(), table),
        };
        self.bump_generation();
    }

    /// Drops a table and its indexes; `Ok(false)` when missing and `if_exists` is set.
    pub async fn drop_table(&self, name: &str, if_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        let Some(def) = self.catalog().tables.get(name).cloned() else {
            if if_exists {
                return Ok(false);
            }
            return engine_err!(TableNotFound, "table \"{name}\" does not exist");
        };
        Self::with_dependent_views(&self.catalog(), vec![name.to_string()], false)?;
        self.refuse_moving(name)?;
        self.update_catalog(|c| {
            c.tables.remove(name);
            let prefix = format!("{name}.");
            c.sequences.retain(|k, _| !k.starts_with(&prefix));
            lock_mutex(&self.sequences).retain(|k, _| !k.starts_with(&prefix));
            c.indexes.retain(|_, i| i.table != name);
        })
        .await?;
        crash_point("drop_table:catalog_written");
        let dropped = match self.tables.write() {
            Ok(mut g) => g.remove(name),
            Err(p) => p.into_inner().remove(name),
        };
        self.bump_generation();
        with_write(&self.unavailable, |u| u.remove(name));
        let logs = match dropped {
            Some(t) => {
                t.close().await;
                t.log_paths()
            }
            // A cold table that could not be opened: its logs wait on disk.
            None => Table::log_paths_of(&def, &self.data_dir.join(WAL_DIR)),
        };
        for path in logs {
            let removed = match path.is_dir() {
                true => std::fs::remove_dir_all(&path),
                false => std::fs::remove_file(&path),
            };
            if let Err(e) = removed
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(table = name, error = %e, "dropped table's log was not removed");
            }
        }
        for dir in def.shard_dirs() {
            if let Err(e) = self.storage.remove_dataset(def.tier, &dir).await {
                tracing::warn!(table = name, error = %e, "dropped table's files were not removed");
            }
        }
        Ok(true)
    }

    /// `ALTER TABLE name …`: one change ([`crate::alter`]). The table is
    /// out of service while it runs (its writers wait, or fail with 40001
    /// when they reach it mid-change; readers go on with the versions they
    /// have); afterwards a new table object serves the dataset.
    pub async fn alter_table(&self, name: &str, change: Alteration) -> Result<()> {
        let _ddl = self.ddl.lock().await;
        let current = self.catalog();
        let next = crate::alter::altered(&current, name, &change)?;
        let new_name = change.new_name(name).to_string();
        // Other tables whose definitions change (their foreign keys name
        // this table or its columns) get new table objects too.
        let mut others: Vec<String> = next
            .tables
            .iter()
            .filter(|(n, d)| **n != new_name && current.tables.get(*n) != Some(*d))
            .map(|(n, _)| n.clone())
            .collect();
        // A new foreign key is checked against the referenced table's rows:
        // that table's writers wait too.
        if let Alteration::AddForeignKey(fk) = &change
            && fk.table != name
            && !others.contains(&fk.table)
        {
            others.push(fk.table.clone());
        }
        self.refuse_moving(name)?;
        for other in &others {
            self.refuse_moving(other)?;
        }
        let table = self.table(name)?;
        if table.is_sharded()
            && !matches!(
                change,
                Alteration::RenameTable { .. }
                    | Alteration::SetDefault { .. }
                    | Alteration::AddCheck(_)
                    | Alteration::DropConstraint { .. }
            )
        {
            table.refuse_sharded("this ALTER TABLE")?;
        }
        let mut retired = vec![(name.to_string(), new_name.clone(), table.retire().await?)];
        let mut result = Ok(());
        for other in &others {
            let retired_other = match self.table(other) {
                Ok(t) => t.retire().await,
                Err(e) => Err(e),
            };
            match retired_other {
                Ok(r) => retired.push((other.clone(), other.clone(), r)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self.alter_retired(&table, &change, next).await;
        }
        if result.is_ok() {
            let mut seqs = lock_mutex(&self.sequences);
            *seqs = crate::alter::rekey_sequences(std::mem::take(&mut *seqs), name, &change);
        }
        for (old, new, locks) in retired {
            if let Err(e) = self.reopen(&old, &new).await {
                tracing::error!(table = old, error = %e, "a table could not be reopened after ALTER TABLE");
                result = result.and(Err(e));
            }
            drop(locks);
        }
        result
    }

    /// Returns once no DDL statement is running (one that started before).
    pub async fn ddl_done(&self) {
        drop(self.ddl.lock().await);
    }

    /// Replaces the table object of `old` by a new one on the same dataset,
    /// named `new` when the catalog has that name (else `old`), with the
    /// definition the catalog has now.
    pub(crate) async fn reopen(&self, old: &str, new: &str) -> Result<()> {
        let def = with_read(&self.catalog, |c| {
            c.tables.get(new).or_else(|| c.tables.get(old)).cloned()
        });
        let Some(def) = def else {
            return engine_err!(Internal, "table {old} left the catalog during ALTER TABLE");
        };
        let reopened = Table::open(
            &self.storage,
            def.clone(),
            &self.shared,
            &self.data_dir.join(WAL_DIR),
        )
        .await
        .map(Arc::new);
        {
            let mut tables = match self.tables.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            tables.remove(old);
            if let Ok(t) = &reopened {
                tables.insert(def.name.clone(), t.clone());
            }
        }
        self.bump_generation();
        reopened.map(|_| ())
    }

    /// The steps of [`Engine::alter_table`] once the table is retired, in
    /// the order [`crate::alter`] explains.
    async fn alter_retired(&self, table: &Table, change: &Alteration, next: Catalog) -> Result<()> {
        // A sharded table gets only the changes of its definition (see alter_table).
        let mut ds = (*table.shards()[0].dataset()).clone();
        let name = &table.def.name;
        match change {
            Alteration::AddColumn { column, fill, .. } => {
                if fill.is_none() && (!column.nullable || column.serial) {
                    let rows = ds.count_rows(None).await?;
                    if rows > 0 && column.serial {
                        return engine_err!(
                            Unsupported,
                            "adding a serial column to a table with rows is not supported"
                        );
                    }
                    if rows > 0 {
                        return engine_err!(
                            NotNullViolation,
                            "column \"{}\" of relation \"{name}\" contains null values",
                            column.name
                        );
                    }
                }
                crate::alter::add_lance_column(&mut ds, column, fill.as_ref()).await?;
                crash_point("alter_table:lance_written");
                self.update_catalog(|c| *c = next).await
            }
            Alteration::DropColumn { column, .. } => {
                self.update_catalog(|c| *c = next).await?;
                crash_point("alter_table:catalog_written");
                crate::alter::drop_lance_column(&mut ds, column).await
            }
            Alteration::RenameColumn { from, to } => {
                self.update_catalog(|c| *c = next).await?;
                crash_point("alter_table:catalog_written");
                crate::alter::rename_lance_column(&mut ds, from, to).await
            }
            Alteration::SetNullable { column, nullable } => {
                if *nullable {
                    crate::alter::set_lance_nullable(&mut ds, column).await?;
                } else if crate::alter::has_nulls(&ds, column).await? {
                    return engine_err!(
                        NotNullViolation,
                        "column \"{column}\" of relation \"{name}\" contains null values"
                    );
                }
                self.update_catalog(|c| *c = next).await
            }
            Alteration::AddKey(key) => {
                for c in key.columns.iter().filter(|_| key.primary) {
                    if crate::alter::has_nulls(&ds, c).await? {
                        return engine_err!(
                            NotNullViolation,
                            "column \"{c}\" of relation \"{name}\" contains null values"
                        );
                    }
                }
                if let Some(dup) = crate::alter::duplicate_key(&ds, &key.columns).await? {
                    return engine_err!(
                        UniqueViolation,
                        "could not create unique index \"{}\": Key {dup} is duplicated",
                        key.name
                    );
                }
                self.update_catalog(|c| *c = next).await
            }
            Alteration::AddForeignKey(fk) => {
                let parent = match fk.table == *name {
                    true => ds.clone(),
                    false => {
                        let parent = self.table(&fk.table)?;
                        parent.refuse_sharded("a foreign key referencing a sharded table")?;
                        (*parent.shards()[0].dataset()).clone()
                    }
                };
                let missing =
                    crate::alter::missing_reference(&ds, &fk.columns, &parent, &fk.ref_columns)
                        .await?;
                if let Some(key) = missing {
                    return engine_err!(
                        ForeignKeyViolation,
                        "insert or update on table \"{name}\" violates foreign key constraint \"{}\": Key {key} is not present in table \"{}\"",
                        fk.name,
                        fk.table
                    );
                }
                self.update_catalog(|c| *c = next).await
            }
            Alteration::RenameTable { .. }
            | Alteration::SetDefault { .. }
            | Alteration::AddCheck(_)
            | Alteration::DropConstraint { .. } => self.update_catalog(|c| *c = next).await,
        }
    }

    /// Creates a view (the caller has planned its query, so its columns and
    /// dependencies are known); with `replace`, one of that name is replaced.
    pub async fn create_view(&self, mut def: ViewDef, replace: bool) -> Result<()> {
        let _ddl = self.ddl.lock().await;
        let catalog = self.catalog();
        if catalog.tables.contains_key(&def.name) {
            let what = if replace {
                "is not a view"
            } else {
                "already exists"
            };
            return engine_err!(TableExists, "relation \"{}\" {what}", def.name);
        }
        match catalog.views.get(&def.name) {
            Some(old) if replace => def.oid = old.oid,
            Some(_) => {
                return engine_err!(TableExists, "relation \"{}\" already exists", def.name);
            }
            None => def.oid = catalog.next_free_oid(),
        }
        if def.depends_on.contains(&def.name) {
            return engine_err!(
                InvalidDefinition,
                "infinite recursion detected in rules for relation \"{}\"",
                def.name
            );
        }
        self.update_catalog(|c| {
            c.next_oid = c.next_oid.max(def.oid + 1);
            c.views.insert(def.name.clone(), def);
        })
        .await
    }

    /// Drops views (with `cascade`, the views built on them too); a view
    /// another depends on is 2BP01 without it.
    pub async fn drop_views(&self, names: &[String], if_exists: bool, cascade: bool) -> Result<()> {
        let _ddl = self.ddl.lock().await;
        let catalog = self.catalog();
        let mut dropping: Vec<String> = Vec::new();
        for name in names {
            if !catalog.views.contains_key(name) {
                if if_exists {
                    continue;
                }
                return engine_err!(TableNotFound, "view \"{name}\" does not exist");
            }
            dropping.push(name.clone());
        }
        let all = Self::with_dependent_views(&catalog, dropping, cascade)?;
        self.update_catalog(|c| c.views.retain(|n, _| !all.contains(n)))
            .await
    }

    /// `relations` and, with `cascade`, every view built on them (directly
    /// or through other views); without it, 2BP01 when a view outside
    /// `relations` depends on one of them.
    pub fn with_dependent_views(
        catalog: &Catalog,
        mut relations: Vec<String>,
        cascade: bool,
    ) -> Result<Vec<String>> {
        let mut i = 0;
        while i < relations.len() {
            let dependents: Vec<String> = catalog
                .views_on(&relations[i])
                .map(|v| v.name.clone())
                .filter(|v| !relations.contains(v))
                .collect();
            if let Some(v) = dependents.first()
                && !cascade
            {
                return engine_err!(
                    DependentObjects,
                    "cannot drop {} because other objects depend on it: view {v} depends on it (use DROP … CASCADE)",
                    relations[i]
                );
            }
            relations.extend(dependents);
            i += 1;
        }
        Ok(relations)
    }

    /// The user functions, by name.
    pub fn functions(&self) -> Vec<FunctionDef> {
        with_read(&self.catalog, |c| c.functions.values().cloned().collect())
    }

    pub fn function(&self, name: &str) -> Option<FunctionDef> {
        with_read(&self.catalog, |c| c.functions.get(name).cloned())
    }

    /// The module bytes of a function, as given at CREATE FUNCTION.
    pub fn function_module(&self, def: &FunctionDef) -> Result<Vec<u8>> {
        std::fs::read(self.data_dir.join(FUNCTIONS_DIR).join(&def.module_file)).map_err(|e| {
            EngineError::new(
                ErrorKind::Io,
                format!("the module of function {} is unreadable: {e}", def.name),
            )
        })
    }

    /// Stores a function (its module first, durably, then the catalog entry).
    /// `def.oid` and `def.module_file` are assigned here. With `replace`, an
    /// existing function of that name is replaced; otherwise it is an error.
    pub async fn create_function(
        &self,
        mut def: FunctionDef,
        module: &[u8],
        replace: bool,
    ) -> Result<FunctionDef> {
        let _ddl = self.ddl.lock().await;
        let old = self.function(&def.name);
        if old.is_some() && !replace {
            return engine_err!(
                FunctionExists,
                "function \"{}\" already exists (use CREATE OR REPLACE FUNCTION)",
                def.name
            );
        }
        def.oid = match &old {
            Some(o) => o.oid,
            None => with_read(&self.catalog, |c| {
                c.functions
                    .values()
                    .map(|f| f.oid + 1)
                    .max()
                    .unwrap_or(FIRST_FUNCTION_OID)
            }),
        };
        // Not the name: a quoted identifier may hold '/' or "..".
        def.module_file = format!("{}-{}.wasm", def.oid, uuid::Uuid::new_v4().simple());
        let dir = self.data_dir.join(FUNCTIONS_DIR);
        write_durably(&dir, &def.module_file, module)?;
        if let Err(e) = self.meta.put_module(&def.module_file, module).await {
            let _ = std::fs::remove_file(dir.join(&def.module_file));
            return Err(e);
        }
        let stored = def.clone();
        if let Err(e) = self
            .update_catalog(|c| {
                c.functions.insert(def.name.clone(), def);
            })
            .await
        {
            let _ = std::fs::remove_file(dir.join(&stored.module_file));
            return Err(e);
        }
        if let Some(old) = old {
            let _ = std::fs::remove_file(dir.join(&old.module_file));
            self.meta.remove_module(&old.module_file).await;
        }
        Ok(stored)
    }

    /// Drops a function; `Ok(false)` when missing and `if_exists` is set.
    pub async fn drop_function(&self, name: &str, if_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        let Some(def) = self.function(name) else {
            if if_exists {
                return Ok(false);
            }
            return engine_err!(FunctionNotFound, "function {name} does not exist");
        };
        self.update_catalog(|c| {
            c.functions.remove(name);
        })
        .await?;
        let _ = std::fs::remove_file(self.data_dir.join(FUNCTIONS_DIR).join(&def.module_file));
        self.meta.remove_module(&def.module_file).await;
        Ok(true)
    }

    pub fn indexes_of(&self, table: &str) -> Vec<IndexDef> {
        // On every search's planning path: copy only this table's indexes.
        with_read(&self.catalog, |c| c.indexes_of(table).cloned().collect())
    }

    /// Builds an index and records it; `Ok(false)` when it exists and `if_not_exists` is set.
    pub async fn create_index(&self, mut def: IndexDef, if_not_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        if self.catalog().indexes.contains_key(&def.name) {
            if if_not_exists {
                return Ok(false);
            }
            return engine_err!(IndexExists, "relation \"{}\" already exists", def.name);
        }
        self.refuse_moving(&def.table)?;
        let table = self.table(&def.table)?;
        let Some(col) = table.def.column(&def.column) else {
            return engine_err!(ColumnNotFound, "column \"{}\" does not exist", def.column);
        };
        match (def.kind.is_vector(), col.ty.vector_dim()) {
            (true, None) => {
                return engine_err!(
                    InvalidRequest,
                    "column \"{}\" is not a vector column; {} needs vector(n)",
                    def.column,
                    def.kind.name()
                );
            }
            (false, Some(_)) => {
                return engine_err!(
                    InvalidRequest,
                    "column \"{}\" is a vector column; use a vector index method",
                    def.column
                );
            }
            _ => {}
        }
        if def.kind.is_vector()
            && self
                .indexes_of(&def.table)
                .iter()
                .any(|i| i.column == def.column && i.kind.is_vector())
        {
            return engine_err!(
                IndexExists,
                "column \"{}\" already has a vector index; drop it first",
                def.column
            );
        }
        let task = self.shared.progress.start("create_index", &def.table);
        table.create_index(&def, false, Some(&task)).await?;
        task.phase("recording the index in the catalog", 1, "steps");
        crash_point("create_index:lance_committed");
        let name = def.name.clone();
        if let Err(e) = self
            .update_catalog(|c| {
                def.oid = c.allocate_oid();
                c.indexes.insert(def.name.clone(), def);
            })
            .await
        {
            // Not acknowledged: take the index back out of Lance (start-up would).
            if let Err(undo) = table.drop_index(&name).await {
                tracing::warn!(index = name, error = %undo, "index left in Lance until restart");
            }
            return Err(e);
        }
        Ok(true)
    }

    pub async fn drop_index(&self, name: &str, if_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        let Some(def) = self.catalog().indexes.get(name).cloned() else {
            if if_exists {
                return Ok(false);
            }
            return engine_err!(IndexNotFound, "index \"{name}\" does not exist");
        };
        self.refuse_moving(&def.table)?;
        let table = self.table(&def.table)?;
        // The catalog first: it must never name an index Lance no longer has
        // (a crash between the steps leaves a Lance index that start-up removes).
        self.update_catalog(|c| {
            c.indexes.remove(name);
        })
        .await?;
        crash_point("drop_index:catalog_written");
        table.drop_index(name).await?;
        Ok(true)
    }

    /// `OPTIMIZE TABLE`: compacts small fragments and deletions, folds new
    /// rows into the table's indexes, removes versions past the retention.
    pub async fn optimize(self: &Arc<Self>, table: &str) -> Result<HousekeepingReport> {
        let task = self.shared.progress.start("optimize", table);
        task.phase("training shard placement", 1, "steps");
        self.train_ivf(table, true).await?;
        self.table(table)?.optimize(Some(&task)).await
    }

    /// `REINDEX`: retrains the named indexes from all current rows.
    pub async fn reindex(&self, indexes: &[IndexDef]) -> Result<()> {
        let _ddl = self.ddl.lock().await;
        for def in indexes {
            let task = self.shared.progress.start("reindex", &def.table);
            self.table(&def.table)?
                .create_index(def, true, Some(&task))
                .await?;
        }
        Ok(())
    }

    /// Flushes every table's logged rows to Lance and stops their
    /// background flushes (at shutdown). Rows logged after this stay in the
    /// log, for the next start-up.
    pub async fn close(&self) {
        // Serial columns go on from their next value, not from the end of
        // the block reserved (a later nextval reserves a new block).
        {
            let _ddl = self.ddl.lock().await;
            let used: Vec<(String, i64)> = lock_mutex(&self.sequences)
                .drain()
                .map(|(k, (next, _))| (k, next))
                .collect();
            if !used.is_empty()
                && let Err(e) = self.update_catalog(|c| c.sequences.extend(used)).await
            {
                tracing::warn!(error = %e, "sequence positions not stored; they resume after their reserved blocks");
            }
        }
        let tables: Vec<Arc<Table>> = with_read(&self.tables, |t| t.values().cloned().collect());
        for t in tables {
            if let Err(e) = t.flush().await {
                tracing::warn!(table = t.def.name, error = %e, "logged rows left to the next start-up");
            }
            t.close().await;
        }
    }

    /// Plans a vector search of `table.column`.
    pub fn plan_search(
        &self,
        table: &str,
        column: &str,
        metric: Option<crate::distance::Metric>,
    ) -> Result<SearchPlan> {
        let t = self.table(table)?;
        SearchPlan::new(&t.def, &self.indexes_of(table), column, metric)
    }

    /// Runs a planned search against one shard's view ([`Table::views`]).
    pub async fn search_view(
        &self,
        view: Arc<crate::view::TableView>,
        plan: &SearchPlan,
        query: &[f32],
        k: usize,
        filter: Option<&Expr>,
        knobs: &SearchKnobs,
    ) -> Result<SearchHits> {
        self.check_k(k)?;
        search::run(view, plan, query, k, filter, knobs).await
    }

    /// Refuses a nearest-neighbour k above `max_k`.
    pub fn check_k(&self, k: usize) -> Result<()> {
        if k > self.options.max_k {
            return engine_err!(
                LimitExceeded,
                "nearest-neighbour k = {k} exceeds the limit of {} (set [search] max_k)",
                self.options.max_k
            );
        }
        Ok(())
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The long work running now (`quiver_progress()`).
    pub fn progress(&self) -> Vec<crate::progress::TaskRow> {
        self.shared.progress.tasks()
    }

    /// The engine's own metrics for `/metrics`: index builds, index
    /// updates, compactions, and the object store's requests.
    pub fn metric_families(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut out = self.shared.maintenance.families();
        out.extend(self.shared.store_requests.families());
        out
    }

    /// The object-store requests of the cold tier so far (for tests).
    pub fn store_requests(&self) -> &quiver_tiering::StoreMetrics {
        &self.shared.store_requests
    }

    /// What the chunk cache has loaded and holds (for tests and EXPLAIN ANALYZE).
    pub fn chunk_stats(&self) -> ChunkStats {
        self.shared.chunks.stats()
    }

    /// The engine's caches as `quiver_caches()` shows them: the chunk cache
    /// (hot vectors and columns), the prepared fresh rows, and Lance's index
    /// and metadata caches.
    pub async fn cache_figures(&self) -> Vec<CacheFigures> {
        self.shared.chunks.settle().await;
        let chunks = self.shared.chunks.stats();
        let budget = &self.options.budget;
        let lance =
            |name: &'static str, s: lance_core::cache::CacheStats, capacity: u64| CacheFigures {
                name,
                hits: Some(s.hits),
                misses: Some(s.misses),
                entries: Some(s.num_entries as u64),
                bytes: s.size_bytes as u64,
                capacity,
                ..Default::default()
            };
        let mut figures = vec![
            CacheFigures {
                name: "chunks",
                hits: Some(chunks.hits),
                misses: Some(chunks.misses),
                entries: Some(chunks.entries),
                bytes: chunks.bytes_cached,
                capacity: chunks.capacity,
                ..Default::default()
            },
            CacheFigures {
                name: "fresh",
                bytes: self
                    .shared
                    .fresh_used
                    .load(std::sync::atomic::Ordering::Relaxed),
                capacity: self.shared.fresh_bytes,
                ..Default::default()
            },
            lance(
                "lance_index",
                self.shared.session.index_cache_stats().await,
                budget.index_bytes(),
            ),
            lance(
                "lance_metadata",
                self.shared.session.metadata_cache_stats().await,
                budget.metadata_bytes(),
            ),
        ];
        if let Some(s) = self.storage.ssd_stats().await {
            figures.push(CacheFigures {
                name: "ssd",
                hits: Some(s.hits),
                misses: Some(s.misses),
                entries: Some(s.entries),
                bytes: s.bytes,
                capacity: s.capacity,
                store_gets: Some(s.store_gets),
                store_bytes: Some(s.store_get_bytes),
            });
        }
        figures
    }
}

/// One cache's counters ([`Engine::cache_figures`]); `None` where the
/// cache does not count it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheFigures {
    pub name: &'static str,
    pub hits: Option<u64>,
    pub misses: Option<u64>,
    pub entries: Option<u64>,
    pub bytes: u64,
    pub capacity: u64,
    /// GET requests the cache sent to the store behind it (the SSD cache only).
    pub store_gets: Option<u64>,
    /// Bytes those requests returned.
    pub store_bytes: Option<u64>,
}
