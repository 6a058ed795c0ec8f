//! `GET /api/v1/settings`: the tenant's settings and features, for its app; and
//! `GET /api/v1/settings/logo`, its logo. Both answer without a token: a sign-in page
//! shows the brand and the time zone before anyone has signed in, and nothing here is
//! more private than the tenant's domain.
//!
//! Also the feature gate: routes of a feature the tenant lacks answer 403
//! `feature_disabled`, whoever asks.

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::ErrorBody;
use super::{ApiFailure, error};
use crate::context::TenantContext;

pub fn routes() -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(show))
        .routes(routes!(logo))
}

/// What the tenant's app shows before and after sign-in.
#[derive(Serialize, ToSchema)]
struct Settings {
    /// `#rrggbb`, if set.
    #[schema(required = true)]
    brand_colour: Option<String>,
    brand_name: String,
    /// The features the tenant has (`core`, `files`, `integrations`, ...).
    features: BTreeSet<String>,
    locale: String,
    /// Where the logo is served, if the tenant has one.
    #[schema(required = true, value_type = Option<String>)]
    logo_url: Option<&'static str>,
    tenant: SettingsTenant,
    /// An IANA time zone, such as `Europe/Paris`.
    time_zone: String,
}

#[derive(Serialize, ToSchema)]
struct SettingsTenant {
    slug: String,
}

/// The tenant's settings and features.
#[utoipa::path(
    get,
    path = "/api/v1/settings",
    operation_id = "settings",
    tag = "settings",
    security(()),
    responses((status = 200, description = "The settings", body = Settings)),
)]
async fn show(Extension(ctx): Extension<TenantContext>) -> Json<Settings> {
    let profile = &ctx.profile;
    Json(Settings {
        brand_colour: profile.brand_colour.clone(),
        brand_name: profile.brand_name.clone(),
        features: profile.features.clone(),
        locale: profile.locale.clone(),
        logo_url: profile.logo_file_id.map(|_| "/api/v1/settings/logo"),
        tenant: SettingsTenant { slug: ctx.slug },
        time_zone: profile.time_zone.clone(),
    })
}

/// Image types served as a logo. Not SVG: an SVG can carry script, and this answer is
/// public and on the tenant's own origin.
const LOGO_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// The tenant's logo.
#[utoipa::path(
    get,
    path = "/api/v1/settings/logo",
    operation_id = "logo",
    tag = "settings",
    security(()),
    responses(
        (status = 200, description = "The logo", content(
            ("image/png"), ("image/jpeg"), ("image/gif"), ("image/webp"),
        )),
        (status = 404, description = "The tenant has no logo", body = ErrorBody),
    ),
)]
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
