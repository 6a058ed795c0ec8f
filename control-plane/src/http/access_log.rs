//! One log line per request at INFO: method, route, status and duration, inside the
//! request's span (path, request id, and the tenant once the gateway has resolved it).
//! Health checks and metric scrapes are logged at DEBUG: they come every few seconds.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// The route template a request matched, left on the response by the metrics layer.
#[derive(Clone)]
pub struct Route(pub String);

pub async fn access_log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let quiet = matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics");
    let method = req.method().clone();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let route = response
        .extensions()
        .get::<Route>()
        .map_or("unmatched", |r| r.0.as_str());
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    if quiet {
        tracing::debug!(%method, route, status, duration_ms, "request");
    } else {
        tracing::info!(%method, route, status, duration_ms, "request");
    }
    response
}
