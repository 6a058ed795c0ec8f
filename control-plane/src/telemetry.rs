//! Tracing set-up: human-readable or JSON lines, filtered by `RUST_LOG` (else by the
//! command's default: `info` for `serve`, warnings only for the other commands unless
//! `-v`). Colours only when stderr is a terminal, so a log file holds plain text.
//!
//! Whatever `RUST_LOG` asks, the PostgreSQL driver is capped at `info`: at `debug` it logs
//! every statement with its parameters, which carry password hashes, SCRAM verifiers,
//! ciphertexts and token hashes. A failed write to stderr (a closed pipe) is dropped
//! silently: logging must never stop the process or its shutdown.

use std::io::Write;

use tracing::Metadata;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::config::LogFormat;

pub const DEFAULT_FILTER: &str = "info,tower_http=info";
/// CLI commands: what went wrong, not the libraries' progress.
pub const QUIET_FILTER: &str = "warn";

/// Crates that log statements with their parameters (or migration SQL) below `info`.
const CAPPED: &[&str] = &[
    "tokio_postgres",
    "postgres_protocol",
    "refinery_core",
    "refinery",
];

/// Whether an event or span may be logged at all, whatever `RUST_LOG` says.
pub fn allowed(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    let capped = CAPPED
        .iter()
        .any(|c| target == *c || (target.starts_with(c) && target[c.len()..].starts_with("::")));
    !capped || *meta.level() <= tracing::Level::INFO
}

/// The filter for `-v` given `verbose` times on top of `default`.
pub fn default_filter(default: &'static str, verbose: u8) -> &'static str {
    match (default, verbose) {
        (_, 0) => default,
        (QUIET_FILTER, 1) => DEFAULT_FILTER,
        _ => "debug",
    }
}

/// Installs the global subscriber with `default` unless `RUST_LOG` says otherwise; later
/// calls (tests) are ignored.
pub fn init(format: LogFormat, default: &str) {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let filter = env.and(filter_fn(allowed));
    let layer = fmt::layer()
        .with_writer(|| Stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false);
    let layer = match format {
        LogFormat::Json => layer.json().flatten_event(true).with_filter(filter).boxed(),
        LogFormat::Text => layer.with_filter(filter).boxed(),
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// stderr that reports every write as done, so a closed pipe is not an error anywhere.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_quiet_unless_asked() {
        assert_eq!(default_filter(QUIET_FILTER, 0), "warn");
        assert_eq!(default_filter(QUIET_FILTER, 1), DEFAULT_FILTER);
        assert_eq!(default_filter(QUIET_FILTER, 2), "debug");
        assert_eq!(default_filter(DEFAULT_FILTER, 0), DEFAULT_FILTER);
        assert_eq!(default_filter(DEFAULT_FILTER, 1), "debug");
    }
}
