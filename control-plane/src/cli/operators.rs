//! `control-plane operators ...`

use std::io::BufRead;
use std::sync::Arc;

use clap::Subcommand;
use owner::operators::OperatorRole;
use serde_json::json;

use super::output::emit;
use crate::auth::{check_new_password, hash_password};
use crate::config::Config;
use crate::provisioning::Faults;
use crate::wiring::Services;
use crate::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum OperatorsCommand {
    /// Create an operator. At a terminal the password is asked for (twice, not shown);
    /// otherwise it is the first line of stdin.
    Create {
        /// The operator's email.
        #[arg(long)]
        email: String,
        /// What the operator may do: owner (everything, operators included), admin
        /// (everything but operators) or viewer (read only).
        #[arg(long, default_value = "admin", value_parser = ["owner", "admin", "viewer"])]
        role: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every operator: email, role, status, last sign-in.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Disable an operator: their sessions end at once. The last active owner cannot be.
    Disable {
        /// The operator's email.
        email: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Enable a disabled operator again.
    Enable {
        /// The operator's email.
        email: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Give an operator a one-time password (printed once; they choose their own at
    /// sign-in) and end their sessions: for one who is locked out.
    ResetPassword {
        /// The operator's email.
        email: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: OperatorsCommand, config: Config) -> Result<()> {
    match cmd {
        OperatorsCommand::Create { email, role, json } => {
            let email = owner::Email::parse(&email)?;
            let role = OperatorRole::parse(&role).ok_or_else(|| {
                Error::BadRequest(format!("unknown role {role:?}: use owner, admin or viewer"))
            })?;
            let password = read_password(&email)?;
            check_new_password(&password)?;
            let hash = hash_password(&password)?;
            let services = Services::init(config, Arc::new(Faults::default())).await?;
            let conn = services.owner.conn().await?;
            let operator = owner::operators::operator_insert(&**conn, &email, &hash, role).await?;
            crate::audit::record(
                &**conn,
                &crate::audit::Actor::cli(),
                "operator.create",
                crate::audit::Target("operator", &operator.id.to_string()),
                json!({ "email": operator.email, "role": operator.role }),
            )
            .await?;
            emit(json, &json!(operator), || {
                format!(
                    "created operator {} ({})",
                    operator.email,
                    operator.role.as_str()
                )
            });
            Ok(())
        }
        OperatorsCommand::List { json } => {
            let services = Services::init(config, Arc::new(Faults::default())).await?;
            let conn = services.owner.conn().await?;
            let operators = owner::operators::operator_list(&**conn).await?;
            emit(json, &json!({ "operators": operators }), || {
                let mut out = format!(
                    "{:<36} {:<7} {:<9} {}",
                    "EMAIL", "ROLE", "STATUS", "LAST SIGN-IN"
                );
                for o in &operators {
                    out.push_str(&format!(
                        "\n{:<36} {:<7} {:<9} {}",
                        o.email,
                        o.role.as_str(),
                        if o.active { "active" } else { "disabled" },
                        o.last_login_at
                            .map_or_else(|| "never".to_string(), |t| t.to_rfc3339())
                    ));
                }
                out
            });
            Ok(())
        }
        OperatorsCommand::Disable { email, json } => set_active(config, &email, false, json).await,
        OperatorsCommand::Enable { email, json } => set_active(config, &email, true, json).await,
        OperatorsCommand::ResetPassword { email, json } => {
            let services = Services::init(config, Arc::new(Faults::default())).await?;
            let found = by_email(&services, &email).await?;
            let (operator, password) = crate::operators::reset_password(
                &services.owner,
                &crate::audit::Actor::cli(),
                found.id,
            )
            .await?;
            // Shown once, on stderr, so --json output stays clean for scripts.
            eprintln!(
                "one-time password for {} (shown once; they choose their own at sign-in): {}",
                operator.email,
                secrecy::ExposeSecret::expose_secret(&password)
            );
            emit(json, &json!(operator), || {
                format!("{}: password reset, sessions ended", operator.email)
            });
            Ok(())
        }
    }
}

/// `operators enable|disable EMAIL`.
async fn set_active(config: Config, email: &str, active: bool, json: bool) -> Result<()> {
    let services = Services::init(config, Arc::new(Faults::default())).await?;
    let found = by_email(&services, email).await?;
    let operator = crate::operators::update_as(
        &services.owner,
        &crate::audit::Actor::cli(),
        found.id,
        None,
        Some(active),
    )
    .await?;
    emit(json, &json!(operator), || {
        format!(
            "{} is {}",
            operator.email,
            if operator.active {
                "active"
            } else {
                "disabled; their sessions ended"
            }
        )
    });
    Ok(())
}

/// An operator by email; "not found" says which.
async fn by_email(services: &Services, email: &str) -> Result<owner::operators::Operator> {
    let parsed = owner::Email::parse(email)?;
    let conn = services.owner.conn().await?;
    match owner::operators::operator_fetch_by_email(&**conn, &parsed).await {
        Ok(operator) => Ok(operator),
        Err(owner::Error::NotFound) => Err(Error::BadRequest(format!(
            "no operator {email:?} (see `operators list`)"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The new operator's password: asked for at a terminal (twice, hidden), else the first
/// line of stdin, which must hold one.
fn read_password(email: &owner::Email) -> Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {}: ", email.as_str()))
            .map_err(|e| Error::BadRequest(format!("cannot read the password: {e}")))?;
        let again = rpassword::prompt_password("Again: ")
            .map_err(|e| Error::BadRequest(format!("cannot read the password: {e}")))?;
        if first != again {
            return Err(Error::BadRequest("the two passwords differ".into()));
        }
        return Ok(first);
    }
    let mut password = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut password)
        .map_err(|e| Error::BadRequest(format!("cannot read the password from stdin: {e}")))?;
    if read == 0 {
        return Err(Error::BadRequest(
            "no password on stdin: pipe it as one line, or run this at a terminal to be asked"
                .into(),
        ));
    }
    Ok(password.trim_end_matches(['\r', '\n']).to_string())
}
