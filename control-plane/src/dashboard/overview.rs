//! The overview: the fleet at a glance.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::page::{Chrome, DashResult, DashSession, render};
use super::view::{ago, notice_text};
use crate::http::state::AppState;

#[derive(Deserialize, Default)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}

pub struct StatusCount {
    pub status: String,
    pub count: i64,
}

pub struct VersionCount {
    pub version: String,
    pub count: i64,
    pub behind: bool,
}

pub struct EventLine {
    pub ago: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub link: Option<String>,
}

pub struct FailingTenant {
    pub id: String,
    pub slug: String,
    pub status: String,
    pub step: String,
    pub error: String,
}

pub struct RunLine {
    pub id: String,
    pub status: String,
    pub target_version: i32,
    pub started: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub chrome: Chrome,
    pub total: i64,
    pub statuses: Vec<StatusCount>,
    pub versions: Vec<VersionCount>,
    pub target_version: i32,
    pub usage: Vec<(String, String)>,
    pub events: Vec<EventLine>,
    pub failing: Vec<FailingTenant>,
    pub last_run: Option<RunLine>,
    /// What each master key version seals (see `keys status`).
    pub keys: Option<crate::keys::KeyStatus>,
}

/// Readable names for the events' targets: tenants by slug, operators by email.
pub async fn target_names(
    client: &impl tokio_postgres::GenericClient,
    events: &[owner::audit::AuditEvent],
) -> crate::Result<std::collections::HashMap<String, String>> {
    let ids: Vec<uuid::Uuid> = events
        .iter()
        .filter_map(|e| e.target_id.as_deref()?.parse().ok())
        .collect();
    let rows = client
        .query(
            "SELECT id::text, slug FROM tenants WHERE id = ANY($1) \
             UNION ALL SELECT id::text, email FROM owner_users WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(owner::Error::from)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Turns an audit event into a line with a link to what it is about.
pub fn event_line(
    e: &owner::audit::AuditEvent,
    names: &std::collections::HashMap<String, String>,
) -> EventLine {
    let target_id = e.target_id.clone().unwrap_or_default();
    let link = match e.target_type.as_deref() {
        Some("tenant") => Some(format!("/owner/tenants/{target_id}")),
        Some("migration_run") => Some(format!("/owner/migrations/{target_id}")),
        Some("plan") => Some(format!("/owner/plans/{target_id}")),
        _ => None,
    };
    EventLine {
        ago: ago(e.at),
        actor: e.actor.clone(),
        action: e.action.clone(),
        target: match (&e.target_type, names.get(&target_id)) {
            (Some(t), Some(name)) => format!("{t} {name}"),
            (Some(t), None) => format!("{t} {target_id}"),
            (None, _) => String::new(),
        },
        link,
    }
}

pub async fn page(
    State(state): State<AppState>,
    session: DashSession,
    Query(query): Query<NoticeQuery>,
) -> DashResult<Response> {
    let conn = state.owner.conn().await?;
    let statuses: Vec<StatusCount> = owner::tenants::tenant_status_counts(&**conn)
        .await?
        .into_iter()
        .map(|(status, count)| StatusCount { status, count })
        .collect();
    let total = statuses
        .iter()
        .filter(|s| s.status != "deleted")
        .map(|s| s.count)
        .sum();
    let target_version = state.migrations.fresh().await.latest_version();
    let versions = owner::migration_runs::schema_version_histogram(&**conn)
        .await?
        .into_iter()
        .map(|(v, count)| VersionCount {
            version: v.map_or_else(|| "none".into(), |v| format!("V{v}")),
            count,
            behind: v.is_none_or(|v| v < target_version),
        })
        .collect();
    let events = owner::audit::audit_search(
        &**conn,
        &owner::audit::AuditFilter {
            limit: 12,
            ..Default::default()
        },
    )
    .await?;
    let names = target_names(&**conn, &events).await?;
    let events = events.iter().map(|e| event_line(e, &names)).collect();
    let failing = owner::tenants::tenant_list_failing(&**conn, 20)
        .await?
        .into_iter()
        .map(|t| FailingTenant {
            id: t.id.to_string(),
            slug: t.slug,
            status: t.status.as_str().into(),
            step: t.provisioning_step.as_str().into(),
            error: t.last_error.unwrap_or_default(),
        })
        .collect();
    let last_run = owner::migration_runs::run_list(&**conn, 1)
        .await?
        .into_iter()
        .next()
        .map(|r| RunLine {
            id: r.id.to_string(),
            status: r.status.to_string(),
            target_version: r.target_version,
            started: ago(r.started_at),
        });
    let mut usage = super::tenants::usage_totals(&**conn).await?;
    let restore_test = owner::backups::restore_test_latest(&**conn).await?;
    usage.push((
        "Restore test".into(),
        match restore_test {
            None => "not run yet".into(),
            Some(t) if t.ok => format!("passed {}", ago(t.tested_at)),
            Some(t) => format!("FAILED {}: {}", ago(t.tested_at), t.detail),
        },
    ));
    let keys = state
        .keys
        .status()
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "master key status unavailable"))
        .ok();
    let mut chrome = session.chrome(&state, "overview");
    chrome.notice = notice_text(query.notice.as_deref());
    Ok(render(&OverviewPage {
        chrome,
        total,
        statuses,
        versions,
        target_version,
        usage,
        events,
        failing,
        last_run,
        keys,
    }))
}
