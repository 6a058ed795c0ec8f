//! The accept loop. `axum::serve` installs no timer, so hyper's header-read timeout
//! never fires there and a slow client could hold a connection forever; this loop sets
//! one, records the peer address, bounds the connections open at once, and shuts down
//! gracefully.
//!
//! What holds a connection open, and for how long:
//! - before its first request: at most [`HEADER_READ_TIMEOUT`] (hyper's own header
//!   timeout starts only at the first byte, so a socket that never sends one would
//!   otherwise stay forever);
//! - while its headers arrive: hyper's header-read timeout, the same duration;
//! - between requests (keep-alive): at most [`KEEP_ALIVE_IDLE`];
//! - at the cap (`CP_MAX_CONNECTIONS`): a new connection closes the longest-idle one
//!   (no request in flight); when every connection is busy, it is answered 503 and
//!   closed. Accepting never stops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::front::Front;

/// A client must send its request headers within this time of connecting (or of
/// starting them).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection with no request in flight is closed after this long.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(75);
/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// One open connection, as the accept loop sees it.
struct Slot {
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// When the last request ended (or the connection was accepted), in ms since `epoch`.
    idle_since_ms: AtomicU64,
    close: CancellationToken,
}

/// The open connections, to find the longest-idle one at the cap.
struct Connections {
    epoch: Instant,
    next_id: AtomicU64,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
}

impl Connections {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn open(&self) -> (u64, Arc<Slot>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            close: CancellationToken::new(),
        });
        self.lock().insert(id, Arc::clone(&slot));
        (id, slot)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        // A panic while holding this lock cannot leave the map half-changed.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self) -> usize {
        self.lock().len()
    }

    /// Closes the connection that has been idle longest; false if none is idle.
    fn evict_longest_idle(&self) -> bool {
        let slots = self.lock();
        let victim = slots
            .values()
            .filter(|s| s.in_flight.load(Ordering::Acquire) == 0 && !s.close.is_cancelled())
            .min_by_key(|s| s.idle_since_ms.load(Ordering::Relaxed));
        match victim {
            Some(slot) => {
                slot.close.cancel();
                true
            }
            None => false,
        }
    }
}

pub async fn serve(
    listener: TcpListener,
    front: Front,
    shutdown: CancellationToken,
    max_connections: usize,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let connections = Arc::new(Connections {
        epoch: Instant::now(),
        next_id: AtomicU64::new(0),
        slots: Mutex::new(HashMap::new()),
    });
    let tasks = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors: free one by closing the longest-idle
                    // connection rather than waiting for one to go.
                    let freed = connections.evict_longest_idle();
                    tracing::warn!(error = %e, freed, "accept failed");
                    if !freed {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        if connections.count() >= max_connections && !connections.evict_longest_idle() {
            metrics::counter!("http_connections_refused_total").increment(1);
            tasks.spawn(refuse(stream));
            continue;
        }
        let (id, slot) = connections.open();
        let service = {
            let slot = Arc::clone(&slot);
            let connections = Arc::clone(&connections);
            let front = front.clone();
            tower::service_fn(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                slot.in_flight.fetch_add(1, Ordering::AcqRel);
                slot.requests.fetch_add(1, Ordering::Relaxed);
                let done = InFlight {
                    slot: Arc::clone(&slot),
                    connections: Arc::clone(&connections),
                };
                let call = front.clone().oneshot(req);
                async move {
                    let response = call.await;
                    drop(done);
                    response
                }
            })
        };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let shutdown = shutdown.clone();
        let connections = Arc::clone(&connections);
        tasks.spawn(async move {
            let mut connection = pin!(connection);
            let first_request = tokio::time::sleep(HEADER_READ_TIMEOUT);
            let mut first_request = pin!(first_request);
            let mut waited_first = false;
            let mut idle_check = tokio::time::interval(KEEP_ALIVE_IDLE / 5);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, %peer, "connection ended with an error");
                        }
                        break;
                    }
                    _ = slot.close.cancelled() => break,
                    _ = shutdown.cancelled(), if !stopping => {
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    _ = &mut first_request, if !waited_first => {
                        waited_first = true;
                        if slot.requests.load(Ordering::Relaxed) == 0 {
                            break;
                        }
                    }
                    _ = idle_check.tick() => {
                        let idle_ms = connections
                            .now_ms()
                            .saturating_sub(slot.idle_since_ms.load(Ordering::Relaxed));
                        if slot.in_flight.load(Ordering::Acquire) == 0
                            && Duration::from_millis(idle_ms) >= KEEP_ALIVE_IDLE
                        {
                            break;
                        }
                    }
                }
            }
            connections.lock().remove(&id);
        });
    }
    drop(listener);
    tasks.close();
    tokio::select! {
        _ = tasks.wait() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("shutdown grace period over; closing connections"),
    }
}

/// Marks a request finished when dropped (also when the client goes away mid-request).
struct InFlight {
    slot: Arc<Slot>,
    connections: Arc<Connections>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.slot
            .idle_since_ms
            .store(self.connections.now_ms(), Ordering::Relaxed);
        self.slot.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every connection is busy: say so and close, without reading the request.
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"error":{"code":"overloaded","message":"too many connections; retry shortly"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Raises this process's open-file limit to its hard limit, so the connection cap, not
/// the descriptor table, decides how many clients are served. Returns the new limit.
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            None
        }
    }
}
