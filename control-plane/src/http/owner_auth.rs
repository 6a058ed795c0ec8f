//! Operator sign-in and sign-out, the operator's own account, and the extractor that
//! authenticates every other owner-API request.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use owner::operators::Operator;
use owner::sessions::SessionKind;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{ApiJson, ClientIp};
use super::session::{Session, authenticate, require_csrf_header};
use crate::http::state::AppState;
use crate::sign_in::{Attempt, sign_in, sign_out};
use crate::{Error, Result};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/me", get(me))
        .route("/me/password", post(change_password))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
}

/// Email + password -> a short-lived bearer token (audience `owner`) naming a new
/// session. Every attempt is audited; the answer does not say whether the email exists;
/// repeated failures are throttled (429 with Retry-After).
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<Value>> {
    let signed_in = sign_in(
        &state.owner,
        &state.tokens,
        Attempt {
            email: req.email,
            password: req.password,
            ip,
            user_agent: user_agent(&headers),
            kind: SessionKind::Api,
        },
    )
    .await?;
    Ok(Json(json!({
        "token": signed_in.token.expose_secret(),
        "token_type": "Bearer",
        // RFC 3339, like every other time the API gives; `expires_in` for clients that
        // count seconds.
        "expires_at": chrono::DateTime::from_timestamp(signed_in.expires_at as i64, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "expires_in": signed_in
            .expires_at
            .saturating_sub(jsonwebtoken::get_current_timestamp()),
        "operator": signed_in.operator,
    })))
}

pub fn user_agent(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Revokes the session of the token (or cookie) used: it is refused from now on.
async fn logout(
    State(state): State<AppState>,
    AnyOperator(session): AnyOperator,
    ClientIp(ip): ClientIp,
) -> Result<StatusCode> {
    sign_out(&state.owner, &session.operator, session.id, ip.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(AnyOperator(session): AnyOperator) -> Json<Operator> {
    Json(session.operator)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordRequest {
    current_password: String,
    new_password: String,
}

/// Sets the operator's own password (required after signing in with a one-time one) and
/// ends the operator's other sessions; the one making the request goes on.
async fn change_password(
    State(state): State<AppState>,
    AnyOperator(session): AnyOperator,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<PasswordRequest>,
) -> Result<StatusCode> {
    let actor = actor_of(&session.operator, ip);
    crate::operators::change_password(
        &state.owner,
        &session.operator,
        session.id,
        &actor,
        req.current_password,
        &req.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn actor_of(operator: &Operator, ip: Option<String>) -> crate::audit::Actor {
    crate::audit::Actor {
        label: format!("operator:{}", operator.email),
        ip,
    }
}

/// Any signed-in operator, also one who must still change a one-time password.
pub struct AnyOperator(pub Session);

impl FromRequestParts<AppState> for AnyOperator {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let session = authenticate(parts, state).await?;
        require_csrf_header(parts, state, &session)?;
        Ok(Self(session))
    }
}

/// The operator behind the request's bearer token or session cookie: the token must
/// verify, its session must be live and the account active (so logout and disabling take
/// effect at once), and a one-time password must have been replaced.
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

    pub fn actor(&self, ip: Option<String>) -> crate::audit::Actor {
        actor_of(&self.0, ip)
    }
}

impl FromRequestParts<AppState> for CurrentOperator {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let AnyOperator(session) = AnyOperator::from_request_parts(parts, state).await?;
        if session.operator.must_change_password {
            return Err(Error::PasswordChangeRequired);
        }
        Ok(Self(session.operator))
    }
}
