//! Managing operators: invite, change role, disable, change one's own password. The API
//! and the dashboard both call these, so the rules and the audit trail are the same.

use owner::operators::{
    Operator, OperatorRole, operator_count_active_owners, operator_fetch, operator_insert_with,
    operator_set_password, operator_update,
};
use owner::sessions::{session_revoke_all, session_revoke_others};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use uuid::Uuid;

use crate::audit::{self, Actor, Target};
use crate::auth::{check_new_password, hash_password};
use crate::secrets::random_password;
use crate::services::{OwnerDb, owner_db};
use crate::{Error, Result};

/// Only owners manage operators.
pub fn require_owner(operator: &Operator) -> Result<()> {
    if operator.role == OperatorRole::Owner {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

/// Creates an operator with a one-time password, returned once: they must choose their
/// own at first sign-in.
pub async fn invite(
    owner: &OwnerDb,
    by: &Operator,
    actor: &Actor,
    email: &str,
    role: OperatorRole,
) -> Result<(Operator, SecretString)> {
    require_owner(by)?;
    let email = owner::Email::parse(email)?;
    let password = random_password();
    let hash = hash_password(password.expose_secret())?;
    let mut conn = owner.conn().await?;
    let tx = owner_db::begin(&mut conn).await?;
    let operator = operator_insert_with(&tx, &email, &hash, role, true).await?;
    audit(
        &tx,
        actor,
        "operator.invite",
        &operator,
        json!({ "email": operator.email, "role": role }),
    )
    .await?;
    owner_db::commit(tx).await?;
    Ok((operator, password))
}

/// Changes an operator's role and/or status (`None` keeps it). Disabling revokes their
/// sessions at once; the last active owner can be neither demoted nor disabled (nobody
/// could undo it).
pub async fn update(
    owner: &OwnerDb,
    by: &Operator,
    actor: &Actor,
    id: Uuid,
    role: Option<OperatorRole>,
    active: Option<bool>,
) -> Result<Operator> {
    require_owner(by)?;
    update_as(owner, actor, id, role, active).await
}

/// [`update`] for a caller with the owner database's own authority (the CLI).
pub async fn update_as(
    owner: &OwnerDb,
    actor: &Actor,
    id: Uuid,
    role: Option<OperatorRole>,
    active: Option<bool>,
) -> Result<Operator> {
    let mut conn = owner.conn().await?;
    let tx = owner_db::begin(&mut conn).await?;
    // Serialises concurrent changes of operators, so two owners cannot demote each other
    // past the last-owner check.
    tx.execute("LOCK TABLE owner_users IN SHARE ROW EXCLUSIVE MODE", &[])
        .await
        .map_err(owner::Error::from)?;
    let before = operator_fetch(&tx, id).await?;
    let after = operator_update(
        &tx,
        id,
        role.unwrap_or(before.role),
        active.unwrap_or(before.active),
    )
    .await?;
    let was_owner = before.role == OperatorRole::Owner && before.active;
    let is_owner = after.role == OperatorRole::Owner && after.active;
    if was_owner && !is_owner && operator_count_active_owners(&tx).await? == 0 {
        return Err(Error::Conflict(
            "last_owner",
            "the last active owner can be neither demoted nor disabled".into(),
        ));
    }
    if !after.active || after.role != before.role {
        // Tokens carry the role; make the operator sign in again to get the new one.
        session_revoke_all(&tx, id).await?;
    }
    audit(
        &tx,
        actor,
        "operator.update",
        &after,
        json!({
            "role": { "from": before.role, "to": after.role },
            "active": { "from": before.active, "to": after.active },
        }),
    )
    .await?;
    owner_db::commit(tx).await?;
    Ok(after)
}

/// Gives an operator a new one-time password (returned once; they choose their own at
/// sign-in) and ends their sessions: for one who is locked out. Audited.
pub async fn reset_password(
    owner: &OwnerDb,
    actor: &Actor,
    id: Uuid,
) -> Result<(Operator, SecretString)> {
    let password = random_password();
    let hash = hash_password(password.expose_secret())?;
    let mut conn = owner.conn().await?;
    let tx = owner_db::begin(&mut conn).await?;
    owner::operators::operator_set_one_time_password(&tx, id, &hash).await?;
    session_revoke_all(&tx, id).await?;
    let operator = operator_fetch(&tx, id).await?;
    audit(&tx, actor, "operator.password_reset", &operator, json!({})).await?;
    owner_db::commit(tx).await?;
    Ok((operator, password))
}

/// An operator sets their own password, proving the current one, from the session
/// `session`. Every other session of theirs ends with it (someone who learnt the old
/// password may be signed in elsewhere); the session that made the change goes on.
pub async fn change_password(
    owner: &OwnerDb,
    operator: &Operator,
    session: Uuid,
    actor: &Actor,
    current: String,
    new: &str,
) -> Result<()> {
    check_new_password(new)?;
    if !tenant::auth::verify_password_async(current, operator.password_hash.clone()).await? {
        return Err(Error::Owner(owner::Error::Invalid {
            field: "current_password",
            reason: "is not your current password".into(),
        }));
    }
    let hash = hash_password(new)?;
    let mut conn = owner.conn().await?;
    let tx = owner_db::begin(&mut conn).await?;
    operator_set_password(&tx, operator.id, &hash).await?;
    let revoked = session_revoke_others(&tx, operator.id, session).await?;
    audit(
        &tx,
        actor,
        "operator.password_change",
        operator,
        json!({ "other_sessions_revoked": revoked }),
    )
    .await?;
    owner_db::commit(tx).await?;
    Ok(())
}

async fn audit(
    client: &impl tokio_postgres::GenericClient,
    actor: &Actor,
    action: &str,
    operator: &Operator,
    details: serde_json::Value,
) -> Result<()> {
    let id = operator.id.to_string();
    audit::record(client, actor, action, Target("operator", &id), details).await
}
