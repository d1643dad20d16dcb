//! quiver-engine: the catalog, tables stored as Lance datasets, the write path,
//! index management and vector-search execution.
//!
//! The engine never sees SQL text or the wire: it receives typed requests
//! (schemas, Arrow batches, DataFusion logical expressions as filters) from the
//! sql crate. Storage locations come from the tiering crate.
//!
//! On disk (`<data_dir>/`):
//! - `catalog.json` — table, column, index and function definitions, replaced atomically
//!   (write a temporary file, fsync, rename) on every DDL statement;
//! - `tables/<name>-<id>.lance` — one Lance dataset per table (a table
//!   created `WITH (shards = N)`: `<name>-<id>-s<i>.lance`, one a shard). Every
//!   acknowledged write is whole in one committed Lance version (concurrent
//!   appends may share one: group commit), on stable storage before it is
//!   acknowledged ([`durable`]), so after a crash a reader sees a statement
//!   whole or not at all; start-up removes what an interrupted DDL statement
//!   left in Lance but not in the catalog;
//! - `wal/<name>-<id>.lance/` — each table's write-ahead log of small appends
//!   ([`wal`]): acknowledged once synced there, written to Lance by a flush;
//! - `functions/<name>-<id>.wasm` — the module of each user function.
//!
//! Modules:
//! - [`error`] — the engine's error type and its kinds;
//! - [`schema`] — column types, table definitions, their Arrow schemas;
//! - [`catalog`] — the persisted catalog;
//! - [`memory`] — the memory budget and the one Lance session sized from it;
//! - [`metrics`] — index builds, index updates and compactions, timed for `/metrics`;
//! - [`chunks`] — the byte-bounded cache of column chunks of immutable fragments;
//! - [`cpu`] — process and per-future CPU time (per-shard search figures);
//! - [`durable`] — group-committed syncs that make each commit durable before it returns;
//! - [`wal`] — the write-ahead log: records, segments, recovery;
//! - [`shard`] — one shard of a table: its dataset, its tail of logged rows, views and writes;
//! - [`table`] — a table: its shards, rows placed on them, commits over several;
//! - [`view`] — a table version as the search path reads it (fragments,
//!   deletion vectors, rows fetched through the chunk cache);
//! - [`function`] — user function definitions (module bytes in `functions/`);
//! - [`housekeeping`] — compaction, index upkeep, cleanup of unpinned old versions;
//! - [`index`] — index definitions and building Lance indexes;
//! - [`distance`] — metrics and exact distance kernels;
//! - [`ann`] — the ANN hot path over an opened Lance index;
//! - [`progress`] — long work (index builds, OPTIMIZE, moves) and how far it got;
//! - [`quantized`] — vectors as 8-bit codes and their dot-product kernel;
//! - [`fresh`] — the rows an index does not cover yet, prepared for a coded scan;
//! - [`search`] — one vector search: exact over memory, or ANN through Lance;
//! - [`alter`] — ALTER TABLE: catalog changes, Lance schema changes, their crash recovery;
//! - [`ring`] — the consistent-hash ring placing rows on a hash-sharded table's shards;
//! - [`engine`] — the entry point tying the above together.

pub mod alter;
pub mod ann;
pub mod catalog;
pub mod chunks;
pub mod cpu;
pub mod distance;
pub mod durable;
pub mod engine;
pub mod error;
pub mod fresh;
pub mod function;
pub mod housekeeping;
pub mod index;
pub mod ivf;
pub mod memory;
pub mod metrics;
pub mod progress;
pub mod quantized;
pub mod reshard;
pub mod ring;
pub mod schema;
pub mod search;
pub mod shard;
pub mod table;
pub mod tier;
pub mod txn;
pub mod view;
pub mod wal;

pub use engine::{Engine, EngineOptions};
pub use error::{EngineError, ErrorKind, Result};
pub use quiver_tiering::{ColdOptions, SsdOptions, Tier};
