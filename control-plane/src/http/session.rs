//! Who is asking: the operator behind a bearer token or the dashboard's session cookie.
//! Both carry the same kind of token; the session row it names must still be live and
//! the operator still active, so logout and disabling take effect at once.

use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use owner::operators::Operator;
use uuid::Uuid;

use crate::http::state::AppState;
use crate::{Error, Result};

/// The dashboard's cookie. HttpOnly and SameSite=Strict; Secure when configured.
pub const SESSION_COOKIE: &str = "cp_session";
/// Where scripts send the CSRF token; forms send it as the `_csrf` field.
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Clone)]
pub struct Session {
    pub operator: Operator,
    pub id: Uuid,
    /// Authenticated by the cookie (so state-changing requests need the CSRF token).
    pub via_cookie: bool,
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The `Set-Cookie` value that stores (or, with `None`, clears) the session.
pub fn session_cookie(token: Option<&str>, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match token {
        Some(token) => format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// Authenticates the request: a bearer token first, else the session cookie. The caller
/// checks CSRF for cookie sessions (a header for scripts, a form field for forms).
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Session> {
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let (token, via_cookie) = match bearer {
        Some(token) => (token, false),
        None => (
            cookie(&parts.headers, SESSION_COOKIE).ok_or(Error::Unauthenticated)?,
            true,
        ),
    };
    let claims = state.tokens.verify(token)?;
    let conn = state.owner.conn().await?;
    // The run page's live refresh is not the operator at work: it does not keep an idle
    // session alive.
    let touch = !parts.uri.path().ends_with("/live");
    let operator =
        owner::sessions::session_operator(&**conn, claims.sid, state.config.dashboard_idle, touch)
            .await?
            .filter(|op| op.active && op.id == claims.sub)
            .ok_or(Error::Unauthenticated)?;
    Ok(Session {
        operator,
        id: claims.sid,
        via_cookie,
    })
}

/// A cookie session may not change anything without the CSRF header.
pub fn require_csrf_header(parts: &Parts, state: &AppState, session: &Session) -> Result<()> {
    if !session.via_cookie || is_safe(&parts.method) {
        return Ok(());
    }
    let sent = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if state.tokens.csrf_ok(session.id, sent) {
        Ok(())
    } else {
        Err(Error::CsrfRejected)
    }
}

pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}
