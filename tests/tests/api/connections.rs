//! Connections that hold the door open: a socket that never sends a byte is closed, and at
//! the connection cap the longest-idle connection makes way for a new client instead of
//! the service stalling.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::helpers::{spawn_app, spawn_app_with};

async fn idle_socket(address: &str) -> TcpStream {
    TcpStream::connect(address.trim_start_matches("http://"))
        .await
        .expect("connect")
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_is_closed() {
    let app = spawn_app().await;
    let mut socket = idle_socket(&app.address).await;
    let limit = control_plane::http::HEADER_READ_TIMEOUT + Duration::from_secs(10);
    let mut out = Vec::new();
    let closed = tokio::time::timeout(limit, socket.read_to_end(&mut out)).await;
    assert!(
        closed.is_ok(),
        "a silent connection was still open after {limit:?}"
    );
    assert!(out.is_empty(), "something was sent to a silent client");
}

#[tokio::test]
async fn at_the_connection_cap_idle_sockets_make_way_for_new_clients() {
    const CAP: usize = 8;
    let app = spawn_app_with(|c| c.max_connections = CAP).await;
    let mut sockets = Vec::new();
    for _ in 0..CAP {
        sockets.push(idle_socket(&app.address).await);
    }
    // Fresh clients, so each request is a new connection and closes after it.
    for _ in 0..2 {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let status = tokio::time::timeout(
            Duration::from_secs(5),
            client.get(format!("{}/healthz", app.address)).send(),
        )
        .await
        .expect("the service stalled at the connection cap")
        .expect("request")
        .status();
        assert_eq!(status, 200);
    }
    // The silent sockets are closed by the first-request timeout only after
    // HEADER_READ_TIMEOUT; one closed well before that was evicted for a new client.
    let evicted = futures::future::select_all(sockets.iter_mut().map(|s| {
        Box::pin(async move {
            let mut buf = [0u8; 16];
            s.read(&mut buf).await
        })
    }));
    let within = control_plane::http::HEADER_READ_TIMEOUT / 2;
    assert!(
        tokio::time::timeout(within, evicted).await.is_ok(),
        "no idle socket was closed to make way at the cap"
    );
}
