//! `control-plane serve`

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::Result;
use crate::app::Application;
use crate::config::Config;
use crate::provisioning::Faults;

pub async fn run(config: Config) -> Result<()> {
    let app = Application::build(config, Arc::new(Faults::default())).await?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        // Cancel before anything else: nothing after the signal may stand in the way of
        // stopping (a log write to a closed pipe once did).
        trigger.cancel();
        tracing::info!("shutdown requested");
    });
    app.run(shutdown).await
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
