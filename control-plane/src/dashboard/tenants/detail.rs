//! A tenant's page: its state, provisioning steps, domains, subscription, usage,
//! backups and audit trail.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use owner::backups::{Backup, BackupStatus};
use owner::maintenance::Holder;
use owner::tenants::{Step, Tenant, TenantStatus, tenant_fetch};
use serde::Deserialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::Result;
use crate::dashboard::page::{Chrome, DashResult, DashSession, render};
use crate::dashboard::view::{ago, bytes, chart, notice_text, when, when_opt};
use crate::http::state::AppState;

pub struct StepView {
    pub name: &'static str,
    pub class: &'static str,
}

pub struct DomainView {
    pub domain: String,
    pub primary: bool,
}

pub struct SubscriptionView {
    pub plan: String,
    pub status: String,
    pub started: String,
    pub period_end: String,
    pub trial_end: String,
}

pub struct EventView {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub details: String,
}

/// A row of the Backups panel.
pub struct BackupView {
    pub id: String,
    pub started: String,
    pub kind: &'static str,
    pub status: &'static str,
    pub size: String,
    pub duration: String,
    pub error: String,
    pub restorable: bool,
}

impl From<&Backup> for BackupView {
    fn from(b: &Backup) -> Self {
        Self {
            id: b.id.to_string(),
            started: when(b.started_at),
            kind: b.kind.as_str(),
            status: b.status.as_str(),
            size: bytes(b.size_bytes()),
            duration: b
                .duration_ms()
                .map_or_else(|| "–".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
            error: b.error.clone().unwrap_or_default(),
            restorable: b.status == BackupStatus::Succeeded,
        }
    }
}

/// The tenant's latest backups, for its page.
pub async fn backup_views(client: &impl GenericClient, tenant_id: Uuid) -> Result<Vec<BackupView>> {
    Ok(owner::backups::backup_list(client, Some(tenant_id), 20)
        .await?
        .iter()
        .map(BackupView::from)
        .collect())
}

#[derive(Template)]
#[template(path = "tenant.html")]
pub struct DetailPage {
    pub chrome: Chrome,
    pub id: String,
    pub slug: String,
    pub name: String,
    pub status: String,
    pub settled: bool,
    pub plan: String,
    pub schema: String,
    pub target_version: i32,
    pub behind: bool,
    /// The migrations a fleet run would apply to this tenant.
    pub pending: Vec<String>,
    /// Where the tenant lives: database, roles, storage tree, and a connection template
    /// for ops (the passwords stay sealed in the owner database).
    pub database: String,
    pub owner_role: String,
    pub runtime_role: String,
    pub storage_path: String,
    pub connection: String,
    pub created: String,
    pub activated: String,
    pub last_error: Option<String>,
    pub steps: Vec<StepView>,
    pub domains: Vec<DomainView>,
    pub subscriptions: Vec<SubscriptionView>,
    pub plans: Vec<(String, String)>,
    pub sub_statuses: Vec<&'static str>,
    pub usage_chart: String,
    pub usage_facts: Vec<(String, String)>,
    pub events: Vec<EventView>,
    pub error: Option<String>,
    pub one_time_password: Option<String>,
    pub can_suspend: bool,
    pub can_resume: bool,
    pub can_delete: bool,
    pub maintenance: Option<MaintenanceView>,
    /// An operator may put the tenant in maintenance (or change or end theirs).
    pub can_maintain: bool,
    pub backups: Vec<BackupView>,
    /// The database server it lives on, and the active ones it could move to.
    pub server: String,
    pub move_targets: Vec<String>,
    pub settings: SettingsView,
    pub features: Vec<FeatureView>,
    pub over_quota: bool,
}

/// The settings form's values (blank: the default).
pub struct SettingsView {
    pub time_zone: String,
    pub locale: String,
    pub brand_name: String,
    pub brand_colour: String,
    pub logo_file_id: String,
}

/// A feature of the plan or of an override, and whether the tenant has it.
pub struct FeatureView {
    pub name: String,
    pub in_plan: bool,
    /// `plan`, `on` or `off`.
    pub state: &'static str,
    pub enabled: bool,
}

fn features_of(c: &crate::customisation::Customisation) -> Vec<FeatureView> {
    let mut names: std::collections::BTreeSet<&str> =
        c.plan_features.iter().map(String::as_str).collect();
    names.extend(c.feature_overrides.0.keys().map(String::as_str));
    names
        .into_iter()
        .map(|name| FeatureView {
            name: name.to_string(),
            in_plan: c.plan_features.iter().any(|f| f == name),
            state: match c.feature_overrides.0.get(name) {
                None => "plan",
                Some(true) => "on",
                Some(false) => "off",
            },
            enabled: c.features.iter().any(|f| f == name),
        })
        .collect()
}

/// The tenant's maintenance, as the page shows it.
pub struct MaintenanceView {
    pub by: &'static str,
    pub note: String,
    pub allow_reads: bool,
    pub since: String,
}

impl From<&owner::maintenance::Maintenance> for MaintenanceView {
    fn from(m: &owner::maintenance::Maintenance) -> Self {
        Self {
            by: m.by.as_str(),
            note: m.note.clone().unwrap_or_default(),
            allow_reads: m.allow_reads,
            since: when_opt(m.since),
        }
    }
}

fn steps_of(tenant: &Tenant) -> Vec<StepView> {
    let deleting = matches!(
        tenant.status,
        TenantStatus::Deleting | TenantStatus::Deleted
    );
    let range = if deleting {
        &Step::ALL[6..]
    } else {
        &Step::ALL[..6]
    };
    let reached = range
        .iter()
        .position(|s| *s == tenant.provisioning_step)
        .unwrap_or(0);
    range
        .iter()
        .enumerate()
        .map(|(i, s)| StepView {
            name: s.as_str(),
            class: if i < reached || (i == reached && i == range.len() - 1) {
                "done"
            } else if i == reached {
                "current"
            } else {
                ""
            },
        })
        .collect()
}

/// The tenant's page, with an optional notice, error (and its status) or one-time
/// password to show once.
pub async fn detail_page(
    state: &AppState,
    session: &DashSession,
    id: Uuid,
    notice: Option<String>,
    error: Option<String>,
    one_time_password: Option<String>,
    status: StatusCode,
) -> DashResult<Response> {
    let conn = state.owner.conn().await?;
    let tenant = tenant_fetch(&**conn, id).await?;
    let domains = owner::domains::domain_list_for_tenant(&**conn, id)
        .await?
        .into_iter()
        .map(|d| DomainView {
            domain: d.domain,
            primary: d.is_primary,
        })
        .collect();
    let subscriptions = owner::subscriptions::subscription_list(&**conn, id)
        .await?
        .into_iter()
        .map(|s| SubscriptionView {
            plan: s.plan_code,
            status: s.status.as_str().into(),
            started: when(s.created_at),
            period_end: when_opt(s.current_period_end),
            trial_end: when_opt(s.trial_ends_at),
        })
        .collect();
    let plans = active_plans(&**conn).await?;
    let move_targets: Vec<String> = owner::servers::server_list(&**conn)
        .await?
        .into_iter()
        .filter(|s| {
            s.server.status == owner::servers::ServerStatus::Active
                && s.server.id != tenant.server_id
        })
        .map(|s| s.server.id)
        .collect();
    let recent = owner::audit::AuditFilter {
        target_type: Some("tenant".into()),
        target_id: Some(id.to_string()),
        limit: 100,
        ..Default::default()
    };
    let events: Vec<EventView> = owner::audit::audit_search(&**conn, &recent)
        .await?
        .into_iter()
        .map(|e| EventView {
            at: when(e.at),
            actor: e.actor,
            action: e.action,
            details: if e.details == serde_json::json!({}) {
                String::new()
            } else {
                e.details.to_string()
            },
        })
        .collect();
    let plan = owner::plans::plan_fetch(&**conn, &tenant.plan_code)
        .await
        .ok();
    let (usage_chart, usage_facts) = usage_view(&**conn, id, plan.as_ref()).await?;
    let customisation = state.customiser.show(&tenant).await?;
    let settings = &customisation.settings;
    let backups = backup_views(&**conn, id).await?;
    let source = state.migrations.fresh().await;
    let target_version = source.latest_version();
    let pending = source
        .after(tenant.schema_version.unwrap_or(0))
        .map(|(v, name, _)| format!("V{v}__{name}"))
        .collect();
    let connection = match owner::servers::server_fetch(&**conn, &tenant.server_id).await {
        Ok(server) => format!(
            "postgres://{}@{}:{}/{}",
            tenant.runtime_role, server.host, server.port, tenant.db_name
        ),
        Err(_) => "–".into(),
    };
    let storage_path = storage::Storage::new(&state.config.storage_root)
        .tenant(&tenant.slug)
        .map_or_else(|_| "–".into(), |t| t.dir().display().to_string());
    let mut chrome = session.chrome(state, "tenants");
    chrome.notice = notice;
    let mut response = render(&DetailPage {
        chrome,
        id: id.to_string(),
        steps: steps_of(&tenant),
        // An operation's maintenance ends by itself; an operator's lasts until ended.
        settled: !matches!(
            tenant.status,
            TenantStatus::Provisioning | TenantStatus::Deleting
        ) && tenant
            .maintenance
            .as_ref()
            .is_none_or(|m| m.by == Holder::Operator),
        maintenance: tenant.maintenance.as_ref().map(MaintenanceView::from),
        can_maintain: !matches!(
            tenant.status,
            TenantStatus::Deleting | TenantStatus::Deleted
        ) && tenant
            .maintenance
            .as_ref()
            .is_none_or(|m| m.by == Holder::Operator),
        backups,
        settings: SettingsView {
            time_zone: settings.time_zone.clone(),
            locale: settings.locale.clone(),
            brand_name: settings.brand_name.clone().unwrap_or_default(),
            brand_colour: settings.brand_colour.clone().unwrap_or_default(),
            logo_file_id: settings
                .logo_file_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
        },
        features: features_of(&customisation),
        over_quota: tenant.database_over_quota,
        server: tenant.server_id.clone(),
        move_targets: if matches!(
            tenant.status,
            TenantStatus::Active | TenantStatus::Suspended
        ) && tenant.maintenance.is_none()
        {
            move_targets
        } else {
            Vec::new()
        },
        slug: tenant.slug,
        name: tenant.name,
        status: tenant.status.as_str().into(),
        plan: tenant.plan_code,
        schema: tenant
            .schema_version
            .map_or_else(|| "–".into(), |v| format!("V{v}")),
        target_version,
        behind: tenant.schema_version.is_some_and(|v| v < target_version),
        pending,
        database: tenant.db_name.clone(),
        owner_role: tenant.owner_role.clone(),
        runtime_role: tenant.runtime_role.clone(),
        storage_path,
        connection,
        created: when(tenant.created_at),
        activated: when_opt(tenant.activated_at),
        last_error: tenant.last_error,
        domains,
        subscriptions,
        plans,
        sub_statuses: owner::subscriptions::SubscriptionStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .collect(),
        usage_chart,
        usage_facts,
        events,
        error,
        one_time_password,
        can_suspend: tenant.status == TenantStatus::Active,
        can_resume: tenant.status == TenantStatus::Suspended,
        can_delete: matches!(
            tenant.status,
            TenantStatus::Active | TenantStatus::Suspended | TenantStatus::Provisioning
        ),
    });
    *response.status_mut() = status;
    Ok(response)
}

/// The usage chart (database and storage bytes over the last samples) and latest figures,
/// each against its plan's limit.
async fn usage_view(
    client: &impl GenericClient,
    id: Uuid,
    plan: Option<&owner::plans::Plan>,
) -> Result<(String, Vec<(String, String)>)> {
    let samples = owner::usage::usage_series(client, id, 60).await?;
    let points: Vec<_> = samples
        .iter()
        .filter(|s| s.database_bytes.is_some() || s.storage_bytes.is_some())
        .map(|s| {
            (
                s.sampled_at,
                s.database_bytes.unwrap_or(0) as f64,
                s.storage_bytes.unwrap_or(0) as f64,
            )
        })
        .collect();
    let latest = samples.iter().rev().find(|s| s.database_bytes.is_some());
    let requests: i64 = samples.iter().map(|s| s.requests).sum();
    let facts = vec![
        (
            "Database".into(),
            of_limit(
                latest.and_then(|s| s.database_bytes),
                plan.and_then(|p| p.max_database_bytes),
                |n| bytes(Some(n)),
            ),
        ),
        (
            "Files".into(),
            of_limit(
                latest.and_then(|s| s.storage_bytes),
                plan.and_then(|p| p.max_storage_bytes),
                |n| bytes(Some(n)),
            ),
        ),
        (
            "Users".into(),
            of_limit(
                latest.and_then(|s| s.users).map(i64::from),
                plan.and_then(|p| p.max_users).map(i64::from),
                |n| n.to_string(),
            ),
        ),
        (
            format!("Requests ({} samples)", samples.len()),
            requests.to_string(),
        ),
        (
            "Last sample".into(),
            samples
                .last()
                .map_or_else(|| "none yet".into(), |s| ago(s.sampled_at)),
        ),
    ];
    Ok((chart(&points), facts))
}

/// `12 MiB of 512 MiB (2%)`, `3 (no limit)`, or "no sample yet" before metering.
fn of_limit(used: Option<i64>, limit: Option<i64>, show: impl Fn(i64) -> String) -> String {
    match (used, limit) {
        (None, _) => "no sample yet".into(),
        (Some(used), None) => format!("{} (no limit)", show(used)),
        (Some(used), Some(limit)) => {
            let share = if limit > 0 {
                used as f64 * 100.0 / limit as f64
            } else {
                100.0
            };
            format!("{} of {} ({share:.0}%)", show(used), show(limit))
        }
    }
}

/// Totals over each living tenant's latest sample, for the overview.
pub async fn usage_totals(client: &impl GenericClient) -> Result<Vec<(String, String)>> {
    let totals = owner::usage::usage_totals(client).await?;
    Ok(vec![
        ("Active tenants".into(), totals.active_tenants.to_string()),
        ("Databases".into(), bytes(Some(totals.database_bytes))),
        ("Files".into(), bytes(Some(totals.storage_bytes))),
        ("Tenant users".into(), totals.users.to_string()),
        (
            "Requests, last 24 h".into(),
            totals.requests_24h.to_string(),
        ),
    ])
}

/// The cookie that carries a new tenant's one-time admin password from the create form
/// to the tenant's page, once.
pub const ONE_TIME_COOKIE: &str = "cp_one_time_password";

#[derive(Deserialize, Default)]
pub struct DetailQuery {
    notice: Option<String>,
}

pub async fn detail(
    State(state): State<AppState>,
    session: DashSession,
    Path(key): Path<String>,
    Query(query): Query<DetailQuery>,
    headers: axum::http::HeaderMap,
) -> DashResult<Response> {
    let id = {
        let conn = state.owner.conn().await?;
        owner::tenants::tenant_find(&**conn, &key).await?.id
    };
    // A new tenant's one-time admin password, shown on this one view and then forgotten.
    let one_time = crate::http::session::cookie(&headers, ONE_TIME_COOKIE)
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let mut response = detail_page(
        &state,
        &session,
        id,
        notice_text(query.notice.as_deref()),
        None,
        one_time.clone(),
        StatusCode::OK,
    )
    .await?;
    if one_time.is_some()
        && let Ok(clear) = axum::http::HeaderValue::from_str(&format!(
            "{}=; Path=/owner/tenants/{id}; HttpOnly; SameSite=Strict; Max-Age=0",
            ONE_TIME_COOKIE
        ))
    {
        response
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, clear);
    }
    Ok(response)
}

/// `(code, name)` of the plans a tenant can be put on.
pub(super) async fn active_plans(client: &impl GenericClient) -> Result<Vec<(String, String)>> {
    Ok(owner::plans::plan_list(client)
        .await?
        .into_iter()
        .filter(|p| p.active)
        .map(|p| (p.code, p.name))
        .collect())
}
