//! The owner schema, embedded from `migrations/owner` and applied at start-up.

use crate::Result;

mod embedded {
    refinery::embed_migrations!("../migrations/owner");
}

/// Applies the pending owner migrations. Callers serialise concurrent start-ups with an
/// advisory lock (refinery takes none).
pub async fn run(client: &mut tokio_postgres::Client) -> Result<()> {
    // Two processes starting at once must not both apply a migration.
    client
        .execute(
            "SELECT pg_advisory_lock(hashtextextended('cp-owner-migrations', 0))",
            &[],
        )
        .await?;
    let result = embedded::migrations::runner().run_async(client).await;
    client
        .execute(
            "SELECT pg_advisory_unlock(hashtextextended('cp-owner-migrations', 0))",
            &[],
        )
        .await?;
    result?;
    Ok(())
}
