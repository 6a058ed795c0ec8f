//! What the tenant API's integrations need from the control plane (see
//! `tenant::integrations`): a vault per tenant, keyed from its data key, so a master key
//! rotation never touches integration credentials and another tenant's key never opens
//! them; and one HTTPS client for calling providers (system roots, ring, 10 s per call,
//! no redirects followed).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use futures::future::BoxFuture;
use http_body_util::Empty;
use hyper::header::{AUTHORIZATION, USER_AGENT};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secrecy::ExposeSecret;

use crate::secrets::DataKey;
use crate::{Error, Result};

/// Longest a provider may take to answer.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// Seals a tenant's integration credentials with a key derived from its data key.
pub struct DataKeyVault(DataKey);

impl DataKeyVault {
    pub fn new(data_key: &DataKey) -> Self {
        Self(data_key.subkey("integrations-v1"))
    }
}

impl tenant::integrations::Vault for DataKeyVault {
    fn seal(&self, plaintext: &[u8], aad: &str) -> std::result::Result<Vec<u8>, String> {
        self.0.seal(plaintext, aad).map_err(|e| e.to_string())
    }

    fn open(&self, blob: &[u8], aad: &str) -> std::result::Result<Vec<u8>, String> {
        self.0
            .open(blob, aad)
            .map(|plain| plain.expose_secret().to_vec())
            .map_err(|e| e.to_string())
    }
}

/// Calls providers over HTTPS (or HTTP, for endpoints an operator configured so).
pub struct ProviderClient {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl ProviderClient {
    pub fn new() -> Result<Arc<Self>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A system certificate rustls cannot parse is skipped, not fatal.
            let _ = roots.add(cert);
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("cannot set up TLS for providers: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Arc::new(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
        }))
    }
}

impl tenant::integrations::Caller for ProviderClient {
    fn get<'a>(
        &'a self,
        url: &'a str,
        bearer: &'a str,
    ) -> BoxFuture<'a, std::result::Result<u16, String>> {
        Box::pin(async move {
            let uri: hyper::Uri = url
                .parse()
                .map_err(|_| "the provider's address is not a URL".to_string())?;
            let request = hyper::Request::get(uri)
                .header(AUTHORIZATION, format!("Bearer {bearer}"))
                .header(USER_AGENT, "control-plane")
                .body(Empty::new())
                .map_err(|_| "the request could not be built".to_string())?;
            match tokio::time::timeout(PROVIDER_TIMEOUT, self.client.request(request)).await {
                Err(_) => Err(format!("no answer within {} s", PROVIDER_TIMEOUT.as_secs())),
                // The chain names the cause (refused, reset, TLS); never the request.
                Ok(Err(e)) => Err(tenant::chain(&e)),
                Ok(Ok(response)) => Ok(response.status().as_u16()),
            }
        })
    }
}
