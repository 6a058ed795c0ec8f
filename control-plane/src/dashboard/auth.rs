//! Sign-in, sign-out and choosing a password, in the browser.
//!
//! The login form is protected against login CSRF (another site signing the browser into
//! an account of theirs) by a double-submit token: a random value in a short-lived
//! SameSite=Strict cookie that the form must repeat.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use owner::sessions::SessionKind;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::page::{
    DashError, DashForm, DashResult, DashSession, client_mistake, read_form, render,
};
use super::view::{LoginPage, PasswordPage};
use crate::http::extract::ClientIp;
use crate::http::session::{cookie, session_cookie};
use crate::http::state::AppState;
use crate::sign_in::{Attempt, sign_in, sign_out};
use crate::{Error, Result};

const LOGIN_CSRF_COOKIE: &str = "cp_login_csrf";

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
    /// Sent here because the session expired.
    expired: Option<String>,
}

/// Only paths inside the dashboard: `next` must not send the operator elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/owner") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/owner".to_string(),
    }
}

fn login_form(
    state: &AppState,
    next: String,
    email: String,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
    let secure = if state.config.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let mut response = render(&LoginPage {
        csrf: token.clone(),
        next,
        email,
        error,
    });
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{LOGIN_CSRF_COOKIE}={token}; Path=/owner/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure}"
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn login_page(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> Response {
    let notice = query
        .expired
        .map(|_| "Your session expired. Please sign in again.".to_string());
    login_form(
        &state,
        safe_next(query.next.as_deref()),
        String::new(),
        notice,
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    request: axum::extract::Request,
) -> DashResult<Response> {
    let (parts, body) = request.into_parts();
    let bytes = read_form(&parts, body).await?;
    let form: LoginForm = serde_urlencoded::from_bytes(&bytes).map_err(|_| {
        DashError::Failed(Error::BadRequest("the sign-in form is incomplete".into()))
    })?;
    let next = safe_next(form.next.as_deref());
    let expected = cookie(&parts.headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(expected.as_bytes(), form.csrf.as_bytes()) {
        return Ok(login_form(
            &state,
            next,
            form.email,
            Some("Your sign-in form expired. Please try again.".into()),
            StatusCode::FORBIDDEN,
        ));
    }
    let attempt = Attempt {
        email: form.email.clone(),
        password: form.password,
        ip,
        user_agent: crate::http::user_agent(&parts.headers),
        kind: SessionKind::Dashboard,
    };
    match sign_in(&state.owner, &state.tokens, attempt).await {
        Ok(signed_in) => {
            let target = if signed_in.operator.must_change_password {
                "/owner/password".to_string()
            } else {
                next
            };
            let mut response = Redirect::to(&target).into_response();
            let value = session_cookie(
                Some(signed_in.token.expose_secret()),
                state.tokens.ttl(SessionKind::Dashboard).as_secs(),
                state.config.cookie_secure,
            );
            response.headers_mut().append(
                header::SET_COOKIE,
                HeaderValue::from_str(&value)
                    .map_err(|_| DashError::Failed(Error::Internal("bad cookie".into())))?,
            );
            Ok(response)
        }
        Err(Error::WrongCredentials) => Ok(login_form(
            &state,
            next,
            form.email,
            Some("Wrong email or password.".into()),
            StatusCode::UNAUTHORIZED,
        )),
        Err(Error::TooManyAttempts(secs)) => {
            let mut response = login_form(
                &state,
                next,
                form.email,
                Some(format!(
                    "Too many failed sign-ins. Try again in {} minutes.",
                    secs.div_ceil(60)
                )),
                StatusCode::TOO_MANY_REQUESTS,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            Ok(response)
        }
        Err(e) => Err(DashError::Failed(e)),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn logout(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    DashForm { session, .. }: DashForm<Empty>,
) -> DashResult<Response> {
    sign_out(
        &state.owner,
        &session.0.operator,
        session.0.id,
        ip.as_deref(),
    )
    .await?;
    let mut response = Redirect::to("/owner/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&session_cookie(None, 0, state.config.cookie_secure)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

pub async fn password_page(State(state): State<AppState>, session: DashSession) -> Response {
    render(&PasswordPage {
        chrome: session.chrome(&state, ""),
        must_change: session.0.operator.must_change_password,
        error: None,
    })
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
}

pub async fn password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    DashForm { session, form }: DashForm<PasswordForm>,
) -> DashResult<Response> {
    let actor = session.actor(ip);
    let result: Result<()> = crate::operators::change_password(
        &state.owner,
        &session.0.operator,
        session.0.id,
        &actor,
        form.current_password,
        &form.new_password,
    )
    .await;
    match result {
        Ok(()) => Ok(super::page::see_other("/owner", "password_changed")),
        Err(e) => {
            let api = client_mistake(e)?;
            let mut response = render(&PasswordPage {
                chrome: session.chrome(&state, ""),
                must_change: session.0.operator.must_change_password,
                error: Some(api.message),
            });
            *response.status_mut() = api.status;
            Ok(response)
        }
    }
}
