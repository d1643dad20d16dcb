//! `pg_catalog`: PostgreSQL's system catalogs, reflecting Quiver's own
//! catalog, so that psql's meta-commands, drivers' type introspection and
//! ORMs' and BI tools' schema discovery read this database's real tables,
//! columns, indexes, types and functions.
//!
//! Every table is built from the engine's catalog when it is scanned (the
//! catalog is small; nothing is cached that could go stale). Object ids are
//! stable: tables and indexes keep the id the engine's catalog gave them at
//! creation (stored with it), types and access methods have fixed ids (the
//! PostgreSQL ones for the built-in types), user functions theirs. The
//! catalog tables list themselves in `pg_class` and `pg_attribute` too, as
//! PostgreSQL's do.
//!
//! What Quiver does not have yet (constraints, defaults, descriptions,
//! policies, inheritance, publications, extended statistics) has its table
//! with PostgreSQL's columns and no rows, so that the queries tools send
//! plan and find nothing.

pub mod functions;
pub mod types;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int8Builder, Int16Builder,
    Int32Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder, UInt32Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session as DfSession};
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use quiver_engine::Engine;
use quiver_engine::catalog::Catalog;
use quiver_engine::distance::Metric;
use quiver_engine::function::{FunctionDef, FunctionKind};
use quiver_engine::index::{IndexDef, IndexKind};

pub const PG_CATALOG_NS: u32 = 11;
pub const PUBLIC_NS: u32 = 2200;
pub const INFORMATION_SCHEMA_NS: u32 = 13000;
/// The one role (PostgreSQL's bootstrap superuser id).
pub const SUPERUSER_OID: u32 = 10;
/// The one database.
pub const DATABASE_OID: u32 = 5;
/// `pg_am` ids of the table access method and of the index kinds.
pub const HEAP_AM: u32 = 2;
/// `pg_extension.oid` of `vector` (built in).
pub const VECTOR_EXTENSION_OID: u32 = 16384;
/// `pg_language.oid` of `wasm`, the language of user functions.
pub const WASM_LANGUAGE_OID: u32 = 13_600;
const PG_DEFAULT_TABLESPACE: u32 = 1663;

/// Who is connected: the user and database names the client gave at
/// start-up, and the backend process id it was told.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub user: String,
    pub database: String,
    pub pid: i32,
}

impl Default for ClientIdentity {
    fn default() -> Self {
        ClientIdentity {
            user: "quiver".into(),
            database: "quiver".into(),
            pid: 0,
        }
    }
}

/// What the catalog tables and helper functions read: the engine (for its
/// catalog) and the session's client.
#[derive(Debug, Clone)]
pub struct CatalogContext {
    pub engine: Arc<Engine>,
    /// The connected sessions (`pg_stat_activity`).
    pub activity: Arc<crate::activity::Activity>,
    /// What each normalized statement cost (`quiver_stat_statements`).
    pub statements: Arc<crate::stat_statements::StatStatements>,
    pub identity: Arc<RwLock<ClientIdentity>>,
    pub settings: Arc<crate::settings::SessionSettings>,
}

impl CatalogContext {
    pub fn identity(&self) -> ClientIdentity {
        match self.identity.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The catalog as of now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            catalog: self.engine.catalog(),
            functions: self.engine.functions(),
            identity: self.identity(),
            settings: self.settings.clone(),
            engine: Some(self.engine.clone()),
            activity: Some(self.activity.clone()),
            statements: Some(self.statements.clone()),
        }
    }
}

/// One reading of everything the catalog tables show.
pub struct Snapshot {
    pub catalog: Catalog,
    pub functions: Vec<FunctionDef>,
    pub identity: ClientIdentity,
    /// The session's settings (`pg_settings` reads them).
    pub settings: Arc<crate::settings::SessionSettings>,
    /// For the tables' sizes (`pg_stat_user_tables`); none in unit tests.
    pub engine: Option<Arc<Engine>>,
    /// The connected sessions (`pg_stat_activity`).
    pub activity: Option<Arc<crate::activity::Activity>>,
    /// `quiver_stat_statements`.
    pub statements: Option<Arc<crate::stat_statements::StatStatements>>,
}

/// The `pg_am` id of an index kind.
pub fn index_am(kind: IndexKind) -> u32 {
    match kind {
        IndexKind::BTree => 403,
        IndexKind::Bitmap => 16390,
        IndexKind::IvfPq => 16391,
        IndexKind::IvfHnswSq => 16392,
        IndexKind::IvfHnswPq => 16393,
        IndexKind::IvfFlat => 16394,
    }
}

const INDEX_KINDS: [IndexKind; 6] = [
    IndexKind::BTree,
    IndexKind::Bitmap,
    IndexKind::IvfPq,
    IndexKind::IvfHnswSq,
    IndexKind::IvfHnswPq,
    IndexKind::IvfFlat,
];

/// The metrics of pgvector's operator classes, by name.
const OPCLASSES: [(Metric, &str); 3] = [
    (Metric::L2, "vector_l2_ops"),
    (Metric::Cosine, "vector_cosine_ops"),
    (Metric::Dot, "vector_ip_ops"),
];

/// The `pg_opclass` id of a vector index method's operator class for a
/// metric (0 where there is none: btree and bitmap indexes, `L1`).
pub fn opclass_oid(kind: IndexKind, metric: Option<Metric>) -> u32 {
    let method = INDEX_KINDS.iter().position(|k| *k == kind);
    let class = OPCLASSES.iter().position(|(m, _)| Some(*m) == metric);
    match (method, class) {
        (Some(m), Some(c)) if metric.is_some() && kind.is_vector() => {
            16_600 + (m * OPCLASSES.len() + c) as u32
        }
        _ => 0,
    }
}

/// The index method and name of an operator class, by its oid.
pub fn opclass_by_oid(oid: u32) -> Option<(IndexKind, &'static str)> {
    INDEX_KINDS.iter().find_map(|kind| {
        OPCLASSES
            .iter()
            .find(|(m, _)| opclass_oid(*kind, Some(*m)) == oid)
            .map(|(_, name)| (*kind, *name))
    })
}

// ---------------------------------------------------------------- relations

/// A column as `pg_attribute` shows it.
#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
    pub not_null: bool,
    /// The column's default as `pg_attrdef.adbin` shows it (a serial's is
    /// `nextval('t_c_seq'::regclass)`).
    pub default: Option<String>,
}

impl Attribute {
    /// The attribute of a column of `table` (`None`: of an index, which
    /// has no defaults).
    fn of(c: &quiver_engine::schema::ColumnDef, table: Option<&str>) -> Attribute {
        let (type_oid, typmod) = types::column_type(&c.ty);
        let default = table.and_then(|t| {
            if c.serial {
                Some(format!(
                    "nextval('{}'::regclass)",
                    quote_ident(&format!("{t}_{}_seq", c.name)).replace('\'', "''")
                ))
            } else {
                c.default.clone()
            }
        });
        Attribute {
            name: c.name.clone(),
            type_oid,
            typmod,
            not_null: !c.nullable,
            default,
        }
    }
}

/// A relation as `pg_class` shows it: a user table or index, or a catalog table.
#[derive(Debug, Clone)]
pub struct Relation {
    pub oid: u32,
    pub name: String,
    pub namespace: u32,
    /// `relkind`: r table, i index, v view.
    pub kind: char,
    pub am: u32,
    pub columns: Vec<Attribute>,
    pub has_index: bool,
    /// `relhastriggers`: a table with foreign keys, or referenced by one
    /// (PostgreSQL enforces them with triggers; psql's `\d` lists foreign
    /// keys only for such tables).
    pub has_triggers: bool,
    /// `relchecks`: the table's CHECK constraints (psql lists them if any).
    pub checks: i16,
    /// For an index: its definition.
    pub index: Option<IndexDef>,
}

/// A row of `pg_constraint`: a table's primary key, unique constraint,
/// foreign key or check constraint.
pub struct Constraint {
    /// Stable for the constraint's life: derived from its table's oid and
    /// its position among the table's constraints.
    pub oid: u32,
    pub name: String,
    /// `p`, `u`, `f` or `c`.
    pub kind: char,
    pub table_oid: u32,
    /// Attribute numbers of its columns.
    pub columns: Vec<i16>,
    pub foreign: Option<ForeignRef>,
    /// As `pg_get_constraintdef` prints it.
    pub definition: String,
    /// For a primary key or unique constraint: the unique index that stands
    /// for it in `pg_class` / `pg_index` (as in PostgreSQL, named as the
    /// constraint; Quiver checks the key by lookups, served by a scalar
    /// index on the key when there is one), else 0.
    pub index_oid: u32,
    /// That index's `pg_get_indexdef`.
    pub index_definition: Option<String>,
    pub primary: bool,
}

/// The oid of the unique index that stands for constraint `oid`.
fn constraint_index_oid(oid: u32) -> u32 {
    oid.wrapping_add(0x2000_0000)
}

/// The referenced side of a foreign key.
pub struct ForeignRef {
    pub table_oid: u32,
    pub columns: Vec<i16>,
    /// `confdeltype`: `a` no action, `r` restrict, `c` cascade, `n` set null.
    pub on_delete: char,
}

/// The oid of a table's `k`-th constraint: past the top of table and index
/// oids (which count up from 16,384), unique per table and position.
fn constraint_oid(table_oid: u32, k: usize) -> u32 {
    0x4000_0000u32
        .wrapping_add(table_oid.wrapping_mul(64))
        .wrapping_add(k.min(63) as u32)
}

impl Snapshot {
    /// Every table's constraints (`pg_constraint`).
    pub fn constraints(&self) -> Vec<Constraint> {
        let attnums = |def: &quiver_engine::schema::TableDef, cols: &[String]| -> Vec<i16> {
            cols.iter()
                .filter_map(|c| def.columns.iter().position(|d| &d.name == c))
                .map(|i| i as i16 + 1)
                .collect()
        };
        let mut out = Vec::new();
        for def in self.catalog.tables.values() {
            for (k, u) in def.unique.iter().enumerate() {
                let (kind, word) = if u.primary {
                    ('p', "PRIMARY KEY")
                } else {
                    ('u', "UNIQUE")
                };
                let oid = constraint_oid(def.oid, k);
                out.push(Constraint {
                    oid,
                    name: u.name.clone(),
                    kind,
                    table_oid: def.oid,
                    columns: attnums(def, &u.columns),
                    foreign: None,
                    definition: format!("{word} ({})", quoted_list(&u.columns)),
                    index_oid: constraint_index_oid(oid),
                    index_definition: Some(format!(
                        "CREATE UNIQUE INDEX {} ON public.{} USING btree ({})",
                        quote_ident(&u.name),
                        quote_ident(&def.name),
                        quoted_list(&u.columns)
                    )),
                    primary: u.primary,
                });
            }
            for (k, f) in def.foreign_keys.iter().enumerate() {
                let Some(target) = self.catalog.tables.get(&f.table) else {
                    continue;
                };
                let (on_delete, action) = match f.on_delete {
                    quiver_engine::schema::RefAction::NoAction => ('a', ""),
                    quiver_engine::schema::RefAction::Restrict => ('r', " ON DELETE RESTRICT"),
                    quiver_engine::schema::RefAction::Cascade => ('c', " ON DELETE CASCADE"),
                    quiver_engine::schema::RefAction::SetNull => ('n', " ON DELETE SET NULL"),
                };
                out.push(Constraint {
                    oid: constraint_oid(def.oid, def.unique.len() + k),
                    name: f.name.clone(),
                    kind: 'f',
                    table_oid: def.oid,
                    columns: attnums(def, &f.columns),
                    foreign: Some(ForeignRef {
                        table_oid: target.oid,
                        columns: attnums(target, &f.ref_columns),
                        on_delete,
                    }),
                    definition: format!(
                        "FOREIGN KEY ({}) REFERENCES {}({}){action}",
                        quoted_list(&f.columns),
                        quote_ident(&f.table),
                        quoted_list(&f.ref_columns)
                    ),
                    index_oid: 0,
                    index_definition: None,
                    primary: false,
                });
            }
            let before = def.unique.len() + def.foreign_keys.len();
            for (k, c) in def.checks.iter().enumerate() {
                out.push(Constraint {
                    oid: constraint_oid(def.oid, before + k),
                    name: c.name.clone(),
                    kind: 'c',
                    table_oid: def.oid,
                    columns: attnums(def, &c.columns),
                    foreign: None,
                    definition: format!("CHECK ({})", c.expr),
                    index_oid: 0,
                    index_definition: None,
                    primary: false,
                });
            }
        }
        out
    }

    /// Every relation: user tables, their indexes, then the catalog's own tables.
    pub fn relations(&self) -> Vec<Relation> {
        let mut out = Vec::new();
        for t in self.catalog.tables.values() {
            out.push(Relation {
                oid: t.oid,
                name: t.name.clone(),
                namespace: PUBLIC_NS,
                kind: 'r',
                am: HEAP_AM,
                columns: t
                    .columns
                    .iter()
                    .map(|c| Attribute::of(c, Some(&t.name)))
                    .collect(),
                has_index: self.catalog.indexes_of(&t.name).next().is_some()
                    || !t.unique.is_empty(),
                has_triggers: !t.foreign_keys.is_empty()
                    || self
                        .catalog
                        .tables
                        .values()
                        .any(|o| o.foreign_keys.iter().any(|f| f.table == t.name)),
                checks: t.checks.len() as i16,
                index: None,
            });
        }
        for v in self.catalog.views.values() {
            out.push(Relation {
                oid: v.oid,
                name: v.name.clone(),
                namespace: PUBLIC_NS,
                kind: 'v',
                am: 0,
                columns: v
                    .columns
                    .iter()
                    .map(|c| Attribute {
                        name: c.name.clone(),
                        type_oid: c.type_oid,
                        typmod: c.typmod,
                        not_null: false,
                        default: None,
                    })
                    .collect(),
                has_index: false,
                has_triggers: false,
                checks: 0,
                index: None,
            });
        }
        for i in self.catalog.indexes.values() {
            let column = self
                .catalog
                .tables
                .get(&i.table)
                .and_then(|t| t.column(&i.column));
            let (type_oid, typmod) = column.map(|c| types::column_type(&c.ty)).unwrap_or((0, -1));
            out.push(Relation {
                oid: i.oid,
                name: i.name.clone(),
                namespace: PUBLIC_NS,
                kind: 'i',
                am: index_am(i.kind),
                columns: vec![Attribute {
                    name: i.column.clone(),
                    type_oid,
                    typmod,
                    not_null: false,
                    default: None,
                }],
                has_index: false,
                has_triggers: false,
                checks: 0,
                index: Some(i.clone()),
            });
        }
        for k in self.constraints().into_iter().filter(|k| k.index_oid != 0) {
            let Some(table) = self.catalog.tables.values().find(|t| t.oid == k.table_oid) else {
                continue;
            };
            out.push(Relation {
                oid: k.index_oid,
                name: k.name.clone(),
                namespace: PUBLIC_NS,
                kind: 'i',
                am: index_am(IndexKind::BTree),
                columns: k
                    .columns
                    .iter()
                    .filter_map(|&n| table.columns.get((n - 1) as usize))
                    .map(|c| Attribute::of(c, None))
                    .collect(),
                has_index: false,
                has_triggers: false,
                checks: 0,
                index: None,
            });
        }
        for d in DEFS {
            out.push(Relation {
                oid: d.oid,
                name: d.name.into(),
                namespace: PG_CATALOG_NS,
                kind: d.kind,
                am: if d.kind == 'r' { HEAP_AM } else { 0 },
                columns: parse_columns(d.columns)
                    .iter()
                    .map(|f| Attribute {
                        name: f.name().clone(),
                        type_oid: types::arrow_type_oid(f.data_type()),
                        typmod: -1,
                        not_null: false,
                        default: None,
                    })
                    .collect(),
                has_index: false,
                has_triggers: false,
                checks: 0,
                index: None,
            });
        }
        out
    }

    /// The table a user index is on.
    pub(crate) fn table_by_oid(&self, oid: u32) -> Option<&quiver_engine::schema::TableDef> {
        self.catalog.tables.values().find(|t| t.oid == oid)
    }

    fn index_table(&self, index: &IndexDef) -> Option<&quiver_engine::schema::TableDef> {
        self.catalog.tables.get(&index.table)
    }

    /// `pg_get_indexdef`: the statement that makes the index.
    pub fn index_definition(&self, index: &IndexDef) -> String {
        let mut with: Vec<String> = Vec::new();
        if let Some(m) = index.metric {
            with.push(format!("metric = '{}'", m.name()));
        }
        for (k, v) in &index.params {
            with.push(format!("{k} = '{}'", v.replace('\'', "''")));
        }
        format!(
            "CREATE INDEX {} ON public.{} USING {} ({}){}",
            quote_ident(&index.name),
            quote_ident(&index.table),
            index.kind.name(),
            quote_ident(&index.column),
            if with.is_empty() {
                String::new()
            } else {
                format!(" WITH ({})", with.join(", "))
            }
        )
    }
}

/// An identifier as PostgreSQL prints it: quoted unless it is lower-case
/// letters, digits and underscores not starting with a digit.
pub fn quote_ident(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

// ---------------------------------------------------------------- values

/// One cell of a catalog row.
#[derive(Debug, Clone)]
pub enum V {
    Oid(u32),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    /// PostgreSQL's one-byte `"char"`.
    Char(i8),
    /// A `timestamptz`, in microseconds since 1970 (UTC).
    Ts(i64),
    Text(String),
    Oids(Vec<u32>),
    Texts(Vec<String>),
    I16s(Vec<i16>),
    Null,
}

/// A `pg_index` row: a valid, ready, non-expression index on `columns`.
fn index_row(
    index: u32,
    table: u32,
    columns: Vec<i16>,
    opclass: u32,
    unique: bool,
    primary: bool,
) -> Vec<V> {
    let n = columns.len();
    vec![
        o(index),
        o(table),
        i2(n as i16),
        i2(n as i16),
        b(unique),
        b(false),
        b(primary),
        b(false),
        b(true),
        b(false),
        b(true),
        b(false),
        b(true),
        b(true),
        b(false),
        V::I16s(columns),
        V::Oids(vec![0; n]),
        V::Oids(vec![opclass; n]),
        V::I16s(vec![0; n]),
        N,
        N,
    ]
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

fn o(v: u32) -> V {
    V::Oid(v)
}
fn t(v: impl Into<String>) -> V {
    V::Text(v.into())
}
fn c(v: char) -> V {
    V::Char(v as u8 as i8)
}

/// The empty `"char"` (`'\0'`, shown as an empty string).
const NO_CHAR: V = V::Char(0);
fn b(v: bool) -> V {
    V::Bool(v)
}
fn i2(v: i16) -> V {
    V::I16(v)
}
fn i4(v: i32) -> V {
    V::I32(v)
}
const N: V = V::Null;

/// Parses a column list `"oid oid, relname name, relacl text[]"`: `oid` is
/// UInt32, `char` (PostgreSQL's one-byte `"char"`) Int8, `name`/`text` Utf8,
/// `int2`/`int4`/`int8`, `float4`/`float8`, `bool`, `timestamptz` (microseconds,
/// UTC), and `[]` a list of the element
/// type. (String literals compared with a `"char"` are read as one:
/// [`crate::compat::PgLiterals`].)
fn parse_columns(spec: &str) -> Vec<Field> {
    spec.split(',')
        .filter_map(|c| {
            let mut it = c.split_whitespace();
            let name = it.next()?;
            let ty = it.next().unwrap_or("text");
            let scalar = |t: &str| match t {
                "oid" => DataType::UInt32,
                "char" => DataType::Int8,
                "int2" => DataType::Int16,
                "int4" => DataType::Int32,
                "int8" => DataType::Int64,
                "float4" => DataType::Float32,
                "float8" => DataType::Float64,
                "bool" => DataType::Boolean,
                "timestamptz" => DataType::Timestamp(
                    datafusion::arrow::datatypes::TimeUnit::Microsecond,
                    Some("UTC".into()),
                ),
                _ => DataType::Utf8,
            };
            let dt = match ty.strip_suffix("[]") {
                Some(e) => DataType::List(Arc::new(Field::new("item", scalar(e), true))),
                None => scalar(ty),
            };
            Some(Field::new(name, dt, true))
        })
        .collect()
}

fn mismatch(column: &str) -> DataFusionError {
    DataFusionError::Internal(format!("catalog column {column}: a value of another type"))
}

/// Builds one column from the cells of every row.
fn column(field: &Field, cells: &[&V]) -> DfResult<ArrayRef> {
    macro_rules! scalar {
        ($builder:ty, $variant:ident) => {{
            let mut b = <$builder>::with_capacity(cells.len());
            for v in cells {
                match v {
                    V::$variant(x) => b.append_value(x.clone()),
                    V::Null => b.append_null(),
                    _ => return Err(mismatch(field.name())),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    macro_rules! list {
        ($builder:ty, $variant:ident) => {{
            let mut b = ListBuilder::new(<$builder>::new());
            for v in cells {
                match v {
                    V::$variant(xs) => {
                        for x in xs {
                            b.values().append_value(x.clone());
                        }
                        b.append(true);
                    }
                    V::Null => b.append(false),
                    _ => return Err(mismatch(field.name())),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match field.data_type() {
        DataType::UInt32 => scalar!(UInt32Builder, Oid),
        DataType::Int8 => scalar!(Int8Builder, Char),
        DataType::Int16 => scalar!(Int16Builder, I16),
        DataType::Int32 => scalar!(Int32Builder, I32),
        DataType::Int64 => scalar!(Int64Builder, I64),
        DataType::Float32 => scalar!(Float32Builder, F32),
        DataType::Float64 => scalar!(Float64Builder, F64),
        DataType::Boolean => scalar!(BooleanBuilder, Bool),
        DataType::Timestamp(_, tz) => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(cells.len())
                .with_timezone_opt(tz.clone());
            for v in cells {
                match v {
                    V::Ts(x) => b.append_value(*x),
                    V::Null => b.append_null(),
                    _ => return Err(mismatch(field.name())),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }
        DataType::List(item) => match item.data_type() {
            DataType::UInt32 => list!(UInt32Builder, Oids),
            DataType::Int16 => list!(Int16Builder, I16s),
            _ => list!(StringBuilder, Texts),
        },
        _ => {
            let mut b = StringBuilder::new();
            for v in cells {
                match v {
                    V::Text(x) => b.append_value(x),
                    V::Null => b.append_null(),
                    _ => return Err(mismatch(field.name())),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }
    })
}

fn batch(schema: &SchemaRef, rows: &[Vec<V>]) -> DfResult<RecordBatch> {
    let mut cols = Vec::with_capacity(schema.fields().len());
    for (i, f) in schema.fields().iter().enumerate() {
        let cells: Vec<&V> = rows.iter().map(|r| r.get(i).unwrap_or(&N)).collect();
        cols.push(column(f, &cells)?);
    }
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

// ---------------------------------------------------------------- tables

/// A catalog table: its id, kind (r table, v view), columns and rows.
struct Def {
    name: &'static str,
    oid: u32,
    kind: char,
    columns: &'static str,
    rows: fn(&Snapshot) -> Vec<Vec<V>>,
}

fn none(_: &Snapshot) -> Vec<Vec<V>> {
    Vec::new()
}

const DEFS: &[Def] = &[
    Def {
        name: "pg_namespace",
        oid: 2615,
        kind: 'r',
        columns: "oid oid, nspname name, nspowner oid, nspacl text[]",
        rows: |_| {
            vec![
                vec![o(PG_CATALOG_NS), t("pg_catalog"), o(SUPERUSER_OID), N],
                vec![o(PUBLIC_NS), t("public"), o(SUPERUSER_OID), N],
                vec![
                    o(INFORMATION_SCHEMA_NS),
                    t("information_schema"),
                    o(SUPERUSER_OID),
                    N,
                ],
            ]
        },
    },
    Def {
        name: "pg_class",
        oid: 1259,
        kind: 'r',
        columns: "oid oid, relname name, relnamespace oid, reltype oid, reloftype oid, \
                  relowner oid, relam oid, relfilenode oid, reltablespace oid, relpages int4, \
                  reltuples float4, relallvisible int4, reltoastrelid oid, relhasindex bool, \
                  relisshared bool, relpersistence char, relkind char, relnatts int2, \
                  relchecks int2, relhasrules bool, relhastriggers bool, relhassubclass bool, \
                  relrowsecurity bool, relforcerowsecurity bool, relispopulated bool, \
                  relreplident char, relispartition bool, relrewrite oid, relfrozenxid oid, \
                  relminmxid oid, relacl text[], reloptions text[], relpartbound text",
        rows: |s| {
            s.relations()
                .into_iter()
                .map(|r| {
                    vec![
                        o(r.oid),
                        t(r.name),
                        o(r.namespace),
                        o(0),
                        o(0),
                        o(SUPERUSER_OID),
                        o(r.am),
                        o(r.oid),
                        o(0),
                        i4(0),
                        V::F32(-1.0),
                        i4(0),
                        o(0),
                        b(r.has_index),
                        b(false),
                        c('p'),
                        c(r.kind),
                        i2(r.columns.len() as i16),
                        i2(r.checks),
                        b(false),
                        b(r.has_triggers),
                        b(false),
                        b(false),
                        b(false),
                        b(true),
                        c('d'),
                        b(false),
                        o(0),
                        o(0),
                        o(0),
                        N,
                        N,
                        N,
                    ]
                })
                .collect()
        },
    },
    Def {
        name: "pg_attribute",
        oid: 1249,
        kind: 'r',
        columns: "attrelid oid, attname name, atttypid oid, attstattarget int4, attlen int2, \
                  attnum int2, attndims int4, attcacheoff int4, atttypmod int4, attbyval bool, \
                  attalign char, attstorage char, attcompression char, attnotnull bool, \
                  atthasdef bool, atthasmissing bool, attidentity char, attgenerated char, \
                  attisdropped bool, attislocal bool, attinhcount int4, attcollation oid, \
                  attacl text[], attoptions text[], attfdwoptions text[], attmissingval text",
        rows: |s| {
            let mut rows = Vec::new();
            for r in s.relations() {
                for (i, a) in r.columns.iter().enumerate() {
                    let ty = types::by_oid(a.type_oid);
                    rows.push(vec![
                        o(r.oid),
                        t(a.name.clone()),
                        o(a.type_oid),
                        i4(-1),
                        i2(ty.as_ref().map(|t| t.len).unwrap_or(-1)),
                        i2(i as i16 + 1),
                        i4(ty.as_ref().map(|t| i32::from(t.elem != 0)).unwrap_or(0)),
                        i4(-1),
                        i4(a.typmod),
                        b(ty.as_ref().map(|t| t.byval).unwrap_or(false)),
                        c('i'),
                        c(ty.as_ref().map_or('x', types::storage)),
                        NO_CHAR,
                        b(a.not_null),
                        b(a.default.is_some()),
                        b(false),
                        NO_CHAR,
                        NO_CHAR,
                        b(false),
                        b(true),
                        i4(0),
                        o(ty.map(|t| t.collation).unwrap_or(0)),
                        N,
                        N,
                        N,
                        N,
                    ]);
                }
            }
            rows
        },
    },
    Def {
        name: "pg_index",
        oid: 2610,
        kind: 'r',
        columns: "indexrelid oid, indrelid oid, indnatts int2, indnkeyatts int2, \
                  indisunique bool, indnullsnotdistinct bool, indisprimary bool, \
                  indisexclusion bool, indimmediate bool, indisclustered bool, indisvalid bool, \
                  indcheckxmin bool, indisready bool, indislive bool, indisreplident bool, \
                  indkey int2[], indcollation oid[], indclass oid[], indoption int2[], \
                  indexprs text, indpred text",
        rows: |s| {
            s.catalog
                .indexes
                .values()
                .filter_map(|i| {
                    let table = s.index_table(i)?;
                    let attnum = table.columns.iter().position(|c| c.name == i.column)? + 1;
                    Some(index_row(
                        i.oid,
                        table.oid,
                        vec![attnum as i16],
                        opclass_oid(i.kind, i.metric),
                        false,
                        false,
                    ))
                })
                .chain(
                    s.constraints()
                        .into_iter()
                        .filter(|k| k.index_oid != 0)
                        .map(|k| {
                            index_row(k.index_oid, k.table_oid, k.columns, 0, true, k.primary)
                        }),
                )
                .collect()
        },
    },
    Def {
        name: "pg_type",
        oid: 1247,
        kind: 'r',
        columns: "oid oid, typname name, typnamespace oid, typowner oid, typlen int2, \
                  typbyval bool, typtype char, typcategory char, typispreferred bool, \
                  typisdefined bool, typdelim char, typrelid oid, typsubscript text, typelem oid, \
                  typarray oid, typinput text, typoutput text, typreceive text, typsend text, \
                  typmodin text, typmodout text, typanalyze text, typalign char, typstorage char, \
                  typnotnull bool, typbasetype oid, typtypmod int4, typndims int4, \
                  typcollation oid, typdefaultbin text, typdefault text, typacl text[]",
        rows: |_| {
            types::all()
                .into_iter()
                .map(|ty| {
                    let io = |suffix: &str| {
                        if ty.elem != 0 {
                            format!("array_{suffix}")
                        } else {
                            format!("{}{suffix}", ty.name)
                        }
                    };
                    vec![
                        o(ty.oid),
                        t(ty.name.to_string()),
                        o(ty.namespace),
                        o(SUPERUSER_OID),
                        i2(ty.len),
                        b(ty.byval),
                        c(ty.kind),
                        c(ty.category),
                        b(false),
                        b(true),
                        c(','),
                        o(0),
                        t(if ty.elem != 0 {
                            "array_subscript_handler"
                        } else {
                            "-"
                        }),
                        o(ty.elem),
                        o(ty.array),
                        t(io("in")),
                        t(io("out")),
                        t(io("recv")),
                        t(io("send")),
                        t("-"),
                        t("-"),
                        t("-"),
                        c(if ty.len == 8 { 'd' } else { 'i' }),
                        c(types::storage(&ty)),
                        b(false),
                        o(0),
                        i4(-1),
                        i4(0),
                        o(ty.collation),
                        N,
                        N,
                        N,
                    ]
                })
                .collect()
        },
    },
    Def {
        name: "pg_proc",
        oid: 1255,
        kind: 'r',
        columns: "oid oid, proname name, pronamespace oid, proowner oid, prolang oid, \
                  procost float4, prorows float4, provariadic oid, prosupport text, prokind char, \
                  prosecdef bool, proleakproof bool, proisstrict bool, proretset bool, \
                  provolatile char, proparallel char, pronargs int2, pronargdefaults int2, \
                  prorettype oid, proargtypes text, proallargtypes oid[], proargmodes text[], \
                  proargnames text[], proargdefaults text, protrftypes oid[], prosrc text, \
                  probin text, prosqlbody text, proconfig text[], proacl text[]",
        rows: |s| {
            s.functions
                .iter()
                .map(|f| {
                    let type_oid = |name: &str| types::by_name(name).map(|t| t.oid).unwrap_or(0);
                    vec![
                        o(f.oid),
                        t(f.name.clone()),
                        o(PUBLIC_NS),
                        o(SUPERUSER_OID),
                        o(WASM_LANGUAGE_OID),
                        V::F32(100.0),
                        V::F32(0.0),
                        o(0),
                        t("-"),
                        c(match f.kind {
                            FunctionKind::Scalar => 'f',
                            FunctionKind::Window => 'w',
                        }),
                        b(false),
                        b(false),
                        b(false),
                        b(false),
                        c(f.volatility.code().chars().next().unwrap_or('v')),
                        c('s'),
                        i2(f.args.len() as i16),
                        i2(0),
                        o(type_oid(&f.returns)),
                        t(f.args
                            .iter()
                            .map(|a| type_oid(a).to_string())
                            .collect::<Vec<_>>()
                            .join(" ")),
                        N,
                        N,
                        if f.arg_names.iter().any(|n| !n.is_empty()) {
                            V::Texts(f.arg_names.clone())
                        } else {
                            N
                        },
                        N,
                        N,
                        t(f.symbol.clone()),
                        N,
                        N,
                        N,
                        N,
                    ]
                })
                .chain(functions::BUILTIN_AGGREGATES.iter().map(|a| {
                    let mut row = vec![o(a.oid), t(a.name), o(PG_CATALOG_NS), o(SUPERUSER_OID)];
                    row.extend([o(12), V::F32(1.0), V::F32(0.0), o(0), t("-"), c('a')]);
                    row.extend([b(false), b(false), b(false), b(false), c('i'), c('s')]);
                    row.extend([i2(1), i2(0), o(a.returns), t(a.arg.to_string())]);
                    row.extend([N, N, N, N, N, t("aggregate_dummy"), N, N, N, N]);
                    row
                }))
                .collect()
        },
    },
    Def {
        name: "pg_am",
        oid: 2601,
        kind: 'r',
        columns: "oid oid, amname name, amhandler text, amtype char",
        rows: |_| {
            let mut rows = vec![
                vec![o(HEAP_AM), t("heap"), t("heap_tableam_handler"), c('t')],
                vec![o(405), t("hash"), t("hashhandler"), c('i')],
            ];
            for k in INDEX_KINDS {
                rows.push(vec![o(index_am(k)), t(k.name()), t("-"), c('i')]);
            }
            rows
        },
    },
    Def {
        name: "pg_database",
        oid: 1262,
        kind: 'r',
        columns: "oid oid, datname name, datdba oid, encoding int4, datlocprovider char, \
                  datistemplate bool, datallowconn bool, datconnlimit int4, datfrozenxid oid, \
                  datminmxid oid, dattablespace oid, datcollate text, datctype text, \
                  daticulocale text, daticurules text, datcollversion text, datacl text[]",
        rows: |s| {
            vec![vec![
                o(DATABASE_OID),
                t(s.identity.database.clone()),
                o(SUPERUSER_OID),
                i4(6),
                c('c'),
                b(false),
                b(true),
                i4(-1),
                o(0),
                o(0),
                o(PG_DEFAULT_TABLESPACE),
                t("C.UTF-8"),
                t("C.UTF-8"),
                N,
                N,
                N,
                N,
            ]]
        },
    },
    Def {
        name: "pg_roles",
        oid: 12001,
        kind: 'v',
        columns: "rolname name, rolsuper bool, rolinherit bool, rolcreaterole bool, \
                  rolcreatedb bool, rolcanlogin bool, rolreplication bool, rolconnlimit int4, \
                  rolpassword text, rolvaliduntil text, rolbypassrls bool, rolconfig text[], \
                  oid oid",
        rows: |s| {
            vec![vec![
                t(s.identity.user.clone()),
                b(true),
                b(true),
                b(true),
                b(true),
                b(true),
                b(true),
                i4(-1),
                t("********"),
                N,
                b(true),
                N,
                o(SUPERUSER_OID),
            ]]
        },
    },
    Def {
        name: "pg_user",
        oid: 12002,
        kind: 'v',
        columns: "usename name, usesysid oid, usecreatedb bool, usesuper bool, userepl bool, \
                  usebypassrls bool, passwd text, valuntil text, useconfig text[]",
        rows: |s| {
            vec![vec![
                t(s.identity.user.clone()),
                o(SUPERUSER_OID),
                b(true),
                b(true),
                b(true),
                b(true),
                t("********"),
                N,
                N,
            ]]
        },
    },
    Def {
        name: "pg_tablespace",
        oid: 1213,
        kind: 'r',
        columns: "oid oid, spcname name, spcowner oid, spcacl text[], spcoptions text[]",
        rows: |_| {
            vec![
                vec![
                    o(PG_DEFAULT_TABLESPACE),
                    t("pg_default"),
                    o(SUPERUSER_OID),
                    N,
                    N,
                ],
                vec![o(1664), t("pg_global"), o(SUPERUSER_OID), N, N],
            ]
        },
    },
    Def {
        name: "pg_extension",
        oid: 3079,
        kind: 'r',
        columns: "oid oid, extname name, extowner oid, extnamespace oid, extrelocatable bool, \
                  extversion text, extconfig oid[], extcondition text[]",
        rows: |_| {
            vec![vec![
                o(VECTOR_EXTENSION_OID),
                t("vector"),
                o(SUPERUSER_OID),
                o(PUBLIC_NS),
                b(true),
                t(crate::session::VECTOR_EXTENSION_VERSION),
                N,
                N,
            ]]
        },
    },
    Def {
        name: "pg_collation",
        oid: 3456,
        kind: 'r',
        columns: "oid oid, collname name, collnamespace oid, collowner oid, collprovider char, \
                  collisdeterministic bool, collencoding int4, collcollate text, collctype text",
        rows: |_| {
            [(100, "default", 'd'), (950, "C", 'c'), (951, "POSIX", 'c')]
                .into_iter()
                .map(|(oid, name, provider)| {
                    vec![
                        o(oid),
                        t(name),
                        o(PG_CATALOG_NS),
                        o(SUPERUSER_OID),
                        c(provider),
                        b(true),
                        i4(-1),
                        t("C"),
                        t("C"),
                    ]
                })
                .collect()
        },
    },
    Def {
        name: "pg_tables",
        oid: 12003,
        kind: 'v',
        columns: "schemaname name, tablename name, tableowner name, tablespace name, \
                  hasindexes bool, hasrules bool, hastriggers bool, rowsecurity bool",
        rows: |s| {
            s.catalog
                .tables
                .values()
                .map(|tb| {
                    vec![
                        t("public"),
                        t(tb.name.clone()),
                        t(s.identity.user.clone()),
                        N,
                        b(s.catalog.indexes_of(&tb.name).next().is_some()),
                        b(false),
                        b(false),
                        b(false),
                    ]
                })
                .collect()
        },
    },
    Def {
        name: "pg_indexes",
        oid: 12004,
        kind: 'v',
        columns: "schemaname name, tablename name, indexname name, tablespace name, indexdef text",
        rows: |s| {
            s.catalog
                .indexes
                .values()
                .map(|i| {
                    vec![
                        t("public"),
                        t(i.table.clone()),
                        t(i.name.clone()),
                        N,
                        t(s.index_definition(i)),
                    ]
                })
                .collect()
        },
    },
    Def {
        name: "pg_views",
        oid: 12005,
        kind: 'v',
        columns: "schemaname name, viewname name, viewowner name, definition text",
        rows: |s| {
            s.catalog
                .views
                .values()
                .map(|v| {
                    vec![
                        t("public"),
                        t(v.name.clone()),
                        t(s.identity.user.clone()),
                        t(format!(" {};", v.query)),
                    ]
                })
                .collect()
        },
    },
    Def {
        name: "pg_matviews",
        oid: 12006,
        kind: 'v',
        columns: "schemaname name, matviewname name, matviewowner name, tablespace name, \
                  hasindexes bool, ispopulated bool, definition text",
        rows: none,
    },
    Def {
        name: "pg_attrdef",
        oid: 2604,
        kind: 'r',
        columns: "oid oid, adrelid oid, adnum int2, adbin text",
        // One row a column with a default; `adbin` holds the expression's
        // text (what `pg_get_expr` returns).
        rows: |s| {
            let mut rows = Vec::new();
            for r in s.relations().into_iter().filter(|r| r.kind == 'r') {
                for (i, a) in r.columns.iter().enumerate() {
                    if let Some(d) = &a.default {
                        rows.push(vec![
                            o(0x7000_0000u32
                                .wrapping_add(r.oid.wrapping_mul(1024))
                                .wrapping_add(i as u32 + 1)),
                            o(r.oid),
                            i2(i as i16 + 1),
                            t(d.clone()),
                        ]);
                    }
                }
            }
            rows
        },
    },
    Def {
        name: "pg_constraint",
        oid: 2606,
        kind: 'r',
        columns: "oid oid, conname name, connamespace oid, contype char, condeferrable bool, \
                  condeferred bool, convalidated bool, conrelid oid, contypid oid, conindid oid, \
                  conparentid oid, confrelid oid, confupdtype char, confdeltype char, \
                  confmatchtype char, conislocal bool, coninhcount int4, connoinherit bool, \
                  conkey int2[], confkey int2[], conpfeqop oid[], conppeqop oid[], \
                  conffeqop oid[], confdelsetcols int2[], conexclop oid[], conbin text",
        rows: |s| {
            s.constraints()
                .into_iter()
                .map(|k| {
                    let fk = k.foreign.as_ref();
                    vec![
                        o(k.oid),
                        t(k.name.clone()),
                        o(PUBLIC_NS),
                        c(k.kind),
                        b(false),
                        b(false),
                        b(true),
                        o(k.table_oid),
                        o(0),
                        o(k.index_oid),
                        o(0),
                        o(fk.map_or(0, |f| f.table_oid)),
                        fk.map_or(c(' '), |_| c('a')),
                        fk.map_or(c(' '), |f| c(f.on_delete)),
                        fk.map_or(c(' '), |_| c('s')),
                        b(true),
                        i4(0),
                        b(true),
                        V::I16s(k.columns.clone()),
                        fk.map_or(N, |f| V::I16s(f.columns.clone())),
                        N,
                        N,
                        N,
                        N,
                        N,
                        N,
                    ]
                })
                .collect()
        },
    },
    Def {
        name: "pg_description",
        oid: 2609,
        kind: 'r',
        columns: "objoid oid, classoid oid, objsubid int4, description text",
        rows: none,
    },
    Def {
        name: "pg_shdescription",
        oid: 2396,
        kind: 'r',
        columns: "objoid oid, classoid oid, description text",
        rows: none,
    },
    Def {
        name: "pg_inherits",
        oid: 2611,
        kind: 'r',
        columns: "inhrelid oid, inhparent oid, inhseqno int4, inhdetachpending bool",
        rows: none,
    },
    Def {
        name: "pg_policy",
        oid: 3256,
        kind: 'r',
        columns: "oid oid, polname name, polrelid oid, polcmd char, polpermissive bool, \
                  polroles oid[], polqual text, polwithcheck text",
        rows: none,
    },
    Def {
        name: "pg_statistic_ext",
        oid: 3381,
        kind: 'r',
        columns: "oid oid, stxrelid oid, stxname name, stxnamespace oid, stxowner oid, \
                  stxstattarget int4, stxkeys int2[], stxkind text[], stxexprs text",
        rows: none,
    },
    Def {
        name: "pg_publication",
        oid: 6104,
        kind: 'r',
        columns: "oid oid, pubname name, pubowner oid, puballtables bool, pubinsert bool, \
                  pubupdate bool, pubdelete bool, pubtruncate bool, pubviaroot bool",
        rows: none,
    },
    Def {
        name: "pg_publication_rel",
        oid: 6106,
        kind: 'r',
        columns: "oid oid, prpubid oid, prrelid oid, prqual text, prattrs int2[]",
        rows: none,
    },
    Def {
        name: "pg_publication_namespace",
        oid: 6237,
        kind: 'r',
        columns: "oid oid, pnpubid oid, pnnspid oid",
        rows: none,
    },
    Def {
        name: "pg_auth_members",
        oid: 1261,
        kind: 'r',
        columns: "oid oid, roleid oid, member oid, grantor oid, admin_option bool, \
                  inherit_option bool, set_option bool",
        rows: none,
    },
    Def {
        name: "pg_depend",
        oid: 2608,
        kind: 'r',
        columns: "classid oid, objid oid, objsubid int4, refclassid oid, refobjid oid, \
                  refobjsubid int4, deptype char",
        // What the built-in `vector` extension holds: its type and its
        // operator classes (psql's `\dx+` lists them).
        rows: |_| {
            let member = |class: u32, oid: u32| {
                vec![
                    o(class),
                    o(oid),
                    i4(0),
                    o(3079),
                    o(VECTOR_EXTENSION_OID),
                    i4(0),
                    c('e'),
                ]
            };
            let mut rows = vec![member(1247, crate::session::VECTOR_TYPE_OID)];
            for kind in INDEX_KINDS {
                for (metric, _) in OPCLASSES {
                    let oid = opclass_oid(kind, Some(metric));
                    if oid != 0 {
                        rows.push(member(2616, oid));
                    }
                }
            }
            rows
        },
    },
    Def {
        name: "pg_language",
        oid: 2612,
        kind: 'r',
        columns: "oid oid, lanname name, lanowner oid, lanispl bool, lanpltrusted bool, \
                  lanplcallfoid oid, laninline oid, lanvalidator oid, lanacl text[]",
        rows: |_| {
            [(12, "internal", false), (13, "c", false), (14, "sql", true)]
                .into_iter()
                .map(|(oid, name, trusted)| (oid, name, false, trusted))
                .chain([(WASM_LANGUAGE_OID, "wasm", true, true)])
                .map(|(oid, name, pl, trusted)| {
                    let mut row = vec![o(oid), t(name), o(SUPERUSER_OID), b(pl), b(trusted)];
                    row.extend([o(0), o(0), o(0), N]);
                    row
                })
                .collect()
        },
    },
    Def {
        name: "pg_trigger",
        oid: 2620,
        kind: 'r',
        columns: "oid oid, tgrelid oid, tgparentid oid, tgname name, tgfoid oid, tgtype int2, \
                  tgenabled char, tgisinternal bool, tgconstrrelid oid, tgconstrindid oid, \
                  tgconstraint oid, tgdeferrable bool, tginitdeferred bool, tgnargs int2",
        rows: none,
    },
    Def {
        name: "pg_rewrite",
        oid: 2618,
        kind: 'r',
        columns: "oid oid, rulename name, ev_class oid, ev_type char, ev_enabled char, \
                  is_instead bool, ev_qual text, ev_action text",
        rows: none,
    },
    Def {
        name: "pg_sequence",
        oid: 2224,
        kind: 'r',
        columns: "seqrelid oid, seqtypid oid, seqstart int8, seqincrement int8, seqmax int8, \
                  seqmin int8, seqcache int8, seqcycle bool",
        rows: none,
    },
    Def {
        name: "pg_enum",
        oid: 3501,
        kind: 'r',
        columns: "oid oid, enumtypid oid, enumsortorder float4, enumlabel name",
        rows: none,
    },
    Def {
        name: "pg_range",
        oid: 3541,
        kind: 'r',
        columns: "rngtypid oid, rngsubtype oid, rngmultitypid oid, rngcollation oid, \
                  rngsubopc oid, rngcanonical text, rngsubdiff text",
        rows: none,
    },
    Def {
        name: "pg_foreign_table",
        oid: 3118,
        kind: 'r',
        columns: "ftrelid oid, ftserver oid, ftoptions text[]",
        rows: none,
    },
    Def {
        name: "pg_settings",
        oid: 12_100,
        kind: 'v',
        columns: "name text, setting text, unit text, category text, short_desc text, \
                  extra_desc text, context text, vartype text, source text, min_val text, \
                  max_val text, enumvals text[], boot_val text, reset_val text, \
                  sourcefile text, sourceline int4, pending_restart bool",
        rows: |s| {
            s.settings
                .all()
                .into_iter()
                .map(|(name, value)| {
                    let quiver = name.starts_with("quiver.");
                    vec![
                        t(name.clone()),
                        t(value.clone()),
                        N,
                        t(if quiver { "Quiver / Search" } else { "Client" }),
                        t(""),
                        N,
                        t("user"),
                        t(if quiver { "integer" } else { "string" }),
                        t("session"),
                        N,
                        N,
                        N,
                        N,
                        N,
                        N,
                        N,
                        b(false),
                    ]
                })
                .collect()
        },
    },
    Def {
        name: "pg_opclass",
        oid: 2616,
        kind: 'r',
        columns: "oid oid, opcmethod oid, opcname name, opcnamespace oid, opcowner oid, \
                  opcfamily oid, opcintype oid, opcdefault bool, opckeytype oid",
        rows: |_| {
            let vector = types::by_name("vector").map(|t| t.oid).unwrap_or(0);
            let mut rows = Vec::new();
            for kind in INDEX_KINDS {
                for (metric, name) in OPCLASSES {
                    let oid = opclass_oid(kind, Some(metric));
                    if oid != 0 {
                        rows.push(vec![
                            o(oid),
                            o(index_am(kind)),
                            t(name),
                            o(PG_CATALOG_NS),
                            o(SUPERUSER_OID),
                            o(oid),
                            o(vector),
                            b(metric == Metric::L2),
                            o(0),
                        ]);
                    }
                }
            }
            rows
        },
    },
    Def {
        name: "pg_stat_user_tables",
        oid: 12_101,
        kind: 'v',
        columns: "relid oid, schemaname name, relname name, seq_scan int8, seq_tup_read int8, \
                  idx_scan int8, idx_tup_fetch int8, n_tup_ins int8, n_tup_upd int8, \
                  n_tup_del int8, n_tup_hot_upd int8, n_live_tup int8, n_dead_tup int8, \
                  n_mod_since_analyze int8, n_ins_since_vacuum int8, last_vacuum text, \
                  last_autovacuum text, last_analyze text, last_autoanalyze text, \
                  vacuum_count int8, autovacuum_count int8, analyze_count int8, \
                  autoanalyze_count int8",
        rows: |s| {
            let mut rows = Vec::new();
            for def in s.catalog.tables.values() {
                // Live rows as the table's manifest and log count them (no scan).
                let live = s
                    .engine
                    .as_ref()
                    .and_then(|e| e.table(&def.name).ok())
                    .map(|t| t.stats().rows as i64);
                let mut row = vec![o(def.oid), t("public"), t(def.name.clone())];
                row.extend((0..8).map(|_| N));
                row.push(live.map_or(N, V::I64));
                row.extend((0..11).map(|_| N));
                rows.push(row);
            }
            rows
        },
    },
    Def {
        name: "pg_stat_activity",
        oid: 12_102,
        kind: 'v',
        columns: "datid oid, datname name, pid int4, leader_pid int4, usesysid oid, \
                  usename name, application_name text, client_addr text, \
                  client_hostname text, client_port int4, backend_start timestamptz, \
                  xact_start timestamptz, query_start timestamptz, state_change timestamptz, \
                  wait_event_type text, wait_event text, state text, backend_xid text, \
                  backend_xmin text, query_id int8, query text, backend_type text",
        rows: |s| {
            let Some(activity) = &s.activity else {
                return Vec::new();
            };
            let micros = |at: std::time::SystemTime| {
                let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                V::Ts(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
            };
            activity
                .rows()
                .into_iter()
                .map(|r| {
                    vec![
                        o(DATABASE_OID),
                        t(r.database),
                        i4(r.pid),
                        N,
                        o(SUPERUSER_OID),
                        t(r.user),
                        t(r.application_name),
                        r.client_addr.map_or(N, V::Text),
                        N,
                        r.client_port.map_or(N, V::I32),
                        micros(r.backend_start),
                        N,
                        r.query_start.map_or(N, micros),
                        micros(r.state_change),
                        N,
                        N,
                        t(r.state),
                        N,
                        N,
                        N,
                        t(r.query),
                        t("client backend"),
                    ]
                })
                .collect()
        },
    },
    Def {
        name: "quiver_stat_statements",
        oid: 12_103,
        kind: 'v',
        columns: "userid oid, dbid oid, toplevel bool, queryid int8, query text, calls int8, \
                  total_exec_time float8, min_exec_time float8, max_exec_time float8, \
                  mean_exec_time float8, stddev_exec_time float8, rows int8",
        rows: |s| {
            let Some(statements) = &s.statements else {
                return Vec::new();
            };
            let ms = |d: std::time::Duration| V::F64(d.as_secs_f64() * 1e3);
            let n = |v: u64| V::I64(i64::try_from(v).unwrap_or(i64::MAX));
            statements
                .entries()
                .into_iter()
                .map(|(text, f)| {
                    vec![
                        o(SUPERUSER_OID),
                        o(DATABASE_OID),
                        b(true),
                        V::I64(crate::stat_statements::query_id(&text)),
                        t(text.to_string()),
                        n(f.calls),
                        ms(f.total),
                        ms(f.min),
                        ms(f.max),
                        ms(f.mean()),
                        V::F64(f.stddev_ms()),
                        n(f.rows),
                    ]
                })
                .collect()
        },
    },
    Def {
        name: "pg_aggregate",
        oid: 2600,
        kind: 'r',
        columns: "aggfnoid oid, aggkind char, aggnumdirectargs int2, aggtransfn oid, \
                  aggfinalfn oid, aggcombinefn oid, aggserialfn oid, aggdeserialfn oid, \
                  aggmtransfn oid, aggminvtransfn oid, aggmfinalfn oid, aggfinalextra bool, \
                  aggmfinalextra bool, aggfinalmodify char, aggmfinalmodify char, \
                  aggsortop oid, aggtranstype oid, aggtransspace int4, aggmtranstype oid, \
                  aggmtransspace int4, agginitval text, aggminitval text",
        rows: |_| {
            functions::BUILTIN_AGGREGATES
                .iter()
                .map(|a| {
                    let mut row = vec![o(a.oid), c('n'), i2(0)];
                    row.extend((0..7).map(|_| o(0)));
                    row.extend([o(0), b(false), b(false), c('r'), c('r'), o(0)]);
                    row.extend([o(a.returns), i4(0), o(0), i4(0), N, N]);
                    row
                })
                .collect()
        },
    },
];

/// PostgreSQL's views of `information_schema` that DataFusion's lacks or
/// shows otherwise, from Quiver's catalog.
const INFORMATION_SCHEMA_DEFS: &[Def] = &[
    Def {
        name: "table_constraints",
        oid: 13_100,
        kind: 'v',
        columns: "constraint_catalog name, constraint_schema name, constraint_name name, \
                  table_catalog name, table_schema name, table_name name, \
                  constraint_type text, is_deferrable text, initially_deferred text, \
                  enforced text, nulls_distinct text",
        rows: |s| {
            let db = s.identity.database.clone();
            s.constraints()
                .into_iter()
                .filter_map(|k| {
                    let table = s.table_by_oid(k.table_oid)?;
                    let kind = match k.kind {
                        'p' => "PRIMARY KEY",
                        'u' => "UNIQUE",
                        'c' => "CHECK",
                        _ => "FOREIGN KEY",
                    };
                    Some(vec![
                        t(db.clone()),
                        t("public"),
                        t(k.name),
                        t(db.clone()),
                        t("public"),
                        t(table.name.clone()),
                        t(kind),
                        t("NO"),
                        t("NO"),
                        t("YES"),
                        if k.kind == 'f' { N } else { t("YES") },
                    ])
                })
                .collect()
        },
    },
    Def {
        name: "columns",
        oid: 13_103,
        kind: 'v',
        columns: "table_catalog name, table_schema name, table_name name, column_name name, \
                  ordinal_position int4, column_default text, is_nullable text, data_type text, \
                  character_maximum_length int4, character_octet_length int4, \
                  numeric_precision int4, numeric_precision_radix int4, numeric_scale int4, \
                  datetime_precision int4, interval_type text, interval_precision int4, \
                  character_set_catalog name, character_set_schema name, \
                  character_set_name name, collation_catalog name, collation_schema name, \
                  collation_name name, domain_catalog name, domain_schema name, \
                  domain_name name, udt_catalog name, udt_schema name, udt_name name, \
                  scope_catalog name, scope_schema name, scope_name name, \
                  maximum_cardinality int4, dtd_identifier name, is_self_referencing text, \
                  is_identity text, identity_generation text, identity_start text, \
                  identity_increment text, identity_maximum text, identity_minimum text, \
                  identity_cycle text, is_generated text, generation_expression text, \
                  is_updatable text",
        rows: |s| {
            let db = s.identity.database.clone();
            let mut rows = Vec::new();
            for r in s.relations() {
                if !matches!(r.kind, 'r' | 'v') {
                    continue;
                }
                let schema = namespace_name(r.namespace);
                for (i, a) in r.columns.iter().enumerate() {
                    let ty = types::by_oid(a.type_oid);
                    let (data_type, udt, udt_schema) = match &ty {
                        Some(t) if t.category == 'A' => ("ARRAY", t.name.to_string(), "pg_catalog"),
                        Some(t) if t.namespace != PG_CATALOG_NS => (
                            "USER-DEFINED",
                            t.name.to_string(),
                            namespace_name(t.namespace),
                        ),
                        Some(t) => (t.sql_name, t.name.to_string(), "pg_catalog"),
                        None => ("USER-DEFINED", String::new(), "pg_catalog"),
                    };
                    // Integers and floats: their precision in bits (radix
                    // 2); numeric(p, s): in decimal digits (radix 10).
                    let (precision, radix, scale) = match a.type_oid {
                        21 => (Some(16), 2, Some(0)),
                        23 => (Some(32), 2, Some(0)),
                        20 => (Some(64), 2, Some(0)),
                        700 => (Some(24), 2, None),
                        701 => (Some(53), 2, None),
                        1700 if a.typmod >= 4 => (
                            Some((a.typmod - 4) >> 16),
                            10,
                            Some((a.typmod - 4) & 0xffff),
                        ),
                        1700 => (None, 10, None),
                        _ => (None, 0, None),
                    };
                    let length = (a.type_oid == 1043 && a.typmod > 4).then(|| a.typmod - 4);
                    let text = ty.as_ref().is_some_and(|t| t.category == 'S');
                    let mut row = vec![
                        t(db.clone()),
                        t(schema),
                        t(r.name.clone()),
                        t(a.name.clone()),
                        i4(i as i32 + 1),
                        a.default.clone().map_or(N, t),
                        t(if a.not_null { "NO" } else { "YES" }),
                        t(data_type),
                        length.map_or(N, i4),
                        if text { i4(1_073_741_824) } else { N },
                        precision.map_or(N, i4),
                        if radix > 0 { i4(radix) } else { N },
                        scale.map_or(N, i4),
                    ];
                    row.extend((0..12).map(|_| N));
                    row.extend([t(db.clone()), t(udt_schema), t(udt)]);
                    row.extend([N, N, N, N, t((i + 1).to_string()), t("NO"), t("NO")]);
                    row.extend((0..6).map(|_| N));
                    row.extend([t("NEVER"), N, t(if r.kind == 'r' { "YES" } else { "NO" })]);
                    rows.push(row);
                }
            }
            rows
        },
    },
    Def {
        name: "key_column_usage",
        oid: 13_101,
        kind: 'v',
        columns: "constraint_catalog name, constraint_schema name, constraint_name name, \
                  table_catalog name, table_schema name, table_name name, column_name name, \
                  ordinal_position int4, position_in_unique_constraint int4",
        rows: |s| {
            let db = s.identity.database.clone();
            let mut rows = Vec::new();
            // Keys and foreign keys: a check constraint uses no key.
            for k in s.constraints().into_iter().filter(|k| k.kind != 'c') {
                let Some(table) = s.table_by_oid(k.table_oid) else {
                    continue;
                };
                for (i, attnum) in k.columns.iter().enumerate() {
                    let Some(column) = table.columns.get(*attnum as usize - 1) else {
                        continue;
                    };
                    rows.push(vec![
                        t(db.clone()),
                        t("public"),
                        t(k.name.clone()),
                        t(db.clone()),
                        t("public"),
                        t(table.name.clone()),
                        t(column.name.clone()),
                        i4(i as i32 + 1),
                        if k.foreign.is_some() {
                            i4(i as i32 + 1)
                        } else {
                            N
                        },
                    ]);
                }
            }
            rows
        },
    },
    Def {
        name: "referential_constraints",
        oid: 13_102,
        kind: 'v',
        columns: "constraint_catalog name, constraint_schema name, constraint_name name, \
                  unique_constraint_catalog name, unique_constraint_schema name, \
                  unique_constraint_name name, match_option text, update_rule text, \
                  delete_rule text",
        rows: |s| {
            let db = s.identity.database.clone();
            let all = s.constraints();
            all.iter()
                .filter_map(|k| {
                    let f = k.foreign.as_ref()?;
                    // The referenced key: the unique constraint on those columns.
                    let key = all.iter().find(|u| {
                        matches!(u.kind, 'p' | 'u')
                            && u.table_oid == f.table_oid
                            && u.columns == f.columns
                    });
                    let rule = match f.on_delete {
                        'r' => "RESTRICT",
                        'c' => "CASCADE",
                        'n' => "SET NULL",
                        _ => "NO ACTION",
                    };
                    Some(vec![
                        t(db.clone()),
                        t("public"),
                        t(k.name.clone()),
                        t(db.clone()),
                        t("public"),
                        key.map_or(N, |u| t(u.name.clone())),
                        t("NONE"),
                        t("NO ACTION"),
                        t(rule),
                    ])
                })
                .collect()
        },
    },
];

/// A namespace's name.
pub(crate) fn namespace_name(oid: u32) -> &'static str {
    match oid {
        PG_CATALOG_NS => "pg_catalog",
        INFORMATION_SCHEMA_NS => "information_schema",
        _ => "public",
    }
}

/// `information_schema`: DataFusion's tables (tables, views, schemata,
/// routines, …), and PostgreSQL's `columns` (with PostgreSQL's type names,
/// where DataFusion's shows Arrow's) and constraint views.
#[derive(Debug)]
pub struct InformationSchema {
    inner: datafusion::catalog::information_schema::InformationSchemaProvider,
    extra: HashMap<&'static str, Arc<CatalogTable>>,
}

impl InformationSchema {
    pub fn new(
        ctx: CatalogContext,
        catalogs: Arc<dyn datafusion::catalog::CatalogProviderList>,
    ) -> InformationSchema {
        InformationSchema {
            inner: datafusion::catalog::information_schema::InformationSchemaProvider::new(
                catalogs,
            ),
            extra: tables_of(INFORMATION_SCHEMA_DEFS, &ctx),
        }
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(self.extra.keys().map(|k| k.to_string()));
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match self.extra.get(name) {
            Some(t) => Ok(Some(t.clone() as Arc<dyn TableProvider>)),
            None => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.extra.contains_key(name) || self.inner.table_exist(name)
    }
}

/// The tables of `defs`, by name.
fn tables_of(defs: &[Def], ctx: &CatalogContext) -> HashMap<&'static str, Arc<CatalogTable>> {
    defs.iter()
        .map(|d| {
            (
                d.name,
                Arc::new(CatalogTable {
                    name: d.name,
                    schema: Arc::new(Schema::new(parse_columns(d.columns))),
                    rows: d.rows,
                    ctx: ctx.clone(),
                }),
            )
        })
        .collect()
}

/// One catalog table, read from the engine's catalog at each scan.
#[derive(Debug)]
pub struct CatalogTable {
    name: &'static str,
    schema: SchemaRef,
    rows: fn(&Snapshot) -> Vec<Vec<V>>,
    ctx: CatalogContext,
}

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rows = (self.rows)(&self.ctx.snapshot());
        let batch = batch(&self.schema, &rows).map_err(|e| e.context(self.name))?;
        let table = MemTable::try_new(self.schema.clone(), vec![vec![batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}

/// The `pg_catalog` schema of one session.
#[derive(Debug)]
pub struct PgCatalogSchema {
    tables: HashMap<&'static str, Arc<CatalogTable>>,
}

impl PgCatalogSchema {
    pub fn new(ctx: CatalogContext) -> PgCatalogSchema {
        PgCatalogSchema {
            tables: tables_of(DEFS, &ctx),
        }
    }

    /// The catalog table `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        self.tables
            .get(name)
            .map(|t| t.clone() as Arc<dyn TableProvider>)
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tables.keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.get(name))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_table_has_a_unique_id_and_rows_of_its_columns() {
        let mut oids: Vec<u32> = DEFS.iter().map(|d| d.oid).collect();
        oids.sort();
        oids.dedup();
        assert_eq!(oids.len(), DEFS.len());
        let snap = Snapshot {
            catalog: Catalog::default(),
            functions: Vec::new(),
            identity: ClientIdentity::default(),
            settings: Arc::default(),
            engine: None,
            activity: Some(Arc::default()),
            statements: Some(Arc::default()),
        };
        if let Some(st) = &snap.statements {
            st.record(&"SELECT $1".into(), std::time::Duration::from_millis(3), 1);
        }
        // A session in pg_stat_activity: its times are timestamps.
        let activity = snap.activity.clone().expect("activity");
        let listed = activity.register(
            42,
            Arc::default(),
            Arc::default(),
            Arc::default(),
            Some(([127, 0, 0, 1], 5000).into()),
        );
        listed.backend.began("SELECT 1");
        for d in DEFS.iter().chain(INFORMATION_SCHEMA_DEFS) {
            let schema = Arc::new(Schema::new(parse_columns(d.columns)));
            let rows = (d.rows)(&snap);
            for r in &rows {
                assert_eq!(r.len(), schema.fields().len(), "{}", d.name);
            }
            batch(&schema, &rows).unwrap_or_else(|e| panic!("{}: {e}", d.name));
        }
    }

    #[test]
    fn identifiers_are_quoted_as_postgres_quotes_them() {
        assert_eq!(quote_ident("docs"), "docs");
        assert_eq!(quote_ident("Docs"), "\"Docs\"");
        assert_eq!(quote_ident("1a"), "\"1a\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
