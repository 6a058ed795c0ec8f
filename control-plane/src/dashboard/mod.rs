//! The operator dashboard at `/owner`: server-rendered pages (askama templates in
//! `control-plane/templates`) over the same operations as the owner API. Sign-in gives a
//! session cookie (HttpOnly, SameSite=Strict, Secure when configured); every form carries
//! the session's CSRF token; pages are sent with a strict Content-Security-Policy.

mod audit;
mod auth;
mod migrations;
mod operators;
mod overview;
mod page;
mod plans;
mod servers;
mod tenants;
mod view;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::Error;
use crate::http::state::AppState;
use page::DashError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/owner", get(overview::page))
        .route("/owner/", get(overview::page))
        .route("/owner/login", get(auth::login_page).post(auth::login))
        .route("/owner/logout", post(auth::logout))
        .route(
            "/owner/password",
            get(auth::password_page).post(auth::password),
        )
        .route("/owner/tenants", get(tenants::list).post(tenants::create))
        .route("/owner/tenants/new", get(tenants::new_form))
        .route("/owner/tenants/{id}", get(tenants::detail))
        .route("/owner/tenants/{id}/suspend", post(tenants::suspend))
        .route("/owner/tenants/{id}/resume", post(tenants::resume))
        .route("/owner/tenants/{id}/delete", post(tenants::delete))
        .route(
            "/owner/tenants/{id}/maintenance",
            post(tenants::maintenance_on),
        )
        .route("/owner/tenants/{id}/move", post(tenants::move_server))
        .route(
            "/owner/tenants/{id}/maintenance/off",
            post(tenants::maintenance_off),
        )
        .route("/owner/tenants/{id}/settings", post(tenants::settings))
        .route("/owner/tenants/{id}/features", post(tenants::feature))
        .route("/owner/tenants/{id}/domains", post(tenants::domain_add))
        .route(
            "/owner/tenants/{id}/domain-remove",
            post(tenants::domain_remove),
        )
        .route(
            "/owner/tenants/{id}/domain-primary",
            post(tenants::domain_primary),
        )
        .route(
            "/owner/tenants/{id}/subscription",
            post(tenants::subscription),
        )
        .route("/owner/tenants/{id}/backup", post(tenants::backup_now))
        .route("/owner/tenants/{id}/restore", post(tenants::restore))
        .route("/owner/plans", get(plans::list).post(plans::create))
        .route(
            "/owner/plans/{code}",
            get(plans::edit_form).post(plans::edit),
        )
        .route(
            "/owner/operators",
            get(operators::list).post(operators::invite),
        )
        .route("/owner/operators/{id}", post(operators::update))
        .route("/owner/servers", get(servers::list).post(servers::add))
        .route("/owner/servers/{id}/status", post(servers::set_status))
        .route("/owner/servers/{id}/drain", post(servers::drain))
        .route("/owner/audit", get(audit::page))
        .route("/owner/audit.csv", get(audit::csv))
        .route(
            "/owner/migrations",
            get(migrations::list).post(migrations::start),
        )
        .route("/owner/migrations/{id}", get(migrations::show))
        .route("/owner/migrations/{id}/live", get(migrations::live))
        .route("/owner/static/{file}", get(static_file))
        .route("/owner/{*rest}", get(not_found))
        .layer(axum::middleware::map_response(security_headers))
}

async fn not_found() -> DashError {
    DashError::Failed(Error::Owner(owner::Error::NotFound))
}

/// Pages may load only their own scripts, styles and images, and may not be framed.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn static_file(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.css" => (
            include_str!("../../static/app.css"),
            "text/css; charset=utf-8",
        ),
        "app.js" => (
            include_str!("../../static/app.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}
