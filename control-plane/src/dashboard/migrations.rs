//! Fleet migrations: start a run (dry run first, canaries, concurrency), watch it live,
//! and the history of runs. Runs start through the same `fleet::launch` as the API.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use owner::migration_runs as runs;
use serde::Deserialize;
use uuid::Uuid;

use super::page::{Chrome, DashForm, DashResult, DashSession, client_mistake, render};
use super::view::{ago, progress_bar, when, when_opt};
use crate::Error;
use crate::fleet::{Canary, DEFAULT_CONCURRENCY, FailureBudget, FleetOptions};
use crate::http::state::AppState;

pub struct RunRow {
    pub id: String,
    pub status: String,
    pub target_version: i32,
    pub started_by: String,
    pub started: String,
    pub finished: String,
}

/// A migration some tenant has not had yet, with the SQL a run would execute.
pub struct PendingMigration {
    pub name: String,
    pub sql: String,
}

#[derive(Template)]
#[template(path = "migrations.html")]
pub struct ListPage {
    pub chrome: Chrome,
    pub runs: Vec<RunRow>,
    pub target_version: i32,
    pub behind: i64,
    pub pending: Vec<PendingMigration>,
    pub default_concurrency: usize,
    pub error: Option<String>,
}

async fn list_page(
    state: &AppState,
    session: &DashSession,
    error: Option<String>,
    status: StatusCode,
) -> DashResult<Response> {
    let source = state.migrations.fresh().await;
    let conn = state.owner.conn().await?;
    let target_version = source.latest_version();
    let histogram = runs::schema_version_histogram(&**conn).await?;
    let behind = histogram
        .iter()
        .filter(|(v, _)| v.is_none_or(|v| v < target_version))
        .map(|(_, n)| n)
        .sum();
    // What a real run would execute: every migration above the least advanced tenant.
    let pending = match histogram.iter().map(|(v, _)| v.unwrap_or(0)).min() {
        Some(lowest) => source
            .after(lowest)
            .map(|(v, name, sql)| PendingMigration {
                name: format!("V{v}__{name}"),
                sql: sql.trim_end().to_string(),
            })
            .collect(),
        None => Vec::new(),
    };
    let runs = runs::run_list(&**conn, 50)
        .await?
        .into_iter()
        .map(|r| RunRow {
            id: r.id.to_string(),
            status: r.status.to_string(),
            target_version: r.target_version,
            started_by: r.started_by,
            started: ago(r.started_at),
            finished: when_opt(r.finished_at),
        })
        .collect();
    let mut response = render(&ListPage {
        chrome: session.chrome(state, "migrations"),
        runs,
        target_version,
        behind,
        pending,
        default_concurrency: DEFAULT_CONCURRENCY,
        error,
    });
    *response.status_mut() = status;
    Ok(response)
}

pub async fn list(State(state): State<AppState>, session: DashSession) -> DashResult<Response> {
    list_page(&state, &session, None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    dry_run: Option<String>,
    #[serde(default)]
    backup: Option<String>,
    #[serde(default)]
    maintenance: Option<String>,
    #[serde(default)]
    canary: String,
    #[serde(default)]
    concurrency: String,
    #[serde(default)]
    max_failures: String,
}

pub async fn start(
    State(state): State<AppState>,
    DashForm { session, form }: DashForm<StartForm>,
) -> DashResult<Response> {
    session.require_write()?;
    let options = (|| {
        let concurrency = match form.concurrency.trim() {
            "" => DEFAULT_CONCURRENCY,
            c => c
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| Error::BadRequest("concurrency must be 1 to 64".into()))?,
        };
        let max_failures = match form.max_failures.trim() {
            "" => None,
            m => Some(FailureBudget::parse(m).ok_or_else(|| {
                Error::BadRequest("failure budget: a count (5) or a ratio (5%)".into())
            })?),
        };
        Ok::<_, Error>(FleetOptions {
            concurrency,
            max_failures,
            canary: Canary::parse(&form.canary),
            dry_run: form.dry_run.is_some(),
            // A dry run changes nothing: neither backups nor maintenance.
            backup: form.backup.is_some() && form.dry_run.is_none(),
            maintenance: form.maintenance.is_some() && form.dry_run.is_none(),
            ..FleetOptions::default()
        })
    })();
    let started_by = format!("operator:{}", session.0.operator.email);
    let launched = match options {
        Ok(options) => crate::fleet::launch(&state.fleet, options, &started_by).await,
        Err(e) => Err(e),
    };
    match launched {
        Ok((run, _)) => Ok(Redirect::to(&format!("/owner/migrations/{}", run.id)).into_response()),
        Err(e) => {
            let api = client_mistake(e)?;
            list_page(&state, &session, Some(api.message), api.status).await
        }
    }
}

pub struct TenantRow {
    pub id: String,
    pub slug: String,
    pub wave: String,
    pub status: String,
    pub from: String,
    pub to: String,
    pub pending: String,
    pub duration: String,
    pub error: String,
    /// The tenant's pre-migration backup in this run (`migrate --backup`), if any.
    pub backup: Option<String>,
}

#[derive(Template)]
#[template(path = "migration_live.html")]
pub struct LiveFragment {
    pub finished: bool,
    pub status: String,
    pub halt_reason: Option<String>,
    pub counts: Vec<(String, i64)>,
    pub total: i64,
    pub bar: String,
    pub tenants: Vec<TenantRow>,
}

#[derive(Template)]
#[template(path = "migration.html")]
pub struct RunPage {
    pub chrome: Chrome,
    pub id: String,
    pub target_version: i32,
    pub started_by: String,
    pub started: String,
    pub finished: String,
    pub options: Vec<(String, String)>,
    pub live: LiveFragment,
}

async fn fragment(state: &AppState, id: Uuid) -> DashResult<(runs::MigrationRun, LiveFragment)> {
    let conn = state.owner.conn().await?;
    let run = runs::run_fetch(&**conn, id).await?;
    let counts = runs::run_counts(&**conn, id).await?;
    let tenants = runs::run_tenants_list(&**conn, id, 2_000)
        .await?
        .into_iter()
        .map(|t| TenantRow {
            id: t.tenant_id.to_string(),
            slug: t.slug,
            wave: t.wave,
            status: t.status.to_string(),
            from: t
                .from_version
                .map_or_else(|| "–".into(), |v| format!("V{v}")),
            to: t.to_version.map_or_else(|| "–".into(), |v| format!("V{v}")),
            pending: t
                .pending
                .and_then(|p| {
                    p.as_array().map(|a| {
                        a.iter()
                            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                })
                .unwrap_or_default(),
            duration: t
                .duration_ms
                .map_or_else(String::new, |ms| format!("{ms} ms")),
            error: t.error.unwrap_or_default(),
            backup: t.backup_id.map(|id| id.to_string()),
        })
        .collect();
    let live = LiveFragment {
        finished: run.finished_at.is_some(),
        status: run.status.to_string(),
        halt_reason: run.halt_reason.clone(),
        total: counts.iter().map(|c| c.1).sum(),
        bar: progress_bar(&counts),
        counts,
        tenants,
    };
    Ok((run, live))
}

fn run_id(id: &str) -> DashResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| Error::Owner(owner::Error::NotFound).into())
}

pub async fn show(
    State(state): State<AppState>,
    session: DashSession,
    Path(id): Path<String>,
) -> DashResult<Response> {
    let (run, live) = fragment(&state, run_id(&id)?).await?;
    Ok(render(&RunPage {
        chrome: session.chrome(&state, "migrations"),
        id: run.id.to_string(),
        target_version: run.target_version,
        started_by: run.started_by,
        started: when(run.started_at),
        finished: when_opt(run.finished_at),
        options: crate::dashboard::view::json_fields(&run.options),
        live,
    }))
}

/// The live part of a run's page, fetched every second by the page's script.
pub async fn live(
    State(state): State<AppState>,
    _session: DashSession,
    Path(id): Path<String>,
) -> DashResult<Response> {
    let (_, live) = fragment(&state, run_id(&id)?).await?;
    Ok(render(&live))
}
