//! Column types Quiver stores, and how a table definition becomes an Arrow schema.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
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
    /// `vector(n)`: `n` float32 components, stored as a FixedSizeList.
    Vector(u32),
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
            ColumnType::Vector(dim) => vector_type(*dim),
        }
    }

    pub fn vector_dim(&self) -> Option<u32> {
        match self {
            ColumnType::Vector(d) => Some(*d),
            _ => None,
        }
    }
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
}

impl TableDef {
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.ty.arrow_type(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// [`TableDef::arrow_schema`] with every column nullable: rows as
    /// decoded, before defaults are filled and NOT NULL is checked.
    pub fn arrow_schema_with_nulls(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.ty.arrow_type(), true))
                .collect::<Vec<_>>(),
        ))
    }

    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }
}
