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
use crate::secrets::{DataKey, Keyring, random_password};

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

/// New role passwords for a tenant, sealed: what its row stores. For a new tenant, with
/// the data key made for it (`data_key_enc`).
pub struct SealedPasswords {
    /// The master key version sealing the data key (or the passwords, for a tenant
    /// without one).
    pub key_version: i32,
    pub owner: Vec<u8>,
    pub runtime: Vec<u8>,
    /// The tenant's data key, sealed: for a new tenant only.
    pub data_key_enc: Option<Vec<u8>>,
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

fn data_key_aad(id: Uuid) -> String {
    format!("tenant:{id}:data-key")
}

impl TenantAccess {
    pub fn new(keyring: Arc<Keyring>, servers: Arc<ServerDirectory>) -> Self {
        Self { keyring, servers }
    }

    /// Every server's admin connection (roles, databases, sizes).
    pub fn servers(&self) -> &Arc<ServerDirectory> {
        &self.servers
    }

    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// A new tenant's data key and two random role passwords sealed with it.
    pub fn seal_new_tenant(&self, id: Uuid) -> Result<SealedPasswords> {
        let (key, key_version, sealed) = self.keyring.new_data_key(&data_key_aad(id))?;
        let seal = |role| key.seal(random_password().expose_secret().as_bytes(), &aad(id, role));
        Ok(SealedPasswords {
            key_version,
            owner: seal(TenantRole::Owner)?,
            runtime: seal(TenantRole::Runtime)?,
            data_key_enc: Some(sealed),
        })
    }

    /// Two new random role passwords for `tenant`, sealed as its others are (with its
    /// data key, or, for a tenant without one, with the master key).
    pub fn seal_new_passwords(&self, tenant: &Tenant) -> Result<SealedPasswords> {
        let (owner, runtime) = (random_password(), random_password());
        match self.data_key(tenant)? {
            Some(key) => Ok(SealedPasswords {
                key_version: tenant.secret_key_version,
                owner: key.seal(
                    owner.expose_secret().as_bytes(),
                    &aad(tenant.id, TenantRole::Owner),
                )?,
                runtime: key.seal(
                    runtime.expose_secret().as_bytes(),
                    &aad(tenant.id, TenantRole::Runtime),
                )?,
                data_key_enc: None,
            }),
            None => {
                let (key_version, owner) = self.keyring.seal(
                    owner.expose_secret().as_bytes(),
                    &aad(tenant.id, TenantRole::Owner),
                )?;
                let (_, runtime) = self.keyring.seal(
                    runtime.expose_secret().as_bytes(),
                    &aad(tenant.id, TenantRole::Runtime),
                )?;
                Ok(SealedPasswords {
                    key_version,
                    owner,
                    runtime,
                    data_key_enc: None,
                })
            }
        }
    }

    /// The tenant's data key, opened (`None` for a tenant without one).
    pub fn data_key(&self, tenant: &Tenant) -> Result<Option<DataKey>> {
        tenant
            .data_key_enc
            .as_deref()
            .map(|sealed| {
                self.keyring.open_data_key(
                    tenant.secret_key_version,
                    sealed,
                    &data_key_aad(tenant.id),
                )
            })
            .transpose()
    }

    /// What a rewrap to the sealing version makes of `tenant`'s secrets: its data key
    /// sealed again, or, for a tenant without one, a new data key and every password
    /// (current and in rotation) sealed with it. The passwords themselves do not change.
    pub fn rewrap(&self, tenant: &Tenant) -> Result<Rewrapped> {
        let key_aad = data_key_aad(tenant.id);
        match self.data_key(tenant)? {
            Some(key) => {
                let (version, data_key_enc) = self.keyring.reseal_data_key(&key, &key_aad)?;
                Ok(Rewrapped {
                    version,
                    data_key_enc,
                    passwords: None,
                    rotation: None,
                })
            }
            None => {
                let (key, version, data_key_enc) = self.keyring.new_data_key(&key_aad)?;
                let reseal = |role, secret: SecretString| {
                    key.seal(secret.expose_secret().as_bytes(), &aad(tenant.id, role))
                };
                let passwords = (
                    reseal(TenantRole::Owner, self.password(tenant, TenantRole::Owner)?)?,
                    reseal(
                        TenantRole::Runtime,
                        self.password(tenant, TenantRole::Runtime)?,
                    )?,
                );
                let rotation = match (
                    self.rotation_password(tenant, TenantRole::Owner)?,
                    self.rotation_password(tenant, TenantRole::Runtime)?,
                ) {
                    (Some(owner), Some(runtime)) => Some((
                        reseal(TenantRole::Owner, owner)?,
                        reseal(TenantRole::Runtime, runtime)?,
                    )),
                    _ => None,
                };
                Ok(Rewrapped {
                    version,
                    data_key_enc,
                    passwords: Some(passwords),
                    rotation,
                })
            }
        }
    }

    /// The password of `role`, opened from the tenant row.
    pub fn password(&self, tenant: &Tenant, role: TenantRole) -> Result<SecretString> {
        let blob = match role {
            TenantRole::Owner => &tenant.owner_password_enc,
            TenantRole::Runtime => &tenant.runtime_password_enc,
        };
        match self.data_key(tenant)? {
            Some(key) => key.open_string(blob, &aad(tenant.id, role)),
            None => {
                self.keyring
                    .open_string(tenant.secret_key_version, blob, &aad(tenant.id, role))
            }
        }
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
        match self.data_key(tenant)? {
            Some(key) => key.open_string(blob, &aad(tenant.id, role)).map(Some),
            None => self
                .keyring
                .open_string(rotation.key_version, blob, &aad(tenant.id, role))
                .map(Some),
        }
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

    /// The key that signs this tenant's user tokens (and no other tenant's): derived from
    /// its data key, so rotating the master key does not sign its users out; for a tenant
    /// without one yet, from the master key.
    pub fn token_secret(&self, tenant: &Tenant) -> Result<SecretBox<[u8; 32]>> {
        let purpose = format!("tenant-jwt-v1:{}", tenant.id);
        match self.data_key(tenant)? {
            Some(key) => Ok(key.derive(&purpose)),
            None => self.keyring.derive(&purpose),
        }
    }
}

/// A tenant's secrets after a rewrap (see [`TenantAccess::rewrap`]).
pub struct Rewrapped {
    pub version: i32,
    pub data_key_enc: Vec<u8>,
    /// `(owner, runtime)`, sealed with a data key made by this rewrap.
    pub passwords: Option<(Vec<u8>, Vec<u8>)>,
    pub rotation: Option<(Vec<u8>, Vec<u8>)>,
}
