//! `GET /metrics` in the Prometheus text format, and the middleware that counts requests.
//!
//! No metric carries a tenant label: a fleet has too many tenants for that. Per-tenant
//! request counts go to metering instead.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::http::state::AppState;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once (several apps in one test process share it).
pub fn install() {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .ok()?
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).ok()?;
        Some(handle)
    });
}

/// Counts a request by surface (owner or tenant), route template, method and status.
pub async fn track(surface: &'static str, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("surface", surface.to_string()),
        ("route", route),
        ("method", method),
        ("status", status),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

pub async fn track_owner(req: Request, next: Next) -> Response {
    track("owner", req, next).await
}

pub async fn track_tenant(req: Request, next: Next) -> Response {
    track("tenant", req, next).await
}

/// The exposition, with the gateway's gauges refreshed first.
pub async fn render(State(state): State<AppState>) -> Response {
    let gateway = &state.gateway;
    metrics::gauge!("tenant_pools_open").set(gateway.open_pools().await as f64);
    metrics::gauge!("tenant_connections_open").set(gateway.connections_open() as f64);
    metrics::gauge!("tenant_connection_budget").set(state.gateway.connection_budget() as f64);
    for (server, open, budget) in gateway.connections_by_server().await {
        metrics::gauge!("tenant_server_connections_open", "server" => server.clone())
            .set(open as f64);
        metrics::gauge!("tenant_server_connection_budget", "server" => server).set(budget as f64);
    }
    match HANDLE.get().and_then(Option::as_ref) {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            handle.render(),
        )
            .into_response(),
        None => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed",
        )
            .into_response(),
    }
}
