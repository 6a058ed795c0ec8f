//! Operator sign-in and sign-out, shared by the API (bearer tokens) and the dashboard
//! (cookie): throttling, password check, session row, token, audit.
//!
//! Throttling counts failures recorded in the audit log, so it holds across restarts and
//! across processes: an account is locked for the rest of the window after
//! [`MAX_FAILURES_PER_ACCOUNT`] failures since its last successful sign-in, an address after
//! [`MAX_FAILURES_PER_ADDRESS`] (it may try many accounts).

use std::time::Duration;

use chrono::Utc;
use owner::audit::audit_login_failures;
use owner::operators::{Operator, operator_fetch_by_email, operator_record_login};
use owner::sessions::{NewSession, SessionKind, session_insert, session_revoke};
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use crate::audit::{self, Actor, Target};
use crate::auth::OwnerTokens;
use crate::services::OwnerDb;
use crate::{Error, Result};

pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 5;
pub const MAX_FAILURES_PER_ADDRESS: i64 = 30;

pub struct Attempt {
    pub email: String,
    pub password: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub kind: SessionKind,
}

pub struct SignedIn {
    pub operator: Operator,
    pub session_id: Uuid,
    pub token: SecretString,
    /// Unix seconds.
    pub expires_at: u64,
}

pub async fn sign_in(owner: &OwnerDb, tokens: &OwnerTokens, attempt: Attempt) -> Result<SignedIn> {
    let email_label = attempt.email.trim().to_lowercase();
    let ip = attempt.ip.as_deref();
    // No owner connection is held while the password is checked: that takes tens of
    // milliseconds, and the pool also serves the gateway.
    let operator = {
        let conn = owner.conn().await?;
        let operator = match owner::Email::parse(&attempt.email) {
            Ok(email) => match operator_fetch_by_email(&**conn, &email).await {
                Ok(op) => Some(op),
                Err(owner::Error::NotFound) => None,
                Err(e) => return Err(e.into()),
            },
            Err(_) => None,
        };
        let window_start = Utc::now()
            - chrono::Duration::from_std(FAILURE_WINDOW).unwrap_or(chrono::Duration::zero());
        let since_account = operator
            .as_ref()
            .and_then(|op| op.last_login_at)
            .map_or(window_start, |last| last.max(window_start));
        let (account_failures, address_failures) =
            audit_login_failures(&**conn, &email_label, ip, since_account, window_start).await?;
        if account_failures >= MAX_FAILURES_PER_ACCOUNT
            || address_failures >= MAX_FAILURES_PER_ADDRESS
        {
            audit::record(
                &**conn,
                &Actor {
                    label: format!("operator:{email_label}"),
                    ip: ip.map(str::to_string),
                },
                "operator.login_throttled",
                Target("operator", &email_label),
                json!({
                    "account_failures": account_failures,
                    "address_failures": address_failures,
                }),
            )
            .await?;
            return Err(Error::TooManyAttempts(FAILURE_WINDOW.as_secs()));
        }
        operator
    };
    let verified = match &operator {
        Some(op) => {
            tenant::auth::verify_password_async(attempt.password, op.password_hash.clone()).await?
        }
        None => {
            tenant::auth::verify_dummy_async(attempt.password).await?;
            false
        }
    };
    let conn = owner.conn().await?;
    let operator = match operator {
        Some(op) if verified && op.active => op,
        _ => {
            audit::record(
                &**conn,
                &Actor {
                    label: format!("operator:{email_label}"),
                    ip: ip.map(str::to_string),
                },
                "operator.login_failed",
                Target("operator", &email_label),
                json!({ "via": attempt.kind.as_str() }),
            )
            .await?;
            return Err(Error::WrongCredentials);
        }
    };
    let session_id = Uuid::now_v7();
    let (token, expires_at) = tokens.issue(&operator, session_id, attempt.kind)?;
    let expires = chrono::DateTime::from_timestamp(expires_at as i64, 0)
        .ok_or_else(|| Error::Internal("token expiry out of range".into()))?;
    session_insert(
        &**conn,
        &NewSession {
            id: session_id,
            user_id: operator.id,
            kind: attempt.kind,
            expires_at: expires,
            ip,
            user_agent: attempt.user_agent.as_deref(),
        },
    )
    .await?;
    operator_record_login(&**conn, operator.id).await?;
    audit::record(
        &**conn,
        &Actor {
            label: format!("operator:{}", operator.email),
            ip: ip.map(str::to_string),
        },
        "operator.login",
        Target("operator", &operator.id.to_string()),
        json!({ "via": attempt.kind.as_str() }),
    )
    .await?;
    Ok(SignedIn {
        operator,
        session_id,
        token,
        expires_at,
    })
}

/// Revokes the session; later requests with its token are refused.
pub async fn sign_out(
    owner: &OwnerDb,
    operator: &Operator,
    session_id: Uuid,
    ip: Option<&str>,
) -> Result<()> {
    let conn = owner.conn().await?;
    if session_revoke(&**conn, session_id).await? {
        audit::record(
            &**conn,
            &Actor {
                label: format!("operator:{}", operator.email),
                ip: ip.map(str::to_string),
            },
            "operator.logout",
            Target("operator", &operator.id.to_string()),
            json!({}),
        )
        .await?;
    }
    Ok(())
}
