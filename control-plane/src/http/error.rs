//! The one place where errors become HTTP responses:
//! `{"error": {"code": "...", "message": "..."}}`. 4xx bodies say what to fix; 5xx bodies
//! are generic and their detail is logged here, once. The body and its headers are
//! written by `tenant::api::envelope`, the same writer the tenant API uses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tenant::api::envelope::error_response;

use crate::Error;
use crate::gateway::Refusal;

/// An error answer: from the domain's [`Error`], a gateway [`Refusal`], or decided in
/// the web layer (rejections, fallbacks).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After` (a 503 without one gets the default).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, self.code, &self.message, self.retry_after)
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        if let Refusal::TenantUnavailable(why) = &refusal {
            tracing::warn!(error = %why, "tenant unavailable");
        }
        ApiError::new(refusal.status(), refusal.code(), refusal.message())
    }
}

impl From<&Error> for ApiError {
    fn from(e: &Error) -> Self {
        use StatusCode as S;
        use owner::Error as O;
        let internal = || {
            ApiError::new(
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; see the server log",
            )
        };
        if refused_text(e) {
            return ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid_text",
                tenant::text::NUL_MESSAGE,
            );
        }
        match e {
            Error::Owner(o) => match o {
                O::InvalidSlug(why) => ApiError::new(
                    S::UNPROCESSABLE_ENTITY,
                    "invalid_slug",
                    format!("slug {why}"),
                ),
                O::InvalidDomain(why) => ApiError::new(
                    S::UNPROCESSABLE_ENTITY,
                    "invalid_domain",
                    format!("domain {why}"),
                ),
                O::InvalidEmail => {
                    ApiError::new(S::UNPROCESSABLE_ENTITY, "invalid_email", o.to_string())
                }
                O::Invalid { .. } => {
                    ApiError::new(S::UNPROCESSABLE_ENTITY, "validation_failed", o.to_string())
                }
                O::SlugTaken => ApiError::new(S::CONFLICT, "slug_taken", o.to_string()),
                O::DomainTaken(_) => ApiError::new(S::CONFLICT, "domain_taken", o.to_string()),
                O::EmailTaken => ApiError::new(S::CONFLICT, "email_taken", o.to_string()),
                O::UnknownPlan(_) => {
                    ApiError::new(S::UNPROCESSABLE_ENTITY, "unknown_plan", o.to_string())
                }
                O::NotFound => ApiError::new(S::NOT_FOUND, "not_found", "no such resource"),
                O::Conflict => ApiError::new(S::CONFLICT, "conflict", o.to_string()),
                O::AlreadyRunning(_) => {
                    ApiError::new(S::CONFLICT, "already_running", o.to_string())
                }
                O::Db(db) if connection_lost(db) => owner_unavailable(),
                O::Db(_) | O::Migration(_) => internal(),
            },
            Error::Storage(storage::Error::InvalidPath(_) | storage::Error::Escapes(_)) => {
                ApiError::new(S::BAD_REQUEST, "invalid_path", e.to_string())
            }
            Error::Pool(deadpool_postgres::PoolError::Timeout(_)) => ApiError::new(
                S::SERVICE_UNAVAILABLE,
                "busy",
                "the service is busy; retry shortly",
            ),
            Error::Pool(deadpool_postgres::PoolError::Backend(_)) => owner_unavailable(),
            Error::Db(db) if connection_lost(db) => owner_unavailable(),
            Error::Busy(_) => ApiError::new(
                S::SERVICE_UNAVAILABLE,
                "busy",
                "too many sign-ins at once; retry shortly",
            ),
            Error::Conflict(code, message) => ApiError::new(S::CONFLICT, code, message.clone()),
            Error::FleetBusy(_) => ApiError::new(S::CONFLICT, "migration_running", e.to_string()),
            Error::WrongState { .. } => ApiError::new(S::CONFLICT, "invalid_state", e.to_string()),
            Error::BadRequest(msg) => ApiError::new(S::BAD_REQUEST, "bad_request", msg.clone()),
            Error::Unauthenticated => ApiError::new(
                S::UNAUTHORIZED,
                "unauthenticated",
                "a valid bearer token is required",
            ),
            Error::WrongCredentials => ApiError::new(
                S::UNAUTHORIZED,
                "wrong_credentials",
                "wrong email or password",
            ),
            Error::TooManyAttempts(secs) => ApiError {
                retry_after: Some(*secs),
                ..ApiError::new(S::TOO_MANY_REQUESTS, "too_many_attempts", e.to_string())
            },
            Error::RateLimited(secs) => ApiError {
                retry_after: Some(*secs),
                ..ApiError::new(S::TOO_MANY_REQUESTS, "too_many_requests", e.to_string())
            },
            Error::InvalidCode => ApiError::new(S::UNAUTHORIZED, "invalid_code", e.to_string()),
            Error::NotConfigured(_) => {
                ApiError::new(S::SERVICE_UNAVAILABLE, "not_configured", e.to_string())
            }
            Error::CsrfRejected => ApiError::new(
                S::FORBIDDEN,
                "csrf_rejected",
                "send the session's CSRF token (X-CSRF-Token header or _csrf form field)",
            ),
            Error::PasswordChangeRequired => ApiError::new(
                S::FORBIDDEN,
                "password_change_required",
                "you signed in with a one-time password: set your own with POST /api/owner/me/password",
            ),
            Error::BackupCorrupt(_) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, "backup_corrupt", e.to_string())
            }
            Error::Forbidden => {
                ApiError::new(S::FORBIDDEN, "forbidden", "your role does not allow this")
            }
            _ => internal(),
        }
    }
}

/// The owner database cannot be reached: the service is fine, and the request may be
/// retried once the database is back.
fn owner_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "owner_database_unavailable",
        "the owner database cannot be reached; retry shortly",
    )
}

/// Whether an error says the connection is gone (closed, refused, terminated by the
/// server), as opposed to a statement that failed on a live connection.
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::INVALID_CATALOG_NAME,
                ]
                .contains(code)
        }
        None => {
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                if inner.is::<std::io::Error>() {
                    return true;
                }
                source = inner.source();
            }
            false
        }
    }
}

/// PostgreSQL refused text the client sent (a NUL character that came some way the
/// extractors do not check): the client's mistake, answered 422 rather than 500.
fn refused_text(e: &Error) -> bool {
    let db = match e {
        Error::Owner(owner::Error::Db(db))
        | Error::Db(db)
        | Error::Tenant(tenant::Error::Db(db)) => db,
        _ => return false,
    };
    tenant::text::is_refused_text(db)
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let api = ApiError::from(&self);
        if api.status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        api.into_response()
    }
}
