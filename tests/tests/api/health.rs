//! Liveness and readiness.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status(), 200);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["owner_database"], "ok");
    assert!(health_has_request_id(&app).await);
}

async fn health_has_request_id(app: &crate::helpers::TestApp) -> bool {
    app.get("/healthz", None)
        .await
        .headers()
        .contains_key("x-request-id")
}

#[tokio::test]
async fn readiness_fails_when_the_owner_database_is_gone() {
    let app = spawn_app().await;
    crate::helpers::pg("postgres")
        .await
        .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", app.owner_db))
        .await
        .expect("drop owner database");
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 503);
    assert_eq!(
        app.get("/healthz", None).await.status(),
        200,
        "the process itself is fine"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let addr = app.address.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .expect("write");
    // Without a header-read timeout the server would wait for the rest forever.
    let limit = control_plane::http::HEADER_READ_TIMEOUT + std::time::Duration::from_secs(10);
    let mut out = Vec::new();
    let closed = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    assert!(
        closed.is_ok(),
        "the connection was still open after {limit:?}"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        !text.contains("200 OK"),
        "an unfinished request was answered: {text}"
    );
}

#[tokio::test]
async fn the_owner_api_answers_503_while_the_owner_database_is_unreachable() {
    let app = spawn_app().await;
    crate::helpers::pg("postgres")
        .await
        .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", app.owner_db))
        .await
        .expect("drop owner database");
    for _ in 0..2 {
        let response = app.get("/api/owner/tenants", Some(&app.token)).await;
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(
            body["error"]["code"], "owner_database_unavailable",
            "{body}"
        );
    }
}

#[tokio::test]
async fn the_healthcheck_command_asks_the_running_service() {
    use clap::Parser;
    let app = spawn_app().await;
    let mut config = app.state.config.as_ref().clone();
    config.listen = app
        .address
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let cli =
        control_plane::cli::Cli::try_parse_from(["control-plane", "healthcheck"]).expect("parse");
    cli.run(config.clone()).await.expect("ready");

    // Nobody listens there: not healthy.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    config.listen = free;
    let cli =
        control_plane::cli::Cli::try_parse_from(["control-plane", "healthcheck"]).expect("parse");
    assert!(cli.run(config).await.is_err());
}
