//! `users` and `sessions` in the tenant's own database.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: String,
    pub status: String,
    pub must_change_password: bool,
    pub created_at: DateTime<Utc>,
    /// Tokens issued before this are void (a password, role or status change).
    #[serde(skip)]
    pub updated_at: DateTime<Utc>,
    #[schema(required = true)]
    pub last_login_at: Option<DateTime<Utc>>,
    /// What the user's role allows (see `crate::permissions`).
    pub permissions: Vec<String>,
}

const BASE_COLUMNS: &str = "id, email, name, password_hash, role, status, must_change_password, created_at, last_login_at, updated_at";

/// The user's columns, with their role's permissions when the database has the `roles`
/// table (tenant migration V2). A database not migrated yet (its tenant is served while a
/// fleet migration is pending) has only the built-in roles, whose permissions the code
/// knows.
fn columns(roles: bool) -> String {
    if roles {
        format!(
            "{BASE_COLUMNS}, (SELECT r.permissions FROM roles r WHERE r.name = users.role) AS permissions"
        )
    } else {
        BASE_COLUMNS.to_string()
    }
}

fn from_row(r: &Row) -> User {
    let role: String = r.get(4);
    User {
        id: r.get(0),
        email: r.get(1),
        name: r.get(2),
        password_hash: r.get(3),
        permissions: match r.try_get::<_, Option<Vec<String>>>(10) {
            Ok(Some(permissions)) => permissions,
            _ => crate::permissions::built_in(&role),
        },
        role,
        status: r.get(5),
        must_change_password: r.get(6),
        created_at: r.get(7),
        last_login_at: r.get(8),
        updated_at: r.get(9),
    }
}

pub async fn user_fetch_by_email(
    client: &impl GenericClient,
    email: &str,
    roles: bool,
) -> Result<Option<User>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            &format!("SELECT {} FROM users WHERE email = $1", columns(roles)),
            &[&email],
        )
        .await?
        .map(|r| from_row(&r)))
}

pub async fn user_fetch(
    client: &impl GenericClient,
    id: Uuid,
    roles: bool,
) -> Result<Option<User>, tokio_postgres::Error> {
    Ok(client
        .query_opt(&by_id_sql(roles), &[&id])
        .await?
        .map(|r| from_row(&r)))
}

fn by_id_sql(roles: bool) -> String {
    format!("SELECT {} FROM users WHERE id = $1", columns(roles))
}

/// [`user_fetch`] on a pooled connection, with the statement prepared once per
/// connection: it runs for every request that carries a token.
pub async fn user_fetch_pooled(
    client: &deadpool_postgres::ClientWrapper,
    id: Uuid,
    roles: bool,
) -> Result<Option<User>, tokio_postgres::Error> {
    let sql = by_id_sql(roles);
    let row = crate::prepared::with_prepared(client, &sql, |statement| async move {
        client.query_opt(&statement, &[&id]).await
    })
    .await?;
    Ok(row.map(|r| from_row(&r)))
}

/// Creates the tenant's first admin unless a user with that email exists (idempotent,
/// for provisioning steps that may run twice).
pub async fn user_ensure_admin(
    client: &impl GenericClient,
    email: &str,
    password_hash: &str,
    must_change_password: bool,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO users (id, email, name, password_hash, role, must_change_password) \
             VALUES ($1, $2, '', $3, 'admin', $4) ON CONFLICT (email) DO NOTHING",
            &[
                &Uuid::now_v7(),
                &email,
                &password_hash,
                &must_change_password,
            ],
        )
        .await?;
    Ok(())
}

pub async fn user_set_password(
    client: &impl GenericClient,
    id: Uuid,
    hash: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE users SET password_hash = $2, must_change_password = false, updated_at = now() WHERE id = $1",
            &[&id, &hash],
        )
        .await?;
    Ok(())
}

pub async fn user_record_login(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE users SET last_login_at = now() WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(())
}

pub async fn session_create(
    client: &impl GenericClient,
    user_id: Uuid,
    token_hash: &[u8],
    ttl: std::time::Duration,
) -> Result<Uuid, tokio_postgres::Error> {
    let id = Uuid::now_v7();
    let secs = ttl.as_secs() as f64;
    client
        .execute(
            "INSERT INTO sessions (id, user_id, token_hash, expires_at) VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
            &[&id, &user_id, &token_hash, &secs],
        )
        .await?;
    Ok(id)
}

/// Revokes a live session by its token hash and returns its user (one use only).
pub async fn session_consume(
    client: &impl GenericClient,
    token_hash: &[u8],
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "UPDATE sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL \
             AND expires_at > now() RETURNING user_id",
            &[&token_hash],
        )
        .await?
        .map(|r| r.get(0)))
}

pub async fn session_revoke_all(
    client: &impl GenericClient,
    user_id: Uuid,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
            &[&user_id],
        )
        .await?;
    Ok(())
}

pub async fn user_list(
    client: &impl GenericClient,
    limit: i64,
    offset: i64,
    roles: bool,
) -> Result<Vec<User>, tokio_postgres::Error> {
    Ok(client
        .query(
            &format!(
                "SELECT {} FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2",
                columns(roles)
            ),
            &[&limit, &offset],
        )
        .await?
        .iter()
        .map(from_row)
        .collect())
}

/// Every user, disabled ones too: what [`user_list`] pages through.
pub async fn user_total(client: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT count(*) FROM users", &[])
        .await?
        .get(0))
}

/// The advisory lock that serialises the plan's user-limit check with the write it
/// guards. Advisory locks are scoped to their database, so this one key serves every
/// tenant without tenants contending.
const USER_LIMIT_LOCK: i64 = 0x7573_6572_6c69_6d74; // "userlimt"

/// Takes the user-limit lock until the transaction `client` is in ends. Held across
/// processes (it lives in PostgreSQL), so two replicas cannot both pass the check either.
/// Hash passwords before taking it: it is held for two short statements, not tens of
/// milliseconds of argon2.
pub async fn user_limit_lock(client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&USER_LIMIT_LOCK])
        .await?;
    Ok(())
}

/// Active users: what the plan's user limit counts.
pub async fn user_count(client: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT count(*) FROM users WHERE status = 'active'", &[])
        .await?
        .get(0))
}

pub async fn user_insert(
    client: &impl GenericClient,
    email: &str,
    name: &str,
    role: &str,
    password_hash: &str,
    roles: bool,
) -> Result<User, tokio_postgres::Error> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO users (id, email, name, password_hash, role) VALUES ($1, $2, $3, $4, $5) RETURNING {}",
                columns(roles)
            ),
            &[&Uuid::now_v7(), &email, &name, &password_hash, &role],
        )
        .await?;
    Ok(from_row(&row))
}

pub async fn user_update(
    client: &impl GenericClient,
    id: Uuid,
    name: Option<&str>,
    role: Option<&str>,
    status: Option<&str>,
    roles: bool,
) -> Result<Option<User>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            &format!(
                "UPDATE users SET name = coalesce($2, name), role = coalesce($3, role), \
                 status = coalesce($4, status), updated_at = now() WHERE id = $1 RETURNING {}",
                columns(roles)
            ),
            &[&id, &name, &role, &status],
        )
        .await?
        .map(|r| from_row(&r)))
}

/// Whether `role` names a role (with the `roles` table, one of its rows; before it, a
/// built-in role).
pub async fn role_exists(
    client: &impl GenericClient,
    role: &str,
    roles: bool,
) -> Result<bool, tokio_postgres::Error> {
    if !roles {
        return Ok(crate::permissions::BUILT_IN.contains(&role));
    }
    Ok(client
        .query_opt("SELECT 1 FROM roles WHERE name = $1", &[&role])
        .await?
        .is_some())
}

/// Deletes user `id`; its email, if there was one.
pub async fn user_delete(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(client
        .query_opt("DELETE FROM users WHERE id = $1 RETURNING email", &[&id])
        .await?
        .map(|r| r.get(0)))
}

/// The emails of the active users (for rebuilding the control plane's index).
pub async fn active_emails(
    client: &impl GenericClient,
) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT email FROM users WHERE status = 'active' ORDER BY email",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}
