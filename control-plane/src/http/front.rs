//! What every request goes through, in one service: sensitive headers marked, a request
//! id (kept from the client or made, and sent back), a tracing span, a panic guard, a
//! time limit, the access log, then the dispatch to the owner routes or a tenant's API.
//!
//! One hand-written service rather than a stack of tower layers and `from_fn` middleware
//! on the owner router: each of those cloned and boxed its inner service per request,
//! and routing first cloned the whole web state, which together cost the tenant path
//! more than the tenant's own work (bench/src/gateway.rs, 1 tenant).

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::BoxFuture;
use tracing::Instrument;

use super::access_log;
use super::dispatch::{Dispatch, dispatch};
use super::error::ApiError;

/// Longest a request may take before it is answered 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole service (cheap to clone).
#[derive(Clone)]
pub struct Front(Arc<Inner>);

struct Inner {
    dispatch: Dispatch,
    /// Health, metrics, the owner API and the dashboard.
    owner: axum::Router,
}

impl Front {
    pub fn new(dispatch: Dispatch, owner: axum::Router) -> Self {
        Self(Arc::new(Inner { dispatch, owner }))
    }
}

impl<B> tower::Service<axum::http::Request<B>> for Front
where
    B: HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move { Ok(inner.handle(req.map(Body::new)).await) })
    }
}

impl Inner {
    async fn handle(self: Arc<Self>, mut req: Request) -> Response {
        let started = Instant::now();
        mark_sensitive(req.headers_mut());
        let request_id = request_id(req.headers_mut());
        let span = tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            request_id = request_id.to_str().unwrap_or_default(),
            tenant_id = tracing::field::Empty,
        );
        let method = req.method().clone();
        let quiet = access_log::is_quiet(req.uri().path());
        let answer = async move {
            let limited = tokio::time::timeout(REQUEST_TIMEOUT, async {
                dispatch(&self.dispatch, &self.owner, req).await
            });
            match AssertUnwindSafe(limited).catch_unwind().await {
                Ok(Ok(response)) => response,
                Ok(Err(_elapsed)) => ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        "the request took too long; retry later",
                    )
                }
                .into_response(),
                Err(_panic) => {
                    // The panic message was printed by the panic hook.
                    tracing::error!("request handler panicked");
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "internal error; see the server log",
                    )
                    .into_response()
                }
            }
        };
        let mut response = answer.instrument(span.clone()).await;
        span.in_scope(|| access_log::log(&method, quiet, started, &response));
        response
            .headers_mut()
            .entry(&REQUEST_ID)
            .or_insert(request_id);
        response
    }
}

/// Marks credentials so that nothing printing headers shows them.
fn mark_sensitive(headers: &mut HeaderMap) {
    for name in [header::AUTHORIZATION, header::COOKIE] {
        if let header::Entry::Occupied(mut values) = headers.entry(name) {
            for value in values.iter_mut() {
                value.set_sensitive(true);
            }
        }
    }
}

/// The request's id: the client's `X-Request-Id`, else a new one (set on the request).
fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&REQUEST_ID) {
        return id.clone();
    }
    let id = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
        .expect("a uuid is a valid header value");
    headers.insert(REQUEST_ID.clone(), id.clone());
    id
}
