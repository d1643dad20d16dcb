//! Errors on the wire: the single mapping from [`StatusCode`] to SQLSTATE,
//! conversions from the sql crate's and DataFusion's errors into ErrorResponse
//! fields, and the rewrite of pgwire's own protocol errors into Postgres'
//! codes and wording.
//!
//! Every error is sent with severity `ERROR`: the connection stays usable.
//! A user sees the error message, never a Rust type name or a backtrace.

use datafusion::error::DataFusionError;
use pgwire::api::{ClientInfo, DEFAULT_NAME, ErrorHandler};
use pgwire::error::{ErrorInfo, PgWireError};
use quiver_sql::{SqlError, StatusCode};

/// SQLSTATE for "protocol violation".
pub(crate) const PROTOCOL_VIOLATION: &str = "08P01";
/// SQLSTATE for an unknown prepared statement.
pub(crate) const INVALID_SQL_STATEMENT_NAME: &str = "26000";
/// SQLSTATE for an unknown portal.
pub(crate) const INVALID_CURSOR_NAME: &str = "34000";

/// The one place status codes become SQLSTATEs.
pub fn sqlstate(code: StatusCode) -> &'static str {
    match code {
        StatusCode::SyntaxError => "42601",
        StatusCode::UndefinedTable => "42P01",
        StatusCode::UndefinedColumn => "42703",
        StatusCode::UndefinedFunction => "42883",
        StatusCode::UndefinedObject => "42704",
        StatusCode::DuplicateTable => "42P07",
        StatusCode::DuplicateObject => "42710",
        StatusCode::DuplicateColumn => "42701",
        StatusCode::WrongObjectType => "42809",
        StatusCode::SerializationFailure => "40001",
        StatusCode::InvalidTextRepresentation => "22P02",
        StatusCode::InvalidBinaryRepresentation => "22P03",
        StatusCode::DeadlockDetected => "40P01",
        StatusCode::ObjectInUse => "55006",
        StatusCode::LockNotAvailable => "55P03",
        StatusCode::InFailedTransaction => "25P02",
        StatusCode::ActiveTransaction => "25001",
        StatusCode::NoActiveTransaction => "25P01",
        StatusCode::InvalidSavepoint => "3B001",
        StatusCode::InvalidTableDefinition => "42P16",
        StatusCode::UniqueViolation => "23505",
        StatusCode::ForeignKeyViolation => "23503",
        StatusCode::CheckViolation => "23514",
        StatusCode::InvalidForeignKey => "42830",
        StatusCode::StringDataRightTruncation => "22001",
        StatusCode::SingletonJsonItemRequired => "22038",
        StatusCode::DependentObjectsStillExist => "2BP01",
        StatusCode::NotNullViolation => "23502",
        StatusCode::InvalidColumnReference => "42P10",
        StatusCode::BadCopyFileFormat => "22P04",
        StatusCode::InvalidParameterValue => "22023",
        StatusCode::NumericValueOutOfRange => "22003",
        StatusCode::DataException => "22000",
        StatusCode::DatatypeMismatch => "42804",
        StatusCode::UndefinedParameter => "42704",
        StatusCode::UndefinedParameterRef => "42P02",
        StatusCode::FeatureNotSupported => "0A000",
        StatusCode::ProgramLimitExceeded => "54000",
        StatusCode::CardinalityViolation => "21000",
        StatusCode::InvalidCatalogName => "3D000",
        StatusCode::QueryCanceled => "57014",
        StatusCode::AdminShutdown => "57P01",
        StatusCode::OutOfMemory => "53200",
        StatusCode::InsufficientResources => "53000",
        StatusCode::StackDepthExceeded => "54001",
        StatusCode::DuplicateFunction => "42723",
        StatusCode::InvalidFunctionDefinition => "42P13",
        StatusCode::ExternalRoutineException => "38000",
        StatusCode::ExternalRoutineInvocationException => "39000",
        StatusCode::IoError => "58030",
        StatusCode::Internal => "XX000",
    }
}

/// ErrorResponse fields are NUL-terminated on the wire: a NUL inside a
/// message (e.g. echoed from a bad binary parameter) would corrupt the
/// framing, so it is shown as `\0`.
fn wire_safe(message: String) -> String {
    if message.contains('\0') {
        message.replace('\0', "\\0")
    } else {
        message
    }
}

fn error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        wire_safe(message),
    )))
}

/// A WARNING NoticeResponse (SQLSTATE 01000) carrying `message`.
pub(crate) fn notice(n: quiver_sql::session::Notice) -> pgwire::messages::PgWireBackendMessage {
    let (severity, code) = match n.warning {
        true => ("WARNING", "01000"),
        false => ("NOTICE", "00000"),
    };
    pgwire::messages::PgWireBackendMessage::NoticeResponse(
        ErrorInfo::new(severity.to_owned(), code.to_owned(), wire_safe(n.message)).into(),
    )
}

/// An ErrorResponse for a sql-crate error.
pub(crate) fn from_sql(e: SqlError) -> PgWireError {
    error(sqlstate(e.code), e.message)
}

/// An ErrorResponse with a status code and message.
pub(crate) fn status(code: StatusCode, message: impl Into<String>) -> PgWireError {
    error(sqlstate(code), message.into())
}

/// An ErrorResponse for a protocol violation (08P01).
pub(crate) fn protocol_violation(message: impl Into<String>) -> PgWireError {
    error(PROTOCOL_VIOLATION, message.into())
}

/// An ErrorResponse for an error raised while executing a plan (usually while
/// streaming rows). A [`SqlError`] anywhere in the source chain keeps its
/// status code; otherwise the kind of the root DataFusion error decides.
pub(crate) fn from_datafusion(e: &DataFusionError) -> PgWireError {
    from_sql(SqlError::from_datafusion(e))
}

fn display_name(name: &str) -> &str {
    if name == DEFAULT_NAME { "" } else { name }
}

/// Rewrites pgwire's own errors (unknown portal / statement, ...) into
/// Postgres' SQLSTATEs and wording, logs every error at debug level, and
/// counts it in the metrics by SQLSTATE class (the errors of the extended
/// protocol and COPY; the simple protocol counts its own where it sends them).
#[derive(Debug)]
pub(crate) struct ErrorRewriter(pub(crate) std::sync::Arc<quiver_sql::metrics::Metrics>);

impl ErrorHandler for ErrorRewriter {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        let rewritten = match &*error {
            PgWireError::PortalNotFound(name) => Some(self::error(
                INVALID_CURSOR_NAME,
                format!("portal \"{}\" does not exist", display_name(name)),
            )),
            PgWireError::StatementNotFound(name) => Some(self::error(
                INVALID_SQL_STATEMENT_NAME,
                format!(
                    "prepared statement \"{}\" does not exist",
                    display_name(name)
                ),
            )),
            PgWireError::QueryCanceled => Some(status(
                StatusCode::QueryCanceled,
                "canceling statement due to user request",
            )),
            _ => None,
        };
        if let Some(rewritten) = rewritten {
            *error = rewritten;
        }
        if let PgWireError::UserError(info) = error {
            info.message = wire_safe(std::mem::take(&mut info.message));
            self.0.error(&info.code);
        } else {
            self.0.error(error.code());
        }
        tracing::debug!(peer = %client.socket_addr(), error = %error, "error sent to client");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::error::ArrowError;

    fn info(e: PgWireError) -> ErrorInfo {
        ErrorInfo::from(e)
    }

    #[test]
    fn every_status_code_has_its_sqlstate() {
        let expected = [
            (StatusCode::SyntaxError, "42601"),
            (StatusCode::UndefinedTable, "42P01"),
            (StatusCode::UndefinedColumn, "42703"),
            (StatusCode::UndefinedFunction, "42883"),
            (StatusCode::UndefinedObject, "42704"),
            (StatusCode::DuplicateTable, "42P07"),
            (StatusCode::DuplicateObject, "42710"),
            (StatusCode::DuplicateColumn, "42701"),
            (StatusCode::WrongObjectType, "42809"),
            (StatusCode::SerializationFailure, "40001"),
            (StatusCode::InvalidTextRepresentation, "22P02"),
            (StatusCode::InvalidParameterValue, "22023"),
            (StatusCode::NumericValueOutOfRange, "22003"),
            (StatusCode::DataException, "22000"),
            (StatusCode::DatatypeMismatch, "42804"),
            (StatusCode::UndefinedParameter, "42704"),
            (StatusCode::UndefinedParameterRef, "42P02"),
            (StatusCode::FeatureNotSupported, "0A000"),
            (StatusCode::ProgramLimitExceeded, "54000"),
            (StatusCode::CardinalityViolation, "21000"),
            (StatusCode::QueryCanceled, "57014"),
            (StatusCode::CheckViolation, "23514"),
            (StatusCode::OutOfMemory, "53200"),
            (StatusCode::IoError, "58030"),
            (StatusCode::Internal, "XX000"),
        ];
        for (code, state) in expected {
            assert_eq!(sqlstate(code), state, "{code:?}");
        }
    }

    #[test]
    fn nul_bytes_never_reach_the_wire() {
        let e = info(status(StatusCode::Internal, "cannot cast '\0\0\x07'"));
        assert_eq!(e.message, "cannot cast '\\0\\0\x07'");
    }

    #[test]
    fn sql_errors_keep_code_and_message() {
        let e = info(from_sql(SqlError::new(
            StatusCode::UndefinedTable,
            "relation \"nope\" does not exist",
        )));
        assert_eq!(e.severity, "ERROR");
        assert_eq!(e.code, "42P01");
        assert_eq!(e.message, "relation \"nope\" does not exist");
    }

    #[test]
    fn sql_error_inside_datafusion_error_keeps_its_code() {
        let inner = SqlError::new(StatusCode::DataException, "dimension mismatch: 3 vs 4");
        let df = DataFusionError::External(Box::new(inner)).context("while scanning");
        let e = info(from_datafusion(&df));
        assert_eq!(e.code, "22000");
        assert_eq!(e.message, "dimension mismatch: 3 vs 4");
    }

    #[test]
    fn datafusion_errors_are_classified() {
        let cases = [
            (DataFusionError::ResourcesExhausted("pool".into()), "53200"),
            (DataFusionError::NotImplemented("x".into()), "0A000"),
            (
                DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None),
                "22000",
            ),
            (DataFusionError::Execution("boom".into()), "XX000"),
        ];
        for (df, state) in cases {
            assert_eq!(info(from_datafusion(&df)).code, state, "{df}");
        }
        let e = info(from_datafusion(&DataFusionError::Internal("bad".into())));
        assert_eq!(e.message, "bad");
    }

    #[test]
    fn unknown_portal_and_statement_use_postgres_codes() {
        let client = pgwire::api::DefaultClient::<()>::new("127.0.0.1:1".parse().unwrap(), false);
        let rewriter = ErrorRewriter(std::sync::Arc::new(quiver_sql::metrics::Metrics::new(1)));
        let mut e = PgWireError::PortalNotFound("p1".into());
        rewriter.on_error(&client, &mut e);
        let e = info(e);
        assert_eq!(e.code, "34000");
        assert_eq!(e.message, "portal \"p1\" does not exist");

        let mut e = PgWireError::StatementNotFound(DEFAULT_NAME.into());
        rewriter.on_error(&client, &mut e);
        let e = info(e);
        assert_eq!(e.code, "26000");
        assert_eq!(e.message, "prepared statement \"\" does not exist");
    }
}
