//! The searchable, sortable list of tenants.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use owner::tenants::{TenantSearch, TenantSort, TenantStatus, tenant_search};
use serde::Deserialize;

use crate::Error;
use crate::dashboard::page::{Chrome, DashError, DashResult, DashSession, render};
use crate::dashboard::view::{ago, bytes};
use crate::http::state::AppState;

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
    let conn = state.owner.conn().await?;
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
