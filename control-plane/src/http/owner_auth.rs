//! Operator sign-in and sign-out, the operator's own account, and the extractor that
//! authenticates every other owner-API request.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use owner::operators::Operator;
use owner::sessions::SessionKind;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, ClientIp};
use super::session::{Session, authenticate, require_csrf_header};
use crate::http::state::AppState;
use crate::sign_in::{Attempt, sign_in, sign_out};
use crate::{Error, Result};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
struct LoginAnswer {
    token: String,
    /// Always `Bearer`.
    token_type: String,
    /// When the token stops working (RFC 3339).
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Seconds from now until then.
    expires_in: u64,
    operator: Operator,
}

/// Sign in: email and password give a short-lived bearer token.
///
/// The token (audience `owner`) names a new session. Every attempt is audited; the answer
/// does not say whether the email exists; repeated failures are throttled (429 with
/// Retry-After).
#[utoipa::path(post, path = "/auth/login", tag = "auth", security(()), request_body = LoginRequest, responses(
    (status = 200, body = LoginAnswer),
    (status = 401, description = "Wrong email or password", body = tenant::api::openapi::ErrorBody),
    (status = 429, description = "Too many failed attempts; retry after Retry-After seconds", body = tenant::api::openapi::ErrorBody,
        headers(("Retry-After" = u64, description = "Seconds to wait"))),
))]
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginAnswer>> {
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
    Ok(Json(LoginAnswer {
        token: signed_in.token.expose_secret().to_string(),
        token_type: "Bearer".into(),
        // RFC 3339, like every other time the API gives; `expires_in` for clients that
        // count seconds.
        expires_at: chrono::DateTime::from_timestamp(signed_in.expires_at as i64, 0),
        expires_in: signed_in
            .expires_at
            .saturating_sub(jsonwebtoken::get_current_timestamp()),
        operator: signed_in.operator,
    }))
}

pub fn user_agent(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Revoke the session of the token (or cookie) used: it is refused from now on.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", responses((status = 204, description = "Revoked")))]
async fn logout(
    State(state): State<AppState>,
    AnyOperator(session): AnyOperator,
    ClientIp(ip): ClientIp,
) -> Result<StatusCode> {
    sign_out(&state.owner, &session.operator, session.id, ip.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The operator behind the token.
#[utoipa::path(get, path = "/me", tag = "auth", responses((status = 200, body = Operator)))]
async fn me(AnyOperator(session): AnyOperator) -> Json<Operator> {
    Json(session.operator)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordRequest {
    current_password: String,
    #[schema(min_length = 10)]
    new_password: String,
}

/// Set one's own password.
///
/// Required after signing in with a one-time password. Ends the operator's other
/// sessions; the one making the request goes on.
#[utoipa::path(post, path = "/me/password", tag = "auth", request_body = PasswordRequest, responses((status = 204, description = "Changed")))]
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
