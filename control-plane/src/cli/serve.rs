//! `control-plane serve`

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::app::Application;
use crate::config::Config;
use crate::provisioning::Faults;
use crate::{Error, Result};

pub async fn run(config: Config) -> Result<()> {
    // The handlers are installed before anything else: a SIGTERM that arrives while the
    // service starts must stop it gracefully, not kill it with the default action.
    let signals = Signals::install()?;
    let app = Application::build(config, Arc::new(Faults::default())).await?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        signals.recv().await;
        // Cancel before anything else: nothing after the signal may stand in the way of
        // stopping (a log write to a closed pipe once did).
        trigger.cancel();
        tracing::info!("shutdown requested");
    });
    app.run(shutdown).await
}

/// SIGINT and SIGTERM, registered when created.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let cannot = |e: std::io::Error| Error::Internal(format!("cannot handle signals: {e}"));
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).map_err(cannot)?,
            terminate: signal(SignalKind::terminate()).map_err(cannot)?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
