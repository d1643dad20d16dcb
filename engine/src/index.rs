//! Index definitions and how they become Lance indexes.
//!
//! Vector indexes (`ivf_pq`, `ivf_hnsw_sq`, `ivf_hnsw_pq`, `ivf_flat`) carry a
//! metric and Lance build knobs; scalar indexes (`btree`, `bitmap`) speed up
//! filters. The definition (with the knobs as given) is kept in the catalog so
//! that `REINDEX` can retrain with the same settings.

use std::collections::BTreeMap;

use lance::index::vector::VectorIndexParams;
use lance_index::IndexType;
use lance_index::scalar::ScalarIndexParams;
use lance_index::vector::hnsw::builder::HnswBuildParams;
use lance_index::vector::ivf::IvfBuildParams;
use lance_index::vector::pq::PQBuildParams;
use lance_index::vector::sq::builder::SQBuildParams;
use serde::{Deserialize, Serialize};

use crate::distance::Metric;
use crate::engine_err;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    IvfPq,
    IvfHnswSq,
    IvfHnswPq,
    IvfFlat,
    BTree,
    Bitmap,
}

impl IndexKind {
    pub fn parse(s: &str) -> Option<IndexKind> {
        match s.to_ascii_lowercase().as_str() {
            "ivf_pq" => Some(IndexKind::IvfPq),
            "ivf_hnsw_sq" => Some(IndexKind::IvfHnswSq),
            "ivf_hnsw_pq" => Some(IndexKind::IvfHnswPq),
            "ivf_flat" => Some(IndexKind::IvfFlat),
            "btree" => Some(IndexKind::BTree),
            "bitmap" => Some(IndexKind::Bitmap),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            IndexKind::IvfPq => "ivf_pq",
            IndexKind::IvfHnswSq => "ivf_hnsw_sq",
            IndexKind::IvfHnswPq => "ivf_hnsw_pq",
            IndexKind::IvfFlat => "ivf_flat",
            IndexKind::BTree => "btree",
            IndexKind::Bitmap => "bitmap",
        }
    }

    pub fn is_vector(&self) -> bool {
        !matches!(self, IndexKind::BTree | IndexKind::Bitmap)
    }

    pub fn uses_hnsw(&self) -> bool {
        matches!(self, IndexKind::IvfHnswSq | IndexKind::IvfHnswPq)
    }

    fn lance_type(&self) -> IndexType {
        match self {
            IndexKind::IvfPq => IndexType::IvfPq,
            IndexKind::IvfHnswSq => IndexType::IvfHnswSq,
            IndexKind::IvfHnswPq => IndexType::IvfHnswPq,
            IndexKind::IvfFlat => IndexType::IvfFlat,
            IndexKind::BTree => IndexType::BTree,
            IndexKind::Bitmap => IndexType::Bitmap,
        }
    }
}

/// An index as kept in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    pub name: String,
    /// The index's object id in `pg_class`, assigned when it is created
    /// ([`crate::catalog::Catalog::allocate_oid`]); 0 until then.
    #[serde(default)]
    pub oid: u32,
    pub table: String,
    pub column: String,
    pub kind: IndexKind,
    /// Set for vector indexes.
    pub metric: Option<Metric>,
    /// Build knobs as given in `WITH (...)`, already validated.
    pub params: BTreeMap<String, String>,
}

/// The knobs each index kind accepts in `WITH (...)` besides `metric`.
pub fn allowed_params(kind: IndexKind) -> &'static [&'static str] {
    match kind {
        IndexKind::IvfPq => &[
            "num_partitions",
            "num_sub_vectors",
            "num_bits",
            "max_iterations",
            "sample_rate",
        ],
        IndexKind::IvfHnswSq => &[
            "num_partitions",
            "m",
            "ef_construction",
            "max_level",
            "num_bits",
            "sample_rate",
            "max_iterations",
        ],
        IndexKind::IvfHnswPq => &[
            "num_partitions",
            "m",
            "ef_construction",
            "max_level",
            "num_sub_vectors",
            "num_bits",
            "sample_rate",
            "max_iterations",
        ],
        IndexKind::IvfFlat => &["num_partitions", "sample_rate", "max_iterations"],
        IndexKind::BTree | IndexKind::Bitmap => &[],
    }
}

/// A numeric knob, with a clear error when it is not a positive integer.
fn knob(params: &BTreeMap<String, String>, key: &str, default: usize) -> Result<usize> {
    match params.get(key) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => engine_err!(
                InvalidRequest,
                "index option {key} must be a positive integer, got '{v}'"
            ),
        },
    }
}

/// Lance's default IVF partition count for `rows` rows: about 4,096 rows a partition.
fn default_partitions(rows: usize) -> usize {
    (rows / 4096).clamp(1, 256)
}

/// What to hand Lance to build this index over `rows` rows of `dim` dimensions.
pub enum BuildParams {
    Vector(Box<VectorIndexParams>),
    Scalar(ScalarIndexParams),
}

impl BuildParams {
    pub fn lance_type(def: &IndexDef) -> IndexType {
        def.kind.lance_type()
    }

    pub fn for_index(def: &IndexDef, rows: usize, dim: u32) -> Result<BuildParams> {
        let p = &def.params;
        if !def.kind.is_vector() {
            let kind = if def.kind == IndexKind::Bitmap {
                "bitmap"
            } else {
                "btree"
            };
            return Ok(BuildParams::Scalar(ScalarIndexParams::new(
                kind.to_string(),
            )));
        }
        let metric = def.metric.unwrap_or(Metric::L2);
        let Some(distance) = metric.lance() else {
            return engine_err!(
                InvalidRequest,
                "metric {} cannot be indexed; use l2, cosine or dot",
                metric.name()
            );
        };
        let partitions = knob(p, "num_partitions", default_partitions(rows))?;
        let mut ivf = IvfBuildParams::new(partitions);
        ivf.max_iters = knob(p, "max_iterations", ivf.max_iters)?;
        ivf.sample_rate = knob(p, "sample_rate", ivf.sample_rate)?;
        let hnsw = || -> Result<HnswBuildParams> {
            let mut h = HnswBuildParams::default();
            h.m = knob(p, "m", 16)?;
            h.ef_construction = knob(p, "ef_construction", 100)?;
            h.max_level = knob(p, "max_level", h.max_level as usize)? as u16;
            Ok(h)
        };
        let pq = || -> Result<PQBuildParams> {
            let mut q = PQBuildParams::default();
            let default_sub = if dim.is_multiple_of(16) {
                dim as usize / 16
            } else if dim.is_multiple_of(8) {
                dim as usize / 8
            } else {
                1
            };
            q.num_sub_vectors = knob(p, "num_sub_vectors", default_sub)?;
            q.num_bits = knob(p, "num_bits", 8)?;
            if !(dim as usize).is_multiple_of(q.num_sub_vectors) {
                return engine_err!(
                    InvalidRequest,
                    "num_sub_vectors {} must divide the dimension {dim}",
                    q.num_sub_vectors
                );
            }
            Ok(q)
        };
        let params = match def.kind {
            IndexKind::IvfFlat => {
                let mut v = VectorIndexParams::ivf_flat(partitions, distance);
                v.stages[0] = lance::index::vector::StageParams::Ivf(ivf);
                v
            }
            IndexKind::IvfPq => VectorIndexParams::with_ivf_pq_params(distance, ivf, pq()?),
            IndexKind::IvfHnswSq => {
                let sq = SQBuildParams {
                    num_bits: knob(p, "num_bits", 8)? as u16,
                    ..Default::default()
                };
                VectorIndexParams::with_ivf_hnsw_sq_params(distance, ivf, hnsw()?, sq)
            }
            IndexKind::IvfHnswPq => {
                VectorIndexParams::with_ivf_hnsw_pq_params(distance, ivf, hnsw()?, pq()?)
            }
            IndexKind::BTree | IndexKind::Bitmap => {
                return engine_err!(
                    Internal,
                    "scalar index kind reached the vector index builder"
                );
            }
        };
        Ok(BuildParams::Vector(Box::new(params)))
    }
}
