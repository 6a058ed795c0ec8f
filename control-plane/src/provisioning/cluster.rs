//! The PostgreSQL side of provisioning: idempotent ensure- and drop-steps for a
//! tenant's roles, database and schema, and the template new tenants are cloned from.
//!
//! Every step may run again after a crash at any point, and by two processes in turn;
//! each first looks at what exists. Nothing is adopted or dropped unless it carries our
//! mark: a role's comment, or for a database, an owner role that carries our mark.

use std::sync::Arc;

use secrecy::SecretString;
use tokio::sync::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};
use uuid::Uuid;

use super::faults::{FaultPoint, Faults};
use super::names::{self, TenantNames, marker};
use crate::pg::{Endpoint, connect, ident, literal};
use crate::secrets::scram_verifier;
use crate::services::MigrationSource;
use crate::{Error, Result};

/// Session-level advisory locks (in the admin database) guarding the template: clones
/// hold it shared, template builds and upgrades hold it exclusively, because
/// `CREATE DATABASE ... TEMPLATE` fails while anyone is connected to the template.
const TEMPLATE_LOCK: &str = "SELECT pg_advisory_lock(hashtextextended($1, 0))";
const TEMPLATE_LOCK_SHARED: &str = "SELECT pg_advisory_lock_shared(hashtextextended($1, 0))";
/// Held in a tenant database while its schema changes, so that provisioning, fleet
/// migrations and single-tenant migrations never interleave on one tenant.
pub const TENANT_MIGRATION_LOCK: &str =
    "SELECT pg_advisory_lock(hashtextextended('cp-tenant-migration', 0))";
const TENANT_MIGRATION_UNLOCK: &str =
    "SELECT pg_advisory_unlock(hashtextextended('cp-tenant-migration', 0))";

/// Connections reused across the steps of one drive, so a tenant's creation opens one
/// admin session and one session in its new database instead of one per step. Dropped
/// at the end of the drive, which also releases any session-level lock they hold.
#[derive(Default)]
pub struct Sessions {
    admin: Option<Client>,
    tenant: Option<(String, Client)>,
}

impl Sessions {
    async fn admin(&mut self, cluster: &Cluster) -> Result<&mut Client> {
        if self.admin.as_ref().is_none_or(Client::is_closed) {
            self.admin = Some(connect(&cluster.admin).await?);
        }
        self.admin
            .as_mut()
            .ok_or_else(|| Error::Internal("admin session missing".into()))
    }

    async fn tenant(&mut self, cluster: &Cluster, db: &str) -> Result<&mut Client> {
        let reusable = matches!(&self.tenant, Some((name, c)) if name == db && !c.is_closed());
        if !reusable {
            self.tenant = Some((db.to_string(), connect(&cluster.config_for(db)).await?));
        }
        self.tenant
            .as_mut()
            .map(|(_, c)| c)
            .ok_or_else(|| Error::Internal("tenant session missing".into()))
    }
}

/// The PostgreSQL server tenants live on: its admin connection, and the idempotent
/// steps that make and remove a tenant's roles and database there.
pub struct Cluster {
    admin: Endpoint,
    /// Its name in `database_servers`, recorded in each tenant row.
    server_id: String,
    prefix: String,
    installation_id: String,
    /// The tenant migrations new tenants and the template are brought to.
    source: Arc<MigrationSource>,
    /// The version this process brought the template to, if it did: the template is
    /// looked at again when the set grows (a run recorded new migrations).
    template_ready: Mutex<Option<i32>>,
    /// Sessions the runtime role may hold at once (its pool plus headroom).
    runtime_connection_limit: i32,
    /// PBKDF2 rounds in the login roles' SCRAM verifiers (`CP_TENANT_SCRAM_ITERATIONS`).
    scram_iterations: u32,
}

/// Sessions a tenant's owner role may hold at once: migrations, provisioning and checks
/// use one each, briefly.
pub const OWNER_CONNECTION_LIMIT: i32 = 5;

/// A role as found in `pg_roles`: whether it exists and the comment it carries.
async fn role_comment(client: &impl GenericClient, role: &str) -> Result<Option<Option<String>>> {
    let row = client
        .query_opt(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The owner of a database and that owner's comment, if the database exists.
async fn database_owner(client: &Client, db: &str) -> Result<Option<(String, Option<String>)>> {
    let row = client
        .query_opt(
            "SELECT r.rolname, shobj_description(r.oid, 'pg_authid') FROM pg_database d \
             JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = $1",
            &[&db],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

impl Cluster {
    pub fn new(
        admin: Endpoint,
        server_id: String,
        prefix: String,
        installation_id: String,
        source: Arc<MigrationSource>,
        runtime_connection_limit: i32,
        scram_iterations: u32,
    ) -> Self {
        Self {
            admin,
            server_id,
            prefix,
            installation_id,
            source,
            template_ready: Mutex::new(None),
            runtime_connection_limit,
            scram_iterations,
        }
    }

    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn mark(&self, what: &str) -> String {
        marker(&self.installation_id, what)
    }

    fn config_for(&self, db: &str) -> Endpoint {
        self.admin.with_database(db)
    }

    /// Creates a role with our mark, or checks the mark of an existing one. Login roles
    /// get their password as a SCRAM verifier so no clear text reaches the server.
    async fn ensure_role(
        &self,
        client: &impl GenericClient,
        role: &str,
        what: &str,
        password: Option<&SecretString>,
        inherit: bool,
        connection_limit: i32,
    ) -> Result<()> {
        let mark = self.mark(what);
        // The owner role must inherit from pg_database_owner to use its own public
        // schema; the runtime role inherits nothing.
        let inherit = if inherit { "INHERIT" } else { "NOINHERIT" };
        let login = match password {
            Some(pw) => format!(
                "LOGIN PASSWORD {} CONNECTION LIMIT {connection_limit}",
                literal(&scram_verifier(pw, self.scram_iterations))
            ),
            None => "NOLOGIN".to_string(),
        };
        match role_comment(client, role).await? {
            None => {
                client
                    .batch_execute(&format!(
                        "CREATE ROLE {role_q} {login} NOSUPERUSER NOCREATEDB NOCREATEROLE {inherit} \
                         NOREPLICATION NOBYPASSRLS; COMMENT ON ROLE {role_q} IS {mark_q}",
                        role_q = ident(role),
                        mark_q = literal(&mark),
                    ))
                    .await?;
            }
            Some(Some(comment)) if comment == mark => {
                // Ours from an earlier attempt: make sure it has the password we stored.
                client
                    .batch_execute(&format!("ALTER ROLE {} {login} {inherit}", ident(role)))
                    .await?;
            }
            Some(_) => return Err(Error::NotOurs(format!("role {role}"))),
        }
        Ok(())
    }

    /// Both roles of a tenant, created (with their marks) in one transaction.
    pub async fn ensure_roles(
        &self,
        sessions: &mut Sessions,
        id: Uuid,
        names: &TenantNames,
        owner_password: &SecretString,
        runtime_password: &SecretString,
    ) -> Result<()> {
        let client = sessions.admin(self).await?;
        let tx = client.transaction().await?;
        self.ensure_role(
            &tx,
            &names.owner_role,
            &format!("tenant:{id}:owner"),
            Some(owner_password),
            true,
            OWNER_CONNECTION_LIMIT,
        )
        .await?;
        self.ensure_role(
            &tx,
            &names.runtime_role,
            &format!("tenant:{id}:runtime"),
            Some(runtime_password),
            false,
            self.runtime_connection_limit,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives both roles of a tenant new passwords (as SCRAM verifiers), in one
    /// transaction. Sessions already open keep working; new logins need the new ones.
    pub async fn set_role_passwords(
        &self,
        owner_role: &str,
        runtime_role: &str,
        owner_password: &SecretString,
        runtime_password: &SecretString,
    ) -> Result<()> {
        let mut client = connect(&self.admin).await?;
        let tx = client.transaction().await?;
        for (role, password) in [
            (owner_role, owner_password),
            (runtime_role, runtime_password),
        ] {
            tx.batch_execute(&format!(
                "ALTER ROLE {} PASSWORD {}",
                ident(role),
                literal(&scram_verifier(password, self.scram_iterations))
            ))
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The tenant's database: cloned from the template, owned by the tenant's owner role,
    /// closed to `PUBLIC`, its objects handed to the owner role and readable and writable
    /// (rows only) by the runtime role. Safe to repeat.
    pub async fn ensure_database(
        &self,
        sessions: &mut Sessions,
        id: Uuid,
        names: &TenantNames,
        faults: &Faults,
    ) -> Result<()> {
        let owner_mark = self.mark(&format!("tenant:{id}:owner"));
        let ours = |found: &Option<(String, Option<String>)>| {
            matches!(found, Some((owner, comment))
                if *owner == names.owner_role && comment.as_deref() == Some(owner_mark.as_str()))
        };
        let admin = sessions.admin(self).await?;
        let found = database_owner(admin, &names.database).await?;
        if found.is_none() {
            self.ensure_template().await?;
            let template = names::template_database(&self.prefix);
            let create = format!(
                "CREATE DATABASE {} TEMPLATE {} OWNER {}",
                ident(&names.database),
                ident(&template),
                ident(&names.owner_role)
            );
            admin.execute(TEMPLATE_LOCK_SHARED, &[&template]).await?;
            if faults.fires(FaultPoint::OrphanedCreateDatabase) {
                connect(&self.admin).await?.batch_execute(&create).await?;
            }
            let created = admin.batch_execute(&create).await;
            admin
                .execute(
                    "SELECT pg_advisory_unlock_shared(hashtextextended($1, 0))",
                    &[&template],
                )
                .await?;
            match created {
                Ok(()) => {}
                // A killed process's CREATE DATABASE outlives it on the server (and the
                // tenant lock went with its owner-database session): once it commits,
                // ours finds the name taken. The database is done if it is ours.
                Err(e)
                    if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                        || e.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
                {
                    if !ours(&database_owner(admin, &names.database).await?) {
                        return Err(Error::NotOurs(format!("database {}", names.database)));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        } else if !ours(&found) {
            return Err(Error::NotOurs(format!("database {}", names.database)));
        }
        admin
            .batch_execute(&format!(
                "COMMENT ON DATABASE {db} IS {mark}; \
                 REVOKE ALL ON DATABASE {db} FROM PUBLIC; \
                 GRANT CONNECT ON DATABASE {db} TO {rt}",
                db = ident(&names.database),
                mark = literal(&self.mark(&format!("tenant:{id}:database"))),
                rt = ident(&names.runtime_role),
            ))
            .await?;

        let tenant_db = sessions.tenant(self, &names.database).await?;
        let schema_role = names::template_schema_role(&self.prefix);
        let tx = tenant_db.transaction().await?;
        if role_comment(&tx, &schema_role).await?.is_some() {
            tx.batch_execute(&format!(
                "REASSIGN OWNED BY {schema} TO {owner}; REVOKE ALL ON SCHEMA public FROM {schema}",
                schema = ident(&schema_role),
                owner = ident(&names.owner_role),
            ))
            .await?;
        }
        tx.batch_execute(&grant_runtime_sql(names)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Brings the tenant's schema to the latest version as its owner role, under the
    /// tenant migration lock; returns the version.
    pub async fn migrate(&self, sessions: &mut Sessions, names: &TenantNames) -> Result<i32> {
        let client = sessions.tenant(self, &names.database).await?;
        client.batch_execute(TENANT_MIGRATION_LOCK).await?;
        client
            .batch_execute(&format!("SET ROLE {}", ident(&names.owner_role)))
            .await?;
        let version = self.source.current().migrate(client).await;
        client
            .batch_execute(&format!("RESET ROLE; {TENANT_MIGRATION_UNLOCK}"))
            .await?;
        Ok(version?)
    }

    /// Creates the tenant's first admin user (as the owner role) unless that email exists.
    pub async fn ensure_first_admin(
        &self,
        sessions: &mut Sessions,
        names: &TenantNames,
        admin: &owner::tenants::InitialAdmin,
    ) -> Result<()> {
        let client = sessions.tenant(self, &names.database).await?;
        client
            .batch_execute(&format!("SET ROLE {}", ident(&names.owner_role)))
            .await?;
        let result = tenant::users::user_ensure_admin(
            &*client,
            &admin.email,
            &admin.password_hash,
            admin.must_change_password,
        )
        .await;
        client.batch_execute("RESET ROLE").await?;
        result?;
        Ok(())
    }

    /// Drops the tenant's database if it exists and is ours. Connected sessions are ended.
    pub async fn drop_database(
        &self,
        sessions: &mut Sessions,
        id: Uuid,
        names: &TenantNames,
    ) -> Result<()> {
        sessions.tenant = None;
        self.drop_tenant_database(id, names, &names.database).await
    }

    /// Drops both roles of the tenant if they exist and are ours.
    pub async fn drop_roles(
        &self,
        sessions: &mut Sessions,
        id: Uuid,
        names: &TenantNames,
    ) -> Result<()> {
        let admin = sessions.admin(self).await?;
        for (role, what) in [
            (&names.runtime_role, format!("tenant:{id}:runtime")),
            (&names.owner_role, format!("tenant:{id}:owner")),
        ] {
            match role_comment(&*admin, role).await? {
                None => {}
                Some(Some(comment)) if comment == self.mark(&what) => {
                    admin
                        .batch_execute(&format!("DROP ROLE IF EXISTS {}", ident(role)))
                        .await?;
                }
                Some(_) => return Err(Error::NotOurs(format!("role {role}"))),
            }
        }
        Ok(())
    }

    /// Makes sure the template exists, is ours and is at the latest tenant version.
    /// Done once per process; takes the template lock exclusively while it works.
    pub async fn ensure_template(&self) -> Result<()> {
        self.ensure_template_inner(false).await
    }

    /// Brings the template to the source's latest version even if this process did so
    /// before (a fleet run with new migrations calls this before migrating tenants).
    pub async fn upgrade_template(&self) -> Result<()> {
        self.ensure_template_inner(true).await
    }

    async fn ensure_template_inner(&self, force: bool) -> Result<()> {
        let source = self.source.current();
        let mut ready = self.template_ready.lock().await;
        if ready.is_some_and(|v| v >= source.latest_version()) && !force {
            return Ok(());
        }
        let template = names::template_database(&self.prefix);
        let owner_role = names::template_owner_role(&self.prefix);
        let schema_role = names::template_schema_role(&self.prefix);
        let admin = connect(&self.admin).await?;
        admin.execute(TEMPLATE_LOCK, &[&template]).await?;
        self.ensure_role(&admin, &owner_role, "template-owner", None, false, 0)
            .await?;
        self.ensure_role(&admin, &schema_role, "template-schema", None, false, 0)
            .await?;
        match database_owner(&admin, &template).await? {
            None => {
                admin
                    .batch_execute(&format!(
                        "CREATE DATABASE {} OWNER {}",
                        ident(&template),
                        ident(&owner_role)
                    ))
                    .await?;
            }
            Some((owner, comment))
                if owner == owner_role
                    && comment.as_deref() == Some(self.mark("template-owner").as_str()) => {}
            Some(_) => return Err(Error::NotOurs(format!("database {template}"))),
        }
        admin
            .batch_execute(&format!(
                "COMMENT ON DATABASE {db} IS {mark}; REVOKE ALL ON DATABASE {db} FROM PUBLIC",
                db = ident(&template),
                mark = literal(&self.mark("template")),
            ))
            .await?;
        {
            let mut client = connect(&self.config_for(&template)).await?;
            client
                .batch_execute(&format!(
                    "GRANT USAGE, CREATE ON SCHEMA public TO {schema}; SET ROLE {schema}",
                    schema = ident(&schema_role)
                ))
                .await?;
            let version = source.migrate(&mut client).await?;
            tracing::info!(template = %template, version, "template database is at the latest tenant version");
        }
        // The lock is released when `admin` is dropped, after the template connection.
        drop(admin);
        *ready = Some(source.latest_version());
        Ok(())
    }

    /// Takes back what a tenant's owner role can give away: `CONNECT` for `PUBLIC` on
    /// its database (a database owner may grant it). Only databases carrying our mark are
    /// touched. Returns the databases that had to be closed again.
    pub async fn reassert_hardening(&self) -> Result<Vec<String>> {
        let admin = connect(&self.admin).await?;
        let pattern = format!("{}%", self.prefix.replace('_', "\\_"));
        let opened: Vec<String> = admin
            .query(
                "SELECT datname FROM pg_database d WHERE datname LIKE $1 \
                 AND has_database_privilege('public', d.oid, 'CONNECT') \
                 AND starts_with(coalesce(shobj_description(d.oid, 'pg_database'), ''), $2)",
                &[&pattern, &self.mark("")],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for db in &opened {
            tracing::warn!(database = %db, "CONNECT had been granted to PUBLIC again; revoked");
            admin
                .batch_execute(&format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", ident(db)))
                .await?;
        }
        Ok(opened)
    }

    /// Names of the databases and roles on the server that start with our prefix
    /// (for tests and operators looking for leftovers).
    pub async fn list_prefixed(&self) -> Result<(Vec<String>, Vec<String>)> {
        let admin = connect(&self.admin).await?;
        let pattern = format!("{}%", self.prefix.replace('_', "\\_"));
        let dbs = admin
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1",
                &[&pattern],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let roles = admin
            .query(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE $1 ORDER BY 1",
                &[&pattern],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok((dbs, roles))
    }
}

/// Row-level privileges for the runtime role, now and for tables the owner role creates
/// later. The refinery history stays out of its reach.
fn grant_runtime_sql(names: &TenantNames) -> String {
    let owner = ident(&names.owner_role);
    let rt = ident(&names.runtime_role);
    format!(
        "REVOKE ALL ON SCHEMA public FROM PUBLIC; \
         GRANT USAGE ON SCHEMA public TO {rt}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {rt}; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {rt}; \
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public \
             GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {rt}; \
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public \
             GRANT USAGE, SELECT ON SEQUENCES TO {rt}; \
         DO $$ BEGIN \
             IF to_regclass('public.refinery_schema_history') IS NOT NULL THEN \
                 EXECUTE 'REVOKE ALL ON public.refinery_schema_history FROM {rt_inner}'; \
             END IF; \
             IF to_regclass('public.audit_log') IS NOT NULL THEN \
                 EXECUTE 'REVOKE UPDATE, DELETE, TRUNCATE ON public.audit_log FROM {rt_inner}'; \
             END IF; \
         END $$",
        rt_inner = rt.replace('\'', "''"),
    )
}

/// Restores: a backup is loaded into a database of its own, checked, and then swapped
/// in for the tenant's database in one transaction, so a restore that fails or dies
/// before the swap leaves the tenant's database untouched.
impl Cluster {
    /// The admin endpoint, for the PostgreSQL client tools.
    pub fn admin_endpoint(&self) -> &Endpoint {
        &self.admin
    }

    /// An admin session in database `db`.
    pub async fn admin_session(&self, db: &str) -> Result<Client> {
        connect(&self.config_for(db)).await
    }

    pub async fn database_exists(&self, db: &str) -> Result<bool> {
        let admin = connect(&self.admin).await?;
        Ok(admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
            .await?
            .is_some())
    }

    /// A fresh, empty database for a restore of tenant `id`, owned by its owner role,
    /// closed to everyone else; one left by an earlier attempt is dropped first.
    pub async fn create_restore_database(
        &self,
        id: Uuid,
        names: &TenantNames,
        db: &str,
    ) -> Result<()> {
        self.drop_tenant_database(id, names, db).await?;
        let admin = connect(&self.admin).await?;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {db_q} TEMPLATE template0 OWNER {owner}",
                db_q = ident(db),
                owner = ident(&names.owner_role)
            ))
            .await?;
        admin
            .batch_execute(&format!(
                "COMMENT ON DATABASE {db_q} IS {mark}; REVOKE ALL ON DATABASE {db_q} FROM PUBLIC",
                db_q = ident(db),
                mark = literal(&self.mark(&format!("tenant:{id}:restore"))),
            ))
            .await?;
        Ok(())
    }

    /// An empty database for tenant `id` moving here from another server: named, owned
    /// and marked as provisioning makes one, filled by the move. One left by an earlier
    /// attempt is dropped first.
    pub async fn create_moved_database(&self, id: Uuid, names: &TenantNames) -> Result<()> {
        self.drop_tenant_database(id, names, &names.database)
            .await?;
        let admin = connect(&self.admin).await?;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {db} TEMPLATE template0 OWNER {owner}",
                db = ident(&names.database),
                owner = ident(&names.owner_role)
            ))
            .await?;
        admin
            .batch_execute(&format!(
                "COMMENT ON DATABASE {db} IS {mark}; \
                 REVOKE ALL ON DATABASE {db} FROM PUBLIC; \
                 GRANT CONNECT ON DATABASE {db} TO {rt}",
                db = ident(&names.database),
                mark = literal(&self.mark(&format!("tenant:{id}:database"))),
                rt = ident(&names.runtime_role),
            ))
            .await?;
        Ok(())
    }

    /// Takes the runtime role's write privileges away in the tenant's database, at once
    /// for every session (privileges are checked per statement); `grant_restored` gives
    /// them back. Returns when no transaction of the runtime role that began before is
    /// still open there, so nothing written before is missed by a copy made after;
    /// transactions still open after `patience` are ended.
    pub async fn revoke_writes(
        &self,
        names: &TenantNames,
        patience: std::time::Duration,
    ) -> Result<()> {
        let client = connect(&self.config_for(&names.database)).await?;
        client
            .batch_execute(&format!(
                "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public FROM {}",
                ident(&names.runtime_role)
            ))
            .await?;
        // After the revoke committed: a transaction begun later sees it.
        let revoked_at: std::time::SystemTime = client.query_one("SELECT now()", &[]).await?.get(0);
        let open = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                    AND usename = $1 AND xact_start < $2";
        let deadline = tokio::time::Instant::now() + patience;
        let mut terminated = false;
        loop {
            let left: i64 = client
                .query_one(open, &[&names.runtime_role, &revoked_at])
                .await?
                .get(0);
            if left == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                if terminated {
                    return Err(Error::Internal(format!(
                        "{left} transaction(s) of the runtime role still open in {}",
                        names.database
                    )));
                }
                client
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = current_database() AND usename = $1 AND xact_start < $2",
                        &[&names.runtime_role, &revoked_at],
                    )
                    .await?;
                terminated = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Per table of `db`: rows and a checksum of their contents (the sum of a hash of
    /// each row, so the order rows are stored in does not matter).
    pub async fn table_checksums(
        &self,
        db: &str,
    ) -> Result<std::collections::BTreeMap<String, (i64, i64)>> {
        let client = connect(&self.config_for(db)).await?;
        let tables: Vec<String> = client
            .query(
                "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables \
                 WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out = std::collections::BTreeMap::new();
        for table in tables {
            let row = client
                .query_one(
                    &format!(
                        "SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0)::bigint FROM {table} t"
                    ),
                    &[],
                )
                .await?;
            out.insert(table, (row.get(0), row.get(1)));
        }
        Ok(out)
    }

    /// Gives the runtime role its row privileges in a loaded restore database, as
    /// `ensure_database` does for a new one.
    pub async fn grant_restored(&self, names: &TenantNames, db: &str) -> Result<()> {
        let mut client = connect(&self.config_for(db)).await?;
        let tx = client.transaction().await?;
        tx.batch_execute(&grant_runtime_sql(names)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Puts the loaded database `restored` in the place of the tenant's database, which
    /// becomes `aside`, in one transaction. Sessions in the tenant's database are ended
    /// first (a rename needs it empty); the runtime role cannot come back in between
    /// because its `CONNECT` is taken away until the swap commits.
    pub async fn swap_in_restored(
        &self,
        id: Uuid,
        names: &TenantNames,
        restored: &str,
        aside: &str,
    ) -> Result<()> {
        let mut admin = connect(&self.admin).await?;
        admin
            .batch_execute(&format!(
                "REVOKE CONNECT ON DATABASE {db} FROM {rt}",
                db = ident(&names.database),
                rt = ident(&names.runtime_role),
            ))
            .await?;
        let mut attempts = 0;
        loop {
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = ANY($1) AND pid <> pg_backend_pid()",
                    &[&vec![names.database.as_str(), restored]],
                )
                .await?;
            let tx = admin.transaction().await?;
            let swapped = tx
                .batch_execute(&format!(
                    "ALTER DATABASE {db} RENAME TO {aside_q}; \
                     ALTER DATABASE {restored_q} RENAME TO {db}; \
                     COMMENT ON DATABASE {db} IS {mark}; \
                     GRANT CONNECT ON DATABASE {db} TO {rt}",
                    db = ident(&names.database),
                    aside_q = ident(aside),
                    restored_q = ident(restored),
                    mark = literal(&self.mark(&format!("tenant:{id}:database"))),
                    rt = ident(&names.runtime_role),
                ))
                .await;
            match swapped {
                Ok(()) => {
                    tx.commit().await?;
                    return Ok(());
                }
                // Someone connected between the termination and the rename.
                Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) && attempts < 50 => {
                    drop(tx);
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => {
                    drop(tx);
                    admin
                        .batch_execute(&format!(
                            "GRANT CONNECT ON DATABASE {db} TO {rt}",
                            db = ident(&names.database),
                            rt = ident(&names.runtime_role),
                        ))
                        .await?;
                    return Err(e.into());
                }
            }
        }
    }

    /// Gives the runtime role back its `CONNECT` on the tenant's database (if the
    /// database exists), as an interrupted swap may have left it without.
    pub async fn reopen_database(&self, names: &TenantNames) -> Result<()> {
        let admin = connect(&self.admin).await?;
        let exists = admin
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&names.database],
            )
            .await?
            .is_some();
        if exists {
            admin
                .batch_execute(&format!(
                    "GRANT CONNECT ON DATABASE {} TO {}",
                    ident(&names.database),
                    ident(&names.runtime_role)
                ))
                .await?;
        }
        Ok(())
    }

    /// Drops `db` if it exists and belongs to tenant `id` (owned by its owner role, which
    /// carries our mark): its own, or the ones a restore makes and sets aside.
    pub async fn drop_tenant_database(
        &self,
        id: Uuid,
        names: &TenantNames,
        db: &str,
    ) -> Result<()> {
        let admin = connect(&self.admin).await?;
        match database_owner(&admin, db).await? {
            None => Ok(()),
            Some((owner, comment))
                if owner == names.owner_role
                    && comment.as_deref()
                        == Some(self.mark(&format!("tenant:{id}:owner")).as_str()) =>
            {
                admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        ident(db)
                    ))
                    .await?;
                Ok(())
            }
            Some(_) => Err(Error::NotOurs(format!("database {db}"))),
        }
    }

    /// A scratch database for the restore test, owned by the admin role and marked;
    /// dropped with [`Cluster::drop_scratch_database`].
    pub async fn create_scratch_database(&self, db: &str) -> Result<()> {
        self.drop_scratch_database(db).await?;
        let admin = connect(&self.admin).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {} TEMPLATE template0", ident(db)))
            .await?;
        admin
            .batch_execute(&format!(
                "COMMENT ON DATABASE {db_q} IS {mark}; REVOKE ALL ON DATABASE {db_q} FROM PUBLIC",
                db_q = ident(db),
                mark = literal(&self.mark("restore-test")),
            ))
            .await?;
        Ok(())
    }

    /// Drops a scratch database if it exists and carries the restore test's mark.
    pub async fn drop_scratch_database(&self, db: &str) -> Result<()> {
        let admin = connect(&self.admin).await?;
        let comment: Option<Option<String>> = admin
            .query_opt(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
                &[&db],
            )
            .await?
            .map(|r| r.get(0));
        match comment {
            None => Ok(()),
            // Unmarked: made by a test that died before marking it; the name is ours.
            Some(None) => {
                admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        ident(db)
                    ))
                    .await?;
                Ok(())
            }
            Some(Some(c)) if c == self.mark("restore-test") => {
                admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        ident(db)
                    ))
                    .await?;
                Ok(())
            }
            Some(_) => Err(Error::NotOurs(format!("database {db}"))),
        }
    }
}
