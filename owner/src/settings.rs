//! `system_settings`: installation-wide values.

use tokio_postgres::GenericClient;

use crate::{Error, Result};

/// The id that marks every database and role this installation creates.
pub async fn installation_id(client: &impl GenericClient) -> Result<String> {
    let row = client
        .query_opt(
            "SELECT value #>> '{}' FROM system_settings WHERE key = 'installation_id'",
            &[],
        )
        .await?
        .ok_or(Error::NotFound)?;
    Ok(row.get(0))
}

/// A text setting, if recorded.
pub async fn setting_text(client: &impl GenericClient, key: &str) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT value #>> '{}' FROM system_settings WHERE key = $1",
            &[&key],
        )
        .await?;
    Ok(row.and_then(|r| r.get(0)))
}

/// Records a text setting unless one is recorded already, and returns what is recorded
/// then: the first process to start wins, and every later one compares with it.
pub async fn setting_text_init(
    client: &impl GenericClient,
    key: &str,
    value: &str,
) -> Result<String> {
    client
        .execute(
            "INSERT INTO system_settings (key, value) VALUES ($1, to_jsonb($2::text)) \
             ON CONFLICT (key) DO NOTHING",
            &[&key, &value],
        )
        .await?;
    setting_text(client, key).await?.ok_or(Error::NotFound)
}

/// Replaces a text setting (an operator's deliberate change).
pub async fn setting_text_set(client: &impl GenericClient, key: &str, value: &str) -> Result<()> {
    client
        .execute(
            "INSERT INTO system_settings (key, value) VALUES ($1, to_jsonb($2::text)) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
            &[&key, &value],
        )
        .await?;
    Ok(())
}

/// The versions of the recorded settings `<prefix><version>` (`master_key_check:1`...).
pub async fn setting_versions(client: &impl GenericClient, prefix: &str) -> Result<Vec<i32>> {
    let rows = client
        .query(
            "SELECT substr(key, length($1) + 1) FROM system_settings \
             WHERE starts_with(key, $1) ORDER BY 1",
            &[&prefix],
        )
        .await?;
    let mut versions: Vec<i32> = rows
        .iter()
        .filter_map(|r| r.get::<_, String>(0).parse().ok())
        .collect();
    versions.sort_unstable();
    Ok(versions)
}
