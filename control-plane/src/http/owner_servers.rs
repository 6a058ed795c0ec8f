//! `/api/owner/servers`: the database servers tenants live on. Anyone signed in may look;
//! owners and admins may change a server's status and limits; only owners add servers
//! (a server's admin URL is the keys to every tenant on it).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use owner::operators::OperatorRole;
use owner::servers::ServerStatus;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{ApiJson, ClientIp};
use super::owner_auth::CurrentOperator;
use crate::http::state::AppState;
use crate::provisioning::AddServer;
use crate::provisioning::ServerReport;
use crate::{Error, Result};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/servers", get(list).post(add))
        .route("/servers/{id}", get(show).patch(update))
        .route("/servers/{id}/drain", axum::routing::post(drain))
}

async fn list(State(state): State<AppState>, _operator: CurrentOperator) -> Result<Json<Value>> {
    Ok(Json(json!({ "servers": state.servers.report().await? })))
}

async fn show(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(id): Path<String>,
) -> Result<Json<ServerReport>> {
    Ok(Json(state.servers.show(&id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRequest {
    name: String,
    /// The admin connection URL (never shown again).
    url: String,
    max_tenants: Option<i32>,
    connection_budget: Option<i32>,
    server_group: Option<String>,
}

async fn add(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<AddRequest>,
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

/// Sets the server draining and moves its tenants off in the background: 202 with the
/// server; `GET /tenants/{id}/moves` (or the server's tenant count) shows the progress.
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
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    max_tenants: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    connection_budget: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    server_group: Option<Option<String>>,
}

/// A field that is present, `null` included (absent is the `default`: `None`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

async fn update(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateRequest>,
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
