//! The router, assembled in one place, with the layers every request goes through
//! (sensitive headers, request id, tracing span, panic guard, timeout, body limit).

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode, header};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::dispatch::{Dispatch, dispatch};
use super::error::ApiError;
use super::state::AppState;
use super::{health, metrics, openapi, public};

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole service: tenant hosts go to the tenant API (through `dispatch`), owner
/// hosts to health, metrics, the owner API and the dashboard.
pub fn router(state: AppState) -> Router {
    let (owner_api, document) = openapi::owner_api();
    let owner_api = owner_api
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    metrics::install();
    Router::new()
        .merge(health::routes())
        .route("/metrics", axum::routing::get(metrics::render))
        .merge(openapi::document_route(document))
        .merge(openapi::docs_ui())
        .nest("/api/owner", owner_api)
        .nest(
            "/api/public",
            public::routes()
                .fallback(not_found)
                .method_not_allowed_fallback(method_not_allowed),
        )
        .merge(crate::dashboard::routes())
        .route_layer(axum::middleware::from_fn(metrics::track_owner))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Dispatch {
                gateway: std::sync::Arc::clone(&state.gateway),
                trusted_proxies: state.config.trusted_proxies.clone().into(),
                tenant_api: tenant::api::router()
                    .route_layer(axum::middleware::from_fn(metrics::track_tenant)),
            },
            dispatch,
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
                .layer(axum::middleware::from_fn(super::access_log::access_log))
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
                    super::REQUEST_TIMEOUT,
                ))
                .layer(DefaultBodyLimit::max(super::MAX_BODY_BYTES)),
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

/// A route that exists, asked with a method it does not take (axum adds `Allow`).
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}
