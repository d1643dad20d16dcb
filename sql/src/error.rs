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
    /// A statement names an object of the wrong kind, e.g. DROP VIEW of a table (42809).
    WrongObjectType,
    /// A column of that name exists already (42701).
    DuplicateColumn,
    /// A concurrent change made the statement fail; retry it (40001).
    SerializationFailure,
    /// Unparsable literal, e.g. a malformed vector `'[1,2'` (22P02).
    InvalidTextRepresentation,
    /// A binary value of the wrong form, e.g. a 4-byte bigint (22P03).
    InvalidBinaryRepresentation,
    /// A COPY stream that is not in its format, e.g. no binary signature (22P04).
    BadCopyFileFormat,
    /// Bad value such as NaN in a vector (22023).
    InvalidParameterValue,
    /// A number out of its type's range, e.g. 99999 for a smallint or a
    /// `numeric(5,2)` (22003).
    NumericValueOutOfRange,
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
    /// A subquery used as an expression returned more than one row (21000).
    CardinalityViolation,
    /// Transactions waiting for each other (40P01).
    DeadlockDetected,
    /// A statement in a transaction block after an error (25P02).
    InFailedTransaction,
    /// A statement not allowed in a transaction block, or not outside one (25001).
    ActiveTransaction,
    /// SAVEPOINT commands outside a transaction block (25P01).
    NoActiveTransaction,
    /// No savepoint of that name (3B001).
    InvalidSavepoint,
    /// A CREATE TABLE that cannot be, e.g. two primary keys (42P16).
    InvalidTableDefinition,
    /// A duplicate key (23505).
    UniqueViolation,
    /// NULL in a NOT NULL column (23502).
    NotNullViolation,
    /// A key with no referenced row, or a referenced row still referenced (23503).
    ForeignKeyViolation,
    /// A row for which a CHECK constraint is false (23514).
    CheckViolation,
    /// A foreign key whose referenced columns are no key (42830).
    InvalidForeignKey,
    /// A value too long for its type, e.g. `varchar(3)` given `'abcd'` (22001).
    StringDataRightTruncation,
    /// A jsonpath that had to yield one item did not (22038).
    SingletonJsonItemRequired,
    /// A DROP of an object others depend on, without CASCADE (2BP01).
    DependentObjectsStillExist,
    /// A reference that matches nothing it must, e.g. an ON CONFLICT target (42P10).
    InvalidColumnReference,
    /// A database that does not exist (3D000).
    InvalidCatalogName,
    /// Query was cancelled or timed out (57014).
    QueryCanceled,
    /// The connection is being closed by `pg_terminate_backend` (57P01).
    AdminShutdown,
    /// Out of memory, or a function's memory limit (53200).
    OutOfMemory,
    /// Not enough of some resource right now, e.g. function instance slots (53000).
    InsufficientResources,
    /// Recursion too deep, e.g. a WebAssembly function's stack (54001).
    StackDepthExceeded,
    /// A function of that name exists (42723).
    DuplicateFunction,
    /// A CREATE FUNCTION whose module or signature is unusable (42P13).
    InvalidFunctionDefinition,
    /// A user function failed: a trap or its own error (38000).
    ExternalRoutineException,
    /// A user function broke the calling convention, e.g. a bad result (39000).
    ExternalRoutineInvocationException,
    /// An object busy with other work, e.g. a table being resharded (55006).
    ObjectInUse,
    /// A lock not taken in the time allowed (55P03).
    LockNotAvailable,
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

impl From<quiver_engine::EngineError> for SqlError {
    fn from(e: quiver_engine::EngineError) -> Self {
        use quiver_engine::ErrorKind as K;
        let code = match e.kind {
            K::TableNotFound => StatusCode::UndefinedTable,
            K::TableExists => StatusCode::DuplicateTable,
            K::ColumnNotFound => StatusCode::UndefinedColumn,
            K::ColumnExists => StatusCode::DuplicateColumn,
            K::IndexNotFound => StatusCode::UndefinedObject,
            K::IndexExists => StatusCode::DuplicateObject,
            K::FunctionNotFound => StatusCode::UndefinedFunction,
            K::FunctionExists => StatusCode::DuplicateFunction,
            K::InvalidData => StatusCode::DataException,
            K::InvalidRequest => StatusCode::DatatypeMismatch,
            K::Unsupported => StatusCode::FeatureNotSupported,
            K::LimitExceeded => StatusCode::ProgramLimitExceeded,
            K::Deadlock => StatusCode::DeadlockDetected,
            K::NotNullViolation => StatusCode::NotNullViolation,
            K::UniqueViolation => StatusCode::UniqueViolation,
            K::ForeignKeyViolation => StatusCode::ForeignKeyViolation,
            K::InvalidDefinition => StatusCode::InvalidTableDefinition,
            K::DependentObjects => StatusCode::DependentObjectsStillExist,
            K::Conflict => StatusCode::SerializationFailure,
            K::InUse => StatusCode::ObjectInUse,
            K::LockTimeout => StatusCode::LockNotAvailable,
            K::Io => StatusCode::IoError,
            K::Internal => StatusCode::Internal,
        };
        SqlError::new(code, e.message)
    }
}

impl From<datafusion::error::DataFusionError> for SqlError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        SqlError::from_datafusion(&e)
    }
}

impl SqlError {
    /// The status code and message of a DataFusion error. Errors raised by
    /// Quiver's own code travel through DataFusion as `External` (possibly
    /// wrapped in context): an `SqlError` or `EngineError` anywhere in the
    /// source chain keeps its status; otherwise the kind of the root decides.
    pub fn from_datafusion(e: &datafusion::error::DataFusionError) -> SqlError {
        use datafusion::arrow::error::ArrowError as A;
        use datafusion::error::DataFusionError as D;
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = source {
            if let Some(sql) = err.downcast_ref::<SqlError>() {
                return sql.clone();
            }
            if let Some(en) = err.downcast_ref::<quiver_engine::EngineError>() {
                return SqlError::from(quiver_engine::EngineError::new(
                    en.kind,
                    en.message.clone(),
                ));
            }
            source = err.source();
        }
        if let Some(message) = quiver_engine::error::io_failure(e) {
            return SqlError::from(quiver_engine::EngineError::new(
                quiver_engine::ErrorKind::Io,
                message,
            ));
        }
        let root = e.find_root();
        let code = match root {
            D::SQL(..) => StatusCode::SyntaxError,
            D::SchemaError(err, _) => match err.as_ref() {
                datafusion::common::SchemaError::FieldNotFound { .. } => {
                    StatusCode::UndefinedColumn
                }
                _ => StatusCode::SyntaxError,
            },
            D::Plan(msg) if msg.contains("table") && msg.contains("not found") => {
                StatusCode::UndefinedTable
            }
            D::Plan(msg) | D::Execution(msg)
                if msg.contains("Invalid function")
                    || msg.contains("not found in registry")
                    || msg.contains("No function matches the given name") =>
            {
                StatusCode::UndefinedFunction
            }
            D::Plan(_) => StatusCode::SyntaxError,
            D::NotImplemented(_) => StatusCode::FeatureNotSupported,
            D::ResourcesExhausted(_) => StatusCode::OutOfMemory,
            D::IoError(_) | D::ObjectStore(_) => StatusCode::IoError,
            D::ArrowError(arrow, _) => match arrow.as_ref() {
                A::CastError(_) | A::ParseError(_) => StatusCode::InvalidTextRepresentation,
                A::DivideByZero | A::ArithmeticOverflow(_) => StatusCode::DataException,
                A::MemoryError(_) => StatusCode::OutOfMemory,
                A::IoError(..) => StatusCode::IoError,
                _ => StatusCode::Internal,
            },
            _ => StatusCode::Internal,
        };
        let message = match root {
            // `message()` appends a "please file a bug report" paragraph to internal errors.
            D::Internal(desc) => desc.clone(),
            other => other.message().into_owned(),
        };
        // A user function's own coercion message, without DataFusion's wrapping.
        const COERCION: &str = "coercion failed with: External error: ";
        let message = match message.find(COERCION) {
            Some(at) => {
                let inner = &message[at + COERCION.len()..];
                inner[..inner.find(". No function matches").unwrap_or(inner.len())].to_string()
            }
            None => message,
        };
        SqlError::new(code, message)
    }
}

impl From<datafusion::arrow::error::ArrowError> for SqlError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        SqlError::new(StatusCode::DataException, e.to_string())
    }
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for SqlError {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        let msg = e.to_string();
        SqlError::new(
            StatusCode::SyntaxError,
            msg.strip_prefix("sql parser error: ")
                .unwrap_or(&msg)
                .to_string(),
        )
    }
}

/// `Err(SqlError)` with a status code and a formatted message.
#[macro_export]
macro_rules! sql_err {
    ($code:ident, $($arg:tt)*) => {
        Err($crate::error::SqlError::new($crate::error::StatusCode::$code, format!($($arg)*)))
    };
}

pub type Result<T, E = SqlError> = std::result::Result<T, E>;
