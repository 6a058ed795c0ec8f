//! `owner_sessions`: one row per operator sign-in. Every operator token names its row, so
//! a session can be revoked server-side (logout, disabled operator) before it expires.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::Result;
use crate::operators::{self, Operator};

/// Bearer tokens from the API, or the dashboard's cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Api,
    Dashboard,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Dashboard => "dashboard",
        }
    }
}

pub struct NewSession<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: SessionKind,
    pub expires_at: DateTime<Utc>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

pub async fn session_insert(client: &impl GenericClient, new: &NewSession<'_>) -> Result<()> {
    // A user agent is the client's to choose; keep what is stored bounded.
    let user_agent = new
        .user_agent
        .map(|ua| ua.chars().take(256).collect::<String>());
    client
        .execute(
            "INSERT INTO owner_sessions (id, user_id, kind, expires_at, ip, user_agent) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &new.id,
                &new.user_id,
                &new.kind.as_str(),
                &new.expires_at,
                &new.ip,
                &user_agent,
            ],
        )
        .await?;
    Ok(())
}

/// The operator behind a live session: not revoked, not expired, and (a dashboard
/// session) seen within `idle`. `None` otherwise; the caller decides whether the
/// operator's own status still allows them in. With `touch`, a dashboard session's
/// `last_seen_at` moves to now (at most once every few seconds, to spare writes).
pub async fn session_operator(
    client: &impl GenericClient,
    id: Uuid,
    idle: std::time::Duration,
    touch: bool,
) -> Result<Option<Operator>> {
    let idle_secs = idle.as_secs_f64();
    let row = client
        .query_opt(
            "SELECT u.id, u.email, u.password_hash, u.role, u.status, u.created_at, \
                    u.last_login_at, u.must_change_password, \
                    s.kind = 'dashboard' AND s.last_seen_at < now() - interval '5 seconds' \
             FROM owner_sessions s JOIN owner_users u ON u.id = s.user_id \
             WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > now() \
               AND (s.kind <> 'dashboard' OR s.last_seen_at > now() - make_interval(secs => $2))",
            &[&id, &idle_secs],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let stale: bool = row.get(8);
    if touch && stale {
        client
            .execute(
                "UPDATE owner_sessions SET last_seen_at = now() WHERE id = $1",
                &[&id],
            )
            .await?;
    }
    operators::from_row(&row).map(Some)
}

/// Revokes one session; true if it was live.
pub async fn session_revoke(client: &impl GenericClient, id: Uuid) -> Result<bool> {
    let n = client
        .execute(
            "UPDATE owner_sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
            &[&id],
        )
        .await?;
    Ok(n > 0)
}

/// Revokes every live session of an operator (disabled, or role changed).
pub async fn session_revoke_all(client: &impl GenericClient, user_id: Uuid) -> Result<u64> {
    Ok(client
        .execute(
            "UPDATE owner_sessions SET revoked_at = now() \
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()",
            &[&user_id],
        )
        .await?)
}

/// Revokes every live session of an operator but `keep` (a password change: the session
/// that made it goes on, every other one ends).
pub async fn session_revoke_others(
    client: &impl GenericClient,
    user_id: Uuid,
    keep: Uuid,
) -> Result<u64> {
    Ok(client
        .execute(
            "UPDATE owner_sessions SET revoked_at = now() \
             WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL AND expires_at > now()",
            &[&user_id, &keep],
        )
        .await?)
}
