//! Master key rotation, online.
//!
//! 1. Add a version to CP_MASTER_KEY (or the key file) on every process: every configured
//!    version opens, but nothing is sealed with the new one yet, so a replica still on the
//!    old configuration never meets a secret it cannot open.
//! 2. `keys rotate`: the installation records the newest version as the sealing one; new
//!    secrets are sealed with it from then on (other replicas adopt it at their next
//!    reconcile pass).
//! 3. `keys rewrap`: every tenant's data key (one small key per tenant: envelope
//!    encryption) and every server's admin URL is sealed again under the sealing version;
//!    a tenant that has no data key yet gets one, and its passwords are sealed with it.
//!    One transaction per tenant, so a rewrap cut short leaves every tenant either done
//!    or untouched, and running it again carries on where it stopped.
//! 4. `keys retire N` once `keys status` shows nothing sealed under N: recorded, and
//!    refused while anything still is. Then N can leave the configuration.

use std::sync::Arc;

use owner::keys::{KeyUsage, RETIRED_PREFIX, SEALING_VERSION};
use serde::Serialize;
use serde_json::json;
use tokio_postgres::GenericClient;

use crate::audit::{self, Actor, Target};
use crate::secrets::Keyring;
use crate::services::{OwnerDb, TenantAccess, TenantEvents, owner_db};
use crate::{Error, Result};

/// Tenants read per query while rewrapping.
const REWRAP_BATCH: i64 = 100;

/// Sets `keyring`'s sealing version to the installation's (recording the newest
/// configured one at the first start).
pub async fn adopt_sealing_version(client: &impl GenericClient, keyring: &Keyring) -> Result<()> {
    let newest = keyring.newest_version().to_string();
    let recorded = owner::settings::setting_text_init(client, SEALING_VERSION, &newest).await?;
    let version = recorded.parse::<i32>().map_err(|_| {
        Error::Config(format!(
            "the installation's {SEALING_VERSION} is not a number: {recorded:?}"
        ))
    })?;
    keyring.set_sealing_version(version)
}

/// One version, as `keys status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VersionStatus {
    pub version: i32,
    /// In this process's CP_MASTER_KEY / key file.
    pub configured: bool,
    pub sealing: bool,
    pub retired: bool,
    #[serde(flatten)]
    pub usage: KeyUsage,
    /// Its share of everything sealed, in percent.
    pub share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    pub sealing_version: i32,
    pub versions: Vec<VersionStatus>,
    /// Tenants a rewrap to the sealing version would still touch.
    pub tenants_to_rewrap: i64,
}

/// What a rewrap did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RewrapReport {
    pub version: i32,
    /// Tenants whose data key was sealed again.
    pub tenants_rewrapped: usize,
    /// Tenants that got their first data key (their passwords sealed with it).
    pub tenants_given_data_keys: usize,
    pub servers_rewrapped: usize,
    /// Tenants still to do (a run stopped by `max_tenants`, or changed meanwhile).
    pub remaining: i64,
}

pub struct Keys {
    owner: OwnerDb,
    access: Arc<TenantAccess>,
    events: TenantEvents,
}

impl Keys {
    pub fn new(owner: OwnerDb, access: Arc<TenantAccess>, events: TenantEvents) -> Self {
        Self {
            owner,
            access,
            events,
        }
    }

    fn keyring(&self) -> &Keyring {
        self.access.keyring()
    }

    /// Reads the installation's sealing version again (another process may have rotated).
    pub async fn refresh(&self) -> Result<()> {
        let conn = self.owner.conn().await?;
        adopt_sealing_version(&**conn, self.keyring()).await
    }

    /// Adopts a rotation made by another process, every `interval`, until `cancel`.
    pub async fn follow(
        self: Arc<Self>,
        interval: std::time::Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "could not read the master key sealing version");
            }
        }
    }

    /// What each version seals. The sealing version is this process's: adopted at
    /// start-up and kept current by the change feed and [`Keys::follow`], so a page view
    /// writes nothing.
    pub async fn status(&self) -> Result<KeyStatus> {
        let conn = self.owner.conn().await?;
        let sealing = self.keyring().sealing_version();
        let usage = owner::keys::key_usage(&**conn).await?;
        let retired = owner::settings::setting_versions(&**conn, RETIRED_PREFIX).await?;
        let mut versions: Vec<i32> = self.keyring().versions();
        versions.extend(usage.iter().map(|u| u.version));
        versions.extend(&retired);
        versions.sort_unstable();
        versions.dedup();
        let total: i64 = usage.iter().map(KeyUsage::total).sum();
        let versions = versions
            .into_iter()
            .map(|version| {
                let usage = usage
                    .iter()
                    .find(|u| u.version == version)
                    .cloned()
                    .unwrap_or(KeyUsage {
                        version,
                        ..KeyUsage::default()
                    });
                let share = if total > 0 {
                    usage.total() as f64 * 100.0 / total as f64
                } else {
                    0.0
                };
                VersionStatus {
                    version,
                    configured: self.keyring().has_version(version),
                    sealing: version == sealing,
                    retired: retired.contains(&version),
                    usage,
                    share,
                }
            })
            .collect();
        Ok(KeyStatus {
            sealing_version: sealing,
            versions,
            tenants_to_rewrap: owner::keys::tenants_to_rewrap_count(&**conn, sealing).await?,
        })
    }

    /// Seals new secrets with `version` (by default the newest configured) from now on.
    /// Audited. The version's check value is recorded first, so a replica configured
    /// with another key under the same number refuses to start rather than seal with it.
    pub async fn rotate(&self, actor: &Actor, version: Option<i32>) -> Result<i32> {
        let version = version.unwrap_or_else(|| self.keyring().newest_version());
        if !self.keyring().has_version(version) {
            return Err(Error::BadRequest(format!(
                "master key version {version} is not configured in this process (CP_MASTER_KEY or the key file); \
                 add it there first, on every replica"
            )));
        }
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        let retired = owner::settings::setting_versions(&tx, RETIRED_PREFIX).await?;
        if retired.contains(&version) {
            return Err(Error::Conflict(
                "key_retired",
                format!("master key version {version} is retired"),
            ));
        }
        let before = owner::settings::setting_text(&tx, SEALING_VERSION).await?;
        owner::settings::setting_text_set(&tx, SEALING_VERSION, &version.to_string()).await?;
        audit::record(
            &tx,
            actor,
            "keys.rotate",
            Target("master_key", &version.to_string()),
            json!({ "from": before, "to": version }),
        )
        .await?;
        owner_db::commit(tx).await?;
        self.keyring().set_sealing_version(version)?;
        tracing::info!(
            version,
            "master key rotated: new secrets are sealed with this version"
        );
        Ok(version)
    }

    /// Seals every tenant's data key (and every server's admin URL) again under the
    /// sealing version; at most `max_tenants` tenants this run. `progress(done, total)`
    /// after each batch. Audited when done.
    pub async fn rewrap(
        &self,
        actor: &Actor,
        max_tenants: Option<usize>,
        progress: &(dyn Fn(usize, i64) + Send + Sync),
    ) -> Result<RewrapReport> {
        self.refresh().await?;
        let version = self.keyring().sealing_version();
        let mut report = RewrapReport {
            version,
            ..RewrapReport::default()
        };
        let total = {
            let conn = self.owner.conn().await?;
            owner::keys::tenants_to_rewrap_count(&**conn, version).await?
        };
        let mut after = None;
        let mut done = 0usize;
        'batches: loop {
            let batch = {
                let conn = self.owner.conn().await?;
                owner::keys::tenants_to_rewrap(&**conn, version, after, REWRAP_BATCH).await?
            };
            let Some(last) = batch.last() else {
                break;
            };
            after = Some(*last);
            for id in batch {
                if max_tenants.is_some_and(|max| done >= max) {
                    break 'batches;
                }
                match self.rewrap_tenant(id, version).await? {
                    Some(true) => report.tenants_given_data_keys += 1,
                    Some(false) => report.tenants_rewrapped += 1,
                    None => {}
                }
                done += 1;
            }
            progress(done, total);
        }
        if max_tenants.is_none_or(|max| done < max) {
            report.servers_rewrapped = self.rewrap_servers(version).await?;
        }
        let conn = self.owner.conn().await?;
        report.remaining = owner::keys::tenants_to_rewrap_count(&**conn, version).await?;
        audit::record(
            &**conn,
            actor,
            "keys.rewrap",
            Target("master_key", &version.to_string()),
            json!(report),
        )
        .await?;
        Ok(report)
    }

    /// One tenant, in its own transaction under its row lock. `Some(true)`: it got its
    /// first data key; `Some(false)`: its data key was sealed again; `None`: nothing to do
    /// any more (done meanwhile, or deleted).
    async fn rewrap_tenant(&self, id: uuid::Uuid, version: i32) -> Result<Option<bool>> {
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        let tenant = owner::tenants::tenant_fetch_for_update(&tx, id).await?;
        if tenant.status == owner::tenants::TenantStatus::Deleted
            || (tenant.data_key_enc.is_some() && tenant.secret_key_version == version)
        {
            return Ok(None);
        }
        let new = self.access.rewrap(&tenant)?;
        let first_key = new.passwords.is_some();

        owner::keys::tenant_rewrap_set(
            &tx,
            id,
            &owner::keys::RewrappedTenant {
                version: new.version,
                data_key_enc: &new.data_key_enc,
                passwords: pair(&new.passwords),
                rotation: pair(&new.rotation),
            },
        )
        .await?;
        owner_db::commit(tx).await?;
        if first_key {
            // Its token key now comes from its data key: the gateway builds its runtime
            // again (the row's change is announced to other replicas by the database).
            self.events.changed(id).await;
        }
        Ok(Some(first_key))
    }

    async fn rewrap_servers(&self, version: i32) -> Result<usize> {
        let ids = {
            let conn = self.owner.conn().await?;
            owner::keys::servers_to_rewrap(&**conn, version).await?
        };
        let mut done = 0;
        for id in ids {
            let mut conn = self.owner.conn().await?;
            let tx = owner_db::begin(&mut conn).await?;
            tx.execute(
                "SELECT 1 FROM database_servers WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(owner::Error::from)?;
            let server = owner::servers::server_fetch(&tx, &id).await?;
            let (new_version, sealed) = self.access.servers().reseal(&server)?;
            owner::keys::server_rewrap_set(&tx, &id, new_version, &sealed).await?;
            owner_db::commit(tx).await?;
            done += 1;
        }
        Ok(done)
    }

    /// Records `version` as retired: refused while it is the sealing version or anything
    /// is still sealed under it. Audited.
    pub async fn retire(&self, actor: &Actor, version: i32) -> Result<()> {
        self.refresh().await?;
        if version == self.keyring().sealing_version() {
            return Err(Error::Conflict(
                "key_in_use",
                format!(
                    "master key version {version} seals new secrets; rotate to a newer version first"
                ),
            ));
        }
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        // Serialises with a concurrent rotate or rewrap's audit, and reads a settled count.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('cp-master-keys', 0))",
            &[],
        )
        .await
        .map_err(owner::Error::from)?;
        let usage = owner::keys::key_usage(&tx).await?;
        if let Some(used) = usage.iter().find(|u| u.version == version && u.total() > 0) {
            return Err(Error::Conflict(
                "key_in_use",
                format!(
                    "master key version {version} still seals {} tenant data keys, {} tenants' passwords and {} server URLs; \
                     run `keys rewrap` first",
                    used.tenant_data_keys, used.tenant_passwords, used.servers
                ),
            ));
        }
        owner::settings::setting_text_set(
            &tx,
            &format!("{RETIRED_PREFIX}{version}"),
            &chrono::Utc::now().to_rfc3339(),
        )
        .await?;
        audit::record(
            &tx,
            actor,
            "keys.retire",
            Target("master_key", &version.to_string()),
            json!({}),
        )
        .await?;
        owner_db::commit(tx).await?;
        Ok(())
    }
}

/// Another process rotated (or announcements may have been missed): seal with the
/// installation's version from now on.
impl crate::services::Listener for Keys {
    fn forget(&self, change: crate::services::Change) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            if matches!(
                change,
                crate::services::Change::Keys | crate::services::Change::Everything
            ) && let Err(e) = self.refresh().await
            {
                tracing::warn!(error = %e, "could not read the master key sealing version");
            }
        })
    }
}

fn pair(p: &Option<(Vec<u8>, Vec<u8>)>) -> Option<(&[u8], &[u8])> {
    p.as_ref().map(|(a, b)| (a.as_slice(), b.as_slice()))
}
