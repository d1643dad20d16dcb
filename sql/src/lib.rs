//! quiver-sql: sessions, statement dispatch, the DataFusion context, the
//! `vector_search()` table function, pgvector operators and settings.
//!
//! It turns SQL text into work on the engine and never touches the wire.
//!
//! Modules:
//! - [`session`] — `Database`, `Session`, statement dispatch, results;
//! - [`statement`] — splitting and parsing query strings;
//! - [`rewrite`] — pgvector operators, vector casts, parameter binding, k-NN rewrite;
//! - [`generic`] — generic plans of prepared vector searches, planned once;
//! - [`subquery`] — subqueries of a vector search's filter, run before it;
//! - [`vector_search`] — the table function and `VectorSearchExec`;
//! - [`vector`] — vector text form and vector functions;
//! - [`ddl`], [`alter`], [`dml`], [`copy`] — DDL, ALTER TABLE, writes, COPY formats;
//! - [`constraints`], [`references`], [`checks`] — keys, foreign keys, CHECK constraints;
//! - [`settings`] — SET/SHOW and the search knobs;
//! - [`functions`] — user functions in WebAssembly (CREATE/DROP FUNCTION, registry);
//! - [`pg_catalog`] — PostgreSQL's system catalogs over Quiver's catalog, and their helper functions;
//! - [`compat`] — PostgreSQL syntax rewritten into what DataFusion plans;
//! - [`tables`] — the engine's tables as DataFusion tables;
//! - [`result_cache`] — rows of read-only queries, kept until a table they read changes;
//! - [`metrics`] — Prometheus metrics of statements, tables, shards and caches;
//! - [`views`] — CREATE / DROP VIEW and views expanded where queries name them;
//! - [`interrupt`] — statement timeout and cancel for work that holds its task;
//! - [`activity`] — the connected sessions (`pg_stat_activity`), cancel and terminate by pid;
//! - [`progress_stats`] — `quiver_progress()`: long work running now and how far it got;
//! - [`stat_statements`] — what each normalized statement cost (`quiver_stat_statements`);
//! - [`error`] — the crate's error and status codes.
// The undo of an interrupted ADD CHECK is spawned as a task holding the
// statement's state (DataFusion's expression types nest deeply): proving the
// future `Send` needs more than the default query depth (clippy's check build
// hit the limit first).
#![recursion_limit = "256"]

pub mod activity;
pub mod advisory;
pub mod alter;
pub mod apply;
pub mod cache_stats;
pub mod checks;
pub mod compat;
pub mod constraints;
pub mod copy;
pub mod ddl;
pub mod dml;
pub mod error;
pub mod functions;
pub mod generic;
pub mod interrupt;
pub mod json;
pub mod metrics;
pub mod names;
pub mod pg_catalog;
pub mod progress_stats;
pub mod references;
pub mod result_cache;
pub mod rewrite;
pub mod session;
pub mod settings;
pub mod shard_stats;
pub mod single_value;
pub mod stat_statements;
pub mod statement;
pub mod subplan;
pub mod subquery;
pub mod tables;
pub mod transaction;
pub mod vector;
pub mod vector_search;
pub mod views;

pub use error::{Result, SqlError, StatusCode};
pub use quiver_engine::schema::{NUMERIC_ANY, field_pg_type};
pub use session::{
    CopyFormat, CopyIn, CopyLoad, Database, Described, Output, ParamValue, Session, Statement,
    TransactionStatus, VECTOR_TYPE_OID, VERSION,
};
