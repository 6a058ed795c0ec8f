//! One log line per request at INFO: method, route, status and duration, inside the
//! request's span (path, request id, and the tenant once the gateway has resolved it).
//! Health checks and metric scrapes are logged at DEBUG: they come every few seconds.

use std::sync::Arc;
use std::time::Instant;

use axum::http::Method;
use axum::response::Response;

/// The route template a request matched, left on the response by the metrics layer.
#[derive(Clone)]
pub struct Route(pub Arc<str>);

/// Whether requests to `path` are logged at DEBUG rather than INFO.
pub fn is_quiet(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Logs `response` to a `method` request that started at `started`, in the current span.
pub fn log(method: &Method, quiet: bool, started: Instant, response: &Response) {
    let status = response.status().as_u16();
    let route = response
        .extensions()
        .get::<Route>()
        .map_or("unmatched", |r| &r.0);
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    if quiet {
        tracing::debug!(%method, route, status, duration_ms, "request");
    } else {
        tracing::info!(%method, route, status, duration_ms, "request");
    }
}
