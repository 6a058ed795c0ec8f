//! The tenant schema, embedded from `migrations/tenant`.
//!
//! Every tenant database (and the template new tenants are cloned from) is brought to
//! [`latest_version`] with [`migrate`]. Pending migrations apply in one transaction, so
//! a tenant is either at its old version or at the new one, never in between.

use crate::Result;

mod embedded {
    refinery::embed_migrations!("../migrations/tenant");
}

/// The highest version among the embedded migrations.
pub fn latest_version() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// Applies every pending migration in one transaction; returns the version reached.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<i32> {
    embedded::migrations::runner()
        .set_grouped(true)
        .run_async(client)
        .await?;
    current_version(client).await
}

/// The version recorded in the database's refinery history (0 when none).
pub async fn current_version(client: &tokio_postgres::Client) -> Result<i32> {
    let table_exists: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !table_exists {
        return Ok(0);
    }
    let version: Option<i32> = client
        .query_one("SELECT max(version) FROM refinery_schema_history", &[])
        .await?
        .get(0);
    Ok(version.unwrap_or(0))
}
