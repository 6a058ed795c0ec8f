//! The HTTP surface: health probes and the owner API, with the layers every request
//! goes through (request id, tracing span, body limit, timeout, panic guard).

mod error;
pub mod extract;
mod health;
pub mod metrics;
pub mod openapi;
pub mod owner_audit;
mod owner_auth;
mod owner_migrations;
mod owner_operators;
mod owner_plans;
mod owner_tenants;
mod serve;
pub mod session;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode, header};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use owner_auth::{CurrentOperator, actor_of as owner_actor, user_agent};
pub use serve::{HEADER_READ_TIMEOUT, KEEP_ALIVE_IDLE, raise_open_file_limit, serve};

use crate::app::AppState;

/// Largest request body the owner API accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest a request may take before it is answered 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let owner_api = Router::new()
        .merge(owner_auth::routes())
        .merge(owner_tenants::routes())
        .merge(owner_migrations::routes())
        .merge(owner_operators::routes())
        .merge(owner_plans::routes())
        .merge(owner_audit::routes())
        .route("/openapi.json", axum::routing::get(openapi::serve))
        .fallback(not_found);
    metrics::install();
    Router::new()
        .merge(health::routes())
        .route("/metrics", axum::routing::get(metrics::render))
        .nest("/api/owner", owner_api)
        .merge(crate::dashboard::routes())
        .route_layer(axum::middleware::from_fn(metrics::track_owner))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::gateway::dispatch,
        ))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                ]))
                .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                        let request_id = req
                            .headers()
                            .get(&REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        tracing::info_span!(
                            "request",
                            method = %req.method(),
                            path = %req.uri().path(),
                            request_id,
                            tenant_id = tracing::field::Empty,
                        )
                    }),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "internal error; see the server log",
                    )
                    .into_response_owned()
                }))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    REQUEST_TIMEOUT,
                ))
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
}

impl ApiError {
    fn into_response_owned(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
