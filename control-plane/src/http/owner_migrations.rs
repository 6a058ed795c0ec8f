//! `/api/owner/migrations`: start fleet migrations and watch them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use owner::migration_runs as runs;
use owner::tenants::TenantStatus;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::extract::{ApiJson, ApiQuery};
use super::owner_auth::CurrentOperator;
use crate::fleet::{Canary, DEFAULT_CONCURRENCY, FailureBudget, FleetOptions};
use crate::http::state::AppState;
use crate::{Error, Result};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/migrations", get(list).post(start))
        .route("/migrations/status", get(status))
        .route("/migrations/{id}", get(show))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    #[serde(default)]
    verify: bool,
}

/// `migrate status` over HTTP: the recorded migration set and where each tenant is.
async fn status(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    ApiQuery(query): ApiQuery<StatusQuery>,
) -> Result<Json<Value>> {
    let status = crate::fleet::fleet_status(&state.fleet, query.verify).await?;
    Ok(Json(json!(status)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    /// Required: a real run changes every tenant, so it is never what an empty body
    /// means.
    dry_run: Option<bool>,
    /// Back each tenant up right before migrating it.
    #[serde(default)]
    backup: bool,
    /// Put each tenant in maintenance while it is migrated.
    #[serde(default)]
    maintenance: bool,
    concurrency: Option<usize>,
    /// A count (`5`) or a ratio (`"5%"`, `"0.05"`).
    max_failures: Option<Value>,
    /// A count of tenants, or a list of slugs.
    canary: Option<Value>,
    #[serde(default)]
    tenants: Vec<String>,
    plan: Option<String>,
    #[serde(default)]
    statuses: Vec<TenantStatus>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    #[serde(default)]
    wait: bool,
}

/// Starts a run in the background: 202 with the run, 409 if one is already running.
/// With `?wait=true`, waits (up to the tenants API's wait limit) and answers 200 with
/// the finished run's summary.
async fn start(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ApiQuery(query): ApiQuery<WaitQuery>,
    ApiJson(req): ApiJson<StartRequest>,
) -> Result<(StatusCode, Json<Value>)> {
    operator.require_write()?;
    let dry_run = req.dry_run.ok_or_else(|| {
        Error::BadRequest(
            "dry_run is required: true lists what would apply and changes nothing, false migrates the fleet"
                .into(),
        )
    })?;
    let max_failures = match req.max_failures {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            FailureBudget::parse(&n.to_string())
                .ok_or_else(|| Error::BadRequest("max_failures: not a count or ratio".into()))?,
        ),
        Some(Value::String(s)) => Some(
            FailureBudget::parse(&s)
                .ok_or_else(|| Error::BadRequest("max_failures: not a count or ratio".into()))?,
        ),
        Some(_) => {
            return Err(Error::BadRequest(
                "max_failures: not a count or ratio".into(),
            ));
        }
    };
    let canary = match req.canary {
        None | Some(Value::Null) => Canary::None,
        Some(Value::Number(n)) => Canary::Count(
            n.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| Error::BadRequest("canary: not a count".into()))?,
        ),
        Some(Value::Array(items)) => Canary::Slugs(
            items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| Error::BadRequest("canary: slugs must be strings".into()))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        Some(_) => {
            return Err(Error::BadRequest(
                "canary: a count or a list of slugs".into(),
            ));
        }
    };
    let mut options = FleetOptions {
        concurrency: req.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
        max_failures,
        canary,
        tenants: req.tenants,
        plan: req.plan,
        dry_run,
        backup: req.backup,
        maintenance: req.maintenance,
        ..FleetOptions::default()
    };
    if !req.statuses.is_empty() {
        options.statuses = req.statuses;
    }
    let started_by = format!("operator:{}", operator.0.email);
    let (record, handle) = crate::fleet::launch(&state.fleet, options, &started_by).await?;
    if query.wait
        && let Ok(Ok(Ok(summary))) =
            tokio::time::timeout(super::owner_tenants::WAIT_LIMIT, handle).await
    {
        return Ok((
            StatusCode::OK,
            Json(json!({ "run": record, "summary": summary })),
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "run": record }))))
}

async fn list(State(state): State<AppState>, _operator: CurrentOperator) -> Result<Json<Value>> {
    let conn = state.owner.conn().await?;
    let runs = runs::run_list(&**conn, 100).await?;
    Ok(Json(json!({ "runs": runs })))
}

/// A run with counts by state and its per-tenant rows (failures first).
async fn show(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = Uuid::parse_str(&id).map_err(|_| owner::Error::NotFound)?;
    let conn = state.owner.conn().await?;
    let run = runs::run_fetch(&**conn, id).await?;
    let counts: serde_json::Map<String, Value> = runs::run_counts(&**conn, id)
        .await?
        .into_iter()
        .map(|(s, n)| (s, json!(n)))
        .collect();
    let tenants = runs::run_tenants_list(&**conn, id, 10_000).await?;
    Ok(Json(
        json!({ "run": run, "counts": counts, "tenants": tenants }),
    ))
}
