//! Quiver's one integration-test binary: the server driven in-process and over
//! the wire by real clients.

// The in-process sqllogictest runner's future holds a whole statement's
// execution, whose type is deeper than the default limit lets the
// compiler prove `Send` / `Sync` for.
#![recursion_limit = "256"]

mod activity;
mod bi;
mod caches;
mod catalog;
mod clients;
mod common;
mod concurrency;
mod crash;
mod examples;
mod metrics;
mod recall;
mod resharding;
mod restart;
mod sharding;
mod slt;
mod storage;
mod tiering;
mod transactions;
mod udf;
