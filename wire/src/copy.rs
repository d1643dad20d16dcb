//! COPY over the wire.
//!
//! **COPY FROM STDIN.** When a statement's output is [`Output::CopyIn`]
//! (`quiver_sql::Output`), the connection answers CopyInResponse (text
//! format, one text column per target column) and remembers the copy in its
//! [`CopyState`]. pgwire then routes the client's CopyData / CopyDone /
//! CopyFail messages to the [`CopyHandler`] below, in both protocols:
//!
//! - CopyData: appended to the buffer; once it holds [`COPY_PIECE_BYTES`],
//!   its complete records are decoded and written to the table's data files
//!   ([`CopyLoad`](quiver_sql::CopyLoad)), so memory holds one piece of a
//!   COPY of any size. A record still incomplete after [`MAX_COPY_BYTES`]
//!   marks the copy as overflowed; an error while loading marks it failed.
//! - CopyDone: the rest is loaded and everything is committed as one table
//!   version (the COPY is atomic), and the client gets `COPY n`; an
//!   overflowed copy writes nothing and fails with 54000, a failed one with
//!   its error. In the simple
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
use quiver_sql::{CopyFormat, CopyIn, CopyLoad, SqlError, Statement, StatusCode};

use crate::connection::Connection;
use crate::errors;
use crate::limits::MAX_COPY_BYTES;
use quiver_sql::metrics::{StatementClass, WriteKind};

/// The COPY FROM STDIN in progress on a connection, if any.
#[derive(Default)]
pub(crate) struct CopyState {
    pending: Mutex<Option<PendingCopy>>,
}

struct PendingCopy {
    copy: CopyIn,
    /// Data not loaded yet (an incomplete record at most, between pieces).
    data: Vec<u8>,
    /// How far `data` was scanned for record boundaries.
    scan: quiver_sql::copy::RecordScan,
    /// The load, once the first piece was written.
    load: Option<CopyLoad>,
    overflowed: bool,
    /// Why loading a piece failed; reported at CopyDone.
    failed: Option<SqlError>,
    /// Statements after the COPY in the same simple Query.
    rest: Vec<Statement>,
    /// When the COPY statement started (its ingest latency ends at CopyDone).
    started: std::time::Instant,
}

/// Data buffered before its complete records are loaded as one piece (with
/// the piece being decoded, its rows queued for and being written, what a
/// COPY holds at a time is a few times this). A 1M-row COPY of 384-d vectors
/// (3.6 KB a row as text; release build, 256 MiB budget, executable read
/// cold, peak PSS of the server), since vector text is parsed by all cores
/// whatever the piece's size: 6 MiB pieces 15.3–16.8 s and 91–94 MiB, 2 MiB
/// pieces 17.8–20.2 s and 88.5–90 MiB; pgvector holds 91–94 MiB for the
/// same COPY (44 s).
pub(crate) const COPY_PIECE_BYTES: usize = 2 * 1024 * 1024;

impl PendingCopy {
    /// Takes the complete records (the first `end` bytes) out as a piece;
    /// what follows them, then `more`, starts the next piece's buffer, sized
    /// for a piece (grown by doubling, a buffer would end up twice as large).
    fn cut(&mut self, end: usize, more: &[u8], piece: usize) -> Vec<u8> {
        let mut rest = Vec::with_capacity(piece.max(self.data.len() - end + more.len()));
        rest.extend_from_slice(&self.data[end..]);
        rest.extend_from_slice(more);
        self.data.truncate(end);
        self.scan.consumed(end);
        let full = std::mem::replace(&mut self.data, rest);
        // `more` is scanned here, once.
        self.scan.advance(&self.data, &self.copy.format);
        full
    }
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
            scan: Default::default(),
            load: None,
            overflowed: false,
            failed: None,
            rest,
            started: std::time::Instant::now(),
        });
    }

    /// Appends one CopyData payload. Once `piece` bytes are buffered, returns
    /// the complete records among them (taken out of the buffer) to be loaded.
    /// More than `limit` bytes without a complete record overflow the copy.
    fn append(&self, chunk: &[u8], piece: usize, limit: usize) -> PgWireResult<Option<Vec<u8>>> {
        let mut pending = self.lock();
        let Some(pending) = pending.as_mut() else {
            return Err(errors::protocol_violation(
                "CopyData received while no COPY FROM STDIN is in progress",
            ));
        };
        if pending.overflowed || pending.failed.is_some() {
            return Ok(None);
        }
        // A buffer at least half a piece full that `chunk` would outgrow
        // ends its piece at its last complete record first: growing would
        // copy it into one twice its size (both touched for a moment).
        let end = pending.scan.advance(&pending.data, &pending.copy.format);
        if end > 0
            && pending.data.len() >= piece / 2
            && pending.data.len() + chunk.len() > pending.data.capacity()
        {
            return Ok(Some(pending.cut(end, chunk, piece)));
        }
        pending.data.extend_from_slice(chunk);
        // Each byte is scanned once, as it arrives.
        let end = pending.scan.advance(&pending.data, &pending.copy.format);
        if pending.data.len() < piece {
            return Ok(None);
        }
        if end == 0 {
            if pending.data.len() > limit {
                pending.overflowed = true;
                pending.data = Vec::new();
                pending.scan = Default::default();
                pending.load = None;
            }
            return Ok(None);
        }
        Ok(Some(pending.cut(end, &[], piece)))
    }

    /// Takes the load out (to write a piece without holding the lock), or
    /// the copy to start one with.
    fn take_load(&self) -> Option<Result<CopyLoad, CopyIn>> {
        let mut pending = self.lock();
        let pending = pending.as_mut()?;
        Some(pending.load.take().ok_or_else(|| pending.copy.clone()))
    }

    /// Puts the load back after a piece, or records why the piece failed.
    fn put_load(&self, load: Result<CopyLoad, SqlError>) {
        if let Some(pending) = self.lock().as_mut() {
            match load {
                Ok(l) => pending.load = Some(l),
                Err(e) => {
                    pending.failed = Some(e);
                    pending.data = Vec::new();
                    pending.scan = Default::default();
                }
            }
        }
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

/// Sends CopyInResponse (text or binary, as the COPY asked) and flushes, so
/// the client starts sending data.
pub(crate) async fn send_copy_in_response<C>(
    client: &mut C,
    columns: usize,
    format: &CopyFormat,
) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let code = i16::from(matches!(format, CopyFormat::Binary { .. }));
    let response = CopyInResponse::new(code as i8, column_count(columns)?, vec![code; columns]);
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
        let Some(piece) = self
            .copy
            .append(&copy_data.data, COPY_PIECE_BYTES, MAX_COPY_BYTES)?
        else {
            return Ok(());
        };
        let Some(load) = self.copy.take_load() else {
            return Ok(());
        };
        let loaded = async {
            let mut load = match load {
                Ok(l) => l,
                Err(copy) => self.session.copy_start(&copy).await?,
            };
            load.write(piece).await?;
            Ok(load)
        }
        .await;
        self.copy.put_load(loaded);
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let done = self.copy_done(client).await;
        // The query string (the COPY, and what ran after it) is over.
        self.session.statement_ended();
        done
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.copy.take().is_some() {
            self.session
                .metrics()
                .statement_failed(StatementClass::Write(WriteKind::Copy));
        }
        self.session.statement_failed().await;
        self.session.statement_ended();
        errors::status(
            StatusCode::QueryCanceled,
            format!("COPY from stdin failed: {}", fail.message),
        )
    }
}

/// How `quiver_stat_statements` names a COPY FROM STDIN.
fn copy_statement_text(copy: &CopyIn) -> std::sync::Arc<str> {
    format!(
        "COPY {} ({}) FROM STDIN",
        copy.table,
        copy.columns.join(", ")
    )
    .into()
}

impl Connection {
    /// CopyDone: the copy's rest loaded and committed, then the statements
    /// after it in its query string run.
    async fn copy_done<C>(&self, client: &mut C) -> PgWireResult<()>
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
        let metrics = self.session.metrics().clone();
        let class = StatementClass::Write(WriteKind::Copy);
        let started = pending.started;
        if pending.overflowed {
            metrics.statement_failed(class);
            self.session.statement_failed().await;
            return Err(errors::status(
                StatusCode::ProgramLimitExceeded,
                format!("a COPY record exceeds the limit of {MAX_COPY_BYTES} bytes"),
            ));
        }
        let PendingCopy {
            copy,
            data,
            load,
            failed,
            rest,
            ..
        } = pending;
        if let Some(e) = failed {
            metrics.statement_failed(class);
            self.session.statement_failed().await;
            return Err(errors::from_sql(e));
        }
        let rows = async {
            let mut load = match load {
                Some(l) => l,
                None => self.session.copy_start(&copy).await?,
            };
            load.write(data).await?;
            load.finish().await
        }
        .await;
        let rows = match rows {
            Ok(n) => n,
            Err(e) => {
                metrics.statement_failed(class);
                // pgwire reports the error and moves the client's status to failed.
                self.session.statement_failed().await;
                return Err(errors::from_sql(e));
            }
        };
        metrics.statement_done(class, None, started.elapsed(), rows);
        self.session
            .statement_stats()
            .record(&copy_statement_text(&copy), started.elapsed(), rows);
        self.log_if_slow(started.elapsed());
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
    fn data_accumulates_until_a_piece_is_due() {
        let state = CopyState::default();
        assert!(
            state.append(b"x", 100, 1000).is_err(),
            "no copy in progress"
        );
        state.begin(copy_in(), vec![]);
        assert!(state.append(b"1\t2\n", 100, 1000).unwrap().is_none());
        assert!(state.append(b"3\t4\n", 100, 1000).unwrap().is_none());
        let pending = state.take().unwrap();
        assert_eq!(pending.data, b"1\t2\n3\t4\n");
        assert!(!pending.overflowed);
        assert!(state.take().is_none());
    }

    #[test]
    fn a_piece_is_the_complete_records() {
        let state = CopyState::default();
        state.begin(copy_in(), vec![]);
        assert!(state.append(b"1\t2", 8, 1000).unwrap().is_none());
        let piece = state.append(b"\n3\t4\n5\t", 8, 1000).unwrap();
        assert_eq!(piece.as_deref(), Some(&b"1\t2\n3\t4\n"[..]));
        assert_eq!(state.take().unwrap().data, b"5\t");
    }

    #[test]
    fn a_piece_ends_before_its_buffer_would_grow() {
        let state = CopyState::default();
        state.begin(copy_in(), vec![]);
        assert!(state.append(b"1\t2\n3\t4\n", 16, 1000).unwrap().is_none());
        let capacity = state.lock().as_ref().unwrap().data.capacity();
        let more = vec![b'5'; capacity];
        let piece = state.append(&more, 16, 1000).unwrap();
        assert_eq!(piece.as_deref(), Some(&b"1\t2\n3\t4\n"[..]));
        assert_eq!(state.lock().as_ref().unwrap().data, more);
        // The rest goes on filling a buffer of a piece's size.
        assert!(state.append(b"\n", 16, 1000).unwrap().is_none());
        let rest = state.take().unwrap().data;
        assert_eq!((rest.len(), rest.capacity()), (capacity + 1, 16));
    }

    #[test]
    fn a_record_over_the_limit_overflows() {
        let state = CopyState::default();
        state.begin(copy_in(), vec![]);
        state.append(b"123456", 4, 10).unwrap();
        state.append(b"123456", 4, 10).unwrap();
        assert!(state.append(b"1\n", 4, 10).unwrap().is_none());
        let pending = state.take().unwrap();
        assert!(pending.overflowed);
        assert!(pending.data.is_empty());
    }
}
