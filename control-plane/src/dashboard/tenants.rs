//! Tenants: the searchable list, the create form, a tenant's page and its actions. The
//! actions call the same provisioner and billing functions as the owner API.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use owner::tenants::{
    Step, Tenant, TenantSearch, TenantSort, TenantStatus, tenant_fetch, tenant_search,
};
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::view::{ago, bytes, chart, notice_text, when, when_opt};
use super::{
    Chrome, DashError, DashForm, DashResult, DashSession, client_mistake, render, see_other,
};
use crate::app::AppState;
use crate::http::extract::ClientIp;
use crate::provisioning::{CreateTenant, FirstAdmin};
use crate::{Error, Result};

const PAGE_SIZE: i64 = 50;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    q: Option<String>,
    status: Option<String>,
    plan: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    page: Option<i64>,
}

pub struct Row {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub status: String,
    pub plan: String,
    pub domain: String,
    pub schema: String,
    pub database: String,
    pub storage: String,
    pub created: String,
}

pub struct Column {
    pub label: &'static str,
    pub href: String,
    pub arrow: &'static str,
}

#[derive(Template)]
#[template(path = "tenants.html")]
pub struct ListPage {
    pub chrome: Chrome,
    pub q: String,
    pub status: String,
    pub plan: String,
    pub statuses: Vec<&'static str>,
    pub plans: Vec<String>,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    pub total: i64,
    pub first: i64,
    pub last: i64,
    pub prev: Option<String>,
    pub next: Option<String>,
}

fn query_string(pairs: &[(&str, String)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    serde_urlencoded::to_string(kept).unwrap_or_default()
}

pub async fn list(
    State(state): State<AppState>,
    session: DashSession,
    Query(query): Query<ListQuery>,
) -> DashResult<Response> {
    let text = query.q.clone().unwrap_or_default();
    let status_text = query.status.clone().unwrap_or_default();
    let status = match status_text.as_str() {
        "" => None,
        s => Some(TenantStatus::parse(s).ok_or_else(|| {
            DashError::Failed(Error::BadRequest(format!("unknown status {s:?}")))
        })?),
    };
    let plan = query.plan.clone().unwrap_or_default();
    let sort = query
        .sort
        .as_deref()
        .and_then(TenantSort::parse)
        .unwrap_or_default();
    let descending = match query.dir.as_deref() {
        Some("asc") => false,
        Some("desc") => true,
        // Newest first by default; names and codes alphabetically.
        _ => sort == TenantSort::Created,
    };
    let page = query.page.unwrap_or(1).max(1);
    let conn = state.pool.get().await?;
    let (items, total) = tenant_search(
        &**conn,
        &TenantSearch {
            text: Some(text.clone()),
            status,
            plan: Some(plan.clone()).filter(|p| !p.is_empty()),
            sort,
            descending,
            limit: PAGE_SIZE,
            offset: (page - 1) * PAGE_SIZE,
        },
    )
    .await?;
    let plans = owner::plans::plan_list(&**conn)
        .await?
        .into_iter()
        .map(|p| p.code)
        .collect();
    let base = |sort: &str, dir: &str, page: i64| {
        format!(
            "/owner/tenants?{}",
            query_string(&[
                ("q", text.clone()),
                ("status", status_text.clone()),
                ("plan", plan.clone()),
                ("sort", sort.to_string()),
                ("dir", dir.to_string()),
                (
                    "page",
                    if page > 1 {
                        page.to_string()
                    } else {
                        String::new()
                    }
                ),
            ])
        )
    };
    let current_dir = if descending { "desc" } else { "asc" };
    let columns = [
        ("Tenant", TenantSort::Name),
        ("Slug", TenantSort::Slug),
        ("Status", TenantSort::Status),
        ("Plan", TenantSort::Plan),
        ("Schema", TenantSort::SchemaVersion),
        ("Created", TenantSort::Created),
    ]
    .into_iter()
    .map(|(label, column)| {
        let active = column == sort;
        let dir = if active && !descending { "desc" } else { "asc" };
        Column {
            label,
            href: base(column.as_str(), dir, 1),
            arrow: match (active, descending) {
                (false, _) => "",
                (true, true) => " ↓",
                (true, false) => " ↑",
            },
        }
    })
    .collect();
    let rows = items
        .into_iter()
        .map(|item| Row {
            id: item.tenant.id.to_string(),
            slug: item.tenant.slug,
            name: item.tenant.name,
            status: item.tenant.status.as_str().into(),
            plan: item.tenant.plan_code,
            domain: item.primary_domain.unwrap_or_default(),
            schema: item
                .tenant
                .schema_version
                .map_or_else(|| "–".into(), |v| format!("V{v}")),
            database: bytes(item.database_bytes),
            storage: bytes(item.storage_bytes),
            created: ago(item.tenant.created_at),
        })
        .collect::<Vec<_>>();
    let offset = (page - 1) * PAGE_SIZE;
    let shown = rows.len() as i64;
    Ok(render(&ListPage {
        chrome: session.chrome(&state, "tenants"),
        q: text.clone(),
        status: status_text.clone(),
        plan: plan.clone(),
        statuses: vec!["provisioning", "active", "suspended", "deleting", "deleted"],
        plans,
        columns,
        total,
        first: if shown == 0 { 0 } else { offset + 1 },
        last: offset + shown,
        prev: (page > 1).then(|| base(sort.as_str(), current_dir, page - 1)),
        next: (offset + shown < total).then(|| base(sort.as_str(), current_dir, page + 1)),
        rows,
    }))
}

#[derive(Deserialize, Default, Clone)]
pub struct CreateForm {
    #[serde(default)]
    slug: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    domains: String,
    #[serde(default)]
    admin_email: String,
    #[serde(default)]
    admin_password: String,
}

#[derive(Template)]
#[template(path = "tenant_new.html")]
pub struct NewPage {
    pub chrome: Chrome,
    pub form: CreateForm,
    pub plans: Vec<(String, String)>,
    pub errors: HashMap<&'static str, String>,
    pub base_domain: String,
}

impl NewPage {
    fn error(&self, field: &str) -> &str {
        self.errors.get(field).map_or("", String::as_str)
    }
}

async fn new_page(
    state: &AppState,
    session: &DashSession,
    form: CreateForm,
    errors: HashMap<&'static str, String>,
) -> DashResult<Response> {
    let conn = state.pool.get().await?;
    let plans = owner::plans::plan_list(&**conn)
        .await?
        .into_iter()
        .filter(|p| p.active)
        .map(|p| (p.code, p.name))
        .collect();
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut response = render(&NewPage {
        chrome: session.chrome(state, "tenants"),
        form,
        plans,
        errors,
        base_domain: state.config.base_domain.clone(),
    });
    *response.status_mut() = status;
    Ok(response)
}

pub async fn new_form(State(state): State<AppState>, session: DashSession) -> DashResult<Response> {
    session.require_write()?;
    new_page(
        &state,
        &session,
        CreateForm {
            plan: "starter".into(),
            ..CreateForm::default()
        },
        HashMap::new(),
    )
    .await
}

/// Which form field an error is about, so the form shows it next to that field.
fn field_of(e: &Error) -> &'static str {
    use owner::Error as O;
    match e {
        Error::Owner(O::InvalidSlug(_) | O::SlugTaken) => "slug",
        Error::Owner(O::InvalidDomain(_) | O::DomainTaken(_)) => "domains",
        Error::Owner(O::UnknownPlan(_)) => "plan",
        Error::Owner(O::InvalidEmail) => "admin_email",
        Error::Owner(O::Invalid { field, .. }) => match *field {
            "name" => "name",
            "password" | "admin_password" => "admin_password",
            _ => "form",
        },
        _ => "form",
    }
}

pub async fn create(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    DashForm { session, form }: DashForm<CreateForm>,
) -> DashResult<Response> {
    session.require_write()?;
    let request = CreateTenant {
        slug: form.slug.trim().to_string(),
        name: form.name.trim().to_string(),
        plan: Some(form.plan.clone()).filter(|p| !p.is_empty()),
        domains: form
            .domains
            .split([',', '\n', ' '])
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect(),
    };
    let admin_email = form.admin_email.trim();
    let admin = (!admin_email.is_empty()).then(|| FirstAdmin {
        email: admin_email.to_string(),
        password: Some(form.admin_password.clone())
            .filter(|p| !p.is_empty())
            .map(secrecy::SecretString::from),
    });
    if admin.is_none() && !form.admin_password.is_empty() {
        let errors = HashMap::from([(
            "admin_email",
            "an admin password needs an admin email".to_string(),
        )]);
        return new_page(&state, &session, form, errors).await;
    }
    let actor = session.actor(ip);
    match state
        .provisioner
        .tenant_create_with_admin(&request, admin.as_ref(), &actor)
        .await
    {
        Ok((tenant, one_time)) => {
            state.provisioner.spawn_drive(tenant.id);
            let secret = one_time.map(|p| p.expose_secret().to_string());
            detail_page(
                &state,
                &session,
                tenant.id,
                Some("Tenant created: it is being provisioned.".into()),
                None,
                secret,
                StatusCode::CREATED,
            )
            .await
        }
        Err(e) => {
            let field = field_of(&e);
            let api = client_mistake(e)?;
            new_page(
                &state,
                &session,
                form,
                HashMap::from([(field, api.message)]),
            )
            .await
        }
    }
}

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

async fn tenant_by_key(client: &impl GenericClient, key: &str) -> Result<Tenant> {
    Ok(match Uuid::parse_str(key) {
        Ok(id) => tenant_fetch(client, id).await?,
        Err(_) => owner::tenants::tenant_fetch_by_slug(client, key).await?,
    })
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
    let conn = state.pool.get().await?;
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
    let plans = owner::plans::plan_list(&**conn)
        .await?
        .into_iter()
        .filter(|p| p.active)
        .map(|p| (p.code, p.name))
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
    let (usage_chart, usage_facts) = usage_view(&**conn, id).await?;
    let target_version = state.provisioner.cluster().source().latest_version();
    let mut chrome = session.chrome(state, "tenants");
    chrome.notice = notice;
    let mut response = render(&DetailPage {
        chrome,
        id: id.to_string(),
        steps: steps_of(&tenant),
        settled: !matches!(
            tenant.status,
            TenantStatus::Provisioning | TenantStatus::Deleting
        ),
        slug: tenant.slug,
        name: tenant.name,
        status: tenant.status.as_str().into(),
        plan: tenant.plan_code,
        schema: tenant
            .schema_version
            .map_or_else(|| "–".into(), |v| format!("V{v}")),
        target_version,
        behind: tenant.schema_version.is_some_and(|v| v < target_version),
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

/// The usage chart (database and storage bytes over the last samples) and latest figures.
async fn usage_view(
    client: &impl GenericClient,
    id: Uuid,
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
            bytes(latest.and_then(|s| s.database_bytes)),
        ),
        ("Files".into(), bytes(latest.and_then(|s| s.storage_bytes))),
        (
            "Users".into(),
            latest
                .and_then(|s| s.users)
                .map_or_else(|| "–".into(), |u| u.to_string()),
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

#[derive(Deserialize, Default)]
pub struct DetailQuery {
    notice: Option<String>,
}

pub async fn detail(
    State(state): State<AppState>,
    session: DashSession,
    Path(key): Path<String>,
    Query(query): Query<DetailQuery>,
) -> DashResult<Response> {
    let id = {
        let conn = state.pool.get().await?;
        tenant_by_key(&**conn, &key).await?.id
    };
    detail_page(
        &state,
        &session,
        id,
        notice_text(query.notice.as_deref()),
        None,
        None,
        StatusCode::OK,
    )
    .await
}

#[derive(Deserialize, Default)]
pub struct ActionForm {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    primary: Option<String>,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    trial_days: String,
}

/// Every button on the tenant page posts here; the answer is the page again (303 with a
/// notice on success, the page with the error on a client mistake).
pub async fn action(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path((key, action)): Path<(String, String)>,
    DashForm { session, form }: DashForm<ActionForm>,
) -> DashResult<Response> {
    session.require_write()?;
    let tenant = {
        let conn = state.pool.get().await?;
        tenant_by_key(&**conn, &key).await?
    };
    let actor = session.actor(ip);
    let p = &state.provisioner;
    let result: Result<&str> = match action.as_str() {
        "suspend" => p
            .tenant_suspend(tenant.id, &actor)
            .await
            .map(|_| "suspended"),
        "resume" => p.tenant_resume(tenant.id, &actor).await.map(|_| "resumed"),
        "delete" => {
            if form.confirm.trim() != tenant.slug {
                Err(Error::BadRequest(format!(
                    "type the tenant's slug ({}) to confirm deletion",
                    tenant.slug
                )))
            } else {
                match p.tenant_delete(tenant.id, &actor).await {
                    Ok(_) => {
                        p.spawn_drive(tenant.id);
                        Ok("deleting")
                    }
                    Err(e) => Err(e),
                }
            }
        }
        "domains" => p
            .domain_add(tenant.id, &form.domain, form.primary.is_some(), &actor)
            .await
            .map(|_| "domain_added"),
        "domain-remove" => p
            .domain_remove(tenant.id, &form.domain, &actor)
            .await
            .map(|_| "domain_removed"),
        "domain-primary" => p
            .domain_make_primary(tenant.id, &form.domain, &actor)
            .await
            .map(|_| "domain_primary"),
        "subscription" => {
            let status = owner::subscriptions::SubscriptionStatus::parse(&form.status)
                .ok_or_else(|| Error::BadRequest(format!("unknown status {:?}", form.status)));
            let trial_days = match form.trial_days.trim() {
                "" => Ok(None),
                t => t
                    .parse::<u32>()
                    .map(Some)
                    .map_err(|_| Error::BadRequest("trial days must be a whole number".into())),
            };
            match (status, trial_days) {
                (Ok(status), Ok(trial_days)) => crate::billing::subscription_update(
                    &state,
                    &actor,
                    tenant.id,
                    &crate::billing::SubscriptionChange {
                        plan: form.plan.clone(),
                        status,
                        trial_days,
                    },
                )
                .await
                .map(|_| "subscription"),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
        _ => return Err(DashError::Failed(Error::Owner(owner::Error::NotFound))),
    };
    match result {
        Ok(notice) => Ok(see_other(&format!("/owner/tenants/{}", tenant.id), notice)),
        Err(e) => {
            let api = client_mistake(e)?;
            detail_page(
                &state,
                &session,
                tenant.id,
                None,
                Some(api.message),
                None,
                api.status,
            )
            .await
        }
    }
}
