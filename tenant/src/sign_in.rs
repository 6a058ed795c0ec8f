//! Throttling of tenant sign-ins, the same rule as the operators' (control-plane's
//! `sign_in`), counted from the tenant's own `audit_log`, so it holds across restarts and
//! processes: an account is refused once it has [`MAX_FAILURES_PER_ACCOUNT`] failures in
//! the last [`FAILURE_WINDOW`] since its last successful sign-in; an address once it has
//! [`MAX_FAILURES_PER_ADDRESS`] in the window (it may try many accounts). Refusals are
//! 429 with `Retry-After`, and recorded (`user.login_throttled`).
//!
//! Nobody is locked out for good, because the rule is a window and not a lock:
//! - the throttle lifts by itself once the failures that caused it are older than the
//!   window; `Retry-After` says when (the moment the oldest of them leaves it);
//! - throttled attempts are recorded but not counted, so hammering a throttled account
//!   neither extends nor renews its throttle;
//! - a successful sign-in starts the account's count afresh.
//!
//! What remains is a rate: someone who keeps failing at the allowed pace keeps the
//! account at its limit, and its owner then waits with them. That is the price of
//! limiting guesses per account at all; the per-address limit stops most of it.
//!
//! Each attempt is recorded (`user.login_attempt`) *before* its password is checked, in a
//! short transaction that holds the tenant's sign-in lock while it counts and writes, and
//! its outcome is appended afterwards (`user.login`, `user.login_failed`, or
//! `user.login_abandoned` when no password check could be made), pointing back at it.
//! Checking first and recording after would let parallel attempts all pass the count
//! before any of them was recorded. An attempt counts as a failure unless its outcome is
//! a sign-in or abandoned, so one cut short in between (the client gone, the process
//! stopped) stays a failure. Entries are only ever appended: the runtime role may not
//! change the audit log.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::audit::{AuditEntry, NthNewest, audit_insert, audit_nth_newest, audit_outcome};
use crate::pool::{PoolError, TenantPool};
use crate::users::{self, User};

pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 5;
pub const MAX_FAILURES_PER_ADDRESS: i64 = 30;

/// Serialises sign-in bookkeeping within one tenant database (advisory locks are scoped
/// to their database): held for a count and an insert, never for a password check.
const SIGN_IN_LOCK: i64 = 0x7369_676e_696e_6c6b; // "signinlk"

/// The longest account name recorded: the audit log keeps what clients send, bounded.
const MAX_LABEL_CHARS: usize = 320;

const ATTEMPT: &str = "user.login_attempt";
const SIGNED_IN: &str = "user.login";
const FAILED: &str = "user.login_failed";
const ABANDONED: &str = "user.login_abandoned";
/// Outcomes that keep an attempt from counting as a failure.
const EXCUSED: &[&str] = &[SIGNED_IN, ABANDONED];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("too many failed sign-ins; retry in {0} s")]
    Throttled(u64),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// A sign-in attempt, recorded as failed until [`Attempt::succeeded`] or
/// [`Attempt::abandoned`] says otherwise.
#[must_use]
pub struct Attempt {
    audit_id: i64,
}

/// Checks the throttle for `email` from `ip` and records the attempt, or refuses it.
/// Returns the account (if there is one) with the attempt.
pub async fn begin(
    pool: &TenantPool,
    email: &str,
    ip: Option<String>,
    roles: bool,
) -> Result<(Option<User>, Attempt), Error> {
    let label: String = email.chars().take(MAX_LABEL_CHARS).collect();
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SIGN_IN_LOCK])
        .await?;
    // The database's clock, the one `audit_log.at` is written with.
    let now: DateTime<Utc> = tx.query_one("SELECT now()", &[]).await?.get(0);
    let window = chrono::Duration::from_std(FAILURE_WINDOW).unwrap_or(chrono::Duration::zero());
    let window_start = now - window;
    let user = users::user_fetch_by_email(&*tx, email, roles).await?;
    let since_account = user
        .as_ref()
        .and_then(|u| u.last_login_at)
        .map_or(window_start, |last| last.max(window_start));
    let (account_nth, address_nth) = audit_nth_newest(
        &*tx,
        &NthNewest {
            action: ATTEMPT,
            excused: EXCUSED,
            target_id: &label,
            since_account,
            account_nth: MAX_FAILURES_PER_ACCOUNT,
            ip: ip.as_deref(),
            since_ip: window_start,
            ip_nth: MAX_FAILURES_PER_ADDRESS,
        },
    )
    .await?;
    let entry = |action, details| AuditEntry {
        actor_id: user.as_ref().map(|u| u.id),
        action,
        target_type: "user",
        target_id: &label,
        details,
        ip: ip.as_deref(),
    };
    // Throttled until the failure that reached a limit leaves the window.
    if let Some(until) = account_nth.max(address_nth).map(|at| at + window) {
        let millis = (until - now).num_milliseconds().max(1) as u64;
        let retry_after = millis.div_ceil(1000);
        audit_insert(
            &*tx,
            &entry(
                "user.login_throttled",
                json!({
                    "account_limit_reached": account_nth.is_some(),
                    "address_limit_reached": address_nth.is_some(),
                    "retry_after_secs": retry_after,
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        return Err(Error::Throttled(retry_after));
    }
    let audit_id = audit_insert(&*tx, &entry(ATTEMPT, json!({}))).await?;
    tx.commit().await?;
    Ok((user, Attempt { audit_id }))
}

impl Attempt {
    /// The password was right and the account may sign in: the attempt becomes a
    /// `user.login`, and the account's failures stop counting.
    pub async fn succeeded(self, pool: &TenantPool, user: &User) -> Result<(), Error> {
        let mut conn = pool.get().await?;
        let tx = conn.transaction().await?;
        audit_outcome(&*tx, self.audit_id, SIGNED_IN, Some(user.id)).await?;
        users::user_record_login(&*tx, user.id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// No password was checked (too many sign-ins at once): not a failure of the client.
    pub async fn abandoned(self, pool: &TenantPool) -> Result<(), Error> {
        let conn = pool.get().await?;
        audit_outcome(&***conn, self.audit_id, ABANDONED, None).await?;
        Ok(())
    }

    /// The password was wrong, the account unknown or disabled. The attempt counts as a
    /// failure whether or not this outcome gets written.
    pub async fn failed(self, pool: &TenantPool) -> Result<(), Error> {
        let conn = pool.get().await?;
        audit_outcome(&***conn, self.audit_id, FAILED, None).await?;
        Ok(())
    }
}
