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

/// Why a body or a query string was refused. The reading, the NUL check and the
/// classification are shared by both APIs; each puts the answer in its own words.
#[derive(Debug)]
pub enum Refused {
    /// No JSON content type.
    NotJson,
    /// Over the service's body limit.
    TooLarge,
    /// The body could not be read: its status and why.
    Unreadable(StatusCode, String),
    /// Not JSON at all.
    Malformed(String),
    /// JSON, but not of the expected shape.
    Invalid(String),
    /// Another rejection of axum's: its status and text.
    Other(StatusCode, String),
    /// A string holds a NUL character.
    Nul,
    /// The query string does not parse (or holds a NUL character).
    Query(String),
}

/// A JSON body of type `T`, read under the service's body limit (`DefaultBodyLimit`) and
/// checked for NUL in the text, not the value.
pub async fn json_body<T, S>(req: Request, state: &S) -> Result<T, Refused>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    if !is_json(req.headers()) {
        return Err(Refused::NotJson);
    }
    let bytes = Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Refused::TooLarge
        } else {
            Refused::Unreadable(e.status(), e.body_text())
        }
    })?;
    let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes).map_err(|r| match r {
        JsonRejection::MissingJsonContentType(_) => Refused::NotJson,
        JsonRejection::JsonSyntaxError(e) => Refused::Malformed(plain(&e.body_text())),
        JsonRejection::JsonDataError(e) => Refused::Invalid(plain(&e.body_text())),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Refused::TooLarge,
        other => Refused::Other(other.status(), other.body_text()),
    })?;
    if json_has_nul(&bytes) {
        return Err(Refused::Nul);
    }
    Ok(value)
}

/// What serde says is wrong, without axum's preamble ("Failed to deserialize the JSON
/// body into the target type: ") or the position of a one-line body.
pub fn plain(text: &str) -> String {
    let text = text.split_once(": ").map_or(text, |(head, rest)| {
        if head.starts_with("Failed to ") {
            rest
        } else {
            text
        }
    });
    let text = match text.rfind(" at line ") {
        Some(at)
            if text[at + " at line ".len()..]
                .split(" column ")
                .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())) =>
        {
            &text[..at]
        }
        _ => text,
    };
    text.to_string()
}

/// A query string of type `T`, with no NUL character.
pub async fn query<T, S>(parts: &mut Parts, state: &S) -> Result<T, Refused>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    if parts
        .uri
        .query()
        .is_some_and(|q| urlencoded_has_nul(q.as_bytes()))
    {
        return Err(Refused::Query(NUL_MESSAGE.into()));
    }
    axum::extract::Query::<T>::from_request_parts(parts, state)
        .await
        .map(|q| q.0)
        .map_err(|e| Refused::Query(plain(&e.body_text())))
}

/// A JSON body of type `T` (`axum::Json`, with our error shape and no NUL in any string).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiFailure;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiFailure> {
        json_body(req, state).await.map(Self).map_err(failure)
    }
}

/// The tenant API's words for a refusal.
fn failure(refused: Refused) -> ApiFailure {
    match refused {
        Refused::NotJson => ApiFailure::BadRequest(
            "unsupported_media_type",
            "send JSON with Content-Type: application/json".into(),
        ),
        Refused::TooLarge => ApiFailure::BodyTooLarge,
        Refused::Unreadable(_, why) => ApiFailure::BadRequest("bad_body", why),
        Refused::Malformed(why) => ApiFailure::BadRequest("malformed_json", why),
        Refused::Invalid(why) => ApiFailure::Unprocessable("invalid_body", why),
        Refused::Other(_, why) => ApiFailure::BadRequest("bad_request", why),
        Refused::Nul => ApiFailure::Unprocessable("invalid_text", NUL_MESSAGE.into()),
        Refused::Query(why) => ApiFailure::BadRequest("invalid_query", why),
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
        query(parts, state).await.map(Self).map_err(failure)
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

    #[test]
    fn serde_words_without_axums_preamble_or_position() {
        assert_eq!(
            plain(
                "Failed to deserialize the JSON body into the target type: missing field `name` at line 1 column 2"
            ),
            "missing field `name`"
        );
        assert_eq!(
            plain(
                "Failed to deserialize the JSON body into the target type: slug: invalid type: integer `5`, expected a string at line 1 column 10"
            ),
            "slug: invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            plain("something else: kept as it is"),
            "something else: kept as it is"
        );
    }
}
