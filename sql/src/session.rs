//! INTERFACE SKELETON (being filled in): the API the wire crate builds on.
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::physical_plan::SendableRecordBatchStream;

use crate::error::Result;

/// The type OID Quiver reports for `vector` columns and values.
pub const VECTOR_TYPE_OID: u32 = 16385;

/// The shared database: engine, catalog, registries. One per process.
pub struct Database {}

impl Database {
    /// Opens (or creates) the data directory.
    pub async fn open(_data_dir: &Path) -> Result<Arc<Database>> {
        unimplemented!()
    }
    /// A new session (one per client connection).
    pub fn new_session(self: &Arc<Self>) -> Session {
        unimplemented!()
    }
}

/// One parsed SQL statement; cheap to clone; kept by the wire layer for
/// named prepared statements and planned again at each Execute with parameters.
#[derive(Debug, Clone)]
pub struct Statement {}

impl Statement {
    /// The command tag's first word(s) as Postgres prints them, e.g. "SELECT".
    pub fn kind(&self) -> &str {
        unimplemented!()
    }
}

/// A bound parameter value as received from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Null,
    /// Text format, or any binary value the wire already decoded to text.
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// What Describe reports for a statement.
#[derive(Debug, Clone)]
pub struct Described {
    /// The type of each `$n` parameter (Arrow); `DataType::Utf8` when only text is known.
    /// A vector parameter is reported as `Utf8` (clients send '[..]' text).
    pub params: Vec<DataType>,
    /// The result columns; `None` when the statement returns no rows.
    pub schema: Option<SchemaRef>,
}

/// Format of a COPY stream.
#[derive(Debug, Clone, PartialEq)]
pub enum CopyFormat {
    Text,
    Csv { header: bool, delimiter: u8 },
}

/// A `COPY t FROM STDIN` in progress: the wire collects the data, then calls
/// [`Session::copy_in`].
#[derive(Debug, Clone)]
pub struct CopyIn {
    pub table: String,
    pub columns: Vec<String>,
    pub format: CopyFormat,
}

/// The result of executing one statement.
pub enum Output {
    /// Rows: SELECT, SHOW, EXPLAIN, ... The tag is "SELECT n" once streamed.
    Rows {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
    },
    /// A command without rows, with its complete tag ("CREATE TABLE", "INSERT 0 3", "SET").
    Command { tag: String },
    /// COPY ... FROM STDIN: collect CopyData and call [`Session::copy_in`].
    CopyIn(CopyIn),
    /// COPY ... TO STDOUT: the encoded rows (each a full line) and the column count.
    CopyOut {
        columns: usize,
        format: CopyFormat,
        rows: Vec<Vec<u8>>,
    },
    /// An empty query string.
    Empty,
}

/// One client's session: settings (search knobs) and the DataFusion context.
pub struct Session {}

impl Session {
    /// Splits and parses a query string (may hold several statements).
    /// Parameters `$n` are allowed and stay unbound.
    pub fn parse(&self, _sql: &str) -> Result<Vec<Statement>> {
        unimplemented!()
    }
    /// Parameter and result types of a statement. `declared` are the types the
    /// client declared at Parse (`None` = unspecified).
    pub async fn describe(
        &self,
        _stmt: &Statement,
        _declared: &[Option<DataType>],
    ) -> Result<Described> {
        unimplemented!()
    }
    /// Executes a statement with its bound parameters.
    pub async fn execute(&self, _stmt: &Statement, _params: &[ParamValue]) -> Result<Output> {
        unimplemented!()
    }
    /// Loads the data of a finished COPY FROM STDIN; one atomic commit. Returns rows written.
    pub async fn copy_in(&self, _copy: &CopyIn, _data: &[u8]) -> Result<u64> {
        unimplemented!()
    }
}
