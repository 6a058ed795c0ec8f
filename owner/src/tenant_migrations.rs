//! The tenant migration set fleet runs recorded (see migration V16): what every process
//! adds to its built-in tenant migrations.

use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::Result;

/// One recorded migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedMigration {
    pub version: i32,
    pub name: String,
    pub checksum: String,
    pub sql: String,
}

/// The recorded set, by version.
pub async fn recorded_set(client: &impl GenericClient) -> Result<Vec<RecordedMigration>> {
    let rows = client
        .query(
            "SELECT version, name, checksum, sql FROM tenant_migrations ORDER BY version",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RecordedMigration {
            version: r.get(0),
            name: r.get(1),
            checksum: r.get(2),
            sql: r.get(3),
        })
        .collect())
}

/// Records `set` for run `run_id`; returns the versions it added. A version already
/// recorded is left as it is (the caller has checked it is the same migration).
pub async fn record_set(
    client: &impl GenericClient,
    set: &[RecordedMigration],
    run_id: Uuid,
) -> Result<Vec<i32>> {
    let mut added = Vec::new();
    for m in set {
        let n = client
            .execute(
                "INSERT INTO tenant_migrations (version, name, checksum, sql, run_id) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (version) DO NOTHING",
                &[&m.version, &m.name, &m.checksum, &m.sql, &run_id],
            )
            .await?;
        if n > 0 {
            added.push(m.version);
        }
    }
    Ok(added)
}
