//! Finding what a command names.

use owner::tenants::Tenant;

use crate::Result;
use crate::wiring::Services;

/// A tenant named by id, or by slug among living tenants.
pub async fn tenant(services: &Services, key: &str) -> Result<Tenant> {
    let conn = services.owner.conn().await?;
    Ok(owner::tenants::tenant_find(&**conn, key).await?)
}
