//! Which master key version seals what: the rows behind `keys status`, `keys rewrap` and
//! `keys retire`. Tenant secrets count per tenant (its data key, or its passwords for a
//! tenant without one); database servers' admin URLs count per server.

use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::Result;

/// The installation's sealing version (see `control_plane::keys`).
pub const SEALING_VERSION: &str = "master_key_sealing_version";
/// `master_key_retired:<version>`, for versions `keys retire` took out of use.
pub const RETIRED_PREFIX: &str = "master_key_retired:";

/// What one master key version seals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyUsage {
    pub version: i32,
    /// Living tenants whose data key it seals.
    pub tenant_data_keys: i64,
    /// Living tenants without a data key whose passwords it seals (until a rewrap).
    pub tenant_passwords: i64,
    /// Database servers whose admin URL it seals.
    pub servers: i64,
}

impl KeyUsage {
    pub fn total(&self) -> i64 {
        self.tenant_data_keys + self.tenant_passwords + self.servers
    }
}

/// Usage of every version that seals anything, oldest first.
pub async fn key_usage(client: &impl GenericClient) -> Result<Vec<KeyUsage>> {
    let rows = client
        .query(
            "SELECT v, sum(data_keys)::bigint, sum(passwords)::bigint, sum(servers)::bigint FROM ( \
               SELECT secret_key_version AS v, \
                      count(*) FILTER (WHERE data_key_enc IS NOT NULL) AS data_keys, \
                      count(*) FILTER (WHERE data_key_enc IS NULL) AS passwords, 0 AS servers \
               FROM tenants WHERE status <> 'deleted' GROUP BY 1 \
               UNION ALL \
               SELECT rotation_key_version, 0, count(*), 0 FROM tenants \
               WHERE status <> 'deleted' AND data_key_enc IS NULL \
                 AND rotation_key_version IS NOT NULL \
                 AND rotation_key_version <> secret_key_version GROUP BY 1 \
               UNION ALL \
               SELECT secret_key_version, 0, 0, count(*) FROM database_servers \
               WHERE admin_url_enc IS NOT NULL GROUP BY 1) u \
             GROUP BY v ORDER BY v",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| KeyUsage {
            version: r.get(0),
            tenant_data_keys: r.get(1),
            tenant_passwords: r.get(2),
            servers: r.get(3),
        })
        .collect())
}

/// Living tenants with anything not yet sealed the way a rewrap to `version` leaves it (a
/// data key under `version`), up to `limit`, in id order after `after`.
pub async fn tenants_to_rewrap(
    client: &impl GenericClient,
    version: i32,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Uuid>> {
    let rows = client
        .query(
            "SELECT id FROM tenants WHERE status <> 'deleted' \
             AND (data_key_enc IS NULL OR secret_key_version <> $1) \
             AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
            &[&version, &after, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// How many living tenants a rewrap to `version` still has to touch.
pub async fn tenants_to_rewrap_count(client: &impl GenericClient, version: i32) -> Result<i64> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM tenants WHERE status <> 'deleted' \
             AND (data_key_enc IS NULL OR secret_key_version <> $1)",
            &[&version],
        )
        .await?
        .get(0))
}

/// A tenant's secrets as a rewrap leaves them: its data key sealed under `version`, and
/// (when it got its data key just now) its passwords sealed with that key.
pub struct RewrappedTenant<'a> {
    pub version: i32,
    pub data_key_enc: &'a [u8],
    /// `(owner, runtime)` passwords, when they were sealed again.
    pub passwords: Option<(&'a [u8], &'a [u8])>,
    /// `(owner, runtime)` passwords of a rotation in flight, when sealed again.
    pub rotation: Option<(&'a [u8], &'a [u8])>,
}

pub async fn tenant_rewrap_set(
    client: &impl GenericClient,
    id: Uuid,
    new: &RewrappedTenant<'_>,
) -> Result<()> {
    let (owner, runtime) = new.passwords.unzip();
    let (rotation_owner, rotation_runtime) = new.rotation.unzip();
    client
        .execute(
            "UPDATE tenants SET secret_key_version = $2::int, data_key_enc = $3, \
             owner_password_enc = COALESCE($4, owner_password_enc), \
             runtime_password_enc = COALESCE($5, runtime_password_enc), \
             rotation_owner_password_enc = COALESCE($6, rotation_owner_password_enc), \
             rotation_runtime_password_enc = COALESCE($7, rotation_runtime_password_enc), \
             rotation_key_version = CASE WHEN rotation_key_version IS NULL THEN NULL ELSE $2::int END \
             WHERE id = $1",
            &[
                &id,
                &new.version,
                &new.data_key_enc,
                &owner,
                &runtime,
                &rotation_owner,
                &rotation_runtime,
            ],
        )
        .await?;
    Ok(())
}

/// Servers whose admin URL is sealed under another version than `version`.
pub async fn servers_to_rewrap(client: &impl GenericClient, version: i32) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT id FROM database_servers WHERE admin_url_enc IS NOT NULL \
             AND secret_key_version <> $1 ORDER BY id",
            &[&version],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub async fn server_rewrap_set(
    client: &impl GenericClient,
    id: &str,
    version: i32,
    admin_url_enc: &[u8],
) -> Result<()> {
    client
        .execute(
            "UPDATE database_servers SET secret_key_version = $2, admin_url_enc = $3 WHERE id = $1",
            &[&id, &version, &admin_url_enc],
        )
        .await?;
    Ok(())
}
