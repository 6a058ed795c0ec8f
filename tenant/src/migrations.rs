//! The tenant schema: the migrations embedded from `migrations/tenant`, optionally
//! extended at run time by a folder of `V{n}__{name}.sql` files (so a tenant app's release
//! can ship new migrations to ops without rebuilding the control plane).
//!
//! Pending migrations apply in one transaction, so a tenant is either at its old version
//! or at the new one, never in between. A migration whose checksum differs from the one
//! recorded in a tenant database aborts that tenant's migration (drift).

use std::path::Path;

use refinery::Migration;
use serde::Serialize;
use tokio_postgres::Client;

use crate::{Error, Result};

/// refinery's history table, as refinery creates it: databases migrated before keep
/// theirs, and refinery's tools still read ours.
const HISTORY_TABLE: &str = "CREATE TABLE IF NOT EXISTS refinery_schema_history (\
    version int4 PRIMARY KEY, name varchar(255), applied_on varchar(255), checksum varchar(255))";
const HISTORY: &str =
    "SELECT version, name, checksum FROM refinery_schema_history ORDER BY version";

mod embedded {
    refinery::embed_migrations!("../migrations/tenant");
}

/// A set of tenant migrations: the embedded ones, plus any from a folder.
#[derive(Debug, Clone)]
pub struct Source {
    migrations: Vec<Migration>,
    origin: String,
}

/// A migration as recorded in a tenant's `refinery_schema_history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub version: i32,
    pub name: String,
    pub checksum: String,
}

/// One migration of a set, as recorded outside a tenant database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetEntry {
    pub version: i32,
    pub name: String,
    pub checksum: String,
    pub sql: String,
}

/// What [`Source::apply_locked`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationOutcome {
    pub from: i32,
    pub to: i32,
    /// `(version, name)` of each migration applied.
    pub applied: Vec<(i32, String)>,
}

/// How a tenant's recorded migrations differ from the source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// In the source, below the tenant's version, but never applied there.
    pub missing: Vec<i32>,
    /// Applied in the tenant but unknown to the source.
    pub extra: Vec<i32>,
    /// Applied with a checksum other than the source's.
    pub checksum_mismatch: Vec<i32>,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.checksum_mismatch.is_empty()
    }
}

impl Source {
    pub fn embedded() -> Self {
        let mut migrations = embedded::migrations::runner().get_migrations().clone();
        migrations.sort();
        Self {
            migrations,
            origin: "embedded".into(),
        }
    }

    /// The embedded migrations plus the `V{n}__{name}.sql` files in `dir`. A file with the
    /// version of a migration already in the set must be identical to it.
    pub fn with_dir(self, dir: &Path) -> Result<Self> {
        let extra = refinery::load_sql_migrations(dir)?;
        if extra.is_empty() {
            return Err(Error::Source(format!(
                "{} holds no V<n>__<name>.sql migrations",
                dir.display()
            )));
        }
        self.merged(extra, &dir.display().to_string())
    }

    /// This set plus migrations recorded elsewhere (the owner database's record of what
    /// fleet runs applied), each given as its version, name and SQL.
    pub fn with_recorded(self, recorded: &[SetEntry]) -> Result<Self> {
        if recorded.is_empty() {
            return Ok(self);
        }
        let mut extra = Vec::new();
        for entry in recorded {
            let migration =
                Migration::unapplied(&format!("V{}__{}", entry.version, entry.name), &entry.sql)
                    .map_err(|e| {
                        Error::Source(format!(
                            "recorded migration V{}__{} is unreadable: {e}",
                            entry.version, entry.name
                        ))
                    })?;
            if migration.checksum().to_string() != entry.checksum {
                return Err(Error::Source(format!(
                    "recorded migration V{}__{} does not match its recorded checksum",
                    entry.version, entry.name
                )));
            }
            extra.push(migration);
        }
        self.merged(extra, "the recorded set")
    }

    fn merged(mut self, extra: Vec<Migration>, from: &str) -> Result<Self> {
        let mut added = false;
        for migration in extra {
            match self
                .migrations
                .iter()
                .find(|m| m.version() == migration.version())
            {
                Some(existing) if existing.checksum() == migration.checksum() => {}
                Some(existing) => {
                    return Err(Error::Source(format!(
                        "{from} has V{}__{}, which differs from V{}__{} in {}",
                        migration.version(),
                        migration.name(),
                        existing.version(),
                        existing.name(),
                        self.origin
                    )));
                }
                None => {
                    self.migrations.push(migration);
                    added = true;
                }
            }
        }
        if added {
            self.migrations.sort();
            self.origin = format!("{} + {from}", self.origin);
        }
        Ok(self)
    }

    /// Every migration of the set with its SQL, as the owner database records it.
    pub fn entries(&self) -> Vec<SetEntry> {
        self.migrations
            .iter()
            .map(|m| SetEntry {
                version: m.version(),
                name: m.name().to_string(),
                checksum: m.checksum().to_string(),
                sql: m.sql().unwrap_or_default().to_string(),
            })
            .collect()
    }

    /// `(version, name, sql)` of every migration above `version`, oldest first: what a
    /// database at `version` has still to apply.
    pub fn after(&self, version: i32) -> impl Iterator<Item = (i32, &str, &str)> {
        self.migrations
            .iter()
            .filter(move |m| m.version() > version)
            .map(|m| (m.version(), m.name(), m.sql().unwrap_or_default()))
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The highest version in the source.
    pub fn latest_version(&self) -> i32 {
        self.migrations
            .iter()
            .map(|m| m.version())
            .max()
            .unwrap_or(0)
    }

    pub fn migrations(&self) -> impl Iterator<Item = (i32, &str)> {
        self.migrations.iter().map(|m| (m.version(), m.name()))
    }

    /// Applies every pending migration in one transaction; returns the version reached.
    /// Callers hold the tenant migration lock. A database ahead of this source (its
    /// template upgraded by a fleet run with newer migrations) is fine: it has everything
    /// this source knows, and more.
    pub async fn migrate(&self, client: &mut Client) -> Result<i32> {
        Ok(self.apply(client, "").await?.to)
    }

    /// Takes the tenant migration lock (`lock_sql`, held for the session) and applies the
    /// pending migrations (see [`Source::apply`]).
    pub async fn apply_locked(
        &self,
        client: &mut Client,
        lock_sql: &str,
    ) -> Result<MigrationOutcome> {
        self.apply(client, &format!("{lock_sql};")).await
    }

    /// The one applier, for provisioning, the template and fleet runs alike: in two round
    /// trips whatever the number of migrations, `prelude` (a lock, or nothing) with the
    /// history read, then every pending migration and its history row in one transaction.
    /// The history is refinery's table, written the way refinery writes it. A recorded
    /// migration whose checksum differs from the source's stops the tenant (drift).
    async fn apply(&self, client: &mut Client, prelude: &str) -> Result<MigrationOutcome> {
        use tokio_postgres::SimpleQueryMessage;
        let messages = match client.simple_query(&format!("{prelude} {HISTORY}")).await {
            Ok(messages) => messages,
            // A database never migrated (the template, the first time): make the table.
            // The prelude's lock is a session lock, so it stays held although the
            // statement after it failed.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                client.batch_execute(HISTORY_TABLE).await?;
                client.simple_query(HISTORY).await?
            }
            Err(e) => return Err(e.into()),
        };
        let mut applied = Vec::new();
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message
                && row.len() == 3
            {
                let version: i32 = row.get(0).and_then(|v| v.parse().ok()).ok_or_else(|| {
                    Error::Source("unreadable refinery_schema_history.version".into())
                })?;
                applied.push(Applied {
                    version,
                    name: row.get(1).unwrap_or_default().to_string(),
                    checksum: row.get(2).unwrap_or_default().to_string(),
                });
            }
        }
        for a in &applied {
            if let Some(m) = self.migrations.iter().find(|m| m.version() == a.version)
                && m.checksum().to_string() != a.checksum
            {
                return Err(Error::Source(format!(
                    "applied migration V{}__{} differs from the source's (checksum mismatch); refusing to go on",
                    a.version, a.name
                )));
            }
        }
        let current = applied.iter().map(|a| a.version).max().unwrap_or(0);
        let pending: Vec<&Migration> = self
            .migrations
            .iter()
            .filter(|m| m.version() > current)
            .collect();
        if pending.is_empty() {
            return Ok(MigrationOutcome {
                from: current,
                to: current,
                applied: Vec::new(),
            });
        }
        let mut batch = String::from("BEGIN;\n");
        for m in &pending {
            batch.push_str(m.sql().unwrap_or_default());
            batch.push_str(";\n");
            batch.push_str(&format!(
                "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES ({}, '{}', \
                 to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '{}');\n",
                m.version(),
                m.name().replace('\'', "''"),
                m.checksum()
            ));
        }
        batch.push_str("COMMIT;");
        if let Err(e) = client.batch_execute(&batch).await {
            // A failed statement leaves the transaction open on this session.
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e.into());
        }
        let to = pending.iter().map(|m| m.version()).max().unwrap_or(current);
        Ok(MigrationOutcome {
            from: current,
            to,
            applied: pending
                .iter()
                .map(|m| (m.version(), m.name().to_string()))
                .collect(),
        })
    }

    /// The migrations that [`Source::migrate`] would apply, changing nothing.
    pub async fn pending(&self, client: &Client) -> Result<Vec<(i32, String)>> {
        let applied = applied(client).await?;
        let current = applied.iter().map(|a| a.version).max().unwrap_or(-1);
        Ok(self
            .migrations
            .iter()
            .filter(|m| m.version() > current)
            .map(|m| (m.version(), m.name().to_string()))
            .collect())
    }

    /// How the tenant's recorded migrations differ from this source.
    pub async fn drift(&self, client: &Client) -> Result<Drift> {
        let applied = applied(client).await?;
        let current = applied.iter().map(|a| a.version).max().unwrap_or(-1);
        let mut drift = Drift::default();
        for a in &applied {
            match self.migrations.iter().find(|m| m.version() == a.version) {
                None => drift.extra.push(a.version),
                Some(m) if m.checksum().to_string() != a.checksum => {
                    drift.checksum_mismatch.push(a.version)
                }
                Some(_) => {}
            }
        }
        for m in &self.migrations {
            if m.version() < current && !applied.iter().any(|a| a.version == m.version()) {
                drift.missing.push(m.version());
            }
        }
        Ok(drift)
    }
}

/// The highest version of the embedded migrations.
pub fn latest_version() -> i32 {
    Source::embedded().latest_version()
}

/// Applies the embedded migrations (see [`Source::migrate`]).
pub async fn migrate(client: &mut Client) -> Result<i32> {
    Source::embedded().migrate(client).await
}

/// The migrations recorded in the database (none when it has no history table).
pub async fn applied(client: &Client) -> Result<Vec<Applied>> {
    let table_exists: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !table_exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version, name, checksum FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get(0),
            name: r.get(1),
            checksum: r.get(2),
        })
        .collect())
}

/// The version recorded in the database's refinery history (0 when none).
pub async fn current_version(client: &Client) -> Result<i32> {
    Ok(applied(client)
        .await?
        .iter()
        .map(|a| a.version)
        .max()
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_extends_the_embedded_migrations() {
        let dir = std::env::temp_dir().join(format!("tenant-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let embedded = latest_version();
        let next = embedded + 1;
        std::fs::write(
            dir.join(format!("V{next}__add_microchip.sql")),
            "ALTER TABLE patients ADD COLUMN microchip text;",
        )
        .expect("write");
        let source = Source::embedded().with_dir(&dir).expect("source");
        assert_eq!(source.latest_version(), next);
        assert_eq!(
            source.migrations().count(),
            usize::try_from(next).expect("count")
        );
        std::fs::write(dir.join("V1__initial_schema.sql"), "SELECT 1;").expect("write");
        assert!(
            Source::embedded().with_dir(&dir).is_err(),
            "a conflicting V1 is refused"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_recorded_set_extends_the_embedded_one_and_conflicts_are_refused() {
        let next = latest_version() + 1;
        let extra = Migration::unapplied(&format!("V{next}__add_col"), "SELECT 1;").expect("m");
        let entry = SetEntry {
            version: next,
            name: "add_col".into(),
            checksum: extra.checksum().to_string(),
            sql: "SELECT 1;".into(),
        };
        let source = Source::embedded()
            .with_recorded(std::slice::from_ref(&entry))
            .expect("merged");
        assert_eq!(source.latest_version(), next);
        assert_eq!(
            source.after(next - 1).collect::<Vec<_>>(),
            [(next, "add_col", "SELECT 1;")]
        );
        assert!(source.entries().contains(&entry));
        assert!(source.origin().contains("recorded"), "{}", source.origin());

        let tampered = SetEntry {
            sql: "SELECT 2;".into(),
            ..entry.clone()
        };
        assert!(Source::embedded().with_recorded(&[tampered]).is_err());
        let mut conflicting = Source::embedded().entries()[0].clone();
        conflicting.sql.push_str("\n-- changed");
        conflicting.checksum = Migration::unapplied(
            &format!("V{}__{}", conflicting.version, conflicting.name),
            &conflicting.sql,
        )
        .expect("m")
        .checksum()
        .to_string();
        let err = Source::embedded()
            .with_recorded(&[conflicting])
            .expect_err("a recorded V1 unlike the built-in one");
        assert!(err.to_string().contains("differs"), "{err}");
        assert_eq!(
            Source::embedded()
                .with_recorded(&Source::embedded().entries())
                .expect("same")
                .origin(),
            "embedded",
            "recording the built-in set adds nothing"
        );
    }
}
