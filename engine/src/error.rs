//! The engine's one error type. Its [`ErrorKind`] tells the sql crate which
//! status code (and so which SQLSTATE) a failure maps to.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    TableNotFound,
    TableExists,
    ColumnNotFound,
    /// A column of that name is in the table already (42701).
    ColumnExists,
    IndexNotFound,
    IndexExists,
    FunctionNotFound,
    FunctionExists,
    /// A value does not fit its column (e.g. wrong vector dimension).
    InvalidData,
    /// A request that cannot be honoured as stated (e.g. an index on a non-vector column).
    InvalidRequest,
    Unsupported,
    /// A request over a configured limit (e.g. a nearest-neighbour k above max_k).
    LimitExceeded,
    /// Transactions waiting for each other's tables (40P01).
    Deadlock,
    /// NULL in a NOT NULL column (23502).
    NotNullViolation,
    /// Rows that share a key a new unique constraint names (23505).
    UniqueViolation,
    /// A key no row of the referenced table has (23503).
    ForeignKeyViolation,
    /// A table definition that cannot be (42P16).
    InvalidDefinition,
    /// Other objects depend on the one a statement would drop (2BP01).
    DependentObjects,
    /// The table was altered or dropped while the statement ran (40001):
    /// nothing of the statement was written, it can be retried.
    Conflict,
    /// The object is busy with another statement's long work, e.g. a
    /// table being resharded (55006).
    InUse,
    /// A lock could not be taken in the time allowed (55P03).
    LockTimeout,
    Io,
    Internal,
}

#[derive(Debug, Clone)]
pub struct EngineError {
    pub kind: ErrorKind,
    pub message: String,
}

impl EngineError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EngineError {}

impl From<lance::Error> for EngineError {
    fn from(e: lance::Error) -> Self {
        let kind = match &e {
            lance::Error::IO { .. } => ErrorKind::Io,
            lance::Error::InvalidInput { .. } => ErrorKind::InvalidRequest,
            _ => ErrorKind::Internal,
        };
        EngineError::new(kind, format!("storage: {e}"))
    }
}

impl From<datafusion::error::DataFusionError> for EngineError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        EngineError::new(ErrorKind::Internal, e.to_string())
    }
}

impl From<arrow::error::ArrowError> for EngineError {
    fn from(e: arrow::error::ArrowError) -> Self {
        EngineError::new(ErrorKind::InvalidData, e.to_string())
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        EngineError::new(ErrorKind::Io, e.to_string())
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// `Err(EngineError)` with a formatted message.
#[macro_export]
macro_rules! engine_err {
    ($kind:ident, $($arg:tt)*) => {
        Err($crate::error::EngineError::new($crate::error::ErrorKind::$kind, format!($($arg)*)))
    };
}
