//! The sql crate's one error type. Every error carries a [`StatusCode`]; the wire
//! crate owns the single mapping from status codes to SQLSTATE.

use std::fmt;

/// What kind of failure an error is, independent of any protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    /// Malformed SQL (42601).
    SyntaxError,
    /// Unknown table (42P01).
    UndefinedTable,
    /// Unknown column (42703).
    UndefinedColumn,
    /// Unknown function (42883).
    UndefinedFunction,
    /// Unknown index or other named object (42704).
    UndefinedObject,
    /// Table already exists (42P07).
    DuplicateTable,
    /// Index or other object already exists (42710).
    DuplicateObject,
    /// Unparsable literal, e.g. a malformed vector `'[1,2'` (22P02).
    InvalidTextRepresentation,
    /// Value out of range / bad value such as NaN in a vector (22003 / 22023).
    InvalidParameterValue,
    /// Vector dimension or other data mismatch (22000).
    DataException,
    /// Type mismatch, e.g. an index on a non-vector column (42804).
    DatatypeMismatch,
    /// Semantically invalid statement, e.g. unknown SET variable (42704 is used for that).
    UndefinedParameter,
    /// Wrong number or kind of statement arguments (42601-class, 42P02 for params).
    UndefinedParameterRef,
    /// Not supported by Quiver (0A000).
    FeatureNotSupported,
    /// A statement that would exceed a limit (54000).
    ProgramLimitExceeded,
    /// Query was cancelled or timed out (57014).
    QueryCanceled,
    /// Out of memory / resources (53200).
    OutOfMemory,
    /// Storage failure (58030).
    IoError,
    /// Anything else (XX000).
    Internal,
}

/// An error from the SQL layer, with a message a user can act on.
#[derive(Debug, Clone)]
pub struct SqlError {
    pub code: StatusCode,
    pub message: String,
}

impl SqlError {
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SqlError {}

pub type Result<T, E = SqlError> = std::result::Result<T, E>;
