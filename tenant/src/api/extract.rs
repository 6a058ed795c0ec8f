//! Extractors of the tenant API that answer in our error shape: JSON bodies and query
//! strings that are malformed, too large, of the wrong types or carry a NUL character get
//! a 4xx with a message, never axum's plain-text rejection or a 500 from PostgreSQL.
//!
//! NUL is refused here (see [`crate::text`]): PostgreSQL would refuse it later, and the
//! client would see a database error instead of its own mistake.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::ApiFailure;
use crate::text::{NUL_MESSAGE, json_has_nul, urlencoded_has_nul};

/// A JSON body of type `T` (`axum::Json`, with our error shape and no NUL in any string).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiFailure;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiFailure> {
        if !is_json(req.headers()) {
            return Err(ApiFailure::BadRequest(
                "unsupported_media_type",
                "send JSON with Content-Type: application/json".into(),
            ));
        }
        // Buffered under the service's body limit (`DefaultBodyLimit`).
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiFailure::BodyTooLarge
            } else {
                ApiFailure::BadRequest("bad_body", e.body_text())
            }
        })?;
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes).map_err(json_rejection)?;
        if json_has_nul(&bytes) {
            return Err(ApiFailure::Unprocessable(
                "invalid_text",
                NUL_MESSAGE.into(),
            ));
        }
        Ok(Self(value))
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiFailure {
    match rejection {
        JsonRejection::JsonSyntaxError(e) => {
            ApiFailure::BadRequest("malformed_json", e.body_text())
        }
        JsonRejection::JsonDataError(e) => ApiFailure::Unprocessable("invalid_body", e.body_text()),
        other => ApiFailure::BadRequest("bad_request", other.body_text()),
    }
}

/// `application/json`, or any `application/*+json`, with or without parameters (what
/// `axum::Json` accepts).
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.ends_with("+json"),
        _ => false,
    }
}

/// A query string of type `T` (`axum::extract::Query`, with our error shape and no NUL).
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiFailure> {
        if parts
            .uri
            .query()
            .is_some_and(|q| urlencoded_has_nul(q.as_bytes()))
        {
            return Err(ApiFailure::BadRequest("invalid_query", NUL_MESSAGE.into()));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e| ApiFailure::BadRequest("invalid_query", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_those_axum_accepts() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, v.parse().expect("header"));
            is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("Application/JSON;charset=utf-8"));
        assert!(with("application/cloudevents+json"));
        assert!(!with("text/json"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
