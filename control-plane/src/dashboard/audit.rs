//! The audit log with filters, newest first, paged backwards by id.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;

use super::overview::{EventLine, event_line};
use super::page::{Chrome, DashResult, DashSession, render};
use crate::http::owner_audit::AuditQuery;
use crate::http::state::AppState;

pub struct AuditRow {
    pub line: EventLine,
    pub at: String,
    pub details: String,
    pub ip: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub chrome: Chrome,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub rows: Vec<AuditRow>,
    pub older: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    session: DashSession,
    Query(query): Query<AuditQuery>,
) -> DashResult<Response> {
    let filter = query.filter();
    let conn = state.owner.conn().await?;
    let events = owner::audit::audit_search(&**conn, &filter).await?;
    let older = (events.len() as i64 == filter.limit)
        .then(|| events.last().map(|e| e.id))
        .flatten()
        .map(|before| {
            let mut pairs: Vec<(&str, String)> = Vec::new();
            for (k, v) in [
                ("actor", &filter.actor),
                ("action", &filter.action),
                ("target_type", &filter.target_type),
                ("target_id", &filter.target_id),
            ] {
                if let Some(v) = v {
                    pairs.push((k, v.clone()));
                }
            }
            pairs.push(("before", before.to_string()));
            format!(
                "/owner/audit?{}",
                serde_urlencoded::to_string(pairs).unwrap_or_default()
            )
        });
    let names = super::overview::target_names(&**conn, &events).await?;
    let rows = events
        .iter()
        .map(|e| AuditRow {
            line: event_line(e, &names),
            at: super::view::when(e.at),
            details: if e.details == serde_json::json!({}) {
                String::new()
            } else {
                e.details.to_string()
            },
            ip: e.ip.clone().unwrap_or_default(),
        })
        .collect();
    Ok(render(&AuditPage {
        chrome: session.chrome(&state, "audit"),
        actor: filter.actor.unwrap_or_default(),
        action: filter.action.unwrap_or_default(),
        target_type: filter.target_type.unwrap_or_default(),
        target_id: filter.target_id.unwrap_or_default(),
        rows,
        older,
    }))
}
