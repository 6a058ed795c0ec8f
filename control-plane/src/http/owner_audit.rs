//! `/api/owner/audit`: the audit log, newest first, with filters.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use owner::audit::{AuditFilter, audit_search};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::ApiQuery;
use super::owner_auth::CurrentOperator;
use crate::Result;
use crate::http::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/audit", get(list))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// A prefix: `tenant.` matches every tenant event.
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// Events older than this id (the `next_before` of the previous page).
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

impl AuditQuery {
    pub fn filter(&self) -> AuditFilter {
        let nonempty = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        AuditFilter {
            actor: nonempty(&self.actor),
            action: nonempty(&self.action),
            target_type: nonempty(&self.target_type),
            target_id: nonempty(&self.target_id),
            before_id: self.before,
            limit: self.limit.unwrap_or(100).clamp(1, 500),
        }
    }
}

async fn list(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Value>> {
    let filter = query.filter();
    let conn = state.owner.conn().await?;
    let events = audit_search(&**conn, &filter).await?;
    let next_before = (events.len() as i64 == filter.limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(Json(
        json!({ "events": events, "next_before": next_before }),
    ))
}
