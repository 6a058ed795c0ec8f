//! `GET /api/v1/settings`: the tenant's settings and features, for its app; and
//! `GET /api/v1/settings/logo`, its logo. Both answer without a token: a sign-in page
//! shows the brand and the time zone before anyone has signed in, and nothing here is
//! more private than the tenant's domain.
//!
//! Also the feature gate: routes of a feature the tenant lacks answer 403
//! `feature_disabled`, whoever asks.

use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{ApiFailure, error};
use crate::context::TenantContext;

pub fn routes() -> Router {
    Router::new()
        .route("/api/v1/settings", get(show))
        .route("/api/v1/settings/logo", get(logo))
}

async fn show(Extension(ctx): Extension<TenantContext>) -> Json<serde_json::Value> {
    let profile = &ctx.profile;
    Json(json!({
        "tenant": { "slug": ctx.slug },
        "time_zone": profile.time_zone,
        "locale": profile.locale,
        "brand_name": profile.brand_name,
        "brand_colour": profile.brand_colour,
        "logo_url": profile.logo_file_id.map(|_| "/api/v1/settings/logo"),
        "features": profile.features,
    }))
}

/// Image types served as a logo. Not SVG: an SVG can carry script, and this answer is
/// public and on the tenant's own origin.
const LOGO_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

async fn logo(Extension(ctx): Extension<TenantContext>) -> Result<Response, ApiFailure> {
    let id = ctx.profile.logo_file_id.ok_or(ApiFailure::NotFound)?;
    let conn = ctx.pool.get().await?;
    let row = conn
        .query_opt(
            "SELECT storage_path, content_type FROM files WHERE id = $1",
            &[&id],
        )
        .await?
        .ok_or(ApiFailure::NotFound)?;
    drop(conn);
    let relative: String = row.get(0);
    let content_type: String = row.get(1);
    // Only a file that is an image may be public: the operator named a file id, not a
    // file type, and any other file of the tenant's stays behind its token.
    if !LOGO_TYPES.contains(&content_type.as_str()) {
        return Err(ApiFailure::NotFound);
    }
    let path = ctx
        .storage
        .resolve(&relative)
        .map_err(|e| ApiFailure::Internal(e.to_string()))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiFailure::NotFound)?;
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}

/// Refuses every request of a router when the tenant lacks `feature` (use with
/// `axum::middleware::from_fn_with_state(feature, requires)` as a route layer).
pub async fn requires(State(feature): State<&'static str>, req: Request, next: Next) -> Response {
    let enabled = req
        .extensions()
        .get::<TenantContext>()
        .is_some_and(|ctx| ctx.profile.has(feature));
    if enabled {
        return next.run(req).await;
    }
    error(
        StatusCode::FORBIDDEN,
        "feature_disabled",
        &format!("the {feature} feature is not enabled for this tenant"),
    )
}
