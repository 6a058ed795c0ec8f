//! Operator login and the extractor that authenticates every other owner-API request.

use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use owner::audit::{AuditEntry, audit_insert};
use owner::operators::{Operator, operator_fetch, operator_fetch_by_email, operator_record_login};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{ApiJson, ClientIp};
use crate::app::AppState;
use crate::{Error, Result};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/me", get(me))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
}

/// Email + password -> a short-lived bearer token (audience `owner`). Every attempt is
/// audited; the answer does not say whether the email exists.
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<Value>> {
    // No owner connection is held while the password is checked: that takes tens of
    // milliseconds, and the pool also serves the gateway.
    let operator = match owner::Email::parse(&req.email) {
        Ok(email) => {
            let conn = state.pool.get().await?;
            match operator_fetch_by_email(&**conn, &email).await {
                Ok(op) => Some(op),
                Err(owner::Error::NotFound) => None,
                Err(e) => return Err(e.into()),
            }
        }
        Err(_) => None,
    };
    let password = req.password;
    let verified = match &operator {
        Some(op) => tenant::auth::verify_password_async(password, op.password_hash.clone()).await?,
        None => {
            tenant::auth::verify_dummy_async(password).await?;
            false
        }
    };
    let conn = state.pool.get().await?;
    let email_for_audit = req.email.trim().to_lowercase();
    let operator = match operator {
        Some(op) if verified && op.active => op,
        _ => {
            audit_insert(
                &**conn,
                &AuditEntry {
                    actor: &format!("operator:{email_for_audit}"),
                    action: "operator.login_failed",
                    target_type: "operator",
                    target_id: &email_for_audit,
                    details: json!({}),
                    ip: ip.as_deref(),
                },
            )
            .await?;
            return Err(Error::Unauthenticated);
        }
    };
    let (token, expires_at) = state.tokens.issue(&operator)?;
    operator_record_login(&**conn, operator.id).await?;
    audit_insert(
        &**conn,
        &AuditEntry {
            actor: &format!("operator:{}", operator.email),
            action: "operator.login",
            target_type: "operator",
            target_id: &operator.id.to_string(),
            details: json!({}),
            ip: ip.as_deref(),
        },
    )
    .await?;
    Ok(Json(json!({
        "token": token.expose_secret(),
        "token_type": "Bearer",
        "expires_at": expires_at,
        "operator": operator,
    })))
}

async fn me(CurrentOperator(operator): CurrentOperator) -> Json<Operator> {
    Json(operator)
}

/// The operator behind the request's bearer token: the token must verify and the
/// account must still exist and be active (so disabling an operator takes effect at once).
pub struct CurrentOperator(pub Operator);

impl CurrentOperator {
    /// Refuses viewers: owners and admins may change things.
    pub fn require_write(&self) -> Result<()> {
        if self.0.role.can_write() {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }

    pub fn actor(&self, ip: Option<String>) -> crate::provisioning::Actor {
        crate::provisioning::Actor {
            label: format!("operator:{}", self.0.email),
            ip,
        }
    }
}

impl FromRequestParts<AppState> for CurrentOperator {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(Error::Unauthenticated)?;
        let claims = state.tokens.verify(token)?;
        let conn = state.pool.get().await?;
        match operator_fetch(&**conn, claims.sub).await {
            Ok(op) if op.active => Ok(Self(op)),
            Ok(_) | Err(owner::Error::NotFound) => Err(Error::Unauthenticated),
            Err(e) => Err(e.into()),
        }
    }
}
