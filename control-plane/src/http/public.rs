//! Routes on the owner host that need no operator: "which tenants am I in?" (see
//! `crate::finder`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{ApiJson, ClientIp};
use super::state::AppState;
use crate::Result;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/find-tenants", post(request))
        .route("/find-tenants/verify", post(verify))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindRequest {
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    email: String,
    code: String,
}

fn ip_of(ip: Option<String>) -> Option<std::net::IpAddr> {
    ip.and_then(|ip| ip.parse().ok())
}

/// 202 whatever the address: a code goes to it only if it has accounts.
async fn request(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<FindRequest>,
) -> Result<(StatusCode, Json<Value>)> {
    state.finder.request(&req.email, ip_of(ip)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "message": "If this address can sign in to any workspace, a code is on its way to it. \
                        Send it with the address to /api/public/find-tenants/verify within 10 minutes.",
        })),
    ))
}

async fn verify(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<Json<Value>> {
    let tenants = state
        .finder
        .verify(&req.email, &req.code, ip_of(ip))
        .await?;
    Ok(Json(json!({ "tenants": tenants })))
}
