//! `/api/v1/integrations`: the tenant's third-party accounts (see `crate::integrations`).
//! Credentials go in sealed and never come out: answers carry at most a hint (the last
//! characters of the secret), and only to those who manage integrations. Testing or
//! syncing one calls the provider and logs the call; the log keeps 30 days.

use axum::Json;
use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_postgres::error::SqlState;
use utoipa::openapi::ObjectBuilder;
use utoipa::openapi::schema::{AdditionalProperties, Schema, SchemaType, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::openapi::{ErrorBody, one_of, trimmed_text};
use super::{ApiFailure, ApiJson, ApiQuery, AuthUser};
use crate::context::TenantContext;
use crate::integrations::{self, Operation, Outcome, PROVIDERS, Provider, provider};

pub fn routes() -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(providers))
        .routes(routes!(list, create))
        .routes(routes!(show, update, remove))
        .routes(routes!(test))
        .routes(routes!(sync))
        .routes(routes!(calls))
        .route_layer(axum::middleware::from_fn(schema_ready))
}

/// The tenant schema version that brought integrations as this module uses them.
const INTEGRATIONS_SINCE: i32 = 3;

/// A database a fleet run has not brought to V3 yet has no call log: refused plainly
/// rather than failing on a missing column.
async fn schema_ready(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let ready = req
        .extensions()
        .get::<TenantContext>()
        .is_some_and(|c| c.schema_version.is_none_or(|v| v >= INTEGRATIONS_SINCE));
    if ready {
        return next.run(req).await;
    }
    super::error(
        StatusCode::CONFLICT,
        "schema_behind",
        "this tenant's database has no integrations until its operators run the pending migrations",
    )
}

const COLUMNS: &str = "id, provider, name, status, credentials_hint, last_checked_at, \
    last_sync_at, last_error, created_at, updated_at";

#[derive(Serialize, ToSchema)]
struct Integration {
    id: Uuid,
    provider: String,
    name: String,
    /// `connected`, `error` or `disabled`.
    status: String,
    /// The secret's last characters; only for those who manage integrations.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    credentials_hint: Option<String>,
    #[schema(required = true)]
    last_checked_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    last_sync_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
struct Integrations {
    items: Vec<Integration>,
}

#[derive(Serialize, ToSchema)]
struct Providers {
    providers: Vec<ProviderInfo>,
}

/// A provider and the credentials an integration of it takes.
#[derive(Serialize, ToSchema)]
struct ProviderInfo {
    code: &'static str,
    fields: Vec<FieldInfo>,
    name: &'static str,
}

#[derive(Serialize, ToSchema)]
struct FieldInfo {
    name: &'static str,
    /// Sealed and never shown again; a field that is not secret is an identifier
    /// (1 to 64 of A-Z, a-z, 0-9, `_` and `-`).
    secret: bool,
}

/// One call to the provider, from the log.
#[derive(Serialize, ToSchema)]
struct Call {
    at: DateTime<Utc>,
    duration_ms: i32,
    #[schema(required = true)]
    error: Option<String>,
    /// `test` or `sync`.
    operation: String,
    provider: String,
    /// The provider's HTTP status, when it answered.
    #[schema(required = true)]
    status: Option<i32>,
}

#[derive(Serialize, ToSchema)]
struct Calls {
    items: Vec<Call>,
}

fn integration_of(row: &tokio_postgres::Row, hints: bool) -> Integration {
    Integration {
        id: row.get(0),
        provider: row.get(1),
        name: row.get(2),
        status: row.get(3),
        credentials_hint: hints.then(|| row.get(4)),
        last_checked_at: row.get(5),
        last_sync_at: row.get(6),
        last_error: row.get(7),
        created_at: row.get(8),
        updated_at: row.get(9),
    }
}

fn managing(user: &AuthUser) -> bool {
    user.user
        .permissions
        .iter()
        .any(|p| p == "integrations:manage")
}

fn parse_id(raw: &str) -> Result<Uuid, ApiFailure> {
    Uuid::parse_str(raw).map_err(|_| ApiFailure::NotFound)
}

/// What a sealed credential set is bound to: this integration of this tenant.
fn aad(ctx: &TenantContext, id: Uuid) -> String {
    integrations::aad(ctx.id, id)
}

fn vault(ctx: &TenantContext) -> Result<&dyn crate::integrations::Vault, ApiFailure> {
    ctx.integrations.vault.as_deref().ok_or_else(|| {
        ApiFailure::Conflict(
            "no_data_key",
            "this tenant has no data key yet; its operators run `control-plane keys rewrap`".into(),
        )
    })
}

/// The providers an integration may be of.
#[utoipa::path(
    get,
    path = "/api/v1/integrations/providers",
    operation_id = "integrations_providers",
    tag = "integrations",
    responses(
        (status = 200, description = "The providers", body = Providers),
        (status = 409, description = "`schema_behind`: the tenant's database has no integrations until its pending migrations run", body = ErrorBody),
    ),
)]
async fn providers(user: AuthUser) -> Result<Json<Providers>, ApiFailure> {
    user.require("integrations:read")?;
    let providers = PROVIDERS
        .iter()
        .map(|p| ProviderInfo {
            code: p.code,
            fields: p
                .fields
                .iter()
                .map(|f| FieldInfo {
                    name: f.name,
                    secret: f.secret,
                })
                .collect(),
            name: p.name,
        })
        .collect();
    Ok(Json(Providers { providers }))
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Page {
    /// At most this many, newest first (1 to 500; default 50).
    limit: Option<i64>,
}

/// The tenant's integrations.
#[utoipa::path(
    get,
    path = "/api/v1/integrations",
    operation_id = "integrations_list",
    tag = "integrations",
    responses(
        (status = 200, description = "The integrations, by provider and name", body = Integrations),
        (status = 409, description = "`schema_behind`", body = ErrorBody),
    ),
)]
async fn list(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
) -> Result<Json<Integrations>, ApiFailure> {
    user.require("integrations:read")?;
    let conn = ctx.pool.get().await?;
    let items: Vec<Integration> = conn
        .query(
            &format!("SELECT {COLUMNS} FROM integrations ORDER BY provider, name"),
            &[],
        )
        .await?
        .iter()
        .map(|r| integration_of(r, managing(&user)))
        .collect();
    Ok(Json(Integrations { items }))
}

/// One integration.
#[utoipa::path(
    get,
    path = "/api/v1/integrations/{id}",
    operation_id = "integrations_show",
    tag = "integrations",
    params(("id" = Uuid, Path, description = "The integration's id")),
    responses(
        (status = 200, description = "The integration", body = Integration),
        (status = 409, description = "`schema_behind`", body = ErrorBody),
    ),
)]
async fn show(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Integration>, ApiFailure> {
    user.require("integrations:read")?;
    let id = parse_id(&id)?;
    let conn = ctx.pool.get().await?;
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM integrations WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|r| Json(integration_of(&r, managing(&user))))
    .ok_or(ApiFailure::NotFound)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateIntegration {
    /// A provider's code (`GET /api/v1/integrations/providers`).
    #[schema(schema_with = provider_code)]
    provider: String,
    /// Unique per provider; 1 to 100 characters once trimmed, without control characters.
    #[schema(schema_with = name)]
    name: String,
    /// Each of the provider's fields, as a string, and no other.
    #[schema(schema_with = credentials)]
    credentials: Map<String, Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateIntegration {
    #[schema(schema_with = nullable_name)]
    name: Option<String>,
    /// All of the provider's fields, replacing the sealed ones.
    #[schema(schema_with = nullable_credentials)]
    credentials: Option<Map<String, Value>>,
    /// false: disabled (never called); true: connected again.
    enabled: Option<bool>,
}

/// The longest integration name, in characters.
const MAX_NAME: usize = 100;

fn provider_code() -> Schema {
    let codes: Vec<&str> = PROVIDERS.iter().map(|p| p.code).collect();
    one_of(&codes, false)
}

fn name() -> Schema {
    trimmed_text(1, MAX_NAME, false)
}

fn nullable_name() -> Schema {
    trimmed_text(1, MAX_NAME, true)
}

/// What [`checked_credentials`] lets through whatever the provider: strings of 1 to 1000
/// bytes (which fields, and the shape of those that are not secret, depend on it).
fn credentials_of(schema_type: SchemaType) -> Schema {
    ObjectBuilder::new()
        .schema_type(schema_type)
        .additional_properties(Some(AdditionalProperties::from(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(1000)),
        )))
        .build()
        .into()
}

fn credentials() -> Schema {
    credentials_of(SchemaType::new(Type::Object))
}

fn nullable_credentials() -> Schema {
    credentials_of([Type::Object, Type::Null].into_iter().collect())
}

fn checked_name(name: &str) -> Result<String, ApiFailure> {
    let name = name.trim();
    let count = name.chars().count();
    if count == 0 || count > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiFailure::Unprocessable(
            "invalid_value",
            "name: 1 to 100 characters, without control characters".into(),
        ));
    }
    Ok(name.to_string())
}

/// The provider's fields, each given once as a string of the right shape. Messages name
/// fields, never values.
fn checked_credentials(
    provider: &Provider,
    credentials: &Map<String, Value>,
) -> Result<(), ApiFailure> {
    let bad = |why: String| ApiFailure::Unprocessable("invalid_credentials", why);
    if let Some(unknown) = credentials
        .keys()
        .find(|k| !provider.fields.iter().any(|f| f.name == k.as_str()))
    {
        return Err(bad(format!(
            "{} takes no credential {unknown:?}; it takes {}",
            provider.code,
            field_names(provider)
        )));
    }
    for field in provider.fields {
        let Some(Value::String(value)) = credentials.get(field.name) else {
            return Err(bad(format!(
                "{} needs {} (as a string)",
                provider.code, field.name
            )));
        };
        let ok = if field.secret {
            !value.is_empty() && value.len() <= 1000 && !value.chars().any(char::is_control)
        } else {
            !value.is_empty()
                && value.len() <= 64
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !ok {
            return Err(bad(format!(
                "{} is not of the right shape{}",
                field.name,
                if field.secret {
                    ""
                } else {
                    " (1 to 64 of A-Z, a-z, 0-9, _ and -)"
                }
            )));
        }
    }
    Ok(())
}

fn field_names(provider: &Provider) -> String {
    provider
        .fields
        .iter()
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The last four characters of the secret, for admins to tell credentials apart.
fn hint(provider: &Provider, credentials: &Map<String, Value>) -> String {
    let secret = credentials
        .get(provider.token_field)
        .and_then(Value::as_str)
        .unwrap_or_default();
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "…".into();
    }
    format!("…{}", chars[chars.len() - 4..].iter().collect::<String>())
}

fn sealed(
    ctx: &TenantContext,
    id: Uuid,
    credentials: &Map<String, Value>,
) -> Result<Vec<u8>, ApiFailure> {
    let plain = serde_json::to_vec(credentials).map_err(|e| ApiFailure::Internal(e.to_string()))?;
    vault(ctx)?
        .seal(&plain, &aad(ctx, id))
        .map_err(ApiFailure::Internal)
}

fn exists(e: tokio_postgres::Error) -> ApiFailure {
    match e.code() {
        Some(&SqlState::UNIQUE_VIOLATION) => ApiFailure::Conflict(
            "integration_exists",
            "an integration of this provider has this name".into(),
        ),
        _ => e.into(),
    }
}

/// Adds an integration; its credentials are sealed.
#[utoipa::path(
    post,
    path = "/api/v1/integrations",
    operation_id = "integrations_create",
    tag = "integrations",
    request_body = CreateIntegration,
    responses(
        (status = 201, description = "Created", body = Integration),
        (status = 409, description = "`integration_exists`, `no_data_key` or `schema_behind`", body = ErrorBody),
        (status = 422, description = "`unknown_provider`, a bad name, `invalid_credentials`, or the body is of the wrong shape", body = ErrorBody),
    ),
)]
async fn create(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    ApiJson(req): ApiJson<CreateIntegration>,
) -> Result<(StatusCode, Json<Integration>), ApiFailure> {
    user.require("integrations:manage")?;
    let provider = provider(&req.provider).ok_or_else(|| {
        ApiFailure::Unprocessable(
            "unknown_provider",
            format!(
                "no provider {:?}; GET /api/v1/integrations/providers lists them",
                req.provider
            ),
        )
    })?;
    let name = checked_name(&req.name)?;
    checked_credentials(provider, &req.credentials)?;
    let id = Uuid::now_v7();
    let blob = sealed(&ctx, id, &req.credentials)?;
    let conn = ctx.pool.get().await?;
    let row = conn
        .query_one(
            &format!(
                "INSERT INTO integrations (id, provider, name, credentials_enc, key_version, credentials_hint) \
                 VALUES ($1, $2, $3, $4, 1, $5) RETURNING {COLUMNS}"
            ),
            &[&id, &provider.code, &name, &blob, &hint(provider, &req.credentials)],
        )
        .await
        .map_err(exists)?;
    Ok((StatusCode::CREATED, Json(integration_of(&row, true))))
}

/// Renames, re-keys, disables or re-enables an integration.
#[utoipa::path(
    patch,
    path = "/api/v1/integrations/{id}",
    operation_id = "integrations_update",
    tag = "integrations",
    params(("id" = Uuid, Path, description = "The integration's id")),
    request_body = UpdateIntegration,
    responses(
        (status = 200, description = "Changed", body = Integration),
        (status = 409, description = "`integration_exists`, `no_data_key` or `schema_behind`", body = ErrorBody),
        (status = 422, description = "A bad name, `invalid_credentials`, or the body is of the wrong shape", body = ErrorBody),
    ),
)]
async fn update(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateIntegration>,
) -> Result<Json<Integration>, ApiFailure> {
    user.require("integrations:manage")?;
    let id = parse_id(&id)?;
    let name = req.name.as_deref().map(checked_name).transpose()?;
    let conn = ctx.pool.get().await?;
    let code: String = conn
        .query_opt("SELECT provider FROM integrations WHERE id = $1", &[&id])
        .await?
        .ok_or(ApiFailure::NotFound)?
        .get(0);
    let provider = provider(&code).ok_or(ApiFailure::NotFound)?;
    let (blob, new_hint) = match &req.credentials {
        Some(credentials) => {
            checked_credentials(provider, credentials)?;
            (
                Some(sealed(&ctx, id, credentials)?),
                Some(hint(provider, credentials)),
            )
        }
        None => (None, None),
    };
    let status = req
        .enabled
        .map(|on| if on { "connected" } else { "disabled" });
    let row = conn
        .query_opt(
            &format!(
                "UPDATE integrations SET name = coalesce($2, name), \
                 credentials_enc = coalesce($3, credentials_enc), \
                 credentials_hint = coalesce($4, credentials_hint), \
                 status = coalesce($5, status), \
                 last_error = CASE WHEN $3::bytea IS NULL AND $5::text IS NULL THEN last_error END, \
                 updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &name, &blob, &new_hint, &status],
        )
        .await
        .map_err(exists)?
        .ok_or(ApiFailure::NotFound)?;
    Ok(Json(integration_of(&row, true)))
}

/// Deletes an integration and its call log.
#[utoipa::path(
    delete,
    path = "/api/v1/integrations/{id}",
    operation_id = "integrations_delete",
    tag = "integrations",
    params(("id" = Uuid, Path, description = "The integration's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "`schema_behind`", body = ErrorBody),
    ),
)]
async fn remove(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiFailure> {
    user.require("integrations:manage")?;
    let id = parse_id(&id)?;
    let conn = ctx.pool.get().await?;
    match conn
        .execute("DELETE FROM integrations WHERE id = $1", &[&id])
        .await?
    {
        0 => Err(ApiFailure::NotFound),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

/// Calls the provider to check the credentials.
#[utoipa::path(
    post,
    path = "/api/v1/integrations/{id}/test",
    operation_id = "integrations_test",
    tag = "integrations",
    params(("id" = Uuid, Path, description = "The integration's id")),
    responses(
        (status = 200, description = "The call's outcome (also when the provider refused)", body = Outcome),
        (status = 409, description = "`integration_disabled`, `no_data_key` or `schema_behind`", body = ErrorBody),
    ),
)]
async fn test(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Outcome>, ApiFailure> {
    user.require("integrations:manage")?;
    call(&ctx, &parse_id(&id)?, Operation::Test).await
}

/// Calls the provider for a sync now.
#[utoipa::path(
    post,
    path = "/api/v1/integrations/{id}/sync",
    operation_id = "integrations_sync",
    tag = "integrations",
    params(("id" = Uuid, Path, description = "The integration's id")),
    responses(
        (status = 200, description = "The call's outcome (also when the provider refused)", body = Outcome),
        (status = 409, description = "`integration_disabled`, `no_data_key` or `schema_behind`", body = ErrorBody),
    ),
)]
async fn sync(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Outcome>, ApiFailure> {
    user.require("integrations:manage")?;
    call(&ctx, &parse_id(&id)?, Operation::Sync).await
}

/// Calls the provider for `operation`, logs the call and records the outcome on the
/// integration. The tenant connection is not held while the provider answers.
async fn call(
    ctx: &TenantContext,
    id: &Uuid,
    operation: Operation,
) -> Result<Json<Outcome>, ApiFailure> {
    let (code, blob, status): (String, Vec<u8>, String) = {
        let conn = ctx.pool.get().await?;
        let row = conn
            .query_opt(
                "SELECT provider, credentials_enc, status FROM integrations WHERE id = $1",
                &[id],
            )
            .await?
            .ok_or(ApiFailure::NotFound)?;
        (row.get(0), row.get(1), row.get(2))
    };
    if status == "disabled" {
        return Err(ApiFailure::Conflict(
            "integration_disabled",
            "this integration is disabled; enable it first".into(),
        ));
    }
    let provider = provider(&code).ok_or(ApiFailure::NotFound)?;
    vault(ctx)?;
    let outcome =
        integrations::call_provider(&ctx.integrations, ctx.id, *id, provider, &blob, operation)
            .await
            .map_err(ApiFailure::Internal)?;
    let mut conn = ctx.pool.get().await?;
    let tx = conn.transaction().await?;
    integrations::record(&*tx, *id, provider, &outcome).await?;
    tx.commit().await?;
    Ok(Json(outcome))
}

/// The integration's calls of the last 30 days, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/integrations/{id}/calls",
    operation_id = "integrations_calls",
    tag = "integrations",
    params(("id" = Uuid, Path, description = "The integration's id"), Page),
    responses(
        (status = 200, description = "The calls", body = Calls),
        (status = 409, description = "`schema_behind`", body = ErrorBody),
    ),
)]
async fn calls(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Calls>, ApiFailure> {
    user.require("integrations:read")?;
    let id = parse_id(&id)?;
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let conn = ctx.pool.get().await?;
    if conn
        .query_opt("SELECT 1 FROM integrations WHERE id = $1", &[&id])
        .await?
        .is_none()
    {
        return Err(ApiFailure::NotFound);
    }
    let items = conn
        .query(
            "SELECT provider, operation, status, error, duration_ms, at FROM integration_calls \
             WHERE integration_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
            &[&id, &limit],
        )
        .await?
        .iter()
        .map(|r| Call {
            at: r.get(5),
            duration_ms: r.get(4),
            error: r.get(3),
            operation: r.get(1),
            provider: r.get(0),
            status: r.get(2),
        })
        .collect();
    Ok(Json(Calls { items }))
}
