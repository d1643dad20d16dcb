//! quiver-sql: sessions, statement dispatch, the DataFusion context, the
//! `vector_search()` table function, pgvector operators and `pg_catalog`.
//!
//! It turns SQL text into work on the engine and never touches the wire.

pub mod error;
pub mod session;

pub use error::{Result, SqlError, StatusCode};
pub use session::{
    CopyFormat, CopyIn, Database, Described, Output, ParamValue, Session, Statement,
    VECTOR_TYPE_OID,
};
