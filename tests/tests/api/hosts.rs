//! Host parsing is strict: what a proxy in front could read differently is refused.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::spawn_app;

/// Sends `head` (request line and headers) on a fresh connection; returns the status.
async fn raw_status(address: &str, head: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(address.trim_start_matches("http://"))
        .await
        .expect("connect");
    stream
        .write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

#[tokio::test]
async fn ambiguous_or_malformed_hosts_are_answered_400() {
    let app = spawn_app().await;
    app.create_tenant("hosted").await;
    let ok = raw_status(
        &app.address,
        "GET /api/v1/status HTTP/1.1\r\nHost: hosted.localhost\r\n",
    )
    .await;
    assert_ne!(ok, 400, "a plain request was refused");
    for head in [
        "GET /api/v1/status HTTP/1.1\r\nHost: hosted.localhost\r\nHost: other.localhost\r\n",
        "GET /api/v1/status HTTP/1.1\r\nHost: hosted.localhost:99999\r\n",
        "GET /api/v1/status HTTP/1.1\r\nHost: hosted.localhost..\r\n",
        "GET http://other.localhost/api/v1/status HTTP/1.1\r\nHost: hosted.localhost\r\n",
    ] {
        assert_eq!(raw_status(&app.address, head).await, 400, "{head:?}");
    }
}
