//! COPY over the wire.
//!
//! **COPY FROM STDIN.** When a statement's output is [`Output::CopyIn`]
//! (`quiver_sql::Output`), the connection answers CopyInResponse (text
//! format, one text column per target column) and remembers the copy in its
//! [`CopyState`]. pgwire then routes the client's CopyData / CopyDone /
//! CopyFail messages to the [`CopyHandler`] below, in both protocols:
//!
//! - CopyData: appended to the buffer, up to [`MAX_COPY_BYTES`]; past it the
//!   buffer is dropped and the copy is marked as overflowed.
//! - CopyDone: [`Session::copy_in`](quiver_sql::Session::copy_in) loads the
//!   whole buffer in one atomic commit and the client gets `COPY n`; an
//!   overflowed copy writes nothing and fails with 54000. In the simple
//!   protocol the statements that followed the COPY in the same Query then
//!   run, and pgwire sends ReadyForQuery; in the extended protocol pgwire
//!   waits for Sync.
//! - CopyFail: nothing is written; error 57014.
//!
//! **COPY TO STDOUT.** [`Output::CopyOut`](quiver_sql::Output) rows are sent
//! as CopyOutResponse, one CopyData per row, CopyDone; the caller then sends
//! CommandComplete `COPY n`.

use std::fmt::Debug;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::copy::CopyHandler;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail, CopyInResponse, CopyOutResponse};
use pgwire::messages::response::CommandComplete;
use quiver_sql::{CopyFormat, CopyIn, Statement, StatusCode};

use crate::connection::Connection;
use crate::errors;
use crate::limits::MAX_COPY_BYTES;

/// The COPY FROM STDIN in progress on a connection, if any.
#[derive(Default)]
pub(crate) struct CopyState {
    pending: Mutex<Option<PendingCopy>>,
}

struct PendingCopy {
    copy: CopyIn,
    data: Vec<u8>,
    overflowed: bool,
    /// Statements after the COPY in the same simple Query.
    rest: Vec<Statement>,
}

impl CopyState {
    fn lock(&self) -> MutexGuard<'_, Option<PendingCopy>> {
        // The state is plain data: a panic elsewhere cannot leave it torn.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts collecting data for `copy`.
    pub(crate) fn begin(&self, copy: CopyIn, rest: Vec<Statement>) {
        *self.lock() = Some(PendingCopy {
            copy,
            data: Vec::new(),
            overflowed: false,
            rest,
        });
    }

    /// Appends one CopyData payload, enforcing `limit` bytes in total.
    fn append(&self, chunk: &[u8], limit: usize) -> PgWireResult<()> {
        let mut pending = self.lock();
        let Some(pending) = pending.as_mut() else {
            return Err(errors::protocol_violation(
                "CopyData received while no COPY FROM STDIN is in progress",
            ));
        };
        if pending.overflowed {
            return Ok(());
        }
        if pending.data.len().saturating_add(chunk.len()) > limit {
            pending.overflowed = true;
            pending.data = Vec::new();
        } else {
            pending.data.extend_from_slice(chunk);
        }
        Ok(())
    }

    fn take(&self) -> Option<PendingCopy> {
        self.lock().take()
    }
}

fn column_count(columns: usize) -> PgWireResult<i16> {
    i16::try_from(columns).map_err(|_| {
        errors::status(
            StatusCode::ProgramLimitExceeded,
            "COPY has too many columns",
        )
    })
}

/// Sends CopyInResponse (text format) and flushes, so the client starts
/// sending data.
pub(crate) async fn send_copy_in_response<C>(client: &mut C, columns: usize) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let response = CopyInResponse::new(0, column_count(columns)?, vec![0; columns]);
    client
        .send(PgWireBackendMessage::CopyInResponse(response))
        .await?;
    Ok(())
}

/// Sends a COPY TO STDOUT result and returns the row count for the
/// `COPY n` tag. With `CSV HEADER` the first line is the header (the sql crate
/// puts it there) and is not counted.
pub(crate) async fn send_copy_out<C>(
    client: &mut C,
    columns: usize,
    format: &CopyFormat,
    rows: Vec<Vec<u8>>,
) -> PgWireResult<usize>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let header = matches!(format, CopyFormat::Csv { header: true, .. });
    let count = rows.len().saturating_sub(usize::from(header));
    let response = CopyOutResponse::new(0, column_count(columns)?, vec![0; columns]);
    client
        .feed(PgWireBackendMessage::CopyOutResponse(response))
        .await?;
    for row in rows {
        client
            .feed(PgWireBackendMessage::CopyData(CopyData::new(Bytes::from(
                row,
            ))))
            .await?;
    }
    client
        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    Ok(count)
}

#[async_trait]
impl CopyHandler for Connection {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.copy.append(&copy_data.data, MAX_COPY_BYTES)
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(pending) = self.copy.take() else {
            return Err(errors::protocol_violation(
                "CopyDone received while no COPY FROM STDIN is in progress",
            ));
        };
        if pending.overflowed {
            return Err(errors::status(
                StatusCode::ProgramLimitExceeded,
                format!("COPY data exceeds the limit of {MAX_COPY_BYTES} bytes"),
            ));
        }
        let PendingCopy {
            copy, data, rest, ..
        } = pending;
        let rows = self
            .session
            .copy_in(&copy, &data)
            .await
            .map_err(errors::from_sql)?;
        drop(data);
        let tag = CommandComplete::new(format!("COPY {rows}"));
        client
            .feed(PgWireBackendMessage::CommandComplete(tag))
            .await?;
        if !rest.is_empty() && self.run_script(client, rest).await?.is_some() {
            return Err(errors::status(
                StatusCode::FeatureNotSupported,
                "only one COPY FROM STDIN per query string is supported",
            ));
        }
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.copy.take();
        errors::status(
            StatusCode::QueryCanceled,
            format!("COPY from stdin failed: {}", fail.message),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_in() -> CopyIn {
        CopyIn {
            table: "t".into(),
            columns: vec!["a".into(), "b".into()],
            format: CopyFormat::Text,
        }
    }

    #[test]
    fn data_accumulates_until_the_limit() {
        let state = CopyState::default();
        assert!(state.append(b"x", 10).is_err(), "no copy in progress");
        state.begin(copy_in(), vec![]);
        state.append(b"1\t2\n", 10).unwrap();
        state.append(b"3\t4\n", 10).unwrap();
        let pending = state.take().unwrap();
        assert_eq!(pending.data, b"1\t2\n3\t4\n");
        assert!(!pending.overflowed);
        assert!(state.take().is_none());
    }

    #[test]
    fn overflow_drops_the_data() {
        let state = CopyState::default();
        state.begin(copy_in(), vec![]);
        state.append(b"123456", 10).unwrap();
        state.append(b"123456", 10).unwrap();
        state.append(b"1", 10).unwrap();
        let pending = state.take().unwrap();
        assert!(pending.overflowed);
        assert!(pending.data.is_empty());
    }
}
