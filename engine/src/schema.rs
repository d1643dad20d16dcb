//! Column types Quiver stores, and how a table definition becomes an Arrow schema.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use quiver_tiering::Tier;
use serde::{Deserialize, Serialize};

/// A column type as declared in `CREATE TABLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Bool,
    Text,
    Timestamp,
    /// `timestamptz`: microseconds since the epoch, UTC.
    TimestampTz,
    Date,
    /// `time` (without time zone): microseconds since midnight.
    Time,
    Bytea,
    /// `numeric(precision, scale)`: exact decimals, stored as Decimal128
    /// (precision up to 38) or Decimal256 (up to 76).
    Numeric(u8, i8),
    /// `numeric` without a precision: stored as `numeric(38,10)`, the type
    /// DataFusion gives `::numeric` (PostgreSQL's has no fixed scale).
    NumericAny,
    /// `varchar(n)`: text of at most `n` characters (22001 past it).
    Varchar(u32),
    /// `uuid`, stored as its canonical text (lower-case, hyphenated), so
    /// that comparing the text compares the values.
    Uuid,
    /// `json`: the text as written, checked to be JSON.
    Json,
    /// `jsonb`: JSON in PostgreSQL's normal form (keys sorted by length,
    /// then bytes; duplicates dropped, the last kept).
    Jsonb,
    /// `text[]` (also `varchar[]`): a one-dimensional array of text, stored
    /// as a List of Utf8.
    TextArray,
    /// `vector(n)`: `n` float32 components, stored as a FixedSizeList.
    Vector(u32),
    /// `vector` without a dimension (as langchain-postgres creates it):
    /// each row's own number of components, stored as a List; searched
    /// exactly (no ANN index, which needs one dimension).
    VectorAny,
}

impl ColumnType {
    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnType::Int16 => DataType::Int16,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Text => DataType::Utf8,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::TimestampTz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            ColumnType::Date => DataType::Date32,
            ColumnType::Time => DataType::Time64(TimeUnit::Microsecond),
            ColumnType::Bytea => DataType::Binary,
            ColumnType::Numeric(p, s) if *p > 38 => DataType::Decimal256(*p, *s),
            ColumnType::Numeric(p, s) => DataType::Decimal128(*p, *s),
            ColumnType::NumericAny => DataType::Decimal128(NUMERIC_ANY.0, NUMERIC_ANY.1),
            ColumnType::Varchar(_) | ColumnType::Uuid | ColumnType::Json | ColumnType::Jsonb => {
                DataType::Utf8
            }
            ColumnType::Vector(dim) => vector_type(*dim),
            ColumnType::TextArray => {
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
            }
            ColumnType::VectorAny => {
                DataType::List(Arc::new(Field::new("item", DataType::Float32, true)))
            }
        }
    }

    /// The Postgres type of a column stored as text that is not `text`
    /// (kept in the Arrow field's metadata under [`PG_TYPE_KEY`], which
    /// DataFusion carries through column references, so results and
    /// parameters of these columns are described with their type).
    pub fn pg_type_name(&self) -> Option<&'static str> {
        match self {
            ColumnType::Varchar(_) => Some("varchar"),
            ColumnType::Uuid => Some("uuid"),
            ColumnType::Json => Some("json"),
            ColumnType::Jsonb => Some("jsonb"),
            _ => None,
        }
    }

    /// The Arrow field of a column of this type.
    pub fn field(&self, name: &str, nullable: bool) -> Field {
        let f = Field::new(name, self.arrow_type(), nullable);
        match self.pg_type_name() {
            Some(t) => f.with_metadata(pg_type_metadata(t)),
            None => f,
        }
    }

    pub fn vector_dim(&self) -> Option<u32> {
        match self {
            ColumnType::Vector(d) => Some(*d),
            _ => None,
        }
    }
}

/// Precision and scale of a `numeric` column declared without them.
pub const NUMERIC_ANY: (u8, i8) = (38, 10);

/// The Arrow field metadata key naming a text column's Postgres type
/// ([`ColumnType::pg_type_name`]).
pub const PG_TYPE_KEY: &str = "quiver.pg_type";

/// Field metadata saying a Utf8 value is of Postgres type `name`.
pub fn pg_type_metadata(name: &str) -> HashMap<String, String> {
    HashMap::from([(PG_TYPE_KEY.to_string(), name.to_string())])
}

/// The Postgres type a field's metadata names, if any.
pub fn field_pg_type(field: &Field) -> Option<&str> {
    field.metadata().get(PG_TYPE_KEY).map(String::as_str)
}

/// The Arrow type of a `vector(dim)` value.
pub fn vector_type(dim: u32) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float32, true)),
        dim as i32,
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    pub nullable: bool,
    /// `DEFAULT expr`: the SQL expression an INSERT that omits the column
    /// evaluates for each row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// `serial` / `bigserial`: an omitted value is the next of the column's
    /// sequence ([`crate::engine::Engine::sequence_values`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub serial: bool,
}

impl ColumnDef {
    pub fn new(name: impl Into<String>, ty: ColumnType, nullable: bool) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            ty,
            nullable,
            default: None,
            serial: false,
        }
    }
}

/// `PRIMARY KEY (…)` or `UNIQUE (…)`: no two rows have equal values in
/// all of `columns` (rows with a NULL in them never conflict, as in
/// PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniqueDef {
    /// The constraint's name (`docs_pkey`, `docs_email_key`), as PostgreSQL names it.
    pub name: String,
    pub columns: Vec<String>,
    pub primary: bool,
}

/// What deleting a referenced row does to the rows referencing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefAction {
    /// Refuse the delete while rows reference it (23503).
    #[default]
    NoAction,
    Restrict,
    /// Delete the referencing rows too.
    Cascade,
    /// Set the referencing columns to NULL.
    SetNull,
}

/// `FOREIGN KEY (columns) REFERENCES table (ref_columns) ON DELETE …`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKeyDef {
    /// The constraint's name (`docs_collection_id_fkey`, as PostgreSQL names it).
    pub name: String,
    pub columns: Vec<String>,
    /// The referenced table; its `ref_columns` are its primary key or a unique constraint.
    pub table: String,
    pub ref_columns: Vec<String>,
    #[serde(default)]
    pub on_delete: RefAction,
}

/// `CHECK (expr)`: a row for which `expr` is false is refused (23514;
/// true or NULL pass, as in PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDef {
    /// The constraint's name (`items_price_check`, as PostgreSQL names it).
    pub name: String,
    /// The condition as SQL text over the table's columns.
    pub expr: String,
    /// The columns `expr` reads: dropping one drops the check.
    pub columns: Vec<String>,
}

/// A table's definition as kept in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub name: String,
    /// The table's object id in `pg_class`, stable for the table's life
    /// ([`crate::catalog::Catalog::allocate_oid`]); 0 until assigned.
    #[serde(default)]
    pub oid: u32,
    /// The dataset folder under `tables/`, unique per created table, so that a
    /// dropped and re-created table never sees the old files.
    pub dir: String,
    pub columns: Vec<ColumnDef>,
    /// Primary key and unique constraints, enforced on every write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unique: Vec<UniqueDef>,
    /// Foreign keys, checked on every write to this table and on deletes
    /// from the tables they reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_keys: Vec<ForeignKeyDef>,
    /// CHECK constraints, evaluated on every row written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckDef>,
    /// How rows are split over shards (`CREATE TABLE … WITH (shards = N)`);
    /// `None`: one shard, the dataset in `dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharding: Option<ShardingDef>,
    /// Where the shards' datasets live (`WITH (tier = 'hot' | 'cold')`).
    #[serde(default, skip_serializing_if = "Tier::is_hot")]
    pub tier: Tier,
}

/// `WITH (shards = N, sharding = 'hash', shard_key = col, vnodes = V)`: the
/// table is `shards` Lance datasets, a row stored in the one its key's hash
/// falls to on the ring ([`crate::ring`]). With `sharding = 'ivf'` the key
/// is a vector column and a row is stored in the shard of its nearest
/// centroid ([`crate::ivf`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardingDef {
    pub shards: u32,
    /// The column whose value places a row.
    pub key: String,
    /// Virtual nodes per shard on the ring.
    pub vnodes: u32,
    /// How rows are placed: by the ring (`hash`) or by centroids (`ivf`).
    #[serde(default, skip_serializing_if = "ShardMethod::is_hash")]
    pub method: ShardMethod,
    /// `ivf`: the trained centroids, one per shard (`None` until the table
    /// has `train_rows` rows: until then every row is on shard 0, the
    /// pending shard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centroids: Option<CentroidList>,
    /// `ivf`: the rows the table holds when its centroids are trained.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub train_rows: u64,
    /// While rows move to `shards` shards (`ALTER TABLE … SET (shards =
    /// M)`): the shard count they move from ([`crate::reshard`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving_from: Option<u32>,
    /// The shards' dataset folders, in shard order, once a move between
    /// shard counts has named them (a table sharded after it was created
    /// keeps its dataset as shard 0; a move names new shards uniquely, so
    /// a folder is never reused); empty: `<stem>-s<i>.lance`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<String>,
}

impl ShardingDef {
    /// The shards a table has: during a move, those of both counts.
    pub fn count(&self) -> u32 {
        self.shards.max(self.moving_from.unwrap_or(0))
    }

    /// Whether rows are placed by centroids (`sharding = 'ivf'`).
    pub fn is_ivf(&self) -> bool {
        self.method == ShardMethod::Ivf
    }
}

/// `sharding = 'hash' | 'ivf'`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardMethod {
    #[default]
    Hash,
    Ivf,
}

impl ShardMethod {
    pub fn is_hash(&self) -> bool {
        *self == ShardMethod::Hash
    }

    pub fn name(&self) -> &'static str {
        match self {
            ShardMethod::Hash => "hash",
            ShardMethod::Ivf => "ivf",
        }
    }
}

/// Trained centroids as the catalog keeps them (equal when bit-equal).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CentroidList(pub Vec<Vec<f32>>);

impl PartialEq for CentroidList {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|(a, b)| {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            })
    }
}

impl Eq for CentroidList {}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TableDef {
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| c.ty.field(&c.name, c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// [`TableDef::arrow_schema`] with every column nullable: rows as
    /// decoded, before defaults are filled and NOT NULL is checked.
    pub fn arrow_schema_with_nulls(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| c.ty.field(&c.name, true))
                .collect::<Vec<_>>(),
        ))
    }

    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The folder of shard `i` of a table sharded at creation.
    pub fn shard_dir(&self, i: u32) -> String {
        let stem = self.dir.strip_suffix(".lance").unwrap_or(&self.dir);
        format!("{stem}-s{i}.lance")
    }

    /// A new shard `i`'s folder, named by a move: never one used before.
    pub fn new_shard_dir(&self, i: u32) -> String {
        let stem = self.dir.strip_suffix(".lance").unwrap_or(&self.dir);
        let unique = uuid::Uuid::new_v4().simple().to_string();
        format!("{stem}-s{i}-{}.lance", &unique[..12])
    }

    /// How many shards (Lance datasets) the table has.
    pub fn shard_count(&self) -> usize {
        self.sharding.as_ref().map_or(1, |s| s.count() as usize)
    }

    /// The dataset folder of each shard, in shard order: `dir` for a table
    /// of one shard, `<stem>-s<i>.lance` beside it for a sharded one (or
    /// the folders a move named, [`ShardingDef::dirs`]).
    pub fn shard_dirs(&self) -> Vec<String> {
        match &self.sharding {
            None => vec![self.dir.clone()],
            Some(s) if !s.dirs.is_empty() => s.dirs.clone(),
            Some(s) => (0..s.count()).map(|i| self.shard_dir(i)).collect(),
        }
    }
}
