//! Moving a tenant's database to another server (`tenants move SLUG --to SERVER`).
//!
//! A persisted state machine (`tenant_moves`), so a crash at any point ends with the
//! tenant on exactly one server and nothing orphaned:
//! 1. `copying`: the tenant goes into maintenance that still serves reads; its runtime
//!    role's writes are revoked on the source (at once for every session, whichever
//!    replica admitted the request) and the transactions that began before are awaited.
//!    Its roles (same names, same passwords) and an empty database are made on the
//!    target, `pg_dump | pg_restore` copies the data, and every table's row count and
//!    checksum are compared on both sides.
//! 2. `switched`: one owner-database transaction points the tenant at the target, records
//!    the phase and ends the maintenance; every replica hears of it and reconnects there.
//! 3. `done`: after `CP_MOVE_GRACE_SECS` the recovery pass drops the source's database
//!    and roles.
//!
//! A move that fails or dies before the switch is undone: the target's copy and roles
//! are dropped, the source's writes given back, the maintenance ended. Moves, backups
//! and restores of one tenant never overlap (the tenant's backup lock).

use std::time::{Duration, Instant};

use futures::StreamExt;

use owner::maintenance::Holder;
use owner::moves::{MovePhase, TenantMove};
use owner::servers::ServerStatus;
use owner::tenants::{Tenant, TenantStatus};
use serde_json::json;
use uuid::Uuid;

use super::{Backups, TenantLock};
use crate::audit::{self, Actor, Target};
use crate::pg::tools::{Tool, pipe};
use crate::provisioning::{FaultPoint, Sessions, TenantNames, maintenance};
use crate::services::{TenantRole, owner_db};
use crate::{Error, Result};

/// How long a move waits for transactions that began before its writes were revoked.
const WRITES_DRAIN: Duration = Duration::from_secs(10);

/// A move checked, recorded and under way: the tenant in maintenance, its lock held.
pub struct MoveStarted {
    tenant: Tenant,
    pub record: TenantMove,
    lock: TenantLock,
    paused: Instant,
    actor: Actor,
}

fn names_of(tenant: &Tenant) -> TenantNames {
    TenantNames {
        database: tenant.db_name.clone(),
        owner_role: tenant.owner_role.clone(),
        runtime_role: tenant.runtime_role.clone(),
    }
}

impl Backups {
    /// Moves `tenant`'s database to server `to` and waits until it is served from there
    /// (the old copy is dropped later): [`Backups::start_move`], then
    /// [`Backups::finish_move`].
    pub async fn move_tenant(
        &self,
        tenant: &Tenant,
        to: &str,
        actor: &Actor,
    ) -> Result<TenantMove> {
        let started = self.start_move(tenant, to, actor).await?;
        self.finish_move(started).await
    }

    /// Checks and records a move, and puts the tenant in maintenance (reads served).
    /// Refused while a backup, restore or other move of the tenant runs, or an operation
    /// holds its maintenance, or the target is not an active server.
    pub async fn start_move(
        &self,
        tenant: &Tenant,
        to: &str,
        actor: &Actor,
    ) -> Result<MoveStarted> {
        if !matches!(
            tenant.status,
            TenantStatus::Active | TenantStatus::Suspended
        ) {
            return Err(Error::WrongState {
                id: tenant.id,
                status: tenant.status.as_str(),
            });
        }
        if tenant.server_id == to {
            return Err(Error::BadRequest(format!(
                "tenant {} is on server {to} already",
                tenant.slug
            )));
        }
        let target = {
            let conn = self.owner.conn().await?;
            owner::servers::server_fetch(&**conn, to)
                .await
                .map_err(|e| match e {
                    owner::Error::NotFound => {
                        Error::BadRequest(format!("no database server named {to:?}"))
                    }
                    e => e.into(),
                })?
        };
        if target.status != ServerStatus::Active {
            return Err(Error::Conflict(
                "server_not_active",
                format!("server {to} is {}: it takes no tenants", target.status),
            ));
        }
        maintenance::refuse_during_operation(tenant)?;
        let lock = self.lock_tenant_or_busy(tenant.id).await?;
        let (tenant, record) = {
            let mut conn = self.owner.conn().await?;
            let tx = owner_db::begin(&mut conn).await?;
            // Read again under the lock: the tenant may have moved meanwhile.
            let tenant = owner::tenants::tenant_fetch(&tx, tenant.id).await?;
            if tenant.server_id == to {
                return Err(Error::BadRequest(format!(
                    "tenant {} is on server {to} already",
                    tenant.slug
                )));
            }
            let record = owner::moves::move_begin(
                &tx,
                Uuid::new_v4(),
                tenant.id,
                &tenant.server_id,
                to,
                &actor.label,
            )
            .await?;
            maintenance::take_for(&tx, &tenant, Holder::Move, true).await?;
            owner_db::commit(tx).await?;
            (tenant, record)
        };
        let paused = Instant::now();
        self.events.changed(tenant.id).await;
        tracing::info!(tenant = %tenant.slug, from = %record.from_server, to, "moving a tenant");
        Ok(MoveStarted {
            tenant,
            record,
            lock,
            paused,
            actor: actor.clone(),
        })
    }

    /// Copies, checks and switches a started move; undoes it if any of that fails.
    pub async fn finish_move(&self, started: MoveStarted) -> Result<TenantMove> {
        let MoveStarted {
            tenant,
            record,
            lock,
            paused,
            actor,
        } = started;
        let copied = self.copy(&tenant, &record).await;
        let outcome = match copied {
            Ok(tables) => self.switch(&tenant, &record, &tables, paused, &actor).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(done) => {
                lock.release().await;
                Ok(done)
            }
            Err(e @ Error::InjectedFault(_)) => {
                // A crash stand-in: left for the recovery pass, lock and all.
                drop(lock);
                Err(e)
            }
            Err(e) => {
                let message = e.to_string();
                tracing::warn!(tenant = %tenant.slug, error = %message, "move failed; undoing it");
                if let Err(undo) = self.undo_move(&tenant, &record, &message).await {
                    tracing::error!(tenant = %tenant.slug, error = %undo, "undoing the move failed; the recovery pass will try again");
                }
                lock.release().await;
                Err(e)
            }
        }
    }

    /// Writes stopped on the source; roles, database and data on the target; checked.
    /// Returns what was checked: per table, rows and checksum.
    async fn copy(&self, tenant: &Tenant, record: &TenantMove) -> Result<serde_json::Value> {
        let names = names_of(tenant);
        let source = self.servers.cluster(&record.from_server).await?;
        let target = self.servers.cluster(&record.to_server).await?;
        source.revoke_writes(&names, WRITES_DRAIN).await?;
        let access = self.provisioner.access();
        let owner_pw = access.password(tenant, TenantRole::Owner)?;
        let runtime_pw = access.password(tenant, TenantRole::Runtime)?;
        let mut sessions = Sessions::default();
        target
            .ensure_roles(&mut sessions, tenant.id, &names, &owner_pw, &runtime_pw)
            .await?;
        drop(sessions);
        target.create_moved_database(tenant.id, &names).await?;
        pipe(
            Tool::urgent("pg_dump", source.admin_endpoint(), &names.database)
                .arg("--format=custom"),
            Tool::urgent("pg_restore", target.admin_endpoint(), &names.database)
                .arg(format!("--dbname={}", names.database))
                .arg("--no-owner")
                .arg("--no-acl")
                .arg(format!("--role={}", names.owner_role))
                .arg("--exit-on-error")
                .arg("--single-transaction"),
        )
        .await?;
        target.grant_restored(&names, &names.database).await?;
        let (before, after) = tokio::try_join!(
            source.table_checksums(&names.database),
            target.table_checksums(&names.database)
        )?;
        if before != after {
            let differs = before
                .iter()
                .find(|(t, v)| after.get(*t) != Some(v))
                .map(|(t, _)| t.clone())
                .or_else(|| after.keys().find(|t| !before.contains_key(*t)).cloned())
                .unwrap_or_default();
            return Err(Error::Internal(format!(
                "the copy on {} differs from the source (table {differs})",
                record.to_server
            )));
        }
        if self.faults.fires(FaultPoint::MoveCopied) {
            return Err(Error::InjectedFault("move copied, not switched".into()));
        }
        Ok(json!(
            before
                .iter()
                .map(|(t, (rows, sum))| (t.clone(), json!({ "rows": rows, "checksum": sum })))
                .collect::<serde_json::Map<_, _>>()
        ))
    }

    /// Points the tenant at the target and ends the maintenance, in one transaction.
    async fn switch(
        &self,
        tenant: &Tenant,
        record: &TenantMove,
        tables: &serde_json::Value,
        paused: Instant,
        actor: &Actor,
    ) -> Result<TenantMove> {
        let pause_ms = i32::try_from(paused.elapsed().as_millis()).unwrap_or(i32::MAX);
        let done = {
            let mut conn = self.owner.conn().await?;
            let tx = owner_db::begin(&mut conn).await?;
            owner::tenants::tenant_set_server(&tx, tenant.id, &record.to_server).await?;
            let done = owner::moves::move_switched(
                &tx,
                record.id,
                tables,
                pause_ms,
                self.move_grace.as_secs_f64(),
            )
            .await?;
            maintenance::release_for(&tx, tenant.id, Holder::Move).await?;
            audit::record(
                &tx,
                actor,
                "tenant.move",
                Target("tenant", &tenant.id.to_string()),
                json!({ "move_id": record.id, "from": record.from_server,
                        "to": record.to_server, "write_pause_ms": pause_ms }),
            )
            .await?;
            owner_db::commit(tx).await?;
            done
        };
        self.events.changed(tenant.id).await;
        tracing::info!(tenant = %tenant.slug, to = %record.to_server, write_pause_ms = pause_ms, "tenant moved");
        if self.move_grace.is_zero() {
            self.drop_source(tenant, &done).await?;
        }
        Ok(done)
    }

    /// Undoes a move that did not switch: the target's copy and roles dropped, the
    /// source's writes given back, the maintenance ended. Safe to repeat.
    pub(super) async fn undo_move(
        &self,
        tenant: &Tenant,
        record: &TenantMove,
        error: &str,
    ) -> Result<()> {
        let names = names_of(tenant);
        let source = self.servers.cluster(&record.from_server).await?;
        let target = self.servers.cluster(&record.to_server).await?;
        let mut sessions = Sessions::default();
        target
            .drop_database(&mut sessions, tenant.id, &names)
            .await?;
        target.drop_roles(&mut sessions, tenant.id, &names).await?;
        drop(sessions);
        source.grant_restored(&names, &names.database).await?;
        {
            let mut conn = self.owner.conn().await?;
            let tx = owner_db::begin(&mut conn).await?;
            maintenance::release_for(&tx, tenant.id, Holder::Move).await?;
            owner::moves::move_finish(&tx, record.id, Some(error)).await?;
            owner_db::commit(tx).await?;
        }
        self.events.changed(tenant.id).await;
        Ok(())
    }

    /// Drops a switched move's source database and roles, and marks it done.
    pub(super) async fn drop_source(&self, tenant: &Tenant, record: &TenantMove) -> Result<()> {
        let names = names_of(tenant);
        let source = self.servers.cluster(&record.from_server).await?;
        let mut sessions = Sessions::default();
        source
            .drop_database(&mut sessions, tenant.id, &names)
            .await?;
        source.drop_roles(&mut sessions, tenant.id, &names).await?;
        drop(sessions);
        let conn = self.owner.conn().await?;
        owner::moves::move_finish(&**conn, record.id, None).await?;
        tracing::info!(tenant = %tenant.slug, server = %record.from_server, "moved tenant's old database dropped");
        Ok(())
    }

    /// One pass over unfinished moves: those copying whose process is gone are undone;
    /// switched ones past their grace have their source dropped. How many of each.
    pub async fn recover_moves(&self) -> Result<(usize, usize)> {
        let moves = {
            let conn = self.owner.conn().await?;
            owner::moves::move_list_unfinished(&**conn).await?
        };
        let (mut undone, mut dropped) = (0, 0);
        for record in moves {
            let Some(lock): Option<TenantLock> = self.lock_tenant(record.tenant_id).await? else {
                continue;
            };
            let result = async {
                let (now, tenant) = {
                    let conn = self.owner.conn().await?;
                    (
                        owner::moves::move_fetch(&**conn, record.id).await?,
                        owner::tenants::tenant_fetch(&**conn, record.tenant_id).await?,
                    )
                };
                match now.phase {
                    MovePhase::Copying => {
                        self.undo_move(
                            &tenant,
                            &now,
                            "interrupted: the process running it stopped",
                        )
                        .await?;
                        undone += 1;
                    }
                    MovePhase::Switched => {
                        self.drop_source(&tenant, &now).await?;
                        dropped += 1;
                    }
                    MovePhase::Done | MovePhase::Failed => {}
                }
                Ok::<_, Error>(())
            }
            .await;
            lock.release().await;
            if let Err(e) = result {
                tracing::warn!(move_id = %record.id, error = %e, "could not finish a move left unfinished");
            }
        }
        Ok((undone, dropped))
    }
}

/// What draining a server did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Drained {
    /// Slug and the server each tenant went to.
    pub moved: Vec<(String, String)>,
    /// Slug and why its move failed (it stays where it was).
    pub failed: Vec<(String, String)>,
    /// Tenants left because they are being provisioned or deleted.
    pub skipped: Vec<String>,
}

/// Tenants a drain moves at once.
pub const DRAIN_CONCURRENCY: usize = 2;

impl Backups {
    /// Moves every active and suspended tenant off server `id` (which must not take new
    /// tenants: draining or disabled), `DRAIN_CONCURRENCY` at a time, each to where a new
    /// tenant would go. A tenant whose move fails stays and is reported.
    pub async fn drain(&self, id: &str, actor: &Actor) -> Result<Drained> {
        let (server, tenants) = {
            let conn = self.owner.conn().await?;
            (
                owner::servers::server_fetch(&**conn, id).await?,
                owner::tenants::tenant_list_on_server(&**conn, id).await?,
            )
        };
        if server.status == ServerStatus::Active {
            return Err(Error::Conflict(
                "server_active",
                format!("server {id} is active: drain it first (`servers drain` sets it draining)"),
            ));
        }
        let mut report = Drained::default();
        let mut movable = vec![];
        for tenant in tenants {
            match tenant.status {
                TenantStatus::Active | TenantStatus::Suspended => movable.push(tenant),
                TenantStatus::Deleted => {}
                _ => report.skipped.push(tenant.slug),
            }
        }
        let outcomes: Vec<(String, Result<TenantMove>)> = futures::stream::iter(movable)
            .map(|tenant| async move {
                let result = async {
                    let to = {
                        let mut conn = self.owner.conn().await?;
                        let tx = owner_db::begin(&mut conn).await?;
                        let plan = owner::plans::plan_fetch(&tx, &tenant.plan_code).await?;
                        let to = self
                            .servers
                            .place(&tx, plan.server_group.as_deref())
                            .await?;
                        owner_db::commit(tx).await?;
                        to
                    };
                    self.move_tenant(&tenant, &to, actor).await
                }
                .await;
                (tenant.slug, result)
            })
            .buffer_unordered(DRAIN_CONCURRENCY)
            .collect()
            .await;
        for (slug, outcome) in outcomes {
            match outcome {
                Ok(done) => report.moved.push((slug, done.to_server)),
                Err(e) => report.failed.push((slug, e.to_string())),
            }
        }
        tracing::info!(
            server = id,
            moved = report.moved.len(),
            failed = report.failed.len(),
            "server drained"
        );
        Ok(report)
    }
}

/// Sets server `id` draining and drains it in the background (the API and dashboard);
/// the outcome is logged, and each move recorded.
pub async fn start_drain(
    servers: &crate::provisioning::Servers,
    backups: &std::sync::Arc<Backups>,
    tasks: &crate::services::Tasks,
    id: &str,
    actor: &Actor,
) -> Result<()> {
    servers
        .update(
            id,
            &owner::servers::ServerChange {
                status: Some(ServerStatus::Draining),
                ..Default::default()
            },
            actor,
        )
        .await?;
    let (backups, id, actor) = (
        std::sync::Arc::clone(backups),
        id.to_string(),
        actor.clone(),
    );
    tasks.spawn(async move {
        if let Err(e) = backups.drain(&id, &actor).await {
            tracing::error!(server = %id, error = %e, "draining the server failed");
        }
    });
    Ok(())
}
