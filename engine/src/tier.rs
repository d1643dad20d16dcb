//! Moving a table between tiers, online: `ALTER TABLE t SET (tier = 'hot'
//! | 'cold')`.
//!
//! A shard's dataset is a folder of files Lance never rewrites (data,
//! deletion and index files, one manifest per version), so it moves by
//! copying its files to the other tier, manifests last:
//!
//! 1. While the table serves reads and writes, every shard's files are
//!    copied; a pass copies what the passes before did not (the writes
//!    under way add files), until a pass finds little new.
//! 2. The table is retired ([`crate::table::Table::retire`]: its writers
//!    wait, its logged rows are written to Lance), the files written since
//!    the last pass are copied, and the catalog records the new tier: the
//!    commit point. A crash before it leaves copies start-up removes (the
//!    catalog does not name them); after it, the table opens on the new tier.
//! 3. A new table object on the new tier serves the table; the old tier's
//!    files go once no reader can hold them, unless the table has come
//!    back meanwhile (a folder keeps its name on both tiers, so that the
//!    shard's write-ahead log, named by it, stays its own).
//!
//! Readers go on with the versions they have throughout. Writes are held
//! only during step 2; a write that reached the old table object just
//! before it fails with 40001, as during any ALTER TABLE.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use lance_io::object_store::ObjectStore;
use object_store::path::Path;
use object_store::{ObjectStoreExt as _, PutMode, PutOptions};
use quiver_tiering::Tier;
use tokio::io::AsyncWriteExt;

use crate::engine::{Engine, crash_point};
use crate::engine_err;
use crate::error::Result;

/// What a move between tiers did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TierMove {
    /// Whether anything moved (false: the table was on that tier).
    pub moved: bool,
    pub shards: usize,
    /// Bytes copied, in all passes.
    pub bytes: u64,
    pub elapsed: Duration,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A move's registration in [`Engine::copying`], removed when it ends.
struct Copying<'a> {
    engine: &'a Engine,
    tier: Tier,
    dirs: Vec<String>,
}

impl Drop for Copying<'_> {
    fn drop(&mut self) {
        let mut c = lock(&self.engine.copying);
        for d in &self.dirs {
            c.remove(&(self.tier, d.clone()));
        }
    }
}

/// Passes made while the table is in service, at most.
const ONLINE_PASSES: usize = 4;
/// A pass that copies fewer bytes than this ends the online passes.
const SMALL_PASS: u64 = 8 << 20;

/// One shard's copy: the stores and the files already copied (by path
/// under the dataset, with their size).
struct ShardCopy {
    src: Arc<ObjectStore>,
    src_base: Path,
    dst: Arc<ObjectStore>,
    dst_base: Path,
    done: HashMap<String, u64>,
}

fn is_manifest(rel: &str) -> bool {
    rel.starts_with("_versions/")
}

impl ShardCopy {
    /// Copies the files not copied yet, manifests last; bytes copied.
    async fn pass(&mut self) -> Result<u64> {
        let mut files: Vec<(String, Path, u64)> = self
            .src
            .inner
            .list(Some(&self.src_base))
            .map_ok(|m| {
                let rel = m
                    .location
                    .prefix_match(&self.src_base)
                    .map(|parts| parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>())
                    .unwrap_or_default()
                    .join("/");
                (rel, m.location, m.size)
            })
            .try_collect()
            .await
            .map_err(lance_core::Error::from)?;
        files.retain(|(rel, _, size)| !rel.is_empty() && self.done.get(rel) != Some(size));
        files.sort_by_key(|(rel, _, _)| (is_manifest(rel), rel.clone()));
        let mut bytes = 0;
        for (rel, from, size) in files {
            let to = Path::from_iter(
                self.dst_base
                    .parts()
                    .chain(Path::from(rel.as_str()).parts()),
            );
            if !self.copy(&from, &to, is_manifest(&rel)).await? {
                continue;
            }
            bytes += size;
            self.done.insert(rel, size);
        }
        Ok(bytes)
    }

    /// Copies one file, streaming; a manifest is put whole through the
    /// store (so a local store makes the files before it durable first).
    /// `false`: the file is gone since the listing (a temporary file, or
    /// one a version cleanup removed: no manifest copied names it).
    async fn copy(&self, from: &Path, to: &Path, manifest: bool) -> Result<bool> {
        let got = match self.src.inner.get(from).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(lance_core::Error::from(e).into()),
        };
        if manifest {
            let bytes = got.bytes().await.map_err(lance_core::Error::from)?;
            let put = PutOptions {
                mode: PutMode::Overwrite,
                ..Default::default()
            };
            self.dst
                .inner
                .put_opts(to, bytes.into(), put)
                .await
                .map_err(lance_core::Error::from)?;
            return Ok(true);
        }
        let mut stream = got.into_stream();
        let mut writer = self.dst.create(to).await?;
        while let Some(chunk) = stream.try_next().await.map_err(lance_core::Error::from)? {
            writer.write_all(&chunk).await?;
        }
        lance_io::traits::Writer::shutdown(writer.as_mut()).await?;
        Ok(true)
    }
}

impl Engine {
    /// Moves table `name` to `tier` (see the module documentation).
    pub async fn move_tier(self: &Arc<Self>, name: &str, tier: Tier) -> Result<TierMove> {
        let started = Instant::now();
        let (table, moving, def) = {
            let _ddl = self.ddl.lock().await;
            let table = self.table(name)?;
            let Ok(moving) = table.moving.clone().try_lock_owned() else {
                return engine_err!(
                    InUse,
                    "table \"{name}\" is being moved by another statement"
                );
            };
            if table.is_moving() {
                return engine_err!(
                    InUse,
                    "table \"{name}\" is being resharded; try again when ALTER TABLE … SET (shards = …) has finished"
                );
            }
            let Some(def) = self.catalog().tables.get(name).cloned() else {
                return engine_err!(TableNotFound, "relation \"{name}\" does not exist");
            };
            if def.tier == tier {
                return Ok(TierMove::default());
            }
            if tier == Tier::Cold && !self.storage.has_cold() {
                return engine_err!(
                    InvalidDefinition,
                    "tier = 'cold' needs a cold tier: set [storage] cold_root (and [object_store]) in the config file"
                );
            }
            // Registered under the DDL lock, which a removal of a former
            // copy holds while it checks and deletes.
            lock(&self.copying).extend(def.shard_dirs().into_iter().map(|d| (tier, d)));
            (table, moving, def)
        };
        let dirs = def.shard_dirs();
        let copying = Copying {
            engine: self,
            tier,
            dirs: dirs.clone(),
        };
        let mut copies = Vec::with_capacity(dirs.len());
        for dir in &dirs {
            let from = self.storage.copy_location(def.tier, dir)?;
            let (src, src_base) = self.storage.open_store(&from).await?;
            let (dst, dst_base) = self
                .storage
                .open_store(&self.storage.copy_location(tier, dir)?)
                .await?;
            copies.push(ShardCopy {
                src,
                src_base,
                dst,
                dst_base,
                done: HashMap::new(),
            });
        }
        let mut report = TierMove {
            moved: true,
            shards: dirs.len(),
            ..Default::default()
        };
        let result = self
            .copy_and_switch(name, &table, &def, tier, &mut copies, &mut report)
            .await;
        if let Err(e) = result {
            // Past the commit point the copies are the table: keep them.
            let committed = self
                .catalog()
                .tables
                .get(name)
                .is_some_and(|t| t.tier == tier);
            if committed {
                return Err(e);
            }
            for dir in &dirs {
                if let Err(e) = self.storage.remove_dataset(tier, dir).await {
                    tracing::warn!(dir, error = %e, "a partial copy of a table was not removed; start-up removes it");
                }
            }
            return Err(e);
        }
        drop(moving);
        drop(copying);
        // Readers may still hold versions on the old tier: its files go
        // once old versions may (start-up removes them in any case).
        let engine = self.clone();
        let retention = self.options().version_retention;
        let (from, table_name) = (def.tier, def.name.clone());
        tokio::spawn(async move {
            tokio::time::sleep(retention).await;
            let _ddl = engine.ddl.lock().await;
            let back = engine
                .catalog()
                .tables
                .values()
                .any(|t| t.tier == from && t.shard_dirs().iter().any(|d| dirs.contains(d)));
            let copying = {
                let c = lock(&engine.copying);
                dirs.iter().any(|d| c.contains(&(from, d.clone())))
            };
            if back || copying {
                return;
            }
            for dir in &dirs {
                if let Err(e) = engine.storage.remove_dataset(from, dir).await {
                    tracing::warn!(table = table_name, dir, error = %e, "a moved table's old files were not removed; start-up removes them");
                }
            }
        });
        report.elapsed = started.elapsed();
        tracing::info!(
            table = name,
            tier = tier.name(),
            bytes = report.bytes,
            secs = report.elapsed.as_secs_f64(),
            "table moved between tiers"
        );
        Ok(report)
    }

    async fn copy_and_switch(
        self: &Arc<Self>,
        name: &str,
        table: &Arc<crate::table::Table>,
        def: &crate::schema::TableDef,
        tier: Tier,
        copies: &mut [ShardCopy],
        report: &mut TierMove,
    ) -> Result<()> {
        let task = self.shared.progress.start("tier_move", name);
        for n in 0..ONLINE_PASSES {
            task.phase(
                format!("copying to the {} tier, pass {}", tier.name(), n + 1),
                copies.len() as u64,
                "shards",
            );
            let mut pass = 0;
            for c in copies.iter_mut() {
                pass += c.pass().await?;
                task.advance(1);
            }
            report.bytes += pass;
            if pass < SMALL_PASS {
                break;
            }
        }
        let _ddl = self.ddl.lock().await;
        if self.catalog().tables.get(name) != Some(def) {
            return engine_err!(
                Conflict,
                "table \"{name}\" was altered while it moved between tiers; try again"
            );
        }
        task.phase(
            "last copy with the table's writes paused, then the switch",
            copies.len() as u64,
            "shards",
        );
        let retired = table.retire().await?;
        let switched = async {
            for c in copies.iter_mut() {
                task.advance(1);
                report.bytes += c.pass().await?;
            }
            crash_point("move_tier:copied");
            self.update_catalog(|c| {
                if let Some(t) = c.tables.get_mut(name) {
                    t.tier = tier;
                }
            })
            .await
        }
        .await;
        // The table object is replaced either way: on the new tier, or (the
        // catalog unchanged) on the old one again.
        let reopened = self.reopen(name, name).await;
        drop(retired);
        switched.and(reopened)
    }
}
