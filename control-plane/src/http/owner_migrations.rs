//! `/api/owner/migrations`: start fleet migrations and watch them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use std::collections::BTreeMap;

use axum::Json;
use owner::migration_runs::{self as runs, MigrationRun, RunTenant};
use owner::tenants::TenantStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiJson, ApiQuery};
use super::owner_auth::CurrentOperator;
use super::owner_tenants::WaitQuery;
use crate::fleet::{Canary, DEFAULT_CONCURRENCY, FailureBudget, FleetOptions};
use crate::http::state::AppState;
use crate::{Error, Result};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, start))
        .routes(routes!(status))
        .routes(routes!(show))
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StatusQuery {
    /// Also ask every tenant database, and list drift.
    #[serde(default)]
    verify: bool,
}

/// Where the fleet is (`migrate status` over HTTP).
///
/// The target version, the migration set (built in plus what runs recorded), tenants per
/// version and those behind; `?verify=true` also asks every tenant database and lists
/// drift.
#[utoipa::path(get, path = "/migrations/status", tag = "migrations", params(StatusQuery), responses((status = 200, body = crate::fleet::FleetStatus)))]
async fn status(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    ApiQuery(query): ApiQuery<StatusQuery>,
) -> Result<Json<crate::fleet::FleetStatus>> {
    Ok(Json(
        crate::fleet::fleet_status(&state.fleet, query.verify).await?,
    ))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct MigrationStart {
    /// Required: a real run changes every tenant, so it is never what an empty body
    /// means.
    dry_run: Option<bool>,
    /// Back each tenant up right before migrating it.
    #[serde(default)]
    backup: bool,
    /// Put each tenant in maintenance while it is migrated.
    #[serde(default)]
    maintenance: bool,
    /// Tenants migrated at once.
    #[schema(minimum = 1, maximum = 64)]
    concurrency: Option<usize>,
    /// A count (`5`) or a ratio (`"5%"`, `"0.05"`) of failures that halts the run.
    #[schema(value_type = Option<serde_json::Value>)]
    max_failures: Option<Value>,
    /// A count of tenants, or a list of slugs, migrated first: a failure among them
    /// halts the run.
    #[schema(value_type = Option<serde_json::Value>)]
    canary: Option<Value>,
    /// Only these tenants (slugs).
    #[serde(default)]
    tenants: Vec<String>,
    /// Only the tenants on this plan.
    plan: Option<String>,
    /// Only tenants in these states (default active and suspended).
    #[serde(default)]
    statuses: Vec<TenantStatus>,
}

#[derive(Serialize, ToSchema)]
struct RunStarted {
    run: MigrationRun,
    /// With `?wait=true`, once the run finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<crate::fleet::RunSummary>,
}

/// Start a fleet migration run.
///
/// The run goes on in the background: 202 with the run, 409 `migration_running` if one
/// is already running. With `?wait=true`, waits (up to 20 s) and answers 200 with the
/// finished run's summary. A dry run changes nothing and says what would apply.
#[utoipa::path(post, path = "/migrations", tag = "migrations", params(WaitQuery), request_body = MigrationStart, responses(
    (status = 200, description = "Finished (with `?wait=true`)", body = RunStarted),
    (status = 202, description = "Started", body = RunStarted),
))]
async fn start(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ApiQuery(query): ApiQuery<WaitQuery>,
    ApiJson(req): ApiJson<MigrationStart>,
) -> Result<(StatusCode, Json<RunStarted>)> {
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
            Json(RunStarted {
                run: record,
                summary: Some(summary),
            }),
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(RunStarted {
            run: record,
            summary: None,
        }),
    ))
}

#[derive(Serialize, ToSchema)]
struct RunList {
    runs: Vec<MigrationRun>,
}

/// The 100 most recent fleet migration runs.
#[utoipa::path(get, path = "/migrations", tag = "migrations", responses((status = 200, body = RunList)))]
async fn list(State(state): State<AppState>, _operator: CurrentOperator) -> Result<Json<RunList>> {
    let conn = state.owner.conn().await?;
    Ok(Json(RunList {
        runs: runs::run_list(&**conn, 100).await?,
    }))
}

#[derive(Serialize, ToSchema)]
struct RunDetail {
    run: MigrationRun,
    /// Tenants by state.
    counts: BTreeMap<String, i64>,
    /// Failures first.
    tenants: Vec<RunTenant>,
}

/// One run: its status, counts by state and its per-tenant rows (failures first).
#[utoipa::path(get, path = "/migrations/{id}", tag = "migrations", params(("id" = String, Path, description = "The run's id")), responses((status = 200, body = RunDetail)))]
async fn show(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(id): Path<String>,
) -> Result<Json<RunDetail>> {
    let id = Uuid::parse_str(&id).map_err(|_| owner::Error::NotFound)?;
    let conn = state.owner.conn().await?;
    let run = runs::run_fetch(&**conn, id).await?;
    let counts = runs::run_counts(&**conn, id).await?.into_iter().collect();
    let tenants = runs::run_tenants_list(&**conn, id, 10_000).await?;
    Ok(Json(RunDetail {
        run,
        counts,
        tenants,
    }))
}
