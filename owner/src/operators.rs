//! `owner_users`: the operators of the control plane.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::{Email, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperatorRole {
    Owner,
    Admin,
    Viewer,
}

impl OperatorRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "owner" => Self::Owner,
            "admin" => Self::Admin,
            "viewer" => Self::Viewer,
            _ => return None,
        })
    }

    /// Owners and admins may change things; viewers only look.
    pub fn can_write(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Operator {
    pub id: Uuid,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: OperatorRole,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    /// Signed in with a one-time password: must choose their own before anything else.
    pub must_change_password: bool,
}

const COLUMNS: &str =
    "id, email, password_hash, role, status, created_at, last_login_at, must_change_password";

/// Reads an operator from a row holding [`COLUMNS`], by name (joins may add others).
pub(crate) fn from_row(r: &Row) -> Result<Operator> {
    let role: String = r.try_get("role")?;
    let status: String = r.try_get("status")?;
    Ok(Operator {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        password_hash: r.try_get("password_hash")?,
        role: OperatorRole::parse(&role).ok_or_else(|| Error::Invalid {
            field: "owner_users.role",
            reason: role.clone(),
        })?,
        active: status == "active",
        created_at: r.try_get("created_at")?,
        last_login_at: r.try_get("last_login_at")?,
        must_change_password: r.try_get("must_change_password")?,
    })
}

pub async fn operator_insert(
    client: &impl GenericClient,
    email: &Email,
    password_hash: &str,
    role: OperatorRole,
) -> Result<Operator> {
    operator_insert_with(client, email, password_hash, role, false).await
}

/// Inserts an operator; `must_change_password` for one-time passwords (invitations).
pub async fn operator_insert_with(
    client: &impl GenericClient,
    email: &Email,
    password_hash: &str,
    role: OperatorRole,
    must_change_password: bool,
) -> Result<Operator> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO owner_users (id, email, password_hash, role, must_change_password) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
            ),
            &[
                &Uuid::now_v7(),
                &email.as_str(),
                &password_hash,
                &role.as_str(),
                &must_change_password,
            ],
        )
        .await?;
    from_row(&row)
}

pub async fn operator_list(client: &impl GenericClient) -> Result<Vec<Operator>> {
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM owner_users ORDER BY email"),
            &[],
        )
        .await?;
    rows.iter().map(from_row).collect()
}

/// Active operators with the owner role (the last one may not be demoted or disabled).
pub async fn operator_count_active_owners(client: &impl GenericClient) -> Result<i64> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM owner_users WHERE role = 'owner' AND status = 'active'",
            &[],
        )
        .await?
        .get(0))
}

pub async fn operator_update(
    client: &impl GenericClient,
    id: Uuid,
    role: OperatorRole,
    active: bool,
) -> Result<Operator> {
    let status = if active { "active" } else { "disabled" };
    let row = client
        .query_opt(
            &format!(
                "UPDATE owner_users SET role = $2, status = $3 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &role.as_str(), &status],
        )
        .await?
        .ok_or(Error::NotFound)?;
    from_row(&row)
}

/// Gives the operator a one-time password (they must choose their own at sign-in).
pub async fn operator_set_one_time_password(
    client: &impl GenericClient,
    id: Uuid,
    password_hash: &str,
) -> Result<()> {
    let n = client
        .execute(
            "UPDATE owner_users SET password_hash = $2, must_change_password = true WHERE id = $1",
            &[&id, &password_hash],
        )
        .await?;
    if n == 0 {
        return Err(Error::NotFound);
    }
    Ok(())
}

/// Sets a password the operator chose (clearing the one-time flag).
pub async fn operator_set_password(
    client: &impl GenericClient,
    id: Uuid,
    password_hash: &str,
) -> Result<()> {
    let n = client
        .execute(
            "UPDATE owner_users SET password_hash = $2, must_change_password = false WHERE id = $1",
            &[&id, &password_hash],
        )
        .await?;
    if n == 0 {
        return Err(Error::NotFound);
    }
    Ok(())
}

pub async fn operator_fetch_by_email(
    client: &impl GenericClient,
    email: &Email,
) -> Result<Operator> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM owner_users WHERE email = $1"),
            &[&email.as_str()],
        )
        .await?
        .ok_or(Error::NotFound)?;
    from_row(&row)
}

pub async fn operator_fetch(client: &impl GenericClient, id: Uuid) -> Result<Operator> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM owner_users WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or(Error::NotFound)?;
    from_row(&row)
}

pub async fn operator_record_login(client: &impl GenericClient, id: Uuid) -> Result<()> {
    client
        .execute(
            "UPDATE owner_users SET last_login_at = now() WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(())
}
