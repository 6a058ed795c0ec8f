//! Changes made by other processes (replicas, the CLI, an operator's SQL), followed with
//! LISTEN on the owner database: triggers there (owner migration V7) announce every
//! change of a tenant, a domain or a plan on [`CHANNEL`] when its transaction commits,
//! and this feed hands each one to this process's listeners as if it had been made here.
//!
//! tokio-postgres delivers notifications only to whoever polls the `Connection`, so the
//! feed drives its own session rather than one from a pool. Notifications sent while the
//! session is down are lost; after reconnecting the feed therefore has every cache
//! forget everything. The caches' TTLs stay as the safety net behind both.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Change, TenantEvents};
use crate::pg::Endpoint;

/// The channel the owner database's triggers notify on.
pub const CHANNEL: &str = "control_plane_changes";
/// `application_name` of the feed's session, so operators (and tests) can find it.
pub const APPLICATION_NAME: &str = "control-plane-changes";

const FIRST_RETRY: Duration = Duration::from_millis(200);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// What a notification's payload says changed. Anything unreadable is treated as
/// "everything", which is never wrong, only slower.
pub fn parse(payload: &str) -> Change {
    match payload.split_once(' ') {
        Some(("tenant", id)) => id
            .parse::<Uuid>()
            .map_or(Change::Everything, Change::Tenant),
        _ if payload == "plans" => Change::Plans,
        _ if payload == "keys" => Change::Keys,
        _ if payload == "migrations" => Change::Migrations,
        _ => Change::Everything,
    }
}

/// Follows the owner database's change announcements until `shutdown`, passing each to
/// `events`' listeners, and says in `listening` whether it is listening now. Reconnects
/// (with backoff) whenever the session is lost. The service waits (a while) for the
/// first LISTEN before it serves, so only later gaps need the flush.
pub async fn follow(
    endpoint: Endpoint,
    events: TenantEvents,
    shutdown: CancellationToken,
    listening: watch::Sender<bool>,
) {
    let mut endpoint = endpoint;
    endpoint
        .config_mut()
        .application_name(APPLICATION_NAME)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    let mut retry = FIRST_RETRY;
    // Whether announcements may have been missed since the caches were last right: after
    // a lost session, and after a failed first attempt (the service serves without the
    // feed once it has waited long enough).
    let mut missed = false;
    metrics::gauge!("owner_change_feed_connected").set(0.0);
    loop {
        let session = tokio::select! {
            () = shutdown.cancelled() => return,
            session = listen(&endpoint) => session,
        };
        match session {
            Ok((client, mut notifications)) => {
                metrics::gauge!("owner_change_feed_connected").set(1.0);
                listening.send_replace(true);
                retry = FIRST_RETRY;
                if missed {
                    // Whatever was announced while the feed was away is unknown.
                    tracing::info!("change feed reconnected; forgetting every cached tenant");
                    metrics::counter!("owner_change_feed_reconnects_total").increment(1);
                    events.announce(Change::Everything).await;
                }
                loop {
                    let payload = tokio::select! {
                        () = shutdown.cancelled() => return,
                        payload = notifications.recv() => payload,
                    };
                    let Some(payload) = payload else { break };
                    metrics::counter!("owner_change_notifications_total").increment(1);
                    events.announce(parse(&payload)).await;
                }
                drop(client);
                listening.send_replace(false);
                metrics::gauge!("owner_change_feed_connected").set(0.0);
                tracing::warn!("change feed lost its owner-database session; reconnecting");
                missed = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?retry, "change feed cannot listen on the owner database");
                missed = true;
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(LAST_RETRY);
    }
}

/// Opens a session, LISTENs, and returns its client with the payloads it receives; the
/// receiver ends when the session does.
async fn listen(
    endpoint: &Endpoint,
) -> crate::Result<(tokio_postgres::Client, mpsc::UnboundedReceiver<String>)> {
    let mut config = endpoint.config().clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    let (client, mut connection) = config.connect(endpoint.tls().clone()).await?;
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                    if sender.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "change feed session ended with an error");
                    return;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(owner::Error::from)?;
    Ok((client, receiver))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        let id = Uuid::new_v4();
        assert_eq!(parse(&format!("tenant {id}")), Change::Tenant(id));
        assert_eq!(parse("plans"), Change::Plans);
        assert_eq!(parse("keys"), Change::Keys);
        assert_eq!(parse("migrations"), Change::Migrations);
        assert_eq!(parse("tenant not-a-uuid"), Change::Everything);
        assert_eq!(parse("something new"), Change::Everything);
    }
}
