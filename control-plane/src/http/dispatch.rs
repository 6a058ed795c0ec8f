//! The tenant dispatch: a request for a tenant host is admitted by the
//! gateway and served by the tenant API with its tenant's context; a request for an
//! owner host goes on to the owner routes.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

use tenant::api::ConnectionLost;

use super::error::ApiError;
use crate::gateway::{ClientAddr, Effect, Gateway, client_addr, forwarded_host, request_host};

/// What dispatching needs.
#[derive(Clone)]
pub struct Dispatch {
    pub gateway: Arc<Gateway>,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Arc<[IpAddr]>,
    /// The tenant API (`tenant::api::router`, with its layers).
    pub tenant_api: axum::Router,
}

/// Serves `req`: on an owner host with `owner`, on a tenant host with the tenant API once
/// the gateway has admitted it.
pub async fn dispatch(dispatch: &Dispatch, owner: &axum::Router, mut req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let trusted = peer.is_some_and(|ip| dispatch.trusted_proxies.contains(&ip));
    let client = client_addr(peer, &dispatch.trusted_proxies, req.headers());
    req.extensions_mut().insert(ClientAddr(client));
    let host = match trusted.then(|| forwarded_host(req.headers())).flatten() {
        Some(forwarded) => forwarded,
        None => request_host(&req),
    };
    let host = match host {
        Ok(host) => host,
        Err(why) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_host", why).into_response();
        }
    };
    if dispatch.gateway.is_owner_host(&host) {
        return serve(owner, req).await;
    }
    let effect = effect_of(&req);
    match dispatch.gateway.admit(&host, client, effect).await {
        Ok(context) => {
            req.extensions_mut().insert(context);
            let again = replay(&req);
            let response = serve(&dispatch.tenant_api, req).await;
            match again {
                Some(again) if response.extensions().get::<ConnectionLost>().is_some() => {
                    metrics::counter!("tenant_requests_retried_total").increment(1);
                    serve(&dispatch.tenant_api, again).await
                }
                _ => response,
            }
        }
        Err(refusal) => ApiError::from(refusal).into_response(),
    }
}

/// What the request may do to the tenant's data: reads are served in maintenance that
/// serves reads; deletions and the sign-in routes (which write sessions and audit rows,
/// but must work for a tenant to read or delete anything) are served over the database
/// quota too.
fn effect_of(req: &Request) -> Effect {
    match *req.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => Effect::Read,
        Method::DELETE => Effect::Shrink,
        _ if req.uri().path().starts_with("/api/v1/auth/") => Effect::Shrink,
        _ => Effect::Write,
    }
}

async fn serve(router: &axum::Router, req: Request) -> Response {
    router
        .clone()
        .oneshot(req)
        .await
        .unwrap_or_else(|never| match never {})
}

/// A copy of a request that is safe to repeat (GET or HEAD: no body, no effect), for
/// one retry when its tenant connection turns out to be dead (see `ConnectionLost`).
fn replay(req: &Request) -> Option<Request> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    let mut copy = Request::new(Body::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    Some(copy)
}
