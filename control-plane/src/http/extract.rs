//! Extractors that answer in our error shape: JSON bodies and query strings that fail to
//! parse, or carry a NUL character PostgreSQL would refuse (see `tenant::text`), get a 4xx
//! with a message, never axum's plain-text rejection or a 500.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use tenant::api::extract::{Refused, json_body, query};
use tenant::text::NUL_MESSAGE;

use super::error::ApiError;
use crate::gateway::ClientAddr;

/// `axum::Json` with our error shape (the reading and checks are the tenant API's, see
/// `tenant::api::extract`).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_body(req, state).await.map(Self).map_err(api_error)
    }
}

/// `axum::extract::Query` with our error shape.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        query(parts, state).await.map(Self).map_err(api_error)
    }
}

/// The owner API's words for a refusal.
fn api_error(refused: Refused) -> ApiError {
    use StatusCode as S;
    match refused {
        Refused::NotJson => ApiError::new(
            S::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        Refused::TooLarge => ApiError::new(
            S::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        ),
        Refused::Unreadable(status, why) | Refused::Other(status, why) => {
            ApiError::new(status, "bad_request", why)
        }
        Refused::Malformed(why) => ApiError::new(
            S::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {why}"),
        ),
        Refused::Invalid(why) => ApiError::new(S::UNPROCESSABLE_ENTITY, "invalid_body", why),
        Refused::Nul => ApiError::new(S::UNPROCESSABLE_ENTITY, "invalid_text", NUL_MESSAGE),
        Refused::Query(why) => ApiError::new(S::BAD_REQUEST, "invalid_query", why),
    }
}

/// The client's address (the connection's peer, or what a trusted proxy forwarded; see
/// `gateway::client`), for the audit log and sign-in throttling.
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let addr = match parts.extensions.get::<ClientAddr>() {
            Some(ClientAddr(addr)) => *addr,
            // Outside the gateway (a router served on its own): the peer.
            None => parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        };
        Ok(Self(addr.map(|ip| ip.to_string())))
    }
}
