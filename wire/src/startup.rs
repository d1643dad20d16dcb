//! Connection start-up: trust authentication (no password is asked), the
//! ParameterStatus messages clients read at connect time, BackendKeyData, and
//! registration for CancelRequest.
//!
//! TLS is not offered: an SSLRequest is answered `N` by pgwire and the client
//! continues in plain text (or gives up, with `sslmode=require`).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::{
    ServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, METADATA_APPLICATION_NAME, METADATA_USER, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use quiver_sql::interrupt::Interrupt;

use crate::cancel::{CancelGuard, Cancels};

/// The server version Quiver reports; clients pick SQL features by it.
pub(crate) const SERVER_VERSION: &str = "16.0";

/// The ParameterStatus values sent after authentication.
pub(crate) fn server_parameters(
    application_name: Option<&str>,
    user: Option<&str>,
) -> Vec<(&'static str, String)> {
    vec![
        ("server_version", SERVER_VERSION.to_owned()),
        ("server_encoding", "UTF8".to_owned()),
        ("client_encoding", "UTF8".to_owned()),
        ("DateStyle", "ISO, MDY".to_owned()),
        ("IntervalStyle", "postgres".to_owned()),
        ("integer_datetimes", "on".to_owned()),
        ("standard_conforming_strings", "on".to_owned()),
        ("TimeZone", "UTC".to_owned()),
        (
            "application_name",
            application_name.unwrap_or("").to_owned(),
        ),
        ("default_transaction_read_only", "off".to_owned()),
        ("in_hot_standby", "off".to_owned()),
        ("is_superuser", "on".to_owned()),
        ("session_authorization", user.unwrap_or("quiver").to_owned()),
    ]
}

struct QuiverParameters;

impl ServerParameterProvider for QuiverParameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let metadata = client.metadata();
        let params = server_parameters(
            metadata.get(METADATA_APPLICATION_NAME).map(String::as_str),
            metadata.get(METADATA_USER).map(String::as_str),
        );
        Some(params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}

/// Trust authentication plus cancel-key registration.
pub(crate) struct Startup {
    pub(crate) cancels: Arc<Cancels>,
    /// The connection's session interrupt, which a CancelRequest sets.
    pub(crate) interrupt: Arc<Interrupt>,
    pub(crate) pids: Arc<RandomPidSecretKeyGenerator>,
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let PgWireFrontendMessage::Startup(startup) = message else {
            return Ok(());
        };
        protocol_negotiation(client, &startup).await?;
        save_startup_parameters_to_metadata(client, &startup);
        let (pid, secret_key) = self.pids.generate(client);
        client.set_pid_and_secret_key(pid, secret_key.clone());
        let guard = self
            .cancels
            .register(pid, &secret_key, self.interrupt.clone());
        // Lives as long as the connection; unregisters on drop.
        client.session_extensions().insert::<CancelGuard>(guard);
        tracing::debug!(
            peer = %client.socket_addr(),
            user = client.metadata().get(METADATA_USER).map(String::as_str).unwrap_or(""),
            pid,
            "client authenticated (trust)"
        );
        finish_authentication(client, &QuiverParameters).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_status_values() {
        let params: HashMap<_, _> = server_parameters(Some("psql"), None).into_iter().collect();
        assert_eq!(params["server_version"], "16.0");
        assert_eq!(params["server_encoding"], "UTF8");
        assert_eq!(params["client_encoding"], "UTF8");
        assert_eq!(params["DateStyle"], "ISO, MDY");
        assert_eq!(params["integer_datetimes"], "on");
        assert_eq!(params["standard_conforming_strings"], "on");
        assert_eq!(params["TimeZone"], "UTC");
        assert_eq!(params["application_name"], "psql");
        let params: HashMap<_, _> = server_parameters(None, None).into_iter().collect();
        assert_eq!(params["application_name"], "");
    }
}
