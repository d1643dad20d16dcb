//! The simple query protocol: one Query message, possibly several statements.
//!
//! Statements run one after the other, each result written in full (text
//! format) before the next statement starts, so a later statement sees the
//! effects of an earlier one and rows are never produced ahead of time. The
//! first error is sent as ErrorResponse and the rest of the message is
//! skipped, as in Postgres. A `COPY ... FROM STDIN` switches the connection to
//! copy-in mode; the statements after it run once the copy is done
//! (`copy.rs`). ReadyForQuery ends every Query that is not left in copy mode.
//!
//! pgwire's default `on_query` collects all statements' responses before
//! sending any of them, which would run later statements before earlier ones
//! finished streaming; Quiver replaces it.

use std::fmt::Debug;

use async_trait::async_trait;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{FieldFormat, Response};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::{CommandComplete, EmptyQueryResponse, ReadyForQuery};
use pgwire::messages::simplequery::Query;
use quiver_sql::{CopyIn, Output, Statement, StatusCode};

use crate::cancel::cancellable;
use crate::connection::{Connection, rows_written, wire_status};
use crate::copy::{send_copy_in_response, send_copy_out};
use crate::encode::{field_infos, row_description, row_stream};
use crate::errors;
use crate::limits::MAX_MESSAGE_BYTES;
use crate::prepared::is_empty_query;

/// What a statement left to do.
pub(crate) enum Flow {
    /// The statement ran; it wrote this many rows (INSERT).
    Done(u64),
    /// The statement is a COPY FROM STDIN: the client must send the data.
    CopyIn(CopyIn),
}

/// A COPY FROM STDIN met while running a query string, with the statements
/// that follow it.
pub(crate) struct CopyStart {
    pub(crate) copy: CopyIn,
    pub(crate) rest: Vec<Statement>,
}

impl Connection {
    /// Executes one statement without parameters and writes its result.
    async fn run_simple<C>(&self, client: &mut C, statement: &Statement) -> PgWireResult<Flow>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let output = self
            .session
            .execute(statement, &[])
            .await
            .map_err(errors::from_sql)?;
        for n in self.session.take_notices() {
            client.feed(errors::notice(n)).await?;
        }
        let mut written = 0;
        match output {
            Output::Rows { schema, stream } => {
                let formats = vec![FieldFormat::Text; schema.fields().len()];
                let fields = field_infos(&schema, &formats);
                client
                    .feed(PgWireBackendMessage::RowDescription(row_description(
                        &fields,
                    )))
                    .await?;
                let mut rows = row_stream(stream, &schema, formats);
                let mut count = 0usize;
                while let Some(row) = rows.next().await {
                    client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                    count += 1;
                }
                self.returned
                    .store(count as u64, std::sync::atomic::Ordering::Relaxed);
                let tag = CommandComplete::new(format!("SELECT {count}"));
                client
                    .feed(PgWireBackendMessage::CommandComplete(tag))
                    .await?;
            }
            Output::Command { tag } => {
                client.set_transaction_status(wire_status(self.session.transaction_status()));
                written = rows_written(&tag);
                let tag = CommandComplete::new(tag);
                client
                    .feed(PgWireBackendMessage::CommandComplete(tag))
                    .await?;
            }
            Output::CopyIn(copy) => return Ok(Flow::CopyIn(copy)),
            Output::CopyOut {
                columns,
                format,
                rows,
            } => {
                let count = send_copy_out(client, columns, &format, rows).await?;
                let tag = CommandComplete::new(format!("COPY {count}"));
                client
                    .feed(PgWireBackendMessage::CommandComplete(tag))
                    .await?;
            }
            Output::Empty => {
                let empty = EmptyQueryResponse::new();
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(empty))
                    .await?;
            }
        }
        Ok(Flow::Done(written))
    }

    /// Runs statements in order, each cancellable, until one fails (`Err`)
    /// or is a COPY FROM STDIN (returned with the statements after it).
    pub(crate) async fn run_script<C>(
        &self,
        client: &mut C,
        statements: Vec<Statement>,
    ) -> PgWireResult<Option<CopyStart>>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut statements = statements.into_iter();
        while let Some(statement) = statements.next() {
            let started = std::time::Instant::now();
            let flow = cancellable(
                &self.session.interrupt(),
                self.run_simple(client, &statement),
            )
            .await;
            match &flow {
                Ok(Flow::Done(written)) => self.statement_done(&statement, started, *written),
                // Timed until its CopyDone (`copy.rs`).
                Ok(Flow::CopyIn(_)) => {}
                Err(_) => self.statement_failed(&statement),
            }
            let flow = flow?;
            if let Flow::CopyIn(copy) = flow {
                return Ok(Some(CopyStart {
                    copy,
                    rest: statements.collect(),
                }));
            }
        }
        Ok(None)
    }

    fn parse_script(&self, sql: &str) -> PgWireResult<Vec<Statement>> {
        if sql.len() > MAX_MESSAGE_BYTES {
            return Err(errors::status(
                StatusCode::ProgramLimitExceeded,
                format!("query text exceeds the limit of {MAX_MESSAGE_BYTES} bytes"),
            ));
        }
        self.session.parse(sql).map_err(errors::from_sql)
    }
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        self.identify(client);
        self.session.statement_began(&query.query);

        let outcome = if is_empty_query(&query.query) {
            Ok(Vec::new())
        } else {
            self.parse_script(&query.query)
        };
        let outcome = match outcome {
            Ok(statements) if statements.is_empty() => {
                let empty = EmptyQueryResponse::new();
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(empty))
                    .await?;
                Ok(None)
            }
            Ok(statements) => {
                self.deallocate(client.portal_store(), &statements);
                self.run_script(client, statements).await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(None) => {}
            Ok(Some(CopyStart { copy, rest })) => {
                send_copy_in_response(client, copy.columns.len(), &copy.format).await?;
                self.copy.begin(copy, rest);
                client.set_state(PgWireConnectionState::CopyInProgress(false));
                return Ok(());
            }
            Err(e) => {
                let info = ErrorInfo::from(e);
                self.session.metrics().error(&info.code);
                tracing::debug!(code = %info.code, message = %info.message, "query failed");
                client
                    .feed(PgWireBackendMessage::ErrorResponse(info.into()))
                    .await?;
                // Also a failure while rows were streaming, after execute returned.
                self.session.statement_failed().await;
                client.set_transaction_status(wire_status(self.session.transaction_status()));
            }
        }
        self.session.statement_ended();
        client.set_state(PgWireConnectionState::ReadyForQuery);
        let ready = ReadyForQuery::new(client.transaction_status());
        client
            .send(PgWireBackendMessage::ReadyForQuery(ready))
            .await?;
        Ok(())
    }

    /// Not used: `on_query` above handles the whole message itself.
    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Err(errors::status(
            StatusCode::Internal,
            "simple query dispatch bypassed on_query",
        ))
    }
}
