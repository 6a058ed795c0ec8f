//! `owner_users`: the operators of the control plane.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::{Email, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize)]
pub struct Operator {
    pub id: Uuid,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: OperatorRole,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, email, password_hash, role, status, created_at, last_login_at";

fn from_row(r: &Row) -> Result<Operator> {
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
    })
}

pub async fn operator_insert(
    client: &impl GenericClient,
    email: &Email,
    password_hash: &str,
    role: OperatorRole,
) -> Result<Operator> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO owner_users (id, email, password_hash, role) VALUES ($1, $2, $3, $4) \
                 RETURNING {COLUMNS}"
            ),
            &[
                &Uuid::now_v7(),
                &email.as_str(),
                &password_hash,
                &role.as_str(),
            ],
        )
        .await?;
    from_row(&row)
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
