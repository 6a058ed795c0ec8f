//! `GET /metrics` in the Prometheus text format, and the route layer that counts requests.
//!
//! No metric carries a tenant label: a fleet has too many tenants for that. Per-tenant
//! request counts go to metering instead. Every family is described (HELP) when the
//! recorder is installed, and those without labels (or with a fixed set) start at zero,
//! so an alert on them sees 0 rather than "no data" before the first event.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, LazyLock, OnceLock, RwLock};
use std::task::Poll;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::http::state::AppState;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

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
        describe();
        Some(handle)
    });
}

/// HELP text for every family, and zero for those an alert may watch before they move.
fn describe() {
    use Unit::{Count, Seconds};
    let counters: &[(&'static str, &'static str)] = &[
        (
            "http_requests_total",
            "Requests answered, by surface (owner or tenant), route template, method (OTHER for non-standard ones) and status.",
        ),
        (
            "http_connections_refused_total",
            "Connections refused because the server had too many open.",
        ),
        (
            "tenant_requests_retried_total",
            "Tenant requests retried once on a fresh pool after a stale connection.",
        ),
        (
            "tenant_pools_created_total",
            "Per-tenant connection pools opened.",
        ),
        (
            "tenant_pool_evictions_total",
            "Per-tenant pools closed, by cause.",
        ),
        (
            "tenant_connections_relieved_total",
            "Idle tenant connections closed to stay within a server's connection budget.",
        ),
        (
            "tenant_connections_opened_total",
            "Tenant database connections opened (each a login).",
        ),
        (
            "tenant_extra_connections_closed_total",
            "Connections above a tenant pool's steady size closed once idle.",
        ),
        (
            "tenant_pool_timeouts_total",
            "Tenant requests that waited too long for a pool connection (503).",
        ),
        (
            "tenant_connection_budget_exhausted_total",
            "Tenant requests refused because the server's connection budget was spent (503).",
        ),
        (
            "gateway_domain_lookups_total",
            "Domain lookups in the owner database, by outcome.",
        ),
        (
            "gateway_domain_cache_requests_total",
            "Requests that asked the domain cache for their tenant.",
        ),
        (
            "gateway_domain_cache_misses_total",
            "Domain cache misses (the owner database was asked).",
        ),
        (
            "owner_change_feed_reconnects_total",
            "Times the change feed re-opened its owner-database session.",
        ),
        (
            "owner_change_notifications_total",
            "Change notifications received from other processes.",
        ),
        ("metering_runs_total", "Metering passes, by outcome."),
        ("metering_samples_total", "Tenant usage samples taken."),
        (
            "metering_failures_total",
            "Tenants a metering pass could not sample.",
        ),
        ("backups_taken_total", "Backups taken, by kind."),
        ("backups_failed_total", "Backups that failed, by kind."),
    ];
    // Counters with labels start at zero only for label sets known in advance (below).
    const LABELLED: [&str; 6] = [
        "http_requests_total",
        "tenant_pool_evictions_total",
        "gateway_domain_lookups_total",
        "metering_runs_total",
        "backups_taken_total",
        "backups_failed_total",
    ];
    for (name, help) in counters {
        describe_counter!(*name, Count, *help);
        if !LABELLED.contains(name) {
            metrics::counter!(*name).absolute(0);
        }
    }
    for outcome in ["ok", "error"] {
        metrics::counter!("metering_runs_total", "outcome" => outcome).absolute(0);
    }
    for kind in [
        owner::backups::BackupKind::Manual,
        owner::backups::BackupKind::Scheduled,
        owner::backups::BackupKind::PreMigration,
    ] {
        metrics::counter!("backups_taken_total", "kind" => kind.as_str()).absolute(0);
        metrics::counter!("backups_failed_total", "kind" => kind.as_str()).absolute(0);
    }
    let gauges: &[(&'static str, Unit, &'static str)] = &[
        (
            "control_plane_build_info",
            Count,
            "Always 1; its labels name the version and the commit this binary was built from.",
        ),
        (
            "tenant_pools_open",
            Count,
            "Per-tenant connection pools open in this process.",
        ),
        (
            "tenant_connections_open",
            Count,
            "Tenant database connections open in this process.",
        ),
        (
            "tenant_connection_budget",
            Count,
            "Tenant connections this process may hold on the default server.",
        ),
        (
            "tenant_server_connections_open",
            Count,
            "Tenant connections open, by database server.",
        ),
        (
            "tenant_server_connection_budget",
            Count,
            "Tenant connections this process may hold, by database server.",
        ),
        (
            "owner_pool_connections",
            Count,
            "Owner-database connections open, by pool (main or relaxed).",
        ),
        (
            "owner_pool_idle",
            Count,
            "Owner-database connections idle, by pool.",
        ),
        (
            "owner_pool_waiting",
            Count,
            "Tasks waiting for an owner-database connection, by pool.",
        ),
        (
            "owner_pool_max",
            Count,
            "Owner-database connections a pool may open.",
        ),
        (
            "owner_change_feed_connected",
            Count,
            "1 while the change feed listens on the owner database.",
        ),
        (
            "metering_last_success_timestamp_seconds",
            Seconds,
            "When the last metering pass succeeded (Unix time).",
        ),
        (
            "backup_restore_test_ok",
            Count,
            "1 if the last restore test of a backup succeeded.",
        ),
        (
            "backup_restore_test_timestamp_seconds",
            Seconds,
            "When the last restore test ran (Unix time).",
        ),
    ];
    for (name, unit, help) in gauges {
        describe_gauge!(*name, *unit, *help);
    }
    // Timestamps are left unset until their first event: a zero would read as "very
    // late" to an alert on their age right after every restart.
    for name in [
        "tenant_pools_open",
        "tenant_connections_open",
        "owner_change_feed_connected",
    ] {
        metrics::gauge!(name).set(0.0);
    }
    metrics::gauge!(
        "control_plane_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => env!("CP_GIT_COMMIT"),
    )
    .set(1.0);
    describe_histogram!(
        "http_request_duration_seconds",
        Seconds,
        "Time to answer a request, by surface, route template, method and status."
    );
    describe_histogram!(
        "metering_duration_seconds",
        Seconds,
        "Time a metering pass took."
    );
    PROCESS
        .get_or_init(metrics_process::Collector::default)
        .describe();
}

/// Counts each request by surface (owner or tenant), route template, method and status,
/// and leaves the route template on the response for the access log. A route layer, so
/// it sees the matched template; a plain tower service rather than `from_fn` and with
/// the metric handles kept per label set, because every request pays for it (see the
/// 1-tenant profile in bench/results/gateway-fleet.txt).
#[derive(Clone, Copy)]
pub struct Track(pub &'static str);

impl<S> tower::Layer<S> for Track {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            surface: self.0,
        }
    }
}

#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    surface: &'static str,
}

impl<S> tower::Service<Request> for Tracked<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let started = Instant::now();
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = req.method().clone();
        let surface = self.surface;
        let answer = self.inner.call(req);
        Box::pin(async move {
            let mut response = answer.await?;
            let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
            let handles = handles(surface, route, &method, response.status().as_u16());
            handles.requests.increment(1);
            handles.duration.record(started.elapsed().as_secs_f64());
            response
                .extensions_mut()
                .insert(super::access_log::Route(handles.route));
            Ok(response)
        })
    }
}

/// The request metrics of one label set.
#[derive(Clone)]
struct Handles {
    requests: metrics::Counter,
    duration: metrics::Histogram,
    route: Arc<str>,
}

/// One route's label sets: (surface, method, status) and their handles. Few per route.
type RouteHandles = Vec<(&'static str, &'static str, u16, Handles)>;

static HANDLES: LazyLock<RwLock<HashMap<String, RouteHandles>>> = LazyLock::new(Default::default);

/// The handles for a label set, registered with the recorder on first use. Route
/// templates, methods (others count as "OTHER") and statuses are bounded sets, so the
/// map is too.
fn handles(surface: &'static str, route: &str, method: &Method, status: u16) -> Handles {
    let method = method_label(method);
    let find = |sets: &RouteHandles| {
        sets.iter()
            .find(|(s, m, st, _)| *s == surface && *m == method && *st == status)
            .map(|(.., h)| h.clone())
    };
    if let Some(found) = HANDLES
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(route)
        .and_then(find)
    {
        return found;
    }
    let mut all = HANDLES.write().unwrap_or_else(|p| p.into_inner());
    let sets = all.entry(route.to_string()).or_default();
    if let Some(found) = find(sets) {
        return found;
    }
    let labels = [
        ("surface", surface.to_string()),
        ("route", route.to_string()),
        ("method", method.to_string()),
        ("status", status.to_string()),
    ];
    let made = Handles {
        requests: metrics::counter!("http_requests_total", &labels),
        duration: metrics::histogram!("http_request_duration_seconds", &labels),
        route: Arc::from(route),
    };
    sets.push((surface, method, status, made.clone()));
    made
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
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
    for (name, pool) in state.owner.pools() {
        let status = pool.status();
        metrics::gauge!("owner_pool_connections", "pool" => name).set(status.size as f64);
        metrics::gauge!("owner_pool_idle", "pool" => name).set(status.available as f64);
        metrics::gauge!("owner_pool_waiting", "pool" => name).set(status.waiting as f64);
        metrics::gauge!("owner_pool_max", "pool" => name).set(status.max_size as f64);
    }
    if let Some(process) = PROCESS.get() {
        process.collect();
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
