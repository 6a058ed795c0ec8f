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
