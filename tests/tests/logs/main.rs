//! What the service logs, captured in a process of its own (a subscriber is process-wide
//! state, so these tests cannot share a binary with the others).

use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::json;

use fake_provider::{BAD, GOOD, app_with, call, closed_port, provider};

// Shared with the `api` binary; not every helper is used here.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

#[path = "../api/fake_provider.rs"]
mod fake_provider;

/// Collects what the test's subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Everything the service logs at TRACE level (the driver's statements and parameters,
/// the HTTP client's and server's traces) while credentials go in, are tested, fail and
/// are synced: the secret is in no line. The only test of its binary, so the subscriber
/// it installs process-wide sees all of the service's work and nothing else.
#[tokio::test]
async fn integration_credentials_are_in_no_log_line_and_each_request_has_an_access_line() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let stripe = provider().await;
    let app = app_with(&stripe.base, &closed_port().await, None).await;
    let (tenant, admin) = app.tenant_with_admin("quiet", "pro").await;
    let (status, created, _) = call(
        &app,
        Method::POST,
        "quiet",
        "/api/v1/integrations",
        &admin,
        Some(json!({ "provider": "stripe", "name": "Payments", "credentials": { "secret_key": GOOD } })),
    )
    .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().expect("id").to_string();
    for (method, path, body) in [
        (
            Method::POST,
            format!("/api/v1/integrations/{id}/test"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/integrations/{id}"),
            Some(json!({ "credentials": { "secret_key": BAD } })),
        ),
        (
            Method::POST,
            format!("/api/v1/integrations/{id}/sync"),
            None,
        ),
        (
            Method::POST,
            "/api/v1/integrations".to_string(),
            Some(
                json!({ "provider": "stripe", "name": "Bad", "credentials": { "secret_key": GOOD, "x": BAD } }),
            ),
        ),
    ] {
        call(&app, method, "quiet", &path, &admin, body).await;
    }
    assert!(
        stripe.seen.lock().expect("seen").len() >= 2,
        "the provider was called"
    );
    let logs = String::from_utf8_lossy(&captured.0.lock().expect("log")).to_string();
    assert!(
        logs.contains("TRACE") && logs.contains("integrations"),
        "the capture saw the service's work, so this test proves something"
    );
    // One access line per request, at INFO, inside the request's span: route template,
    // status and duration, with the request id and the tenant the gateway resolved.
    let tenant_id = tenant["id"].as_str().expect("id");
    let access = logs
        .lines()
        .find(|l| l.contains("route=\"/api/v1/integrations/{id}/sync\""))
        .unwrap_or_else(|| panic!("no access line for the sync request:\n{logs}"));
    for part in [
        " INFO ",
        "method=POST",
        "status=",
        "duration_ms=",
        "request_id=",
        &format!("tenant_id={tenant_id}"),
    ] {
        assert!(access.contains(part), "{part} missing from {access}");
    }
    for secret in [GOOD, BAD] {
        assert!(
            !logs.contains(secret),
            "a credential was logged: {}",
            logs.lines()
                .find(|l| l.contains(secret))
                .unwrap_or_default()
        );
    }
}
