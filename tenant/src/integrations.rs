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

/// What a provider call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A cheap read that proves the credentials work.
    Test,
    /// The data read.
    Sync,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Test => "test",
            Operation::Sync => "sync",
        }
    }
}

/// A call's outcome, as it is logged and answered.
// Fields in the order answers have always given them.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Outcome {
    pub duration_ms: i32,
    /// Why the call failed, if it did.
    #[schema(required = true)]
    pub error: Option<String>,
    pub ok: bool,
    /// `test` or `sync`.
    #[schema(value_type = String)]
    pub operation: &'static str,
    /// The provider's HTTP status, when it answered.
    #[schema(required = true)]
    pub status: Option<i32>,
}

/// What an integration's sealed credentials are bound to: it, in this tenant.
pub fn aad(tenant: uuid::Uuid, id: uuid::Uuid) -> String {
    format!("tenant:{tenant}:integration:{id}")
}

/// `path` with each `{field}` replaced by that (non-secret, identifier-shaped) field.
pub fn fill(path: &str, credentials: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut out = path.to_string();
    for (name, value) in credentials {
        if let Some(value) = value.as_str() {
            out = out.replace(&format!("{{{name}}}"), value);
        }
    }
    out
}

/// Opens integration `id`'s credentials and calls its provider for `operation`.
/// `Err`: the credentials cannot be opened (no data key, or not this integration's).
pub async fn call_provider(
    env: &IntegrationEnv,
    tenant: uuid::Uuid,
    id: uuid::Uuid,
    provider: &Provider,
    sealed: &[u8],
    operation: Operation,
) -> Result<Outcome, String> {
    let vault = env
        .vault
        .as_deref()
        .ok_or_else(|| "the tenant has no data key".to_string())?;
    let plain = vault.open(sealed, &aad(tenant, id))?;
    let credentials: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&plain).map_err(|e| e.to_string())?;
    let token = credentials
        .get(provider.token_field)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let path = match operation {
        Operation::Test => provider.test_path,
        Operation::Sync => provider.sync_path,
    };
    let url = format!("{}{}", env.base_url(provider), fill(path, &credentials));
    let started = std::time::Instant::now();
    let answered = env.caller.get(&url, token).await;
    let duration_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    let (status, error) = match answered {
        Ok(s) if (200..300).contains(&s) => (Some(i32::from(s)), None),
        Ok(s) => (
            Some(i32::from(s)),
            Some(format!("{} answered HTTP {s}", provider.name)),
        ),
        Err(why) => (
            None,
            Some(format!("{} could not be reached: {why}", provider.name)),
        ),
    };
    Ok(Outcome {
        ok: error.is_none(),
        operation: operation.as_str(),
        status,
        error,
        duration_ms,
    })
}

/// Logs `outcome` for integration `id` (the log keeps 30 days) and records it on the
/// integration. Run it in a transaction.
pub async fn record(
    client: &impl tokio_postgres::GenericClient,
    id: uuid::Uuid,
    provider: &Provider,
    outcome: &Outcome,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO integration_calls (integration_id, provider, operation, status, error, duration_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &id,
                &provider.code,
                &outcome.operation,
                &outcome.status,
                &outcome.error,
                &outcome.duration_ms,
            ],
        )
        .await?;
    client
        .execute(
            "DELETE FROM integration_calls WHERE integration_id = $1 AND at < now() - interval '30 days'",
            &[&id],
        )
        .await?;
    client
        .execute(
            "UPDATE integrations SET status = CASE WHEN status = 'disabled' THEN status \
                                                   WHEN $2 THEN 'connected' ELSE 'error' END, \
             last_error = $3, last_checked_at = now(), \
             last_sync_at = CASE WHEN $2 AND $4 THEN now() ELSE last_sync_at END \
             WHERE id = $1",
            &[
                &id,
                &outcome.ok,
                &outcome.error,
                &(outcome.operation == "sync"),
            ],
        )
        .await?;
    Ok(())
}

/// What a scheduled sync of one tenant did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    pub synced: usize,
    pub failed: usize,
}

/// Syncs every integration of the tenant that is not disabled and was not synced in the
/// last `every_secs`, one after the other, each logged like a sync asked over the API.
pub async fn sync_due(
    client: &mut tokio_postgres::Client,
    env: &IntegrationEnv,
    tenant: uuid::Uuid,
    every_secs: f64,
) -> Result<SyncReport, tokio_postgres::Error> {
    let due = client
        .query(
            "SELECT id, provider, credentials_enc FROM integrations \
             WHERE status <> 'disabled' \
               AND (last_sync_at IS NULL OR last_sync_at < now() - make_interval(secs => $1)) \
             ORDER BY id",
            &[&every_secs],
        )
        .await?;
    let mut report = SyncReport::default();
    for row in due {
        let (id, code, sealed): (uuid::Uuid, String, Vec<u8>) =
            (row.get(0), row.get(1), row.get(2));
        let Some(provider) = provider(&code) else {
            continue;
        };
        let outcome = match call_provider(env, tenant, id, provider, &sealed, Operation::Sync).await
        {
            Ok(outcome) => outcome,
            Err(why) => Outcome {
                ok: false,
                operation: Operation::Sync.as_str(),
                status: None,
                error: Some(format!("the credentials cannot be opened: {why}")),
                duration_ms: 0,
            },
        };
        if outcome.ok {
            report.synced += 1;
        } else {
            report.failed += 1;
        }
        let tx = client.transaction().await?;
        record(&tx, id, provider, &outcome).await?;
        tx.commit().await?;
    }
    Ok(report)
}
