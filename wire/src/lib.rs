//! quiver-wire: the PostgreSQL wire protocol in front of `quiver-sql`.
//!
//! It owns everything a client sees of the protocol: start-up (trust
//! authentication, ParameterStatus, cancel keys), the simple and extended
//! query protocols, COPY FROM STDIN / TO STDOUT, how Arrow values are written
//! in Postgres text and binary formats (including pgvector's `vector`), and
//! the single mapping from `quiver_sql::StatusCode` to SQLSTATE. It is built
//! on [pgwire](https://docs.rs/pgwire), which frames messages and keeps the
//! prepared statements and portals of each connection.
//!
//! It must not parse or plan SQL (that is `quiver-sql`: one
//! [`Session`](quiver_sql::Session) per connection does it) and never touches
//! the engine or storage.
//!
//! The entry point is [`serve`].
//!
//! Modules, from the socket inwards:
//!
//! - `server` — accept loop, one task per connection, shutdown.
//! - `startup` — trust auth, ParameterStatus, cancel registration.
//! - `cancel` — CancelRequest: the connections it can name, cancellable work.
//! - `connection` — per-connection state; transaction status.
//! - `simple` — the simple query protocol (multi-statement Query).
//! - `extended` — Parse / Bind / Describe / Execute.
//! - `prepared` — prepared statements: one statement, declared types,
//!   cached Describe.
//! - `copy` — COPY FROM STDIN / TO STDOUT.
//! - `params` — Bind parameter decoding (text and binary).
//! - `encode` — Arrow batches → RowDescription / DataRow.
//! - `types` — Arrow ↔ Postgres type mapping.
//! - `values` — text and binary forms of vector, numeric, date/time, floats.
//! - `errors` — StatusCode → SQLSTATE, DataFusion and protocol errors.
//! - `limits` — message and COPY size limits.

// House style allows unwrap() in tests (and only there).
#![cfg_attr(test, allow(clippy::unwrap_used))]
// The extended-protocol handlers await whole statements (planning, search,
// subqueries run first); computing those futures' layouts in a release build
// needs more than the default query depth.
#![recursion_limit = "256"]

mod cancel;
mod connection;
mod copy;
mod deferred;
mod encode;
mod errors;
mod extended;
mod limits;
mod params;
mod prepared;
mod server;
mod simple;
mod startup;
mod types;
mod values;

pub use errors::sqlstate;
pub use server::serve;
