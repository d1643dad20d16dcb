//! Placement of rows by centroids (`sharding = 'ivf'`): quantization-aware
//! partitioning, where similar vectors share a shard.
//!
//! A table `WITH (shards = N, sharding = 'ivf')` keys on a vector column.
//! Until it holds `train_rows` rows every row is on shard 0, the pending
//! shard, and searches read that shard alone. Then a coarse k-means over a
//! sample of the vectors (Lance's own [`KMeans`], with the L2 distance)
//! trains N centroids, the catalog records them, and the rows move from the
//! pending shard to the shard of their nearest centroid as a move between
//! placements does ([`crate::reshard`]: in steps, each one commit, readers
//! reading every shard until the last step). From then on a row is written
//! to the shard of its nearest centroid (an UPDATE of its vector moves it),
//! and a search reads only the shards of the `quiver.shard_probes`
//! centroids nearest its query vector.
//!
//! Centroids are trained once: `ALTER TABLE … SET (shards = M)` on an ivf
//! table is refused.

use arrow::array::{Array, FixedSizeListArray, Float32Array};
use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use std::sync::Arc;
use std::time::Duration;

use lance::Dataset;
use lance_index::vector::kmeans::{KMeanInit, KMeans, KMeansParams};
use lance_linalg::distance::{DistanceType, l2_distance};

use crate::engine::Engine;
use crate::engine_err;
use crate::error::Result;
use crate::reshard::ReshardReport;
use crate::schema::{CentroidList, TableDef};

/// Shards a search reads unless `quiver.shard_probes` says otherwise.
pub const DEFAULT_SHARD_PROBES: usize = 2;
/// Vectors sampled per centroid to train them (Faiss's and Lance's rule of
/// thumb: a few hundred a centroid), and at most in all.
const SAMPLE_PER_SHARD: usize = 256;
const MAX_SAMPLE: usize = 65_536;
/// Centroids up to which training starts from k-means++ seeds (each seed
/// costs a pass over the sample); more start from random rows.
const MAX_SEEDED: usize = 64;
/// Lloyd iterations of the training.
const TRAIN_ITERS: u32 = 50;
/// Seed of the training (a table trained twice on one sample gets the same
/// centroids).
const TRAIN_SEED: u64 = 0x7175_6976_6572_6331; // "quiverc1"

/// The rows an ivf table of `shards` shards holds when it is trained,
/// unless it says otherwise (`train_rows = n`).
pub fn default_train_rows(shards: u32) -> u64 {
    (SAMPLE_PER_SHARD as u64 * u64::from(shards)).max(1000)
}

/// Trained centroids, one per shard, in shard order.
#[derive(Debug, Clone, PartialEq)]
pub struct Centroids {
    dim: usize,
    /// `shards × dim` values, row-major.
    values: Vec<f32>,
}

impl Centroids {
    pub fn new(list: &CentroidList) -> Result<Centroids> {
        let dim = list.0.first().map_or(0, Vec::len);
        if dim == 0 || list.0.iter().any(|c| c.len() != dim) {
            return engine_err!(
                Internal,
                "the catalog's centroids are malformed: {} of differing dimensions",
                list.0.len()
            );
        }
        Ok(Centroids {
            dim,
            values: list.0.concat(),
        })
    }

    pub fn shards(&self) -> u32 {
        (self.values.len() / self.dim) as u32
    }

    fn distances<'a>(&'a self, v: &'a [f32]) -> impl Iterator<Item = f32> + 'a {
        self.values
            .chunks_exact(self.dim)
            .map(move |c| l2_distance(c, v))
    }

    /// The shard of the centroid nearest `v` (the first of equals).
    pub fn nearest(&self, v: &[f32]) -> u32 {
        let mut best = (0u32, f32::INFINITY);
        for (i, d) in self.distances(v).enumerate() {
            if d < best.1 {
                best = (i as u32, d);
            }
        }
        best.0
    }

    /// The shards of the `n` centroids nearest `q`, nearest first; every
    /// shard when `q` is not of the centroids' dimension (the search then
    /// fails on its own terms).
    pub fn probe(&self, q: &[f32], n: usize) -> Vec<usize> {
        if q.len() != self.dim {
            return (0..self.shards() as usize).collect();
        }
        let mut order: Vec<(f32, usize)> = self.distances(q).zip(0..).collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        order.into_iter().take(n.max(1)).map(|(_, i)| i).collect()
    }

    /// The shard of each row of a vector column (shard 0 for NULL).
    pub fn owners(&self, keys: &dyn Array) -> Result<Vec<u32>> {
        let Some(list) = keys.as_fixed_size_list_opt() else {
            return engine_err!(
                Internal,
                "an ivf shard key must be a vector column, not {}",
                keys.data_type()
            );
        };
        let values = list.values().as_primitive::<Float32Type>();
        let dim = list.value_length() as usize;
        Ok((0..list.len())
            .map(|i| match list.is_null(i) || dim != self.dim {
                true => 0,
                false => {
                    let start = list.value_offset(i) as usize;
                    self.nearest(&values.values()[start..start + dim])
                }
            })
            .collect())
    }
}

/// How often the trainer looks for ivf tables that are due.
const TRAINER_TICK: Duration = Duration::from_secs(1);
/// How long the trainer leaves a table whose training failed.
const RETRAIN_AFTER: Duration = Duration::from_secs(30);

impl Engine {
    /// Trains the centroids of ivf-sharded table `name` and moves its rows
    /// from the pending shard to theirs, when it is not trained yet and
    /// holds its `train_rows` rows; `None` when it is not due. `wait`: for
    /// a move of the table under way (the trainer's own, say) to end first,
    /// else `None` at once.
    pub async fn train_ivf(
        self: &Arc<Self>,
        name: &str,
        wait: bool,
    ) -> Result<Option<ReshardReport>> {
        if !self.catalog().tables.get(name).is_some_and(untrained) {
            return Ok(None);
        }
        let table = self.table(name)?;
        let moving = match wait {
            true => table.moving.clone().lock_owned().await,
            false => match table.moving.clone().try_lock_owned() {
                Ok(m) => m,
                Err(_) => return Ok(None),
            },
        };
        let (def, mut sharding) = {
            let _ddl = self.ddl.lock().await;
            let Some(def) = self.catalog().tables.get(name).cloned() else {
                return engine_err!(TableNotFound, "relation \"{name}\" does not exist");
            };
            let (true, Some(sharding)) = (untrained(&def), def.sharding.clone()) else {
                return Ok(None);
            };
            (def, sharding)
        };
        if table.stats().rows < sharding.train_rows {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let pending = table.shards()[0].clone();
        pending.flush().await?;
        let centroids = train(&pending.dataset(), &sharding.key, sharding.shards).await?;
        tracing::info!(
            table = name,
            shards = sharding.shards,
            ms = started.elapsed().as_millis() as u64,
            "ivf centroids trained; rows move from the pending shard"
        );
        sharding.centroids = Some(centroids);
        sharding.moving_from = Some(sharding.shards);
        self.start_move(&table, &def, sharding).await?;
        self.finish_move_in_task(name, table, moving)
            .await
            .map(Some)
    }

    /// Starts the task that trains ivf-sharded tables once they hold their
    /// `train_rows` rows (it ends with the engine).
    pub(crate) fn start_ivf_trainer(self: &Arc<Self>) {
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            // Tables whose training failed, and when to try again.
            let mut failed: std::collections::HashMap<String, std::time::Instant> =
                Default::default();
            loop {
                tokio::time::sleep(TRAINER_TICK).await;
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                let now = std::time::Instant::now();
                let due: Vec<String> = engine
                    .catalog()
                    .tables
                    .values()
                    .filter(|d| untrained(d))
                    .filter(|d| failed.get(&d.name).is_none_or(|&at| at <= now))
                    .filter(|d| {
                        engine.table(&d.name).is_ok_and(|t| {
                            t.stats().rows >= d.sharding.as_ref().map_or(0, |s| s.train_rows)
                        })
                    })
                    .map(|d| d.name.clone())
                    .collect();
                for name in due {
                    match engine.train_ivf(&name, false).await {
                        Ok(_) => {
                            failed.remove(&name);
                        }
                        Err(e) => {
                            tracing::warn!(table = name, error = %e, "training the ivf shards failed; retrying in {} s", RETRAIN_AFTER.as_secs());
                            failed.insert(name, now + RETRAIN_AFTER);
                        }
                    }
                }
            }
        });
    }
}

/// Whether `def` is an ivf-sharded table whose centroids are not trained.
fn untrained(def: &TableDef) -> bool {
    def.sharding
        .as_ref()
        .is_some_and(|s| s.is_ivf() && s.centroids.is_none())
}

/// Trains `shards` centroids on a sample of the vectors in column `column`
/// of `ds` (its NULL vectors left out).
pub async fn train(ds: &Dataset, column: &str, shards: u32) -> Result<CentroidList> {
    let k = shards as usize;
    let want = (SAMPLE_PER_SHARD * k).min(MAX_SAMPLE);
    let projection = ds.schema().project(&[column])?;
    let sample = ds.sample(want, &projection, None).await?;
    let Some(list) = sample.column(0).as_fixed_size_list_opt() else {
        return engine_err!(
            Internal,
            "an ivf shard key must be a vector column, not {}",
            sample.column(0).data_type()
        );
    };
    let list = match list.null_count() {
        0 => list.clone(),
        _ => {
            let keep = arrow::compute::is_not_null(list)?;
            arrow::compute::filter(list, &keep)?
                .as_fixed_size_list()
                .clone()
        }
    };
    if list.len() < k {
        return engine_err!(
            InvalidRequest,
            "{} non-NULL vectors cannot train {k} centroids",
            list.len()
        );
    }
    let dim = list.value_length() as usize;
    let values = list
        .values()
        .as_primitive::<Float32Type>()
        .values()
        .to_vec();
    let init = match k <= MAX_SEEDED {
        true => KMeanInit::Incremental(Arc::new(FixedSizeListArray::try_new(
            Arc::new(arrow_schema::Field::new(
                "item",
                arrow_schema::DataType::Float32,
                true,
            )),
            dim as i32,
            Arc::new(Float32Array::from(seeds(&values, dim, k))),
            None,
        )?)),
        false => KMeanInit::Random,
    };
    let params = KMeansParams {
        max_iters: TRAIN_ITERS,
        distance_type: DistanceType::L2,
        seed: Some(TRAIN_SEED),
        init,
        ..KMeansParams::default()
    };
    let model = tokio::task::spawn_blocking(move || KMeans::new_with_params(&list, k, &params))
        .await
        .map_err(|e| {
            crate::error::EngineError::new(crate::error::ErrorKind::Internal, e.to_string())
        })??;
    let Some(values) = model.centroids.as_primitive_opt::<Float32Type>() else {
        return engine_err!(
            Internal,
            "k-means returned {} centroids",
            model.centroids.data_type()
        );
    };
    Ok(CentroidList(
        values
            .values()
            .chunks_exact(dim)
            .map(<[f32]>::to_vec)
            .collect(),
    ))
}

/// k-means++ seeds: `k` rows of `values` (`dim` wide), each next one drawn
/// with a probability proportional to its squared distance from the
/// nearest one drawn (so well-separated clusters each get one), from a
/// fixed seed.
fn seeds(values: &[f32], dim: usize, k: usize) -> Vec<f32> {
    let n = values.len() / dim;
    let row = |i: usize| &values[i * dim..(i + 1) * dim];
    let mut state = TRAIN_SEED;
    // splitmix64: a uniform draw in [0, 1).
    let mut draw = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let first = ((draw() * n as f64) as usize).min(n - 1);
    let mut out = row(first).to_vec();
    let mut nearest: Vec<f64> = (0..n)
        .map(|i| f64::from(l2_distance(row(i), row(first))))
        .collect();
    while out.len() < k * dim {
        let total: f64 = nearest.iter().sum();
        let pick = match total > 0.0 {
            true => {
                let mut at = draw() * total;
                nearest
                    .iter()
                    .position(|&d| {
                        at -= d;
                        at < 0.0
                    })
                    .unwrap_or(n - 1)
            }
            // Every row is a seed already: repeat one.
            false => 0,
        };
        let seed = row(pick).to_vec();
        for (i, d) in nearest.iter_mut().enumerate() {
            *d = d.min(f64::from(l2_distance(row(i), &seed)));
        }
        out.extend(seed);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn centroids() -> Centroids {
        Centroids::new(&CentroidList(vec![
            vec![0.0, 0.0],
            vec![10.0, 0.0],
            vec![0.0, 10.0],
        ]))
        .expect("centroids")
    }

    #[test]
    fn rows_go_to_the_nearest_centroid() {
        let c = centroids();
        assert_eq!(c.shards(), 3);
        assert_eq!(c.nearest(&[9.0, 1.0]), 1);
        assert_eq!(c.nearest(&[1.0, 8.0]), 2);
        assert_eq!(c.probe(&[6.0, 1.0], 2), vec![1, 0]);
        assert_eq!(c.probe(&[6.0, 1.0], 9), vec![1, 0, 2]);
        assert_eq!(
            c.probe(&[1.0], 1),
            vec![0, 1, 2],
            "a wrong dimension probes all"
        );
        let keys = FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
            vec![
                Some(vec![Some(0.5), Some(0.5)]),
                None,
                Some(vec![Some(11.0), Some(-1.0)]),
            ],
            2,
        );
        assert_eq!(c.owners(&keys).expect("owners"), vec![0, 0, 1]);
        assert_eq!(c.owners(&keys.slice(2, 1)).expect("owners"), vec![1]);
    }

    #[test]
    fn seeds_fall_in_separate_clusters() {
        // Four tight clusters far apart: k-means++ seeds one in each.
        let mut values = Vec::new();
        for c in 0..4 {
            for i in 0..50 {
                values.push(100.0 * c as f32 + (i % 7) as f32 * 0.01);
                values.push((i % 5) as f32 * 0.01);
            }
        }
        let s = seeds(&values, 2, 4);
        let mut clusters: Vec<i32> = s.chunks(2).map(|p| (p[0] / 100.0).round() as i32).collect();
        clusters.sort_unstable();
        assert_eq!(clusters, [0, 1, 2, 3]);
    }

    #[test]
    fn malformed_centroids_are_refused() {
        assert!(Centroids::new(&CentroidList(vec![])).is_err());
        assert!(Centroids::new(&CentroidList(vec![vec![1.0], vec![1.0, 2.0]])).is_err());
    }
}
