//! A fake integration provider (a real HTTP server on a free port) and the calls the
//! integration tests make; shared by the `api` and `logs` test binaries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::get;
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app_with};

pub const GOOD: &str = "sk_test_good_0123456789";
pub const BAD: &str = "sk_test_revoked_9876543210";

/// What the provider was asked: `(path, authorization)` per request.
pub type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A provider: answers 200 to the good key and 401 to anything else, and remembers what
/// it was asked (path and authorization).
pub struct Provider {
    pub base: String,
    pub seen: Seen,
}

async fn answer(State(seen): State<Seen>, uri: Uri, headers: HeaderMap) -> StatusCode {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let good = auth == format!("Bearer {GOOD}");
    seen.lock().expect("seen").push((uri.to_string(), auth));
    if good {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

pub async fn provider() -> Provider {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let router = axum::Router::new()
        .fallback(get(answer))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    Provider { base, seen }
}

/// A port nothing listens on.
pub async fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

pub async fn app_with(stripe: &str, square: &str, master_key: Option<String>) -> TestApp {
    let endpoints: HashMap<String, String> = [
        ("stripe".to_string(), stripe.to_string()),
        ("square".to_string(), square.to_string()),
    ]
    .into();
    spawn_app_with(move |c| {
        c.integration_endpoints = endpoints;
        if let Some(spec) = master_key {
            c.master_key =
                control_plane::config::MasterKeySource::Inline(secrecy::SecretString::from(spec));
        }
    })
    .await
}

pub async fn call(
    app: &TestApp,
    method: Method,
    slug: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value, String) {
    let response = app
        .on(
            method,
            &format!("{slug}.localhost"),
            path,
            Some(token),
            body.as_ref(),
        )
        .await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}
