//! Integrations: third-party accounts a tenant connects. The built-in providers and the
//! credential fields each needs; the seams the control plane fills in (sealing with a key
//! of the tenant's, calling the provider over HTTPS), so this crate holds no key and no
//! HTTP client of its own.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;

/// A credential a provider needs.
pub struct Field {
    pub name: &'static str,
    /// Sealed and never shown again (only its last characters, as a hint, to admins).
    /// A field that is not secret may appear in the provider's paths, so it must be an
    /// identifier (`[A-Za-z0-9_-]`, 1 to 64).
    pub secret: bool,
}

/// A provider: where it lives and how it is called. Paths may name non-secret fields as
/// `{field}`; the secret field is sent as a bearer token.
pub struct Provider {
    pub code: &'static str,
    pub name: &'static str,
    pub fields: &'static [Field],
    pub base_url: &'static str,
    /// The field sent as `Authorization: Bearer <value>`.
    pub token_field: &'static str,
    /// A cheap read that proves the credentials work.
    pub test_path: &'static str,
    /// The read a sync makes.
    pub sync_path: &'static str,
}

pub const PROVIDERS: &[Provider] = &[
    Provider {
        code: "stripe",
        name: "Stripe",
        fields: &[Field {
            name: "secret_key",
            secret: true,
        }],
        base_url: "https://api.stripe.com",
        token_field: "secret_key",
        test_path: "/v1/balance",
        sync_path: "/v1/charges?limit=100",
    },
    Provider {
        code: "square",
        name: "Square POS",
        fields: &[
            Field {
                name: "access_token",
                secret: true,
            },
            Field {
                name: "location_id",
                secret: false,
            },
        ],
        base_url: "https://connect.squareup.com",
        token_field: "access_token",
        test_path: "/v2/locations/{location_id}",
        sync_path: "/v2/payments?location_id={location_id}",
    },
    Provider {
        code: "meta_ads",
        name: "Meta Ads",
        fields: &[
            Field {
                name: "access_token",
                secret: true,
            },
            Field {
                name: "ad_account_id",
                secret: false,
            },
        ],
        base_url: "https://graph.facebook.com",
        token_field: "access_token",
        test_path: "/v19.0/me",
        sync_path: "/v19.0/act_{ad_account_id}/insights",
    },
];

pub fn provider(code: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.code == code)
}

/// Seals and opens a tenant's integration credentials (a key derived from its data key).
pub trait Vault: Send + Sync {
    fn seal(&self, plaintext: &[u8], aad: &str) -> Result<Vec<u8>, String>;
    fn open(&self, blob: &[u8], aad: &str) -> Result<Vec<u8>, String>;
}

/// Makes a GET to a provider with a bearer token: the status it answered.
pub trait Caller: Send + Sync {
    fn get<'a>(&'a self, url: &'a str, bearer: &'a str) -> BoxFuture<'a, Result<u16, String>>;
}

/// What the integrations API needs, as the gateway hands it to a tenant's requests.
#[derive(Clone)]
pub struct IntegrationEnv {
    pub caller: Arc<dyn Caller>,
    /// Base URLs that replace providers' own (`CP_INTEGRATION_ENDPOINTS`).
    pub endpoints: Arc<HashMap<String, String>>,
    /// `None`: the tenant has no data key yet (made before data keys; `keys rewrap`).
    pub vault: Option<Arc<dyn Vault>>,
}

impl IntegrationEnv {
    /// The base URL of `provider`'s API on this installation.
    pub fn base_url(&self, provider: &Provider) -> String {
        self.endpoints
            .get(provider.code)
            .cloned()
            .unwrap_or_else(|| provider.base_url.to_string())
            .trim_end_matches('/')
            .to_string()
    }
}
