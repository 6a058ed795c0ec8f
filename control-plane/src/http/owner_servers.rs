//! `/api/owner/servers`: the database servers tenants live on. Anyone signed in may look;
//! owners and admins may change a server's status and limits; only owners add servers
//! (a server's admin URL is the keys to every tenant on it).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use owner::operators::OperatorRole;
use owner::servers::ServerStatus;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, ClientIp};
use super::owner_auth::CurrentOperator;
use crate::http::state::AppState;
use crate::provisioning::AddServer;
use crate::provisioning::ServerReport;
use crate::{Error, Result};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(show, update))
        .routes(routes!(drain))
}

#[derive(Serialize, ToSchema)]
struct ServerList {
    servers: Vec<ServerReport>,
}

/// The database servers tenants live on.
///
/// Each with its status, limits and tenants, and as it answers now (reachable, version,
/// databases, connections, disk used).
#[utoipa::path(get, path = "/servers", tag = "servers", responses((status = 200, body = ServerList)))]
async fn list(
    State(state): State<AppState>,
    _operator: CurrentOperator,
) -> Result<Json<ServerList>> {
    Ok(Json(ServerList {
        servers: state.servers.report().await?,
    }))
}

/// One server.
#[utoipa::path(get, path = "/servers/{id}", tag = "servers", params(("id" = String, Path, description = "The server's name")), responses((status = 200, body = ServerReport)))]
async fn show(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(id): Path<String>,
) -> Result<Json<ServerReport>> {
    Ok(Json(state.servers.show(&id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ServerAdd {
    #[schema(pattern = "^[a-z][a-z0-9-]{0,39}$")]
    name: String,
    /// The admin connection URL, such as postgres://admin:secret@db2:5432/postgres; stored
    /// sealed and never shown again.
    url: String,
    #[schema(minimum = 1)]
    max_tenants: Option<i32>,
    #[schema(minimum = 1)]
    connection_budget: Option<i32>,
    /// Only plans pinned to this group place tenants here.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,39}$")]
    server_group: Option<String>,
}

/// Register a server (owners only).
///
/// It is checked first (it answers; its role is a superuser or has CREATEROLE and
/// CREATEDB), hardened and given the template database; 409 `server_exists`.
#[utoipa::path(post, path = "/servers", tag = "servers", request_body = ServerAdd, responses((status = 201, body = ServerReport)))]
async fn add(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<ServerAdd>,
) -> Result<(StatusCode, Json<ServerReport>)> {
    if operator.0.role != OperatorRole::Owner {
        return Err(Error::Forbidden);
    }
    state
        .servers
        .add(
            AddServer {
                id: req.name.clone(),
                url: SecretString::from(req.url),
                max_tenants: req.max_tenants,
                connection_budget: req.connection_budget,
                server_group: req.server_group,
            },
            &operator.actor(ip),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(state.servers.show(&req.name).await?),
    ))
}

/// Drain a server: no new tenants, and every tenant moved off in the background.
///
/// 202 with the server; `GET /tenants/{id}/moves` (or the server's tenant count) shows
/// the progress.
#[utoipa::path(post, path = "/servers/{id}/drain", tag = "servers", params(("id" = String, Path, description = "The server's name")), responses((status = 202, body = ServerReport)))]
async fn drain(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ServerReport>)> {
    operator.require_write()?;
    let actor = operator.actor(ip);
    crate::backups::start_drain(&state.servers, &state.backups, &state.tasks, &id, &actor).await?;
    Ok((StatusCode::ACCEPTED, Json(state.servers.show(&id).await?)))
}

/// `null` removes a limit; a field left out keeps it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ServerUpdate {
    /// `draining`: no new tenants; `disabled`: none, and skipped by fleet-wide passes.
    #[schema(value_type = Option<ServerStatus>)]
    status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 1)]
    max_tenants: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 1)]
    connection_budget: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "^[a-z][a-z0-9-]{0,39}$")]
    server_group: Option<Option<String>>,
}

/// A field that is present, `null` included (absent is the `default`: `None`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Change a server's status or limits.
#[utoipa::path(patch, path = "/servers/{id}", tag = "servers", params(("id" = String, Path, description = "The server's name")), request_body = ServerUpdate, responses((status = 200, body = ServerReport)))]
async fn update(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ServerUpdate>,
) -> Result<Json<ServerReport>> {
    operator.require_write()?;
    let status = match req.status.as_deref() {
        None => None,
        Some(s) => Some(ServerStatus::parse(s).ok_or_else(|| {
            Error::BadRequest(format!("status: active, draining or disabled, not {s:?}"))
        })?),
    };
    state
        .servers
        .update(
            &id,
            &owner::servers::ServerChange {
                status,
                max_tenants: req.max_tenants,
                connection_budget: req.connection_budget,
                server_group: req.server_group,
            },
            &operator.actor(ip),
        )
        .await?;
    Ok(Json(state.servers.show(&id).await?))
}
