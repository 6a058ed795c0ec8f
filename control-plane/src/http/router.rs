//! The service, assembled in one place: the owner routes (health, metrics, the owner API,
//! the dashboard) and the tenant API, behind the front every request goes through
//! (`front`).

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;

use super::dispatch::Dispatch;
use super::error::ApiError;
use super::front::Front;
use super::state::AppState;
use super::{health, metrics, openapi, public};

/// The whole service: tenant hosts go to the tenant API, owner hosts to health, metrics,
/// the owner API and the dashboard.
pub fn router(state: AppState) -> Front {
    let (owner_api, document) = openapi::owner_api();
    let owner_api = owner_api
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    metrics::install();
    let dispatch = Dispatch {
        gateway: std::sync::Arc::clone(&state.gateway),
        trusted_proxies: state.config.trusted_proxies.clone().into(),
        tenant_api: tenant::api::router()
            .route_layer(metrics::Track("tenant"))
            .layer(DefaultBodyLimit::max(super::MAX_BODY_BYTES)),
    };
    let owner = Router::new()
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
        .route_layer(metrics::Track("owner"))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(super::MAX_BODY_BYTES));
    Front::new(dispatch, owner)
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
