//! `/api/owner/tenants`: create, list, show, suspend, resume and delete tenants, and put
//! them in maintenance.
//!
//! Create and delete record intent and answer 202 at once; the provisioner does the
//! work in the background. `?wait=true` waits (up to [`WAIT_LIMIT`]) and answers with
//! the settled tenant, which is what scripts want.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use owner::audit::AuditEvent;
use owner::domains::{TenantDomain, domain_list_for_tenant};
use owner::subscriptions::Subscription;
use owner::tenants::{Tenant, TenantFilter, TenantStatus, tenant_find, tenant_list};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiJson, ApiQuery, ClientIp};
use super::owner_auth::CurrentOperator;
use crate::customisation::Customisation;
use crate::http::state::AppState;
use crate::provisioning::CreateTenant;
use crate::views::TenantInfo;
use crate::{Error, Result};

/// The longest `?wait=true` holds a request.
pub const WAIT_LIMIT: Duration = Duration::from_secs(20);
const MAX_PAGE: i64 = 500;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, delete))
        .routes(routes!(suspend))
        .routes(routes!(resume))
        .routes(routes!(maintenance_on, maintenance_off))
        .routes(routes!(settings, settings_update))
        .routes(routes!(features, features_update))
        .routes(routes!(audit))
        .routes(routes!(domains, domain_add))
        .routes(routes!(domain_remove))
        .routes(routes!(domain_primary))
        .routes(routes!(subscription, subscription_update))
}

/// A tenant as the API shows it (never its secrets) and its domains.
#[derive(Serialize, ToSchema)]
pub struct TenantView {
    #[serde(flatten)]
    pub tenant: TenantInfo,
    pub domains: Vec<TenantDomain>,
    /// Shown once, in the answer to the create request that generated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_time_password: Option<String>,
}

async fn view(state: &AppState, tenant: Tenant) -> Result<TenantView> {
    let conn = state.owner.conn().await?;
    let domains = domain_list_for_tenant(&**conn, tenant.id).await?;
    Ok(TenantView {
        tenant: TenantInfo::from(&tenant),
        domains,
        one_time_password: None,
    })
}

/// A tenant by id, or by slug among living tenants.
pub(super) async fn find(state: &AppState, key: &str) -> Result<Tenant> {
    let conn = state.owner.conn().await?;
    Ok(tenant_find(&**conn, key).await?)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TenantCreate {
    #[schema(pattern = "^[a-z][a-z0-9-]{1,39}$")]
    slug: String,
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// An active plan's code (default: the configured default plan).
    plan: Option<String>,
    /// Served from the moment the tenant is active; unique across the fleet.
    #[serde(default)]
    domains: Vec<String>,
    /// The tenant's first user (an admin); without `admin_password` a one-time password
    /// is generated and returned once.
    admin_email: Option<String>,
    #[schema(min_length = 10)]
    admin_password: Option<String>,
}

/// `?wait=true`: answer once the work is done (up to [`WAIT_LIMIT`]).
#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct WaitQuery {
    /// Answer once the work is done (up to 20 s) instead of at once.
    #[serde(default)]
    pub wait: bool,
}

/// Create a tenant: its database, roles and storage tree.
///
/// The intent is recorded and the answer is 202 at once; the provisioner does the work
/// in the background and resumes it after a crash. With `?wait=true`, 201 once active
/// (202 if it is not yet).
#[utoipa::path(post, path = "/tenants", tag = "tenants", params(WaitQuery), request_body = TenantCreate, responses(
    (status = 201, description = "Active (with `?wait=true`)", body = TenantView),
    (status = 202, description = "Recorded; being provisioned", body = TenantView),
))]
async fn create(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    ApiQuery(query): ApiQuery<WaitQuery>,
    ApiJson(req): ApiJson<TenantCreate>,
) -> Result<(StatusCode, Json<TenantView>)> {
    operator.require_write()?;
    let request = CreateTenant {
        slug: req.slug,
        name: req.name,
        plan: req.plan,
        domains: req.domains,
        admin_email: req.admin_email,
        admin_password: req.admin_password.map(secrecy::SecretString::from),
    };
    let (created, drive) = state
        .provisioner
        .create(&request, &operator.actor(ip))
        .await?;
    let tenant = created.tenant;
    let one_time = created
        .one_time_password
        .map(|p| secrecy::ExposeSecret::expose_secret(&p).to_string());
    match settle(&state, tenant.clone(), drive, query.wait).await {
        Ok((status, Json(mut view))) => {
            view.one_time_password = one_time;
            Ok((status, Json(view)))
        }
        // The tenant is recorded and will be provisioned; the one-time password exists
        // only here, so answer with it whatever went wrong after the commit.
        Err(e) => {
            tracing::warn!(error = %e, "answering a create request after its commit failed; answering without domains");
            Ok((
                StatusCode::ACCEPTED,
                Json(TenantView {
                    tenant: TenantInfo::from(&tenant),
                    domains: Vec::new(),
                    one_time_password: one_time,
                }),
            ))
        }
    }
}

/// When asked, waits for the drive; 201 once active, else 202.
async fn settle(
    state: &AppState,
    tenant: Tenant,
    handle: tokio::task::JoinHandle<Result<Tenant>>,
    wait: bool,
) -> Result<(StatusCode, Json<TenantView>)> {
    let mut tenant = tenant;
    if wait {
        if let Ok(Ok(Ok(settled))) = tokio::time::timeout(WAIT_LIMIT, handle).await {
            tenant = settled;
        } else {
            // Failed or still running: show the row as it stands, with its last error.
            tenant = find(state, &tenant.id.to_string()).await?;
        }
    }
    let status = match tenant.status {
        TenantStatus::Active if wait => StatusCode::CREATED,
        TenantStatus::Deleted if wait => StatusCode::OK,
        _ => StatusCode::ACCEPTED,
    };
    Ok((status, Json(view(state, tenant).await?)))
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only tenants in this state.
    #[param(value_type = Option<TenantStatus>)]
    status: Option<String>,
    #[serde(default)]
    include_deleted: bool,
    /// 1 to 500 (default 100).
    limit: Option<i64>,
    offset: Option<i64>,
}

/// A page of a list: the same envelope on the owner and tenant APIs alike.
#[derive(Serialize, ToSchema)]
struct TenantPage {
    items: Vec<TenantInfo>,
    /// Matching tenants in all pages.
    total: i64,
    limit: i64,
    offset: i64,
}

/// The tenants, a page at a time.
#[utoipa::path(get, path = "/tenants", tag = "tenants", params(ListQuery), responses((status = 200, body = TenantPage)))]
async fn list(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<TenantPage>> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            TenantStatus::parse(s)
                .ok_or_else(|| Error::BadRequest(format!("unknown status {s:?}")))?,
        ),
    };
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let offset = query.offset.unwrap_or(0).max(0);
    let conn = state.owner.conn().await?;
    let filter = TenantFilter {
        status,
        include_deleted: query.include_deleted || status == Some(TenantStatus::Deleted),
        limit,
        offset,
    };
    let tenants = tenant_list(&**conn, &filter).await?;
    let total = owner::tenants::tenant_count(&**conn, &filter).await?;
    Ok(Json(TenantPage {
        items: tenants.iter().map(TenantInfo::from).collect(),
        total,
        limit,
        offset,
    }))
}

/// One tenant, with its domains.
#[utoipa::path(get, path = "/tenants/{id}", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant")), responses((status = 200, body = TenantView)))]
async fn show(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(key): Path<String>,
) -> Result<Json<TenantView>> {
    let tenant = find(&state, &key).await?;
    Ok(Json(view(&state, tenant).await?))
}

/// Delete a tenant: its database, roles and files go; the row stays for the audit trail.
///
/// 202 at once; with `?wait=true`, 200 once deleted (202 if not yet).
#[utoipa::path(delete, path = "/tenants/{id}", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant"), WaitQuery), responses(
    (status = 200, description = "Deleted (with `?wait=true`)", body = TenantView),
    (status = 202, description = "Being deleted", body = TenantView),
))]
async fn delete(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    ApiQuery(query): ApiQuery<WaitQuery>,
) -> Result<(StatusCode, Json<TenantView>)> {
    operator.require_write()?;
    let tenant = find(&state, &key).await?;
    let (tenant, drive) = state
        .provisioner
        .delete(tenant.id, &operator.actor(ip))
        .await?;
    settle(&state, tenant, drive, query.wait).await
}

/// Suspend a tenant: kept intact, refused service (403 `tenant_suspended`).
#[utoipa::path(post, path = "/tenants/{id}/suspend", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant")), responses((status = 200, body = TenantView)))]
async fn suspend(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
) -> Result<Json<TenantView>> {
    operator.require_write()?;
    let tenant = find(&state, &key).await?;
    let tenant = state
        .provisioner
        .tenant_suspend(tenant.id, &operator.actor(ip))
        .await?;
    Ok(Json(view(&state, tenant).await?))
}

/// Resume a suspended tenant.
#[utoipa::path(post, path = "/tenants/{id}/resume", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant")), responses((status = 200, body = TenantView)))]
async fn resume(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
) -> Result<Json<TenantView>> {
    operator.require_write()?;
    let tenant = find(&state, &key).await?;
    let tenant = state
        .provisioner
        .tenant_resume(tenant.id, &operator.actor(ip))
        .await?;
    Ok(Json(view(&state, tenant).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MaintenanceRequest {
    /// What operators see on the tenant page.
    #[serde(default)]
    #[schema(max_length = 500)]
    note: Option<String>,
    /// Keep serving GET and HEAD requests.
    #[serde(default)]
    allow_reads: bool,
}

/// Put the tenant in maintenance (or change its note and reads).
///
/// Its API answers 503 `tenant_maintenance` (reads go on with `allow_reads`).
#[utoipa::path(put, path = "/tenants/{id}/maintenance", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant")), request_body = MaintenanceRequest, responses((status = 200, body = TenantView)))]
async fn maintenance_on(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    ApiJson(request): ApiJson<MaintenanceRequest>,
) -> Result<Json<TenantView>> {
    operator.require_write()?;
    let tenant = find(&state, &key).await?;
    let tenant = state
        .provisioner
        .maintenance_on(
            tenant.id,
            request.note.as_deref(),
            request.allow_reads,
            &operator.actor(ip),
        )
        .await?;
    Ok(Json(view(&state, tenant).await?))
}

/// Take the tenant out of an operator's maintenance.
#[utoipa::path(delete, path = "/tenants/{id}/maintenance", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant")), responses((status = 200, body = TenantView)))]
async fn maintenance_off(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
) -> Result<Json<TenantView>> {
    operator.require_write()?;
    let tenant = find(&state, &key).await?;
    let tenant = state
        .provisioner
        .maintenance_off(tenant.id, &operator.actor(ip))
        .await?;
    Ok(Json(view(&state, tenant).await?))
}

/// The tenant's settings and features.
#[utoipa::path(get, path = "/tenants/{id}/settings", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant")), responses((status = 200, body = Customisation)))]
async fn settings(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(key): Path<String>,
) -> Result<Json<Customisation>> {
    let tenant = find(&state, &key).await?;
    Ok(Json(state.customiser.show(&tenant).await?))
}

/// The tenant's features (the same answer as its settings).
#[utoipa::path(get, path = "/tenants/{id}/features", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant")), responses((status = 200, body = Customisation)))]
async fn features(
    state: State<AppState>,
    operator: CurrentOperator,
    key: Path<String>,
) -> Result<Json<Customisation>> {
    settings(state, operator, key).await
}

/// Patch the tenant's settings: a field given replaces, `null` resets to the default, a
/// field left out stays.
#[utoipa::path(patch, path = "/tenants/{id}/settings", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant")), request_body = owner::tenant_settings::SettingsPatch, responses((status = 200, body = Customisation)))]
async fn settings_update(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    ApiJson(patch): ApiJson<serde_json::Value>,
) -> Result<Json<crate::customisation::Customisation>> {
    operator.require_write()?;
    let tenant = find(&state, &key).await?;
    Ok(Json(
        state
            .customiser
            .update_settings(&operator.actor(ip), tenant.id, &patch)
            .await?,
    ))
}

/// Patch the tenant's feature overrides: `{"feature": true}` adds it, `false` takes it
/// away, `null` leaves it to the plan.
#[utoipa::path(patch, path = "/tenants/{id}/features", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant")), request_body = std::collections::BTreeMap<String, Option<bool>>, responses((status = 200, body = Customisation)))]
async fn features_update(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    ApiJson(patch): ApiJson<serde_json::Value>,
) -> Result<Json<crate::customisation::Customisation>> {
    operator.require_write()?;
    let tenant = find(&state, &key).await?;
    Ok(Json(
        state
            .customiser
            .update_features(&operator.actor(ip), tenant.id, &patch)
            .await?,
    ))
}

#[derive(Serialize, ToSchema)]
struct EventList {
    events: Vec<AuditEvent>,
}

/// The tenant's audit trail, newest first (up to 1000 events).
#[utoipa::path(get, path = "/tenants/{id}/audit", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant")), responses((status = 200, body = EventList)))]
async fn audit(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(key): Path<String>,
) -> Result<Json<EventList>> {
    let tenant = find(&state, &key).await?;
    let conn = state.owner.conn().await?;
    let events =
        owner::audit::audit_list_for_target(&**conn, "tenant", &tenant.id.to_string(), 1000)
            .await?;
    Ok(Json(EventList { events }))
}

#[derive(Serialize, ToSchema)]
struct Subscriptions {
    /// Null for a tenant without one.
    current: Option<Subscription>,
    /// Current first.
    history: Vec<Subscription>,
}

/// The tenant's subscriptions, current first.
#[utoipa::path(get, path = "/tenants/{id}/subscription", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant")), responses((status = 200, body = Subscriptions)))]
async fn subscription(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(key): Path<String>,
) -> Result<Json<Subscriptions>> {
    let tenant = find(&state, &key).await?;
    let conn = state.owner.conn().await?;
    let history = owner::subscriptions::subscription_list(&**conn, tenant.id).await?;
    Ok(Json(Subscriptions {
        current: history.first().cloned(),
        history,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SubscriptionRequest {
    /// An active plan's code.
    plan: String,
    /// Default `active`.
    #[serde(default = "default_subscription_status")]
    status: owner::subscriptions::SubscriptionStatus,
    /// With `trialing`: days until the trial ends (default 14, at most 365 counted).
    trial_days: Option<u32>,
}

fn default_subscription_status() -> owner::subscriptions::SubscriptionStatus {
    owner::subscriptions::SubscriptionStatus::Active
}

/// Move the tenant to a plan, or set its billing status; limits apply from the next
/// request.
#[utoipa::path(put, path = "/tenants/{id}/subscription", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant")), request_body = SubscriptionRequest, responses((status = 200, body = Subscription)))]
async fn subscription_update(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    ApiJson(req): ApiJson<SubscriptionRequest>,
) -> Result<Json<Subscription>> {
    operator.require_write()?;
    let tenant = find(&state, &key).await?;
    let change = crate::billing::SubscriptionChange {
        plan: req.plan,
        status: req.status,
        trial_days: req.trial_days,
    };
    Ok(Json(
        state
            .billing
            .subscription_update(&operator.actor(ip), tenant.id, &change)
            .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DomainRequest {
    /// A host name such as `acme.example.com`, unique across the fleet.
    #[schema(min_length = 1, max_length = 253)]
    domain: String,
    /// Make it the tenant's primary domain.
    #[serde(default)]
    primary: bool,
}

/// The tenant's domains as they stand now (the answer of every domain route).
async fn domain_list(state: &AppState, tenant_id: Uuid) -> Result<Json<Vec<TenantDomain>>> {
    let conn = state.owner.conn().await?;
    Ok(Json(domain_list_for_tenant(&**conn, tenant_id).await?))
}

/// The tenant's domains.
#[utoipa::path(get, path = "/tenants/{id}/domains", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant")), responses((status = 200, body = Vec<TenantDomain>)))]
async fn domains(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(key): Path<String>,
) -> Result<Json<Vec<TenantDomain>>> {
    let tenant = find(&state, &key).await?;
    domain_list(&state, tenant.id).await
}

/// Add a domain (unique across the fleet); served from the next request on.
#[utoipa::path(post, path = "/tenants/{id}/domains", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant")), request_body = DomainRequest, responses((status = 201, description = "The tenant's domains now", body = Vec<TenantDomain>)))]
async fn domain_add(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    ApiJson(req): ApiJson<DomainRequest>,
) -> Result<(StatusCode, Json<Vec<TenantDomain>>)> {
    operator.require_write()?;
    let tenant = find(&state, &key).await?;
    state
        .domains
        .add(tenant.id, &req.domain, req.primary, &operator.actor(ip))
        .await?;
    Ok((StatusCode::CREATED, domain_list(&state, tenant.id).await?))
}

/// Remove a domain (not the primary one while others remain).
#[utoipa::path(delete, path = "/tenants/{id}/domains/{domain}", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant"), ("domain" = String, Path, description = "One of the tenant's domains")), responses((status = 200, description = "The tenant's domains now", body = Vec<TenantDomain>)))]
async fn domain_remove(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path((key, domain)): Path<(String, String)>,
) -> Result<Json<Vec<TenantDomain>>> {
    operator.require_write()?;
    let tenant = find(&state, &key).await?;
    state
        .domains
        .remove(tenant.id, &domain, &operator.actor(ip))
        .await?;
    domain_list(&state, tenant.id).await
}

/// Make a domain the tenant's primary one.
#[utoipa::path(post, path = "/tenants/{id}/domains/{domain}/primary", tag = "tenants", params(("id" = String, Path, description = "The tenant's id, or the slug of a living tenant"), ("domain" = String, Path, description = "One of the tenant's domains")), responses((status = 200, description = "The tenant's domains now", body = Vec<TenantDomain>)))]
async fn domain_primary(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path((key, domain)): Path<(String, String)>,
) -> Result<Json<Vec<TenantDomain>>> {
    operator.require_write()?;
    let tenant = find(&state, &key).await?;
    state
        .domains
        .make_primary(tenant.id, &domain, &operator.actor(ip))
        .await?;
    domain_list(&state, tenant.id).await
}
