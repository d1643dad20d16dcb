//! Prepared statements of the extended protocol.
//!
//! A Parse message holds exactly one SQL statement. Quiver keeps the parsed
//! [`Statement`] (not a plan: it is planned again at each Execute, with the
//! bound parameters substituted), the parameter type OIDs the client declared,
//! and — once computed — what [`Session::describe`] said about it, so that a
//! statement prepared once is described once.

use std::sync::Arc;

use arrow::datatypes::DataType;
use async_trait::async_trait;
use pgwire::api::portal::Format;
use pgwire::api::results::FieldInfo;
use pgwire::api::stmt::QueryParser;
use pgwire::api::{ClientInfo, Type};
use pgwire::error::PgWireResult;
use quiver_sql::{Described, Session, Statement, StatusCode};
use tokio::sync::OnceCell;

use crate::errors;
use crate::limits::MAX_MESSAGE_BYTES;
use crate::types::{WireType, declared_arrow_type, oid, pg_type_for_oid};

/// One prepared statement, as stored in pgwire's portal store.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) statement: Statement,
    /// Type OIDs from the Parse message; 0 = unspecified.
    pub(crate) declared_oids: Vec<u32>,
    described: Arc<OnceCell<Described>>,
    /// The Parse message's text (its start: `pg_stat_activity` shows it).
    pub(crate) text: Arc<str>,
}

impl Prepared {
    fn new(statement: Statement, declared_oids: Vec<u32>, text: &str) -> Self {
        Self {
            statement,
            declared_oids,
            described: Arc::new(OnceCell::new()),
            text: quiver_sql::activity::query_text(text).into(),
        }
    }

    /// Parameter and result types, computed on first use.
    pub(crate) async fn describe(&self, session: &Session) -> PgWireResult<&Described> {
        self.described
            .get_or_try_init(|| async {
                let declared: Vec<Option<DataType>> = self
                    .declared_oids
                    .iter()
                    .map(|o| declared_arrow_type(*o))
                    .collect();
                session.describe(&self.statement, &declared).await
            })
            .await
            .map_err(errors::from_sql)
    }

    /// The type OID of parameter `index`: the declared one, else the
    /// described one, else 0 (unknown).
    pub(crate) fn param_oid(&self, index: usize, described: Option<&Described>) -> u32 {
        match self.declared_oids.get(index) {
            Some(declared) if *declared != 0 => *declared,
            _ => {
                let named = described
                    .and_then(|d| d.param_pg_types.get(index).copied().flatten())
                    .and_then(crate::types::text_type_oid);
                named.unwrap_or_else(|| {
                    described.and_then(|d| d.params.get(index)).map_or(0, |dt| {
                        crate::types::array_type_oid(dt)
                            .unwrap_or_else(|| WireType::of(dt).pg_type().oid())
                    })
                })
            }
        }
    }

    /// Whether decoding parameter `index` needs the described types.
    pub(crate) fn needs_described_type(&self, index: usize) -> bool {
        self.declared_oids.get(index).is_none_or(|o| *o == 0)
    }

    /// The types for ParameterDescription: declared types are echoed, the
    /// rest come from `describe`; `text` when neither knows.
    pub(crate) fn parameter_types(&self, described: &Described) -> Vec<Type> {
        let count = self.declared_oids.len().max(described.params.len());
        (0..count)
            .map(|i| match self.param_oid(i, Some(described)) {
                0 => pg_type_for_oid(oid::TEXT),
                o => pg_type_for_oid(o),
            })
            .collect()
    }
}

/// Whether a query string holds no statement at all (only `;` and spaces).
pub(crate) fn is_empty_query(sql: &str) -> bool {
    sql.chars().all(|c| c == ';' || c.is_whitespace())
}

/// Parses the SQL of Parse messages with the connection's session.
pub(crate) struct StatementParser {
    session: Arc<Session>,
}

impl StatementParser {
    pub(crate) fn new(session: Arc<Session>) -> Self {
        Self { session }
    }

    /// Parses one Parse message's SQL; `None` for an empty query (e.g. only
    /// a comment). More than one statement is an error, as in Postgres.
    pub(crate) fn parse(
        &self,
        sql: &str,
        declared_oids: Vec<u32>,
    ) -> PgWireResult<Option<Prepared>> {
        if sql.len() > MAX_MESSAGE_BYTES {
            return Err(errors::status(
                StatusCode::ProgramLimitExceeded,
                format!("query text exceeds the limit of {MAX_MESSAGE_BYTES} bytes"),
            ));
        }
        let mut statements = self.session.parse(sql).map_err(errors::from_sql)?;
        match statements.len() {
            0 => Ok(None),
            1 => Ok(statements
                .pop()
                .map(|statement| Prepared::new(statement, declared_oids, sql))),
            _ => Err(errors::status(
                StatusCode::SyntaxError,
                "cannot insert multiple commands into a prepared statement",
            )),
        }
    }
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let oids = types
            .iter()
            .map(|t| t.as_ref().map_or(0, Type::oid))
            .collect();
        self.parse(sql, oids)
    }

    // The two methods below feed pgwire's default Describe handling, which
    // Quiver replaces (`on_describe` in `extended.rs`) because describing
    // needs the async session. They report only what is known without it.

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt
            .declared_oids
            .iter()
            .map(|o| pg_type_for_oid(*o))
            .collect())
    }

    fn get_result_schema(
        &self,
        _stmt: &Prepared,
        _column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_queries() {
        assert!(is_empty_query(""));
        assert!(is_empty_query(" ;\n; "));
        assert!(!is_empty_query("select 1"));
        assert!(!is_empty_query("';'"));
    }
}
