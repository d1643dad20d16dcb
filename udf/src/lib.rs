//! quiver-udf: the WebAssembly host for user functions (re-rankers, scoring).
//!
//! A function module is compiled once ([`WasmFunction::compile`]) and called
//! batch-at-a-time ([`WasmFunction::call`]): the host writes a whole Arrow
//! batch into the guest's memory in the layout documented in [`abi`] and
//! reads back a whole output column. Every call gets a fresh instance from
//! wasmtime's pooling allocator, under an epoch deadline and a memory
//! limiter; a guest has no imports at all (no WASI, no files, no network).
//!
//! The SQL layer (`quiver-sql`) maps [`UdfError`] kinds to SQLSTATEs and wraps
//! functions as DataFusion scalar and window functions; this crate knows
//! nothing of SQL text.

pub mod abi;
mod error;
mod host;
mod layout;

pub use error::UdfError;
pub use host::{Arg, FunctionSpec, Limits, WasmFunction};

use arrow_schema::{DataType, Field};
use std::sync::Arc;

/// The value types of the ABI (see [`abi`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    Bool,
    Int64,
    Float64,
    Text,
    Vector,
}

impl ValueType {
    /// The ABI's type code.
    pub fn code(self) -> u32 {
        match self {
            ValueType::Bool => abi::TYPE_BOOL,
            ValueType::Int64 => abi::TYPE_INT64,
            ValueType::Float64 => abi::TYPE_FLOAT64,
            ValueType::Text => abi::TYPE_TEXT,
            ValueType::Vector => abi::TYPE_VECTOR,
        }
    }

    /// The Arrow type of an output column of this type.
    pub fn data_type(self) -> DataType {
        match self {
            ValueType::Bool => DataType::Boolean,
            ValueType::Int64 => DataType::Int64,
            ValueType::Float64 => DataType::Float64,
            ValueType::Text => DataType::Utf8,
            ValueType::Vector => {
                DataType::List(Arc::new(Field::new("item", DataType::Float32, true)))
            }
        }
    }

    /// The ABI type an Arrow argument is passed as, if it can be.
    pub fn of(data_type: &DataType) -> Option<ValueType> {
        use DataType as D;
        Some(match data_type {
            D::Boolean => ValueType::Bool,
            D::Int64 => ValueType::Int64,
            D::Float64 => ValueType::Float64,
            D::Utf8 | D::LargeUtf8 | D::Utf8View => ValueType::Text,
            D::List(f) | D::LargeList(f) | D::FixedSizeList(f, _)
                if f.data_type() == &D::Float32 =>
            {
                ValueType::Vector
            }
            _ => return None,
        })
    }
}

impl std::fmt::Display for ValueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ValueType::Bool => "bool",
            ValueType::Int64 => "int8",
            ValueType::Float64 => "float8",
            ValueType::Text => "text",
            ValueType::Vector => "vector",
        })
    }
}
