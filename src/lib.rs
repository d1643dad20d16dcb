//! quiver: the command line, the typed configuration and start-up wiring.
//!
//! - [`config`] — the configuration file (TOML, every key documented in the README);
//! - [`server`] — opening the database and serving the Postgres wire protocol;
//! - [`http`] — `/metrics`, `/healthz` and `/readyz` for operators.

// The server's futures hold whole statements' executions, whose layouts
// take more than the default query depth to compute.
#![recursion_limit = "256"]

pub mod config;
pub mod http;
pub mod server;

pub use config::Config;
pub use server::{RunningServer, start, start_with};
