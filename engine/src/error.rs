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
        if let Some(message) = io_failure(&e) {
            return EngineError::new(ErrorKind::Io, message);
        }
        let kind = match &e {
            lance::Error::InvalidInput { .. } => ErrorKind::InvalidRequest,
            _ => ErrorKind::Internal,
        };
        EngineError::new(kind, format!("storage: {e}"))
    }
}

/// The storage failure behind `e`, if one is (an object store that failed
/// or could not be reached, or a local I/O error): its message, for SQLSTATE
/// 58030. An object store's own error is named rather than Lance's wrapping
/// of it (which carries source locations).
pub fn io_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut found = None;
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(os) = err.downcast_ref::<object_store::Error>() {
            return Some(format!("object storage request failed: {os}"));
        }
        if let Some(l) = err.downcast_ref::<lance::Error>()
            && matches!(l, lance::Error::IO { .. })
            && found.is_none()
        {
            found = Some(format!("storage: {l}"));
        }
        cur = err.source();
    }
    found
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
