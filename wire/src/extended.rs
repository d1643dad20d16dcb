//! The extended query protocol: Parse / Bind / Describe / Execute / Close /
//! Sync.
//!
//! pgwire drives the message flow, keeps named and unnamed statements and
//! portals, implements Bind, Close and Sync, the skip-until-Sync rule after an
//! error, and `Execute` with a row limit (it suspends the portal's row stream
//! and answers PortalSuspended). Quiver supplies:
//!
//! - Parse: exactly one statement, kept with its declared parameter OIDs
//!   (`prepared.rs`); an empty query is stored as an empty statement.
//! - Describe: ParameterDescription from [`Session::describe`]
//!   (`quiver_sql::Session`), then RowDescription — or NoData for a statement
//!   without rows. pgwire's default would send an empty RowDescription for a
//!   statement with parameters and no rows, hence the override.
//! - Bind and Execute: pgwire's, with their replies left in the write buffer
//!   for Sync (`deferred.rs`): one socket write per round, as PostgreSQL does.
//! - Execute: parameters decoded (`params.rs`), the statement planned and run
//!   with them, and rows encoded in the per-column formats the Bind asked for.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{CopyResponse, FieldFormat, QueryResponse, Response, Tag};
use pgwire::api::stmt::StoredStatement;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Describe, Execute, Parse, ParseComplete, Sync as PgSync,
    TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use quiver_sql::{Described, Output, ParamValue, StatusCode};

use crate::cancel::cancellable;
use crate::connection::{Connection, wire_status};
use crate::copy::send_copy_out;
use crate::deferred::Deferred;
use crate::encode::{field_infos, result_formats, row_description, row_stream};
use crate::errors;
use crate::limits::MAX_MESSAGE_BYTES;
use crate::params::decode_param;
use crate::prepared::{Prepared, StatementParser, is_empty_query};

/// Whether bind parameter `index` is in binary format.
fn param_is_binary(format: &Format, index: usize) -> bool {
    match format {
        Format::UnifiedText => false,
        Format::UnifiedBinary => true,
        Format::Individual(codes) => codes.get(index).is_some_and(|c| *c == 1),
    }
}

/// The response for a command tag, telling pgwire about transaction blocks.
fn command_response(tag: String) -> Response {
    let word = tag.split_whitespace().next().unwrap_or_default();
    match word {
        "BEGIN" | "START" => Response::TransactionStart(Tag::new(&tag)),
        "COMMIT" | "ROLLBACK" | "END" | "ABORT" => Response::TransactionEnd(Tag::new(&tag)),
        _ => Response::Execution(Tag::new(&tag)),
    }
}

impl Connection {
    /// Decodes a portal's parameters; describes the statement first when a
    /// binary parameter's type was not declared at Parse.
    async fn bind_params(&self, portal: &Portal<Prepared>) -> PgWireResult<Vec<ParamValue>> {
        let prepared = &portal.statement.statement;
        let params = &portal.parameters;
        if let Format::Individual(codes) = &portal.parameter_format
            && codes.len() != params.len()
        {
            return Err(errors::protocol_violation(format!(
                "bind message has {} parameter formats but {} parameters",
                codes.len(),
                params.len()
            )));
        }
        let total: usize = params.iter().flatten().map(|p| p.len()).sum();
        if total > MAX_MESSAGE_BYTES {
            return Err(errors::status(
                StatusCode::ProgramLimitExceeded,
                format!("bind parameters exceed the limit of {MAX_MESSAGE_BYTES} bytes"),
            ));
        }
        let binary: Vec<bool> = (0..params.len())
            .map(|i| param_is_binary(&portal.parameter_format, i))
            .collect();
        let needs_types = (0..params.len()).any(|i| binary[i] && prepared.needs_described_type(i));
        let described: Option<&Described> = if needs_types {
            Some(prepared.describe(&self.session).await?)
        } else {
            None
        };
        params
            .iter()
            .enumerate()
            .map(|(i, value)| {
                decode_param(
                    value.as_deref(),
                    binary[i],
                    prepared.param_oid(i, described),
                )
                .map_err(|e| errors::status(e.code, format!("parameter ${}: {}", i + 1, e.message)))
            })
            .collect()
    }

    /// RowDescription for a result schema, or NoData without one.
    async fn send_row_shape<C>(
        client: &mut C,
        described: &Described,
        format: Option<&Format>,
    ) -> PgWireResult<()>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match &described.schema {
            Some(schema) => {
                let columns = schema.fields().len();
                let formats = match format {
                    Some(format) => result_formats(format, columns)?,
                    // Describe statement: formats are not known yet (zero).
                    None => vec![FieldFormat::Text; columns],
                };
                let fields = field_infos(schema, &formats);
                client
                    .feed(PgWireBackendMessage::RowDescription(row_description(
                        &fields,
                    )))
                    .await?;
            }
            None => {
                client
                    .feed(PgWireBackendMessage::NoData(NoData::new()))
                    .await?
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Prepared;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<StatementParser> {
        Arc::clone(&self.parser)
    }

    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.identify(client);
        let name = message.name.unwrap_or_else(|| DEFAULT_NAME.to_owned());
        let parsed = if is_empty_query(&message.query) {
            None
        } else {
            self.parser
                .parse(&message.query, message.type_oids.clone())?
        };
        match parsed {
            Some(prepared) => {
                let types = message
                    .type_oids
                    .iter()
                    .map(|o| Type::from_oid(*o))
                    .collect();
                if !name.is_empty() {
                    let mut names = match self.prepared_names.lock() {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                    names.insert(name.clone());
                }
                let stored = StoredStatement::new(name, prepared, types);
                client.portal_store().put_statement(Arc::new(stored));
            }
            None => client.portal_store().put_empty_statement(&name),
        }
        client
            .feed(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    /// The portal, and BindComplete left for Sync to write (see `deferred.rs`).
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        match client.portal_store().get_statement(statement) {
            Some(Entry::Value(stored)) => {
                let portal = Portal::try_new(&message, stored)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) if message.parameters.is_empty() => {
                let portal = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
                client.portal_store().put_empty_portal(portal);
            }
            Some(Entry::Empty) => {
                return Err(errors::protocol_violation(format!(
                    "bind message supplies {} parameters, but prepared statement \"{statement}\" requires 0",
                    message.parameters.len()
                )));
            }
            None => return Err(PgWireError::StatementNotFound(statement.to_owned())),
        }
        client
            .feed(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    /// pgwire's Execute, its replies left for Sync to write — except a COPY
    /// FROM STDIN's CopyInResponse, which the client waits for.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let interrupt = self.session.interrupt();
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let statement = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) => {
                self.session
                    .statement_began(&portal.statement.statement.text);
                Some(portal.statement.statement.statement.clone())
            }
            _ => None,
        };
        let started = std::time::Instant::now();
        let mut deferred = Deferred(&mut *client);
        let ran = cancellable(&interrupt, self._on_execute(&mut deferred, message)).await;
        let copying = matches!(client.state(), PgWireConnectionState::CopyInProgress(_));
        let written = self.written.swap(0, std::sync::atomic::Ordering::Relaxed);
        match (&statement, &ran) {
            // A COPY FROM STDIN is timed until its CopyDone (`copy.rs`).
            (Some(_), Ok(())) if copying => {}
            (Some(s), Ok(())) => self.statement_done(s, started, written),
            (Some(s), Err(_)) => self.statement_failed(s),
            (None, _) => {}
        }
        if !copying {
            self.session.statement_ended();
        }
        ran?;
        if copying {
            client.flush().await?;
        }
        Ok(())
    }

    /// ReadyForQuery with the session's transaction status. An error pgwire
    /// reported itself (a row that failed while streaming) left the client's
    /// status failed: inside a block, that fails the block.
    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if client.transaction_status() == TransactionStatus::Error {
            self.session.statement_failed().await;
        }
        client.set_transaction_status(wire_status(self.session.transaction_status()));
        client.portal_store().rm_portal(DEFAULT_NAME);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                client.transaction_status(),
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => match client.portal_store().get_statement(name) {
                Some(Entry::Value(stored)) => {
                    let prepared = &stored.statement;
                    let described = prepared.describe(&self.session).await?;
                    let oids = prepared
                        .parameter_types(described)
                        .iter()
                        .map(Type::oid)
                        .collect();
                    let params = ParameterDescription::new(oids);
                    client
                        .feed(PgWireBackendMessage::ParameterDescription(params))
                        .await?;
                    Self::send_row_shape(client, described, None).await
                }
                Some(Entry::Empty) => {
                    let params = ParameterDescription::new(vec![]);
                    client
                        .feed(PgWireBackendMessage::ParameterDescription(params))
                        .await?;
                    client
                        .feed(PgWireBackendMessage::NoData(NoData::new()))
                        .await?;
                    Ok(())
                }
                None => Err(PgWireError::StatementNotFound(name.to_owned())),
            },
            TARGET_TYPE_BYTE_PORTAL => match client.portal_store().get_portal(name) {
                Some(Entry::Value(portal)) => {
                    let described = portal.statement.statement.describe(&self.session).await?;
                    Self::send_row_shape(client, described, Some(&portal.result_column_format))
                        .await
                }
                Some(Entry::Empty) => {
                    client
                        .feed(PgWireBackendMessage::NoData(NoData::new()))
                        .await?;
                    Ok(())
                }
                None => Err(PgWireError::PortalNotFound(name.to_owned())),
            },
            other => Err(PgWireError::InvalidTargetType(other)),
        }
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let params = self.bind_params(portal).await?;
        let output = self
            .session
            .execute(&portal.statement.statement.statement, &params)
            .await
            .map_err(errors::from_sql)?;
        for n in self.session.take_notices() {
            client.feed(errors::notice(n)).await?;
        }
        Ok(match output {
            Output::Rows { schema, stream } => {
                let formats = result_formats(&portal.result_column_format, schema.fields().len())?;
                let fields = Arc::new(field_infos(&schema, &formats));
                // Counted as pgwire sends them (`quiver_stat_statements`' rows).
                let returned = Arc::clone(&self.returned);
                let rows = row_stream(stream, &schema, formats).inspect(move |_| {
                    returned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                });
                Response::Query(QueryResponse::new(fields, rows))
            }
            Output::Command { tag } => {
                let rows = crate::connection::rows_written(&tag);
                self.written
                    .store(rows, std::sync::atomic::Ordering::Relaxed);
                command_response(tag)
            }
            Output::CopyIn(copy) => {
                let columns = copy.columns.len();
                self.copy.begin(copy, vec![]);
                Response::CopyIn(CopyResponse::new(0, columns, stream::empty()))
            }
            Output::CopyOut {
                columns,
                format,
                rows,
            } => {
                let count = send_copy_out(client, columns, &format, rows).await?;
                Response::Execution(Tag::new("COPY").with_rows(count))
            }
            Output::Empty => Response::EmptyQuery,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_formats() {
        assert!(!param_is_binary(&Format::UnifiedText, 3));
        assert!(param_is_binary(&Format::UnifiedBinary, 0));
        let mixed = Format::Individual(vec![0, 1]);
        assert!(!param_is_binary(&mixed, 0));
        assert!(param_is_binary(&mixed, 1));
        assert!(!param_is_binary(&mixed, 2));
    }

    #[test]
    fn transaction_tags_become_transaction_responses() {
        assert!(matches!(
            command_response("BEGIN".into()),
            Response::TransactionStart(_)
        ));
        assert!(matches!(
            command_response("COMMIT".into()),
            Response::TransactionEnd(_)
        ));
        assert!(matches!(
            command_response("ROLLBACK".into()),
            Response::TransactionEnd(_)
        ));
        assert!(matches!(
            command_response("INSERT 0 1".into()),
            Response::Execution(_)
        ));
    }
}
