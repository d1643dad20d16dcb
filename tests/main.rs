//! Quiver's one integration-test binary: the server driven in-process and over
//! the wire by real clients.

mod catalog;
mod clients;
mod common;
mod concurrency;
mod crash;
mod examples;
mod recall;
mod restart;
mod slt;
mod storage;
mod transactions;
mod udf;
