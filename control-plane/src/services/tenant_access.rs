//! Reaching a tenant's database: its two roles' passwords, sealed under the master key
//! and bound to the tenant and purpose, the connection settings for each role, and the
//! key that signs the tenant's user tokens. The one place that opens tenant secrets.

use std::sync::Arc;

use owner::tenants::Tenant;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use tokio_postgres::Client;
use uuid::Uuid;

use super::ServerDirectory;
use crate::Result;
use crate::pg::{Endpoint, connect};
use crate::secrets::{Keyring, random_password};

/// Which of a tenant's two database roles to log in as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantRole {
    /// Owns the database and its objects: migrations, provisioning.
    Owner,
    /// May only read and write rows: the tenant's pool, metering.
    Runtime,
}

impl TenantRole {
    /// The associated data its password is sealed with.
    fn purpose(self) -> &'static str {
        match self {
            TenantRole::Owner => "db-owner",
            TenantRole::Runtime => "db-runtime",
        }
    }
}

/// A freshly generated password, sealed: what the tenant row stores.
pub struct SealedPassword {
    pub key_version: i32,
    pub blob: Vec<u8>,
}

pub struct TenantAccess {
    keyring: Arc<Keyring>,
    /// The servers tenants live on, as the admin role; a tenant's endpoints derive from
    /// its server's (same host, same TLS).
    servers: Arc<ServerDirectory>,
}

fn aad(id: Uuid, role: TenantRole) -> String {
    format!("tenant:{id}:{}", role.purpose())
}

impl TenantAccess {
    pub fn new(keyring: Arc<Keyring>, servers: Arc<ServerDirectory>) -> Self {
        Self { keyring, servers }
    }

    /// Every server's admin connection (roles, databases, sizes).
    pub fn servers(&self) -> &Arc<ServerDirectory> {
        &self.servers
    }

    /// A new random password for `role` of tenant `id`, sealed for its row.
    pub fn seal_new_password(&self, id: Uuid, role: TenantRole) -> Result<SealedPassword> {
        let password = random_password();
        let (key_version, blob) = self
            .keyring
            .seal(password.expose_secret().as_bytes(), &aad(id, role))?;
        Ok(SealedPassword { key_version, blob })
    }

    /// The password of `role`, opened from the tenant row.
    pub fn password(&self, tenant: &Tenant, role: TenantRole) -> Result<SecretString> {
        let blob = match role {
            TenantRole::Owner => &tenant.owner_password_enc,
            TenantRole::Runtime => &tenant.runtime_password_enc,
        };
        self.keyring
            .open_string(tenant.secret_key_version, blob, &aad(tenant.id, role))
    }

    /// The new password of `role` while a rotation is in flight.
    pub fn rotation_password(
        &self,
        tenant: &Tenant,
        role: TenantRole,
    ) -> Result<Option<SecretString>> {
        let Some(rotation) = &tenant.rotation else {
            return Ok(None);
        };
        let blob = match role {
            TenantRole::Owner => &rotation.owner_password_enc,
            TenantRole::Runtime => &rotation.runtime_password_enc,
        };
        self.keyring
            .open_string(rotation.key_version, blob, &aad(tenant.id, role))
            .map(Some)
    }

    /// Every way `role` may log in now: the current password, then (while a rotation is
    /// in flight, when the server may already have the new one) the new.
    pub async fn logins(&self, tenant: &Tenant, role: TenantRole) -> Result<Vec<Endpoint>> {
        let server = self.servers.endpoint(&tenant.server_id).await?;
        let name = match role {
            TenantRole::Owner => &tenant.owner_role,
            TenantRole::Runtime => &tenant.runtime_role,
        };
        let mut logins = vec![server.as_role(&tenant.db_name, name, &self.password(tenant, role)?)];
        if let Some(password) = self.rotation_password(tenant, role)? {
            logins.push(server.as_role(&tenant.db_name, name, &password));
        }
        Ok(logins)
    }

    /// Where and as whom to reach a tenant's database: on its server, as `role`.
    pub async fn endpoint(&self, tenant: &Tenant, role: TenantRole) -> Result<Endpoint> {
        let server = self.servers.endpoint(&tenant.server_id).await?;
        let name = match role {
            TenantRole::Owner => &tenant.owner_role,
            TenantRole::Runtime => &tenant.runtime_role,
        };
        let password = self.password(tenant, role)?;
        Ok(server.as_role(&tenant.db_name, name, &password))
    }

    /// One connection to a tenant's database, outside any pool: for work that visits
    /// each tenant briefly (migrations, checks, metering) and must not keep a pool open.
    pub async fn connect(&self, tenant: &Tenant, role: TenantRole) -> Result<Client> {
        connect(&self.endpoint(tenant, role).await?).await
    }

    /// The key that signs this tenant's user tokens (and no other tenant's).
    pub fn token_secret(&self, id: Uuid) -> Result<SecretBox<[u8; 32]>> {
        self.keyring.derive(&format!("tenant-jwt-v1:{id}"))
    }
}
