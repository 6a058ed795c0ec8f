//! What every dashboard page shares: the chrome around it, the signed-in session and
//! form extractors (CSRF checked), errors as pages, rendering and redirects.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;

use crate::http::error::ApiError;
use crate::http::session::{SESSION_COOKIE, Session, authenticate};
use crate::http::state::AppState;
use crate::{Error, Result};

/// Largest form the dashboard accepts.
const MAX_FORM_BYTES: usize = 64 * 1024;

pub use super::view::Chrome;

/// A signed-in operator on a dashboard page. Without a session the page redirects to the
/// login page; an operator with a one-time password is sent to choose their own.
pub struct DashSession(pub Session);

impl DashSession {
    pub fn chrome(&self, state: &AppState, nav: &'static str) -> Chrome {
        let op = &self.0.operator;
        Chrome {
            email: op.email.clone(),
            role: op.role.as_str(),
            csrf: state.tokens.csrf_for(self.0.id),
            nav,
            notice: None,
            can_write: op.role.can_write(),
            is_owner: op.role == owner::operators::OperatorRole::Owner,
        }
    }

    pub fn require_write(&self) -> Result<()> {
        if self.0.operator.role.can_write() {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }

    pub fn actor(&self, ip: Option<String>) -> crate::audit::Actor {
        crate::http::owner_actor(&self.0.operator, ip)
    }
}

impl FromRequestParts<AppState> for DashSession {
    type Rejection = DashError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> std::result::Result<Self, DashError> {
        let session = match authenticate(parts, state).await {
            Ok(session) => session,
            Err(Error::Unauthenticated) => {
                // A session cookie that no longer opens a session: it expired (or was
                // ended elsewhere), and the login page says so.
                let expired = crate::http::session::cookie(&parts.headers, SESSION_COOKIE)
                    .is_some_and(|c| !c.is_empty());
                return Err(DashError::Login {
                    next: parts.uri.path_and_query().map(|p| p.as_str().to_string()),
                    expired,
                });
            }
            Err(e) => return Err(DashError::Failed(e)),
        };
        if session.operator.must_change_password && parts.uri.path() != "/owner/password" {
            return Err(DashError::PasswordFirst);
        }
        Ok(Self(session))
    }
}

/// A dashboard form: the session, and the body, accepted only with the session's CSRF
/// token in its `_csrf` field.
pub struct DashForm<T> {
    pub session: DashSession,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for DashForm<T> {
    type Rejection = DashError;

    async fn from_request(req: Request, state: &AppState) -> std::result::Result<Self, DashError> {
        let (mut parts, body) = req.into_parts();
        let session = DashSession::from_request_parts(&mut parts, state).await?;
        let bytes = read_form(&parts, body).await?;
        let csrf = form_field(&bytes, "_csrf").unwrap_or_default();
        if !state.tokens.csrf_ok(session.0.id, &csrf) {
            return Err(DashError::Failed(Error::CsrfRejected));
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            DashError::Failed(Error::BadRequest(format!("the form is invalid: {e}")))
        })?;
        Ok(Self { session, form })
    }
}

/// The raw body of a urlencoded form, bounded.
pub async fn read_form(
    parts: &Parts,
    body: axum::body::Body,
) -> std::result::Result<Vec<u8>, DashError> {
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(DashError::Failed(Error::BadRequest(
            "send the form as application/x-www-form-urlencoded".into(),
        )));
    }
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| DashError::Failed(Error::BadRequest("the form is too large".into())))?;
    if tenant::text::urlencoded_has_nul(&bytes) {
        return Err(DashError::Failed(Error::BadRequest(
            tenant::text::NUL_MESSAGE.into(),
        )));
    }
    Ok(bytes)
}

fn form_field(bytes: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Why a dashboard request ends without its page.
pub enum DashError {
    /// Not signed in: to the login page, then back to this path. `expired`: the browser
    /// had a session that is over.
    Login {
        next: Option<String>,
        expired: bool,
    },
    /// Signed in with a one-time password: choose one first.
    PasswordFirst,
    Failed(Error),
}

impl From<Error> for DashError {
    fn from(e: Error) -> Self {
        match e {
            Error::Unauthenticated => DashError::Login {
                next: None,
                expired: false,
            },
            other => DashError::Failed(other),
        }
    }
}

impl From<owner::Error> for DashError {
    fn from(e: owner::Error) -> Self {
        DashError::Failed(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for DashError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DashError::Failed(e.into())
    }
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        match self {
            DashError::Login { next, expired } => {
                let mut query: Vec<(&str, String)> = Vec::new();
                // A run page's live refresh comes back to the run page itself.
                let next = next.map(|n| n.strip_suffix("/live").map_or(n.clone(), str::to_string));
                if let Some(next) =
                    next.filter(|n| n.starts_with("/owner") && !n.starts_with("/owner/login"))
                {
                    query.push(("next", next));
                }
                if expired {
                    query.push(("expired", "1".into()));
                }
                let target = match serde_urlencoded::to_string(&query) {
                    Ok(q) if !q.is_empty() => format!("/owner/login?{q}"),
                    _ => "/owner/login".to_string(),
                };
                let mut response = Redirect::to(&target).into_response();
                if expired {
                    // The dead cookie goes, so the login page is not told "expired" again.
                    let clear = crate::http::session::session_cookie(None, 0, false);
                    if let Ok(value) = axum::http::HeaderValue::from_str(&clear) {
                        response.headers_mut().append(header::SET_COOKIE, value);
                    }
                }
                response
            }
            DashError::PasswordFirst => Redirect::to("/owner/password").into_response(),
            DashError::Failed(e) => {
                let api = ApiError::from(&e);
                if api.status.is_server_error() {
                    tracing::error!(error = %e, "dashboard request failed");
                }
                let page = super::view::ErrorPage {
                    status: api.status.as_u16(),
                    title: api.status.canonical_reason().unwrap_or("Error").to_string(),
                    message: api.message,
                };
                (api.status, render(&page)).into_response()
            }
        }
    }
}

pub type DashResult<T> = std::result::Result<T, DashError>;

/// The client's mistakes (what the API answers 4xx) are shown on the page they came from;
/// anything else goes back as the error, for the error page.
pub fn client_mistake(e: Error) -> std::result::Result<ApiError, Error> {
    let api = ApiError::from(&e);
    if api.status.is_client_error() {
        Ok(api)
    } else {
        Err(e)
    }
}

/// Renders a template; a rendering failure is a bug, answered 500.
pub fn render<T: askama::Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the server log",
            )
                .into_response()
        }
    }
}

/// After an action: back to a page (303, so a reload does not repeat the POST), with a
/// notice code the page turns into a sentence.
pub fn see_other(path: &str, notice: &str) -> Response {
    let sep = if path.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{path}{sep}notice={notice}")).into_response()
}
