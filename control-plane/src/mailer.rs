//! Outgoing mail: over SMTP (`CP_SMTP_URL`), or, in dev mode without it, as one file per
//! message in `<CP_DATA_DIR>/mail` (never the log: messages carry one-time codes).

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::config::{Config, Environment};
use crate::{Error, Result};

pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// Dev mode: files in this folder.
    Files { dir: PathBuf, from: Mailbox },
    /// Production without `CP_SMTP_URL`: nothing can be sent.
    Unconfigured,
}

impl Mailer {
    pub fn from_config(config: &Config) -> Result<Self> {
        let from: Mailbox = config
            .mail_from
            .parse()
            .map_err(|e| Error::Config(format!("CP_MAIL_FROM is not a mail address: {e}")))?;
        Ok(match (&config.smtp_url, config.environment) {
            (Some(url), _) => Mailer::Smtp {
                transport: AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|e| Error::Config(format!("CP_SMTP_URL: {e}")))?
                    .build(),
                from,
            },
            (None, Environment::Dev) => Mailer::Files {
                dir: config.data_dir.join("mail"),
                from,
            },
            (None, _) => Mailer::Unconfigured,
        })
    }

    pub fn is_configured(&self) -> bool {
        !matches!(self, Mailer::Unconfigured)
    }

    /// Sends a plain-text message to `to`.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<()> {
        let build = |from: &Mailbox| {
            let to: Mailbox = to
                .parse()
                .map_err(|e| Error::BadRequest(format!("not a mail address: {e}")))?;
            Message::builder()
                .from(from.clone())
                .to(to)
                .subject(subject)
                .header(ContentType::TEXT_PLAIN)
                .body(body.to_string())
                .map_err(|e| Error::Internal(format!("cannot build the message: {e}")))
        };
        match self {
            Mailer::Smtp { transport, from } => {
                transport
                    .send(build(from)?)
                    .await
                    .map_err(|e| Error::Internal(format!("SMTP: {e}")))?;
            }
            Mailer::Files { dir, from } => {
                let message = build(from)?.formatted();
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || write_message(&dir, &message))
                    .await
                    .map_err(|e| Error::Internal(format!("mail file task failed: {e}")))??;
            }
            Mailer::Unconfigured => {
                return Err(Error::Config(
                    "no mail can be sent: set CP_SMTP_URL (and CP_MAIL_FROM)".into(),
                ));
            }
        }
        Ok(())
    }
}

/// `<dir>/<ms since the epoch>-<uuid>.eml`, readable by its owner only.
fn write_message(dir: &std::path::Path, message: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))?;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let path = dir.join(format!(
        "{millis:013}-{}.eml",
        uuid::Uuid::new_v4().simple()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(message)
        .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}
