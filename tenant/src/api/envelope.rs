//! The one writer of error answers, for the tenant API and (through the control plane's
//! `http::error`) the owner API alike: `{"error": {"code": "...", "message": "..."}}`,
//! with `Retry-After` when the client should come back and `WWW-Authenticate` on 401.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::openapi::{ErrorBody, ErrorDetail};

/// How long a client is told to wait after a 503: long enough for a pool or an owner
/// database to recover, short enough that nobody gives up.
pub const RETRY_SECS: u64 = 5;

/// An error answer. `retry_after` is in seconds; a 503 without one gets [`RETRY_SECS`].
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    retry_after: Option<u64>,
) -> Response {
    let mut response = (
        status,
        Json(ErrorBody {
            error: ErrorDetail { code, message },
        }),
    )
        .into_response();
    let retry_after =
        retry_after.or((status == StatusCode::SERVICE_UNAVAILABLE).then_some(RETRY_SECS));
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
