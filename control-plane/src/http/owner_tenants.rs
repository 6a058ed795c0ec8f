//! `/api/owner/tenants`: create, list, show, suspend, resume and delete tenants, and put
//! them in maintenance.
//!
//! Create and delete record intent and answer 202 at once; the provisioner does the
//! work in the background. `?wait=true` waits (up to [`WAIT_LIMIT`]) and answers with
//! the settled tenant, which is what scripts want.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use owner::domains::{TenantDomain, domain_list_for_tenant};
use owner::tenants::{Tenant, TenantFilter, TenantStatus, tenant_find, tenant_list};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{ApiJson, ApiQuery, ClientIp};
use super::owner_auth::CurrentOperator;
use crate::http::state::AppState;
use crate::provisioning::CreateTenant;
use crate::views::TenantInfo;
use crate::{Error, Result};

/// The longest `?wait=true` holds a request.
pub const WAIT_LIMIT: Duration = Duration::from_secs(20);
const MAX_PAGE: i64 = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tenants", get(list).post(create))
        .route("/tenants/{id}", get(show).delete(delete))
        .route("/tenants/{id}/suspend", post(suspend))
        .route("/tenants/{id}/resume", post(resume))
        .route(
            "/tenants/{id}/maintenance",
            axum::routing::put(maintenance_on).delete(maintenance_off),
        )
        .route(
            "/tenants/{id}/settings",
            get(settings).patch(settings_update),
        )
        .route(
            "/tenants/{id}/features",
            get(settings).patch(features_update),
        )
        .route("/tenants/{id}/audit", get(audit))
        .route("/tenants/{id}/domains", get(domains).post(domain_add))
        .route(
            "/tenants/{id}/domains/{domain}",
            axum::routing::delete(domain_remove),
        )
        .route(
            "/tenants/{id}/domains/{domain}/primary",
            post(domain_primary),
        )
        .route(
            "/tenants/{id}/subscription",
            get(subscription).put(subscription_update),
        )
}

/// A tenant as the API shows it (never its secrets) and its domains.
#[derive(Serialize)]
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    slug: String,
    name: String,
    plan: Option<String>,
    #[serde(default)]
    domains: Vec<String>,
    /// The tenant's first user (an admin); without `admin_password` a one-time password
    /// is generated and returned once.
    admin_email: Option<String>,
    admin_password: Option<String>,
}

/// `?wait=true`: answer once the work is done (up to [`WAIT_LIMIT`]).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitQuery {
    #[serde(default)]
    pub wait: bool,
}

async fn create(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    ApiQuery(query): ApiQuery<WaitQuery>,
    ApiJson(req): ApiJson<CreateRequest>,
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    #[serde(default)]
    include_deleted: bool,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<serde_json::Value>> {
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
    let tenants: Vec<TenantInfo> = tenants.iter().map(TenantInfo::from).collect();
    // Every paged list answers the same envelope, on the owner and tenant APIs alike.
    Ok(Json(serde_json::json!({
        "items": tenants,
        "total": total,
        "limit": limit,
        "offset": offset,
    })))
}

async fn show(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(key): Path<String>,
) -> Result<Json<TenantView>> {
    let tenant = find(&state, &key).await?;
    Ok(Json(view(&state, tenant).await?))
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceRequest {
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    allow_reads: bool,
}

/// Puts the tenant in an operator's maintenance (or changes its note and reads).
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

async fn settings(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(key): Path<String>,
) -> Result<Json<crate::customisation::Customisation>> {
    let tenant = find(&state, &key).await?;
    Ok(Json(state.customiser.show(&tenant).await?))
}

/// A patch of the tenant's settings: a field given replaces, `null` resets to the
/// default, a field left out stays.
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

/// A patch of the tenant's feature overrides: `{"feature": true}` adds it, `false` takes
/// it away, `null` leaves it to the plan.
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

async fn audit(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(key): Path<String>,
) -> Result<Json<serde_json::Value>> {
    let tenant = find(&state, &key).await?;
    let conn = state.owner.conn().await?;
    let events =
        owner::audit::audit_list_for_target(&**conn, "tenant", &tenant.id.to_string(), 1000)
            .await?;
    Ok(Json(serde_json::json!({ "events": events })))
}

/// The tenant's subscriptions, current first.
async fn subscription(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(key): Path<String>,
) -> Result<Json<serde_json::Value>> {
    let tenant = find(&state, &key).await?;
    let conn = state.owner.conn().await?;
    let history = owner::subscriptions::subscription_list(&**conn, tenant.id).await?;
    Ok(Json(serde_json::json!({
        "current": history.first(),
        "history": history,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionRequest {
    plan: String,
    #[serde(default = "default_subscription_status")]
    status: owner::subscriptions::SubscriptionStatus,
    trial_days: Option<u32>,
}

fn default_subscription_status() -> owner::subscriptions::SubscriptionStatus {
    owner::subscriptions::SubscriptionStatus::Active
}

/// Moves the tenant to a plan, or sets its billing status; limits apply from the next
/// request.
async fn subscription_update(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    ApiJson(req): ApiJson<SubscriptionRequest>,
) -> Result<Json<owner::subscriptions::Subscription>> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainRequest {
    domain: String,
    #[serde(default)]
    primary: bool,
}

/// The tenant's domains as they stand now (the answer of every domain route).
async fn domain_list(state: &AppState, tenant_id: Uuid) -> Result<Json<Vec<TenantDomain>>> {
    let conn = state.owner.conn().await?;
    Ok(Json(domain_list_for_tenant(&**conn, tenant_id).await?))
}

async fn domains(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(key): Path<String>,
) -> Result<Json<Vec<TenantDomain>>> {
    let tenant = find(&state, &key).await?;
    domain_list(&state, tenant.id).await
}

/// Adds a domain (unique across the fleet); served from the next request on.
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
