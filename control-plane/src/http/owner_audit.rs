//! `/api/owner/audit`: the audit log, newest first, with filters.

use axum::Json;
use axum::extract::State;
use owner::audit::{AuditEvent, AuditFilter, audit_search};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiQuery;
use super::owner_auth::CurrentOperator;
use crate::http::state::AppState;
use crate::{Error, Result};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// A prefix: `tenant.` matches every tenant event.
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// Events older than this id (the `next_before` of the previous page).
    pub before: Option<i64>,
    /// At most this many events (1 to 500, default 100).
    pub limit: Option<i64>,
    /// `true` (or a checked box's `on`): leave out the reconciler's `*.step.*` events.
    pub hide_system: Option<String>,
    /// Events from this day (`2026-11-30`, UTC) or time (RFC 3339) on...
    pub from: Option<String>,
    /// ...up to and including this day, or before this time.
    pub to: Option<String>,
}

impl AuditQuery {
    pub fn filter(&self) -> Result<AuditFilter> {
        let nonempty = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let hide_system = match nonempty(&self.hide_system).as_deref() {
            None | Some("false") => false,
            Some("true" | "on") => true,
            Some(other) => {
                return Err(Error::BadRequest(format!(
                    "hide_system must be true or false, not {other:?}"
                )));
            }
        };
        Ok(AuditFilter {
            actor: nonempty(&self.actor),
            action: nonempty(&self.action),
            target_type: nonempty(&self.target_type),
            target_id: nonempty(&self.target_id),
            before_id: self.before,
            hide_system,
            from: nonempty(&self.from)
                .map(|s| moment(&s, "from", false))
                .transpose()?,
            until: nonempty(&self.to)
                .map(|s| moment(&s, "to", true))
                .transpose()?,
            limit: self.limit.unwrap_or(100).clamp(1, 500),
        })
    }
}

/// A day (UTC; `to` means its end) or an RFC 3339 time.
fn moment(text: &str, field: &str, end_of_day: bool) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        Error::BadRequest(format!(
            "{field} must be a day (2026-11-30) or an RFC 3339 time, not {text:?}"
        ))
    })?;
    let day = if end_of_day {
        day.succ_opt()
            .ok_or_else(|| Error::BadRequest(format!("{field} is out of range")))?
    } else {
        day
    };
    Ok(day.and_time(NaiveTime::MIN).and_utc())
}

#[derive(Serialize, ToSchema)]
struct AuditPage {
    events: Vec<AuditEvent>,
    /// Pass as `before` for the next page; null on the last one.
    next_before: Option<i64>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery), responses((status = 200, body = AuditPage)))]
async fn list(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>> {
    let filter = query.filter()?;
    let conn = state.owner.conn().await?;
    let events = audit_search(&**conn, &filter).await?;
    let next_before = (events.len() as i64 == filter.limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditPage {
        events,
        next_before,
    }))
}
