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
    /// Create an operator; the password is read from the first line of stdin.
    Create {
        #[arg(long)]
        email: String,
        /// owner, admin or viewer.
        #[arg(long, default_value = "admin")]
        role: String,
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
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .map_err(|e| {
                    Error::BadRequest(format!("cannot read the password from stdin: {e}"))
                })?;
            let password = password.trim_end_matches(['\r', '\n']);
            check_new_password(password)?;
            let hash = hash_password(password)?;
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
    }
}
