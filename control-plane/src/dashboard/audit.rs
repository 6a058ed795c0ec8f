//! The audit log with filters (system events hidden, a date range), newest first, paged
//! backwards by id; the same selection as CSV.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

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
    pub hide_system: bool,
    pub from: String,
    pub to: String,
    pub rows: Vec<AuditRow>,
    pub older: Option<String>,
    /// The CSV export of the same selection.
    pub csv: String,
}

/// The filter's fields as query pairs (for the next page and the export link).
fn query_pairs(q: &AuditQuery) -> Vec<(&'static str, String)> {
    [
        ("actor", &q.actor),
        ("action", &q.action),
        ("target_type", &q.target_type),
        ("target_id", &q.target_id),
        ("hide_system", &q.hide_system),
        ("from", &q.from),
        ("to", &q.to),
    ]
    .into_iter()
    .filter_map(|(k, v)| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| (k, v.to_string()))
    })
    .collect()
}

pub async fn page(
    State(state): State<AppState>,
    session: DashSession,
    Query(query): Query<AuditQuery>,
) -> DashResult<Response> {
    let filter = query.filter()?;
    let conn = state.owner.conn().await?;
    let events = owner::audit::audit_search(&**conn, &filter).await?;
    let older = (events.len() as i64 == filter.limit)
        .then(|| events.last().map(|e| e.id))
        .flatten()
        .map(|before| {
            let mut pairs = query_pairs(&query);
            pairs.push(("before", before.to_string()));
            format!(
                "/owner/audit?{}",
                serde_urlencoded::to_string(pairs).unwrap_or_default()
            )
        });
    let csv = format!(
        "/owner/audit.csv?{}",
        serde_urlencoded::to_string(query_pairs(&query)).unwrap_or_default()
    );
    let names = super::overview::target_names(&**conn, &events).await?;
    let rows = events
        .iter()
        .map(|e| AuditRow {
            line: event_line(e, &names),
            at: super::view::when(e.at),
            details: super::view::json_fields(&e.details)
                .into_iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(" · "),
            ip: e.ip.clone().unwrap_or_default(),
        })
        .collect();
    Ok(render(&AuditPage {
        chrome: session.chrome(&state, "audit"),
        actor: filter.actor.unwrap_or_default(),
        action: filter.action.unwrap_or_default(),
        target_type: filter.target_type.unwrap_or_default(),
        target_id: filter.target_id.unwrap_or_default(),
        hide_system: filter.hide_system,
        from: query.from.clone().unwrap_or_default(),
        to: query.to.clone().unwrap_or_default(),
        rows,
        older,
        csv,
    }))
}

/// The selection as CSV (up to `owner::audit::MAX_EXPORT` events, newest first). Cells
/// that a spreadsheet would run as a formula are prefixed with `'`.
pub async fn csv(
    State(state): State<AppState>,
    _session: DashSession,
    Query(query): Query<AuditQuery>,
) -> DashResult<Response> {
    let mut filter = query.filter()?;
    filter.limit = owner::audit::MAX_EXPORT;
    let conn = state.owner.conn().await?;
    let events = owner::audit::audit_search(&**conn, &filter).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let cell = |s: &str| -> String {
        if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{s}")
        } else {
            s.to_string()
        }
    };
    let write = |out: &mut csv::Writer<Vec<u8>>, row: [String; 8]| {
        out.write_record(row)
            .map_err(|e| crate::Error::Internal(format!("csv: {e}")))
    };
    write(
        &mut out,
        [
            "id",
            "at",
            "actor",
            "action",
            "target_type",
            "target_id",
            "ip",
            "details",
        ]
        .map(str::to_string),
    )?;
    for e in &events {
        write(
            &mut out,
            [
                e.id.to_string(),
                e.at.to_rfc3339(),
                cell(&e.actor),
                cell(&e.action),
                cell(e.target_type.as_deref().unwrap_or_default()),
                cell(e.target_id.as_deref().unwrap_or_default()),
                cell(e.ip.as_deref().unwrap_or_default()),
                cell(&e.details.to_string()),
            ],
        )?;
    }
    let body = out
        .into_inner()
        .map_err(|e| crate::Error::Internal(format!("csv: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit-log.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}
