//! `control-plane healthcheck`: asks the running service on this host whether it is
//! ready (`GET /readyz` on CP_LISTEN's port), for container health checks: the image has
//! no curl. Exit status 0 when ready.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::{Error, Result};

const TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(config: &Config) -> Result<()> {
    // A service listening on every address answers on loopback.
    let mut address = config.listen;
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let answer = tokio::time::timeout(TIMEOUT, async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(
                format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    })
    .await
    .map_err(|_| Error::Internal(format!("no answer from {address} within {TIMEOUT:?}")))?
    .map_err(|e| Error::Internal(format!("cannot ask {address}: {e}")))?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        println!("ready");
        Ok(())
    } else {
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
        Err(Error::Internal(format!("not ready: {status} {body}")))
    }
}
